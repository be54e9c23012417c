#include "core/support/program_main.h"

#include <cstdio>

#include "core/support/diagnostics.h"
#include "core/support/kill_points.h"

namespace lory {

std::string exit_status_help() {
  return "Exit status:\n"
         "  0    done\n"
         "  1    the input is wrong (command line, config, corpus, database, plugin): the message "
         "says what to change\n"
         "  2    the input was right but the work did not finish (a run failed or diverged; cells "
         "not done)\n"
         "  3    internal error: a bug in lory; please report the message with the command line\n"
         "  130  interrupted (Ctrl-C, SIGTERM, SIGHUP): what was done is kept; rerun to go on\n";
}

int run_main(const std::string& program, CLI::App& app, const std::function<int()>& body) {
  const std::string footer = app.get_footer();
  app.footer(footer.empty() ? exit_status_help() : footer + "\n\n" + exit_status_help());
  try {
    // Test-only: an error nobody anticipated, for the test of the internal-error status.
    if (fault_injected("internal_error", 0))
      throw std::logic_error("injected internal error (LORY_TEST_FAULT)");
    return body();
  } catch (const CLI::ParseError& e) {
    // --help and --version are "errors" of status 0 in CLI11, printed by it; a usage error is the
    // user's, printed like every other error.
    if (e.get_exit_code() == 0) return app.exit(e);
    std::fprintf(stderr, "%s: error: %s\nRun with --help for more information.\n", program.c_str(),
                 e.what());
    return exit_status::kUserError;
  } catch (const Interrupted& e) {
    std::fprintf(stderr, "%s: %s\n", program.c_str(), e.what());
    return exit_status::kInterrupted;
  } catch (const NotDone& e) {
    std::fprintf(stderr, "%s: error: %s\n", program.c_str(), e.what());
    return exit_status::kNotDone;
  } catch (const UserError& e) {
    std::fprintf(stderr, "%s: error: %s\n", program.c_str(), e.what());
    return exit_status::kUserError;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: internal error: %s\n", program.c_str(), e.what());
    return exit_status::kInternalError;
  }
}

}  // namespace lory
