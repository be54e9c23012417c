#include "worker_job.h"

#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>

#include "child_programs.h"
#include "run_inputs.h"

namespace lory::cli {

namespace {

// Temporary files of `lory` processes that no longer exist (killed with -9, which no cleanup
// survives): "lory-<pid>-..." in the temp folder whose pid is gone. Removed once per process.
void remove_stale_temporary_files() {
  static bool done = false;
  if (done) return;
  done = true;
  std::error_code ec;
  for (const auto& entry :
       std::filesystem::directory_iterator(std::filesystem::temp_directory_path(), ec)) {
    const std::string name = entry.path().filename().string();
    long pid = 0;
    char rest = 0;
    if (std::sscanf(name.c_str(), "lory-%ld-%c", &pid, &rest) != 2 || pid <= 0 || pid == ::getpid())
      continue;
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH)
      continue;  // alive, or not ours to judge
    std::error_code remove_error;
    std::filesystem::remove(entry.path(), remove_error);
  }
}

}  // namespace

std::vector<std::string> worker_arguments(const std::string& command,
                                          const TrainedRunOptions& options, const RunRecord& run,
                                          const std::string& corpus,
                                          const std::vector<std::string>& plugin_path) {
  std::vector<std::string> arguments{executable_dir() + "/lory-worker",
                                     command,
                                     "--db",
                                     options.db,
                                     "--run-id",
                                     std::to_string(run.id),
                                     "--corpus",
                                     corpus};
  for (const std::string& p : plugin_path) arguments.insert(arguments.end(), {"--plugin-path", p});
  if (!options.runs_dir.empty())
    arguments.insert(arguments.end(), {"--runs-dir", options.runs_dir});
  if (!options.precision.empty())
    arguments.insert(arguments.end(), {"--precision", options.precision});
  return arguments;
}

TemporaryFile::TemporaryFile(const std::string& name)
    : path((std::filesystem::temp_directory_path() / fmt::format("lory-{}-{}", ::getpid(), name))
               .string()) {
  remove_stale_temporary_files();
}

TemporaryFile::~TemporaryFile() {
  std::error_code ec;
  std::filesystem::remove(path, ec);
}

void run_worker_command(const TrainedRunOptions& options, const std::string& command,
                        const std::vector<std::string>& extra, const std::string& what) {
  ResultsStore store(options.db, ResultsStore::Open::MustExist);
  const RunRecord run = store.resolve_run(options.run);
  auto arguments =
      worker_arguments(command, options, run, run_corpus_dir(store, run, options.corpus),
                       run_plugin_path(store, run, options.plugin_path));
  arguments.insert(arguments.end(), extra.begin(), extra.end());
  std::fflush(stdout);
  const std::string ending = run_program(arguments);
  if (!ending.empty()) throw UserError(what + " failed: " + ending);
}

}  // namespace lory::cli
