// `lory`: the command-line front of the harness. It validates experiments, supervises training
// workers (lory-worker, the only process that links LibTorch) and reads the results store.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>
#include <vector>

#include "commands.h"
#include "core/diagnostics.h"
#include "lory/build_info.h"

int main(int argc, char** argv) {
  CLI::App app{"lory: a harness for Mixture-of-Experts language-model ablations (Lory, top-k, expert choice, dense)"};
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
  try {
    // An unknown first word is a mistyped command, not a missing one: name it and the commands.
    if (argc > 1 && argv[1][0] != '-') {
      std::vector<std::string> names;
      bool known = false;
      for (const CLI::App* command : app.get_subcommands({})) {
        names.push_back(command->get_name());
        known = known || command->get_name() == argv[1];
      }
      if (!known) {
        std::fprintf(stderr, "lory: error: unknown command '%s'; the commands are: %s (lory --help)\n", argv[1],
                     fmt::format("{}", fmt::join(names, ", ")).c_str());
        return 1;
      }
    }
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const lory::UserError& e) {
    std::fprintf(stderr, "lory: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lory: internal error: %s\n", e.what());
    return 3;
  }
  return 0;
}
