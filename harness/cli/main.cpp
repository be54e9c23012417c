// `lory`: the command-line front of the harness. It validates experiments, supervises training
// workers (lory-worker, the only process that links LibTorch) and reads the results store.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>
#include <vector>

#include "commands.h"
#include "core/support/diagnostics.h"
#include "core/support/program_main.h"
#include "lory/core/build_info.h"

int main(int argc, char** argv) {
  CLI::App app{
      "lory: a harness for Mixture-of-Experts language-model ablations (Lory, top-k, expert "
      "choice, dense)"};
  app.set_version_flag("--version", std::string("lory ") + LORY_VERSION);
  app.require_subcommand(1);
  lory::cli::register_plugins_command(app);
  lory::cli::register_run_command(app);
  lory::cli::register_query_command(app);
  lory::cli::register_score_command(app);
  lory::cli::register_generate_command(app);
  lory::cli::register_eval_tasks_command(app);
  lory::cli::register_export_command(app);
  lory::cli::register_embed_command(app);
  lory::cli::register_status_command(app);
  lory::cli::register_report_command(app);
  lory::cli::register_merge_command(app);
  return lory::run_main("lory", app, [&] {
    // An unknown first word is a mistyped command, not a missing one: name it and the commands.
    if (argc > 1 && argv[1][0] != '-') {
      std::vector<std::string> names;
      bool known = false;
      for (const CLI::App* command : app.get_subcommands({})) {
        names.push_back(command->get_name());
        known = known || command->get_name() == argv[1];
      }
      if (!known) {
        throw lory::UserError(
            fmt::format("unknown command '{}'; the commands are: {} (lory --help)", argv[1],
                        fmt::join(names, ", ")));
      }
    }
    app.parse(argc, argv);
    return lory::exit_status::kSuccess;
  });
}
