// What `lory score`, `generate`, `eval-tasks`, `embed` and `export` share: each hands one job on a
// trained run to lory-worker (text is tokenized by lory-data: SentencePiece and LibTorch never
// share a process). Their common options, the worker's command line, and temporary files that are
// removed however the command ends (those of a `lory` killed with -9 by the next such command).
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

#include "core/store/results_store.h"

namespace lory::cli {

struct TrainedRunOptions {
  std::string run;
  std::string db = ResultsStore::kDefaultPath;
  std::string corpus;
  std::string text_file, token_ids_file;  // score
  std::string routing = "train";
  int64_t prompt_length = 128;
  std::string window = "sliding";
  int64_t stride = 0;
  std::string out_dir;    // export
  std::string out_file;   // embed
  std::string precision;  // score, generate, eval-tasks: "" = the run's trainer.precision
  std::vector<std::string> plugin_path;  // besides the run's experiment's [plugins] path
  std::string runs_dir;                  // "" = <db>.runs beside the database

  void add_common(CLI::App* cmd) {
    cmd->add_option("run", run, "Run id, or a prefix of its cell hash")->required();
    add_store_options(cmd);
  }
  void add_precision_option(CLI::App* cmd) {
    cmd->add_option("--precision", precision,
                    "Matmul precision of the forward passes: fp32 or bf16 (default: the run's "
                    "trainer.precision)")
        ->check(CLI::IsMember({"fp32", "bf16"}));
  }
  void add_store_options(CLI::App* cmd) {
    cmd->add_option("--db", db, "Results database")->capture_default_str();
    cmd->add_option("--corpus", corpus,
                    "Corpus folder of the run (default: from its experiment file)");
    cmd->add_option("--runs-dir", runs_dir,
                    "Folder of the runs' checkpoints (default: <db>.runs beside the database, then "
                    "where the run "
                    "was trained)");
    cmd->add_option("--plugin-path", plugin_path,
                    "Extra plugin folder or file (repeatable), besides the run's experiment's "
                    "[plugins] path and "
                    "LORY_PLUGIN_PATH");
  }
};

// The lory-worker command line of `command` on `run`. `plugin_path`: run_plugin_path(store, run,
// options.plugin_path).
std::vector<std::string> worker_arguments(const std::string& command,
                                          const TrainedRunOptions& options, const RunRecord& run,
                                          const std::string& corpus,
                                          const std::vector<std::string>& plugin_path);

// A temporary file removed when this goes out of scope (also after Ctrl-C, SIGTERM or SIGHUP:
// they end the command with an error, see child_programs.h).
struct TemporaryFile {
  std::string path;
  explicit TemporaryFile(const std::string& name);
  ~TemporaryFile();
  TemporaryFile(const TemporaryFile&) = delete;
  TemporaryFile& operator=(const TemporaryFile&) = delete;
};

// Hands `command` with `extra` arguments to lory-worker for the options' run; `what` names the
// work in the error when it fails.
void run_worker_command(const TrainedRunOptions& options, const std::string& command,
                        const std::vector<std::string>& extra, const std::string& what);

}  // namespace lory::cli
