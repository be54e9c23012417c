#include "run_inputs.h"

#include <fmt/format.h>

#include <filesystem>

#include "core/experiment/cell_config.h"
#include "core/experiment/experiment_file.h"
#include "core/support/diagnostics.h"
#include "core/support/paths.h"

namespace lory::cli {

namespace fs = std::filesystem;

std::string run_corpus_dir(ResultsStore& store, const RunRecord& run,
                           const std::string& override_dir) {
  if (!override_dir.empty()) return override_dir;
  const fs::path experiment_file = store.experiment_file(run);
  const fs::path corpus =
      CellConfig::from_json(run.config_json).section("data").values.get_string("corpus");
  const fs::path resolved =
      resolve_against(experiment_file.parent_path().string(), corpus.string());
  std::error_code ec;
  if (!fs::is_directory(resolved, ec)) {
    throw UserError(
        fmt::format("run {}'s corpus '{}' is not there (resolved against {}); pass --corpus DIR",
                    run.id, resolved.string(), experiment_file.string()));
  }
  return resolved.string();
}

std::vector<std::string> run_plugin_path(ResultsStore& store, const RunRecord& run,
                                         const std::vector<std::string>& extra) {
  std::vector<std::string> path = extra;
  const std::string experiment_file = store.experiment_file(run);
  std::error_code ec;
  if (experiment_file.empty() || !fs::is_regular_file(experiment_file, ec)) return path;
  // The file may have changed since the run trained; only its plugin path is read, and a file
  // that no longer parses contributes nothing (the default folders and --plugin-path remain).
  try {
    Diagnostics diagnostics;
    const ConfigNode tree = read_experiment_tree(experiment_file, diagnostics);
    if (!diagnostics.empty()) return path;
    for (const std::string& p : experiment_plugin_path(tree, experiment_file, diagnostics))
      path.push_back(p);
  } catch (const std::exception&) {
    // As above: an unreadable experiment file adds nothing.
  }
  return path;
}

}  // namespace lory::cli
