// `lory-worker`: the only lory process that links LibTorch. `lory run` starts one per cell
// (train); `lory score`, `generate`, `eval-tasks`, `embed` and `export` use it to load a trained
// run. A training failure is recorded in the results store with its reason before the process
// exits non-zero. One file per command (commands.h).
#include <CLI/CLI.hpp>

#include "core/support/program_main.h"
#include "nn/allocator_tuning.h"
#include "worker/commands.h"

int main(int argc, char** argv) {
  lory::tune_allocator_for_training();
  CLI::App app{"lory-worker: trains, scores or exports one run (started by `lory`)"};
  app.require_subcommand(1);
  int status = lory::exit_status::kSuccess;
  lory::worker::add_train_command(app, status);
  lory::worker::add_score_command(app, status);
  lory::worker::add_generate_command(app, status);
  lory::worker::add_eval_tasks_command(app, status);
  lory::worker::add_embed_command(app, status);
  lory::worker::add_export_command(app, status);
  return lory::run_main("lory-worker", app, [&] {
    app.parse(argc, argv);
    return status;
  });
}
