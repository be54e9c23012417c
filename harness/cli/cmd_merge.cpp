// `lory merge --into DB SOURCE...`: gather results stores into one (see core/results_merge.h).
#include <cstdio>

#include "commands.h"
#include "core/store/results_merge.h"

namespace lory::cli {

void register_merge_command(CLI::App& app) {
  auto into = std::make_shared<std::string>();
  auto sources = std::make_shared<std::vector<std::string>>();
  CLI::App* cmd = app.add_subcommand(
      "merge", "Merge results stores (e.g. the per-cell files of a Slurm array) into one");
  cmd->add_option("--into,--db", *into, "Target results database (created when missing)")
      ->required();
  cmd->add_option("sources", *sources, "Source databases")->required()->check(CLI::ExistingFile);
  cmd->callback([into, sources] {
    const MergeSummary summary = merge_results(*into, *sources);
    std::printf(
        "merged %zu file(s) into %s: %zu run(s) copied with %zu rows, %zu kept (already done "
        "there)\n",
        sources->size(), into->c_str(), summary.runs_copied, summary.rows_copied,
        summary.runs_kept);
  });
}

}  // namespace lory::cli
