// Finding a trained run and its corpus from the CLI, and running lory-worker / lory-data on it.
#pragma once

#include <string>
#include <vector>

#include "core/results_store.h"

namespace lory::cli {

// The folder holding lory's executables (lory, lory-worker, lory-data).
std::string executable_dir();

// Starts a program and waits. Returns "" on exit status 0, else how it ended.
std::string run_program(const std::vector<std::string>& arguments);
// Starts a program with its standard output written to `output_file`.
std::string run_program_to_file(const std::vector<std::string>& arguments, const std::string& output_file);

// Starts `producer` with its standard output piped into `consumer`'s standard input and waits for
// both. Returns "" when both exit with status 0, else how the consumer ended if it failed (a
// failing consumer ends the producer with SIGPIPE), else how the producer ended.
std::string run_pipeline(const std::vector<std::string>& producer, const std::vector<std::string>& consumer);

// The corpus folder of a run: `override_dir` when given, else the run's data.corpus resolved
// against its experiment file's folder.
std::string run_corpus_dir(ResultsStore& store, const RunRecord& run, const std::string& override_dir);

// Where a trained run's plugins are looked for besides the default folders and LORY_PLUGIN_PATH:
// `extra` (the command's --plugin-path), then the run's experiment file's `[plugins] path` when
// that file can still be read (an out-of-tree router's run is scored with the plugin it trained
// with).
std::vector<std::string> run_plugin_path(ResultsStore& store, const RunRecord& run,
                                         const std::vector<std::string>& extra);

}  // namespace lory::cli
