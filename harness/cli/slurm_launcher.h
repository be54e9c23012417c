// Hands a grid to Slurm instead of training it here: one job array whose task i runs the i-th
// pending cell (`lory run-cell`), each into its own SQLite file (SQLite on network file systems
// is unsafe with concurrent writers), and one job that runs after the array, whatever its
// outcome, and merges those files into the results store (`lory merge`).
#pragma once

#include <string>
#include <vector>

#include "core/experiment/experiment.h"

namespace lory::cli {

struct SlurmOptions {
  std::string db_path;                // the store the merge job fills
  std::string partition, time_limit;  // passed to #SBATCH when given
  int cpus_per_task = 0;              // 0 = the cell's trainer.threads x processes
  int processes_per_cell = 1;
  bool emit_only = false;  // write the scripts, do not submit
  std::vector<std::string> plugin_path;
};

// Writes <folder of the store>/slurm/<experiment>/{cells.sbatch,merge.sbatch} and, unless
// emit_only, submits both with sbatch. Returns the folder.
std::string launch_on_slurm(const Experiment& experiment, const SlurmOptions& options);

}  // namespace lory::cli
