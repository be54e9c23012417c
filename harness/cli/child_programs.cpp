#include "child_programs.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/dll/runtime_symbol_info.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/support/diagnostics.h"

extern char** environ;

namespace lory::cli {

namespace fs = std::filesystem;

std::string executable_dir() { return boost::dll::program_location().parent_path().string(); }

namespace {

// A signal that asks `lory` to stop while it waits for a child (Ctrl-C, SIGTERM, SIGHUP): recorded,
// forwarded to the child, and turned into an error once the child has ended, so that the command
// unwinds (its temporary files are removed) instead of dying on the spot.
volatile sig_atomic_t stop_signal = 0;

void record_stop_signal(int signal_number) { stop_signal = signal_number; }

void install_stop_forwarding() {
  static bool installed = false;
  if (installed) return;
  installed = true;
  struct sigaction action {};
  action.sa_handler = record_stop_signal;  // no SA_RESTART: waitpid returns with EINTR
  for (const int signal_number : {SIGINT, SIGTERM, SIGHUP})
    sigaction(signal_number, &action, nullptr);
}

pid_t spawn(const std::vector<std::string>& arguments, posix_spawn_file_actions_t* actions) {
  install_stop_forwarding();
  std::vector<char*> argv;
  for (const auto& a : arguments) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, arguments[0].c_str(), actions, nullptr, argv.data(), environ);
  if (rc != 0)
    throw UserError(fmt::format("cannot start '{}': {} (is the build complete?)", arguments[0],
                                std::strerror(rc)));
  return pid;
}

std::string wait_for(pid_t pid, const std::vector<std::string>& arguments) {
  int status = 0;
  bool forwarded = false;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR)
      throw UserError(
          fmt::format("waiting for '{}' failed: {}", arguments[0], std::strerror(errno)));
    if (stop_signal != 0 && !forwarded) {
      ::kill(pid, SIGTERM);
      forwarded = true;
    }
  }
  if (stop_signal != 0) {
    throw Interrupted(fmt::format("interrupted by signal {} ({}): stopped, temporary files removed",
                                  static_cast<int>(stop_signal), strsignal(stop_signal)));
  }
  if (WIFEXITED(status)) {
    return WEXITSTATUS(status) == 0
               ? ""
               : fmt::format("{} exited with status {}", fs::path(arguments[0]).filename().string(),
                             WEXITSTATUS(status));
  }
  if (WIFSIGNALED(status)) {
    return fmt::format("{} was killed by signal {} ({})",
                       fs::path(arguments[0]).filename().string(), WTERMSIG(status),
                       strsignal(WTERMSIG(status)));
  }
  return "ended abnormally";
}

std::string spawn_and_wait(const std::vector<std::string>& arguments,
                           posix_spawn_file_actions_t* actions) {
  return wait_for(spawn(arguments, actions), arguments);
}

}  // namespace

std::string run_pipeline(const std::vector<std::string>& producer,
                         const std::vector<std::string>& consumer) {
  int fds[2];
  if (::pipe(fds) != 0)
    throw UserError(fmt::format("cannot create a pipe: {}", std::strerror(errno)));
  posix_spawn_file_actions_t producer_actions, consumer_actions;
  posix_spawn_file_actions_init(&producer_actions);
  posix_spawn_file_actions_adddup2(&producer_actions, fds[1], 1);
  posix_spawn_file_actions_addclose(&producer_actions, fds[0]);
  posix_spawn_file_actions_addclose(&producer_actions, fds[1]);
  posix_spawn_file_actions_init(&consumer_actions);
  posix_spawn_file_actions_adddup2(&consumer_actions, fds[0], 0);
  posix_spawn_file_actions_addclose(&consumer_actions, fds[0]);
  posix_spawn_file_actions_addclose(&consumer_actions, fds[1]);
  pid_t producer_pid = -1, consumer_pid = -1;
  std::string failure;
  try {
    // The consumer first: if it cannot start, the producer (a model load) never does.
    consumer_pid = spawn(consumer, &consumer_actions);
    producer_pid = spawn(producer, &producer_actions);
  } catch (const UserError& e) {
    failure = e.what();
  }
  // Only the children hold the pipe now: the consumer sees end-of-file when the producer exits.
  ::close(fds[0]);
  ::close(fds[1]);
  posix_spawn_file_actions_destroy(&producer_actions);
  posix_spawn_file_actions_destroy(&consumer_actions);
  const std::string producer_end = producer_pid > 0 ? wait_for(producer_pid, producer) : "";
  const std::string consumer_end = consumer_pid > 0 ? wait_for(consumer_pid, consumer) : "";
  if (!failure.empty()) throw UserError(failure);
  // A failing consumer kills the producer with SIGPIPE: its own ending is the cause to report.
  return !consumer_end.empty() ? consumer_end : producer_end;
}

std::string run_program(const std::vector<std::string>& arguments) {
  return spawn_and_wait(arguments, nullptr);
}

std::string run_program_to_file(const std::vector<std::string>& arguments,
                                const std::string& output_file) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, output_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                   0644);
  std::string ending;
  try {
    ending = spawn_and_wait(arguments, &actions);
  } catch (...) {
    posix_spawn_file_actions_destroy(&actions);
    throw;
  }
  posix_spawn_file_actions_destroy(&actions);
  return ending;
}

}  // namespace lory::cli
