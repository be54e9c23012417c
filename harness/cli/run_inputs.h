// What `lory` needs to hand a trained run to lory-worker besides its checkpoint: the run's corpus
// folder and the plugin path it trained with.
#pragma once

#include <string>
#include <vector>

#include "core/store/results_store.h"

namespace lory::cli {

// The corpus folder of a run: `override_dir` when given, else the run's data.corpus resolved
// against its experiment file's folder.
std::string run_corpus_dir(ResultsStore& store, const RunRecord& run,
                           const std::string& override_dir);

// Where a trained run's plugins are looked for besides the default folders and LORY_PLUGIN_PATH:
// `extra` (the command's --plugin-path), then the run's experiment file's `[plugins] path` when
// that file can still be read (an out-of-tree router's run is scored with the plugin it trained
// with).
std::vector<std::string> run_plugin_path(ResultsStore& store, const RunRecord& run,
                                         const std::vector<std::string>& extra);

}  // namespace lory::cli
