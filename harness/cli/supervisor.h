// Runs the cells of an experiment: registers each as a run in the results store, decides which to
// train (done cells are skipped, interrupted ones resume from their checkpoint, failed ones only
// with --retry-failed), and trains them in lory-worker processes, up to `jobs` at a time, so that
// a crash, a diverging loss or a broken plugin costs only its own cell. Ctrl-C once lets every
// worker finish its step, checkpoint and stop; twice stops them at once.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "core/experiment/experiment.h"

namespace lory::cli {

struct SupervisorOptions {
  std::string db_path;
  std::vector<std::string> plugin_path;
  int jobs = 1;
  bool retry_failed = false;
  bool fail_fast = false;
  bool allow_corpus_change = false;
  bool shuffle_order =
      false;  // run cells in a seeded random order, so early results cover the grid
  uint64_t order_seed = 0;
  int processes_per_cell =
      1;  // data-parallel ranks of every cell on this machine (torchrun's convention)
  bool register_only =
      false;  // register the cells' runs and print their worker commands; train nothing
  // Appended to the experiment name to name the supervisor lock: empty for a whole grid,
  // "#<cell>" for `lory run-cell`, so that array tasks of one grid run side by side.
  std::string lock_suffix;
};

// Returns normally when every cell is done; throws UserError naming the cells that are not.
void run_grid(const Experiment& experiment, const SupervisorOptions& options);

// The final per-domain perplexity of the runs of an experiment, as a table (cells x domains);
// with `only_cells`, only the runs of those cell identities (the grid as it is now).
std::string perplexity_table(const std::string& db_path, const std::string& experiment_name,
                             const std::set<std::string>& only_cells = {});

}  // namespace lory::cli
