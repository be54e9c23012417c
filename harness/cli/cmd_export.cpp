// `lory export`: a trained run's weights and config for PyTorch (python/lory_export.py).
#include <fmt/format.h>

#include "commands.h"
#include "core/support/command_line_options.h"
#include "core/support/diagnostics.h"
#include "worker_job.h"

namespace lory::cli {

void register_export_command(CLI::App& app) {
  auto options = std::make_shared<TrainedRunOptions>();
  CLI::App* cmd = app.add_subcommand(
      "export", "Write a trained run's weights (torch.load-able) and config to a folder");
  options->add_common(cmd);
  cmd->add_option("--out", options->out_dir, "Output folder")->required();
  cmd->callback([options] {
    run_worker_command(*options, "export", {"--out", options->out_dir}, "export");
  });
}

}  // namespace lory::cli
