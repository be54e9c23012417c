// Runs the cells of an experiment: registers each as a run in the results store, skips the ones
// already done, and trains the others one by one, each in its own lory-worker process so that a
// crash or a broken plugin costs only its own cell.
#pragma once

#include <string>
#include <vector>

#include "core/experiment.h"

namespace lory::cli {

struct SupervisorOptions {
  std::string db_path;
  std::vector<std::string> plugin_path;
};

void run_grid(const Experiment& experiment, const SupervisorOptions& options);

// The final per-domain perplexity of every run of an experiment, as a table (cells x domains).
std::string perplexity_table(const std::string& db_path, const std::string& experiment_name);

}  // namespace lory::cli
