// What every lory-worker command starts from: the run it works on (RunSelection, from the command
// line) and, for all but train, that run's model restored from its latest checkpoint.
#pragma once

#include <CLI/CLI.hpp>

#include <memory>
#include <string>
#include <vector>

#include "core/experiment/cell_config.h"
#include "core/store/results_store.h"
#include "lory/nn/model_api.h"
#include "lory/nn/precision.h"
#include "lory/nn/routing.h"
#include "train/run_setup.h"

namespace lory::worker {

struct RunSelection {
  std::string db = ResultsStore::kDefaultPath;
  int64_t run_id = 0;
  std::string corpus;
  std::vector<std::string> plugin_path;
  std::string precision;  // "" = the run's trainer.precision (not for train)
  std::string runs_dir;   // "" = <db>.runs beside the database

  void add_options(CLI::App* cmd) {
    cmd->add_option("--db", db, "Results database")->capture_default_str();
    cmd->add_option("--run-id", run_id, "Run id in the results database")->required();
    cmd->add_option("--corpus", corpus, "Prepared corpus folder of the run")->required();
    cmd->add_option("--plugin-path", plugin_path, "Extra plugin folder or file (repeatable)");
    cmd->add_option("--runs-dir", runs_dir,
                    "Folder of the runs' checkpoints (default: <db>.runs beside the database)");
  }
  void add_precision_option(CLI::App* cmd) {
    cmd->add_option("--precision", precision,
                    "fp32 or bf16 matmuls (default: the run's trainer.precision)")
        ->check(CLI::IsMember({"fp32", "bf16"}));
  }
};

// The folder of the run's experiment file (relative plugin and data paths start there).
std::string experiment_folder(ResultsStore& store, const RunRecord& run);

// torch's thread count from the run's trainer.threads.
void set_threads(const CellConfig& config);

// A trained run's model, restored from its latest checkpoint, with the store and setup it came
// from.
struct TrainedModel {
  ResultsStore store;
  RunRecord run;
  std::unique_ptr<RunSetup> setup;
  std::shared_ptr<LanguageModel> model;
  int64_t step = 0;  // of the checkpoint restored
  // The forward passes of the whole command run in the run's precision (or --precision's).
  std::unique_ptr<MatmulPrecisionScope> precision;

  explicit TrainedModel(const RunSelection& selection);
};

// Whitespace-separated token ids, each checked against the corpus vocabulary.
std::vector<int64_t> read_token_ids(const std::string& token_ids_file, int64_t vocab);

// The rule named by --routing (command_line_options.h: evaluation_routing_rules()).
EvalRouting::Rule evaluation_rule(const std::string& name);

// Every command but training serves one `lory` command that waits for it: it dies with that
// process (kill -9 included) instead of writing rows after it is gone. Training workers outlive
// their supervisor by design (docs/architecture.md, crash safety).
void end_with_parent();

}  // namespace lory::worker
