#include "worker/trained_model.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>

#include "core/support/diagnostics.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

namespace lory::worker {

std::string experiment_folder(ResultsStore& store, const RunRecord& run) {
  return std::filesystem::path(store.experiment_file(run)).parent_path().string();
}

void set_threads(const CellConfig& config) {
  torch::set_num_threads(static_cast<int>(config.section("trainer").values.get_int("threads")));
}

TrainedModel::TrainedModel(const RunSelection& selection) : store(selection.db) {
  const auto found = store.find_run(selection.run_id);
  if (!found) throw UserError(fmt::format("no run {} in '{}'", selection.run_id, selection.db));
  run = *found;
  CellConfig config = CellConfig::from_json(run.config_json);
  set_threads(config);
  setup = std::make_unique<RunSetup>(std::move(config), selection.corpus, selection.plugin_path,
                                     experiment_folder(store, run));
  // Where the checkpoints are: --runs-dir when given, else beside the database, else where the
  // run was trained (its recorded checkpoint_dir: a database copied or moved without its runs
  // folder still finds them while they exist).
  std::vector<std::string> looked_in;
  if (!selection.runs_dir.empty()) {
    looked_in.push_back(run_directory_under(selection.runs_dir, run));
  } else {
    looked_in.push_back(run_directory(selection.db, run));
    if (const auto recorded = store.run_attribute(run.id, "checkpoint_dir")) {
      if (*recorded != looked_in.front()) looked_in.push_back(*recorded);
    }
  }
  std::optional<CheckpointStore> found_checkpoints;
  std::optional<TrainingState> state;
  for (const std::string& directory : looked_in) {
    CheckpointStore candidate(directory);
    if ((state = candidate.latest_state())) {
      found_checkpoints.emplace(directory);
      break;
    }
  }
  if (!state) {
    throw UserError(fmt::format(
        "run {} has no checkpoint (status {}); looked in {}: train it with `lory run`, or pass "
        "--runs-dir DIR if its runs folder ({}.runs) was moved",
        run.id, run.status, fmt::join(looked_in, " and "),
        std::filesystem::path(selection.db).stem().string()));
  }
  const CheckpointStore& checkpoints = *found_checkpoints;
  const bool dense =
      setup->config().section("trainer").values.get_float("dense_warmup_fraction") > 0 &&
      !setup->router_is_dense_baseline() && !state->upcycled;
  model = setup->build_model(dense);
  checkpoints.restore(*model, nullptr);
  step = state->step;
  model->eval();
  // One rule for every command that reads a run: a run that is not done is read at its latest
  // checkpoint, and says so (eval-tasks, which stores results under the run, refuses it).
  if (run.status != run_status::kDone) {
    std::fprintf(stderr,
                 "lory-worker: note: run %lld (%s) is %s, not done: using its latest checkpoint, "
                 "step %lld of %lld\n",
                 static_cast<long long>(run.id), run.label.c_str(), run.status.c_str(),
                 static_cast<long long>(step), static_cast<long long>(run.total_steps));
  }
  const Precision chosen =
      selection.precision.empty() ? setup->precision() : *parse_precision(selection.precision);
  precision = std::make_unique<MatmulPrecisionScope>(chosen, setup->device());
}

std::vector<int64_t> read_token_ids(const std::string& token_ids_file, int64_t vocab) {
  std::ifstream in(token_ids_file);
  if (!in) throw UserError(fmt::format("cannot read token ids from '{}'", token_ids_file));
  std::vector<int64_t> ids;
  std::string word;
  while (in >> word) {
    int64_t id = -1;
    try {
      id = std::stoll(word);
    } catch (const std::exception&) {
    }
    if (id < 0 || id >= vocab) {
      // A binary file (or text) is not a list of ids: say what the file is instead of echoing its
      // bytes.
      const bool printable =
          std::all_of(word.begin(), word.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
      if (!printable) {
        throw UserError(fmt::format(
            "'{}' is not a text file of whitespace-separated token ids (it holds bytes that are "
            "not text); pass --text FILE for text, or the ids as decimal numbers",
            token_ids_file));
      }
      const std::string shown = word.size() > 40 ? word.substr(0, 40) + "..." : word;
      throw UserError(fmt::format("'{}' in '{}' is not a token id of this corpus (ids are 0 to {})",
                                  shown, token_ids_file, vocab - 1));
    }
    ids.push_back(id);
  }
  return ids;
}

EvalRouting::Rule evaluation_rule(const std::string& name) {
  if (name == "train") return EvalRouting::Rule::Train;
  if (name == "prompt") return EvalRouting::Rule::Prompt;
  if (name == "inference") return EvalRouting::Rule::Inference;
  throw UserError(fmt::format("unknown routing rule '{}' (train, prompt or inference)", name));
}

void end_with_parent() {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() == 1)
    throw Interrupted("the lory process that started this worker is gone: stopped");
}

}  // namespace lory::worker
