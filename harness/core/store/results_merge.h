// `lory merge`: gathers results stores into one (the per-cell files of a Slurm job array, or
// stores written on other machines). Runs are matched by experiment name and cell identity; a
// run already done in the target is kept, any other is replaced by the source's with all its
// rows, and its checkpoint folder is copied along, so `lory score` and `lory export` work on the
// merged store.
#pragma once

#include <string>
#include <vector>

namespace lory {

struct MergeSummary {
  size_t runs_copied = 0;
  size_t runs_kept = 0;  // already done in the target
  size_t rows_copied = 0;
};

MergeSummary merge_results(const std::string& target_path,
                           const std::vector<std::string>& source_paths);

}  // namespace lory
