// The one way lory's three programs (lory, lory-worker, lory-data) end: every error is caught
// here, printed as "<program>: error: ..." (or "internal error"), and mapped to the exit statuses
// below, which each program's --help lists.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>

namespace lory {

namespace exit_status {
constexpr int kSuccess = 0;
constexpr int kUserError =
    1;  // the input is wrong (command line, config, corpus, database, plugin)
constexpr int kNotDone =
    2;  // the input was right, the work did not finish (a run failed or diverged)
constexpr int kInternalError = 3;  // a bug in lory: an error nobody anticipated
constexpr int kInterrupted =
    130;  // stopped by Ctrl-C, SIGTERM or SIGHUP (128 + SIGINT); a rerun goes on
}  // namespace exit_status

// The "Exit status:" section of a program's --help.
std::string exit_status_help();

// Runs `body` (parsing `app`'s command line included) and turns what it throws into a message on
// standard error and an exit status: CLI11's usage errors and UserError -> 1, NotDone -> 2, any
// other exception -> 3, Interrupted -> 130. --help and --version exit 0. `body` returns the exit
// status of a normal end. Adds exit_status_help() to `app`'s footer.
int run_main(const std::string& program, CLI::App& app, const std::function<int()>& body);

}  // namespace lory
