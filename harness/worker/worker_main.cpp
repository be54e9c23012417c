// `lory-worker`: the only lory process that links LibTorch. `lory run` starts one per cell
// (train); `lory score`, `generate`, `eval-tasks`, `embed` and `export` use it to load a trained run. A failure is recorded in
// the results store with its reason before the process exits non-zero.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <optional>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "core/numeric_options.h"
#include <set>
#include <sstream>

#include "core/diagnostics.h"
#include "core/results_store.h"
#include "nn/allocator_tuning.h"
#include "train/checkpoint.h"
#include "train/data_parallel.h"
#include "train/device_placement.h"
#include "train/evaluator.h"
#include "train/failure_reason.h"
#include "train/generator.h"
#include "core/kill_points.h"
#include "core/progress_line.h"
#include "train/run_setup.h"
#include "train/stop_request.h"
#include "train/task_scorer.h"
#include "core/text_table.h"
#include "train/trainer.h"

namespace {

using namespace lory;

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
    cmd->add_option("--runs-dir", runs_dir, "Folder of the runs' checkpoints (default: <db>.runs beside the database)");
  }
  void add_precision_option(CLI::App* cmd) {
    cmd->add_option("--precision", precision, "fp32 or bf16 matmuls (default: the run's trainer.precision)")
        ->check(CLI::IsMember({"fp32", "bf16"}));
  }
};

// Exit statuses the supervisor reads (beside 0 = done and 1 = failed, recorded as such).
constexpr int kExitDiverged = 2;
constexpr int kExitInterrupted = 130;

std::string experiment_folder(ResultsStore& store, const RunRecord& run) {
  return std::filesystem::path(store.experiment_file(run)).parent_path().string();
}

void set_threads(const CellConfig& config) {
  torch::set_num_threads(static_cast<int>(config.section("trainer").values.get_int("threads")));
}

int train_command(const RunSelection& selection) {
  ResultsStore store(selection.db);
  const auto run = store.find_run(selection.run_id);
  if (!run) throw UserError(fmt::format("no run {} in '{}'", selection.run_id, selection.db));
  // Data-parallel ranks other than 0 never write to the store: rank 0 records how the run ended.
  const int rank = std::getenv("RANK") ? std::atoi(std::getenv("RANK")) : 0;
  try {
    CellConfig config = CellConfig::from_json(run->config_json);
    set_threads(config);
    RunSetup setup(std::move(config), selection.corpus, selection.plugin_path, experiment_folder(store, *run));
    const std::unique_ptr<DataParallel> group = DataParallel::from_environment();
    const TrainOutcome outcome = train_run(setup, store, *run, run_directory(selection.db, *run), *group);
    kill_point("before_done", outcome.last_step);
    if (rank != 0) return outcome.status == run_status::kDone ? 0 : 1;
    store.mark_finished(run->id, outcome.status, outcome.reason, outcome.last_step);
    if (outcome.status == run_status::kInterrupted) return kExitInterrupted;
    if (outcome.status != run_status::kDone) {
      std::fprintf(stderr, "lory-worker: run %lld %s: %s\n", static_cast<long long>(run->id), outcome.status.c_str(),
                   outcome.reason.c_str());
      return kExitDiverged;
    }
    return 0;
  } catch (const std::exception& e) {
    if (rank == 0) {
      const auto latest = store.find_run(run->id);
      store.mark_finished(run->id, run_status::kFailed, failure_reason(e), latest ? latest->last_step : 0);
    }
    throw UserError(failure_reason(e));
  }
}

// A trained run's model, restored from its final checkpoint, with the store and setup it came from.
struct TrainedModel {
  ResultsStore store;
  RunRecord run;
  std::unique_ptr<RunSetup> setup;
  std::shared_ptr<LanguageModel> model;
  int64_t step = 0;  // of the checkpoint restored
  // The forward passes of the whole command run in the run's precision (or --precision's).
  std::unique_ptr<MatmulPrecisionScope> precision;

  explicit TrainedModel(const RunSelection& selection) : store(selection.db) {
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
      throw UserError(fmt::format("run {} has no checkpoint (status {}); looked in {}: train it with `lory run`, or pass "
                                  "--runs-dir DIR if its runs folder ({}.runs) was moved",
                                  run.id, run.status, fmt::join(looked_in, " and "),
                                  std::filesystem::path(selection.db).stem().string()));
    }
    const CheckpointStore& checkpoints = *found_checkpoints;
    const bool dense = setup->config().section("trainer").values.get_float("dense_warmup_fraction") > 0 &&
                       !setup->router_is_dense_baseline() && !state->upcycled;
    model = setup->build_model(dense);
    checkpoints.restore(*model, nullptr);
    step = state->step;
    model->eval();
    // One rule for every command that reads a run: a run that is not done is read at its latest
    // checkpoint, and says so (eval-tasks, which stores results under the run, refuses it).
    if (run.status != run_status::kDone) {
      std::fprintf(stderr, "lory-worker: note: run %lld (%s) is %s, not done: using its latest checkpoint, step %lld of %lld\n",
                   static_cast<long long>(run.id), run.label.c_str(), run.status.c_str(), static_cast<long long>(step),
                   static_cast<long long>(run.total_steps));
    }
    const Precision chosen = selection.precision.empty() ? setup->precision() : *parse_precision(selection.precision);
    precision = std::make_unique<MatmulPrecisionScope>(chosen, setup->device());
  }
};

// Whitespace-separated token ids, each checked against the corpus vocabulary.
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
      // A binary file (or text) is not a list of ids: say what the file is instead of echoing its bytes.
      const bool printable = std::all_of(word.begin(), word.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
      if (!printable) {
        throw UserError(fmt::format("'{}' is not a text file of whitespace-separated token ids (it holds bytes that are "
                                    "not text); pass --text FILE for text, or the ids as decimal numbers",
                                    token_ids_file));
      }
      const std::string shown = word.size() > 40 ? word.substr(0, 40) + "..." : word;
      throw UserError(fmt::format("'{}' in '{}' is not a token id of this corpus (ids are 0 to {})", shown,
                                  token_ids_file, vocab - 1));
    }
    ids.push_back(id);
  }
  return ids;
}

struct ScoreRequest {
  std::string routing = "train";  // train | prompt | inference
  int64_t prompt_length = 0;      // prompt and inference routing only
  std::string window = "sliding"; // sliding | independent
  int64_t stride = 0;             // 0 = the window rule's default
};

int score_command(const RunSelection& selection, const std::string& token_ids_file, const ScoreRequest& request) {
  TrainedModel trained(selection);
  const auto& setup = trained.setup;
  const auto& model = trained.model;
  const std::vector<int64_t> ids = read_token_ids(token_ids_file, setup->corpus().manifest().vocab_size);
  if (ids.size() < 2) throw UserError("need at least two tokens to score");
  const int64_t context = setup->context_length();
  // Under `inference` each layer's own rule decides: a model with a layer that routes from the
  // prompt at inference (Lory with inference_routing = "prompt") is scored after a prompt.
  bool prompt_inference = false;
  for (int64_t layer = 0; layer < model->layer_count(); ++layer) {
    prompt_inference = prompt_inference || model->feed_forward(layer)->routes_from_prompt_at_inference();
  }
  const bool prompted = request.routing == "prompt" || (request.routing == "inference" && prompt_inference);
  if (prompted && request.prompt_length < 1) throw UserError("prompt routing needs --prompt-length of at least 1");
  ScoringWindows windows;
  windows.prompt_length = prompted ? request.prompt_length : 0;
  const int64_t free_positions = context - windows.prompt_length;
  windows.stride = request.stride > 0                  ? request.stride
                   : request.window == "independent"   ? free_positions
                                                       : std::max<int64_t>(1, std::min(context / 2, free_positions));
  const EvalRouting routing{request.routing == "train"    ? EvalRouting::Rule::Train
                            : request.routing == "prompt" ? EvalRouting::Rule::Prompt
                                                          : EvalRouting::Rule::Inference,
                            windows.prompt_length};
  const ScoredText scored = score_text(*model, torch::tensor(ids, torch::kInt64), context, routing, windows);
  std::printf("position\ttoken\tlogprob\n");
  for (size_t i = 0; i < scored.positions.size(); ++i) {
    const int64_t position = scored.positions[i];
    std::printf("%lld\t%lld\t%.6f\n", static_cast<long long>(position), static_cast<long long>(ids[static_cast<size_t>(position)]),
                scored.log_probs[static_cast<int64_t>(i)].item<double>());
  }
  const double mean = -scored.log_probs.mean().item<double>();
  std::printf("# %zu tokens scored, mean loss %.4f nats, perplexity %.3f (%lld window(s) of up to %lld tokens, stride "
              "%lld%s)\n",
              scored.positions.size(), mean, std::exp(mean), static_cast<long long>(scored.windows),
              static_cast<long long>(context), static_cast<long long>(windows.stride),
              prompted ? fmt::format("; the first {} tokens are the routing prompt, not scored", windows.prompt_length).c_str()
                       : "");
  return 0;
}

// Generated tokens go to standard output as they come, one "id<TAB>log-prob" line each (lory
// generate pipes them into `lory-data decode --stream`), then one summary line starting with '#'.
int generate_command(const RunSelection& selection, const std::string& token_ids_file, GenerationOptions options) {
  TrainedModel trained(selection);
  const auto& setup = trained.setup;
  const auto& model = trained.model;
  const auto& manifest = setup->corpus().manifest();
  const std::vector<int64_t> prompt = read_token_ids(token_ids_file, manifest.vocab_size);
  options.stop_token = manifest.eod_id;  // the end of a document ends the text
  const auto started = std::chrono::steady_clock::now();
  const GenerationResult result =
      generate_tokens(*model, prompt, setup->context_length(), options, [](const GeneratedToken& token) {
        std::printf("%lld\t%.6f\n", static_cast<long long>(token.id), token.log_prob);
        std::fflush(stdout);
      });
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf("# %zu tokens after a %zu-token prompt in %.2f s (%.1f tokens/s), %s%s\n", result.tokens.size(),
               prompt.size(), seconds, static_cast<double>(result.tokens.size()) / std::max(seconds, 1e-9),
               result.cached          ? "KV cache"
               : options.use_cache    ? "full recomputation per token (the model or a router has no decoding cache)"
                                      : "full recomputation per token (--no-cache)",
               result.ffn_merges > 0 ? fmt::format(", {} merged FFNs built", result.ffn_merges).c_str() : "");
  std::fflush(stdout);
  return 0;
}

// Scores every tokenized task on the run's final checkpoint and writes the accuracies in one
// transaction, after all of them are scored: a task that fails leaves the store as it was.
int eval_tasks_command(const RunSelection& selection, const std::vector<std::string>& tokenized_files,
                       const std::string& routing_name) {
  kill_point("eval_tasks_started", 0);
  TrainedModel trained(selection);
  if (trained.run.status != run_status::kDone) {
    throw UserError(fmt::format("run {} ({}) is {}, not done: finish it with `lory run` before evaluating it",
                                trained.run.id, trained.run.label, trained.run.status));
  }
  const int64_t vocab = trained.setup->corpus().manifest().vocab_size;
  std::vector<TokenizedTask> tasks;
  std::set<std::string> names;
  for (const std::string& file : tokenized_files) {
    tasks.push_back(read_tokenized_task(file, vocab));
    if (!names.insert(tasks.back().name).second) {
      throw UserError(fmt::format("two task files are named '{}': their rows would replace each other", tasks.back().name));
    }
  }
  const EvalRouting::Rule rule = routing_name == "train"    ? EvalRouting::Rule::Train
                                 : routing_name == "prompt" ? EvalRouting::Rule::Prompt
                                                            : EvalRouting::Rule::Inference;
  std::vector<TaskEvalRow> rows;
  TextTable table({"task", "examples", "accuracy", "± se", "acc (per byte)", "± se", "chance", "gold loss/token", "seconds"});
  const auto stderr_text = [](double value) { return std::isfinite(value) ? fmt::format("{:.3f}", value) : "-"; };
  for (const TokenizedTask& task : tasks) {
    const auto started = std::chrono::steady_clock::now();
    ProgressLine progress("eval-tasks: " + task.name + " examples", static_cast<int64_t>(task.examples.size()));
    const ScoredTask scored = score_task(*trained.model, task, trained.setup->context_length(), rule,
                                         [&](int64_t done) { progress.update(done); });
    const TaskAccuracy accuracy = task_accuracy(scored.scores, scored.gold);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    rows.push_back({task.name, routing_name, trained.step, task.sha256, accuracy.examples, accuracy.chance,
                    accuracy.accuracy, accuracy.accuracy_stderr, accuracy.accuracy_norm, accuracy.accuracy_norm_stderr,
                    accuracy.gold_loss_per_token, scored.truncated});
    table.add_row({task.name, std::to_string(accuracy.examples), fmt::format("{:.3f}", accuracy.accuracy),
                   stderr_text(accuracy.accuracy_stderr), fmt::format("{:.3f}", accuracy.accuracy_norm),
                   stderr_text(accuracy.accuracy_norm_stderr), fmt::format("{:.3f}", accuracy.chance),
                   fmt::format("{:.3f}", accuracy.gold_loss_per_token), fmt::format("{:.1f}", seconds)});
    if (scored.truncated > 0) {
      std::fprintf(stderr, "lory-worker: task %s: %lld choice(s) lost the start of their context to fit the model's %lld "
                   "tokens\n", task.name.c_str(), static_cast<long long>(scored.truncated),
                   static_cast<long long>(trained.setup->context_length()));
    }
  }
  trained.store.write_task_evals(trained.run.id, rows);
  std::printf("run %lld (%s), step %lld, routing %s:\n%s", static_cast<long long>(trained.run.id),
              trained.run.label.c_str(), static_cast<long long>(trained.step), routing_name.c_str(),
              table.render("  ").c_str());
  return 0;
}

// One vector per corpus document: the mean of the trained model's final hidden states over the
// document's tokens (windows of the context length), in the LORYEMB2 format of the similarity
// batcher's embedding_file, which carries the corpus checksum and the run id.
int embed_command(const RunSelection& selection, const std::string& out_file) {
  TrainedModel trained(selection);
  const auto& setup = trained.setup;
  const auto& model = trained.model;
  const RunRecord* run = &trained.run;
  torch::NoGradGuard no_grad;
  const Corpus& corpus = setup->corpus();
  const int64_t context = setup->context_length();
  const uint64_t rows = corpus.document_count();
  int64_t dimension = 0;
  std::ofstream out(out_file, std::ios::binary);
  if (!out) throw UserError(fmt::format("cannot write '{}'", out_file));
  out.write("LORYEMB2", 8);
  out.write(reinterpret_cast<const char*>(&rows), 8);
  const auto dimension_at = out.tellp();
  out.write(reinterpret_cast<const char*>(&dimension), 8);  // rewritten once known
  // Provenance: the corpus it belongs to (the batcher refuses it for another) and the run.
  std::string checksum = corpus.checksum();
  checksum.resize(64, ' ');
  out.write(checksum.data(), 64);
  const int64_t source_run = run->id;
  out.write(reinterpret_cast<const char*>(&source_run), 8);
  std::vector<uint32_t> tokens;
  ProgressLine progress("embed: documents", static_cast<int64_t>(rows));
  for (uint64_t i = 0; i < rows; ++i) {
    progress.update(static_cast<int64_t>(i));
    const DocumentRecord& record = corpus.document(i);
    tokens.resize(record.length);
    corpus.copy_tokens(record.offset, record.length, tokens.data());
    torch::Tensor sum_D;
    int64_t counted = 0;
    for (int64_t start = 0; start < static_cast<int64_t>(tokens.size()); start += context) {
      const int64_t end = std::min<int64_t>(static_cast<int64_t>(tokens.size()), start + context);
      const torch::Tensor window_1L =
          torch::tensor(std::vector<int64_t>(tokens.begin() + start, tokens.begin() + end), torch::kInt64)
              .unsqueeze(0)
              .to(module_device(*model));
      RoutingContext routing(ForwardMode::Eval, false);
      const torch::Tensor h_D = model->hidden_states(window_1L, routing)[0].sum(0).to(torch::kFloat32);
      sum_D = sum_D.defined() ? sum_D + h_D : h_D;
      counted += end - start;
    }
    const torch::Tensor mean_D = (sum_D / static_cast<double>(std::max<int64_t>(1, counted))).cpu().contiguous();
    dimension = mean_D.size(0);
    out.write(reinterpret_cast<const char*>(mean_D.data_ptr<float>()), static_cast<std::streamsize>(dimension * 4));
  }
  out.seekp(dimension_at);
  const uint64_t dimension_u = static_cast<uint64_t>(dimension);
  out.write(reinterpret_cast<const char*>(&dimension_u), 8);
  if (!out) throw UserError(fmt::format("cannot write '{}' (disk full?)", out_file));
  std::printf("wrote %s: %llu documents x %lld dimensions (mean final hidden state of run %lld)\n", out_file.c_str(),
              static_cast<unsigned long long>(rows), static_cast<long long>(dimension), static_cast<long long>(run->id));
  return 0;
}

int export_command(const RunSelection& selection, const std::string& out_dir) {
  TrainedModel trained(selection);
  const auto& setup = trained.setup;
  const auto& model = trained.model;
  const RunRecord* run = &trained.run;
  std::filesystem::create_directories(out_dir);
  c10::Dict<std::string, at::Tensor> weights;
  for (const auto& item : model->named_parameters()) weights.insert(item.key(), item.value().detach().clone());
  // Buffers too: state a layer keeps outside its parameters (topk's balancing bias, RoPE tables).
  for (const auto& item : model->named_buffers()) weights.insert(item.key(), item.value().detach().clone());
  const std::vector<char> bytes = torch::pickle_save(c10::IValue(weights));
  const std::string weights_path = (std::filesystem::path(out_dir) / "weights.pt").string();
  std::ofstream(weights_path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  nlohmann::json config = nlohmann::json::parse(run->config_json);
  // The plugins describe themselves (resolved sizes, tensor layouts, conventions), so that a
  // PyTorch user can rebuild the model from this folder alone (python/lory_export.py does).
  const auto parse_layout = [](const std::string& text, const std::string& who) {
    try {
      return nlohmann::json::parse(text);
    } catch (const std::exception& e) {
      throw UserError(fmt::format("the {} plugin's export layout is not valid JSON: {}", who, e.what()));
    }
  };
  const nlohmann::json layout = {
      {"model", parse_layout(model->export_layout_json(), setup->config().section("model").plugin())},
      {"ffn", parse_layout(model->feed_forward(0)->export_layout_json(), setup->router_name())}};
  std::string tokenizer = setup->corpus().manifest().tokenizer;
  const std::filesystem::path tokenizer_model = std::filesystem::path(selection.corpus) / "tokenizer.model";
  if (std::filesystem::exists(tokenizer_model)) {
    std::filesystem::copy_file(tokenizer_model, std::filesystem::path(out_dir) / "tokenizer.model",
                               std::filesystem::copy_options::overwrite_existing);
    tokenizer = "tokenizer.model (SentencePiece; load with sentencepiece.SentencePieceProcessor(model_file=...))";
  } else if (tokenizer == "byte") {
    tokenizer = "byte: token id = byte value 0-255, 256 = end of document";
  }
  const nlohmann::json info = {{"run_id", run->id},
                               {"layout", layout},
                               {"tokenizer", tokenizer},
                               {"eod_id", setup->corpus().manifest().eod_id},
                               {"experiment", run->experiment},
                               {"label", run->label},
                               {"cell_hash", run->cell_hash},
                               {"status", run->status},
                               {"vocab_size", setup->corpus().manifest().vocab_size},
                               {"config", config}};
  std::ofstream(std::filesystem::path(out_dir) / "config.json") << info.dump(2) << "\n";
  std::printf("wrote %s (%zu tensors; torch.load opens it as a name -> tensor dict), config.json (config, resolved "
              "layout)%s; python/lory_export.py rebuilds the model in PyTorch\n",
              weights_path.c_str(), weights.size(),
              std::filesystem::exists(tokenizer_model) ? " and tokenizer.model" : "");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  lory::tune_allocator_for_training();
  CLI::App app{"lory-worker: trains, scores or exports one run (started by `lory`)"};
  app.require_subcommand(1);
  RunSelection train_selection, score_selection, export_selection;
  std::string token_ids_file, out_dir;
  CLI::App* train = app.add_subcommand("train", "Train a run to the end, resuming from its latest checkpoint");
  train_selection.add_options(train);
  CLI::App* score = app.add_subcommand("score", "Per-token log-probabilities of token ids under a trained run");
  score_selection.add_options(score);
  score_selection.add_precision_option(score);
  score->add_option("--token-ids", token_ids_file, "File of whitespace-separated token ids")->required();
  ScoreRequest score_request;
  score->add_option("--routing", score_request.routing,
                    "train: as in training; prompt: from the first --prompt-length tokens; inference: the router's "
                    "inference rule, with the prompt")
      ->check(CLI::IsMember({"train", "prompt", "inference"}));
  score->add_option("--prompt-length", score_request.prompt_length, "Prompt tokens (prompt and inference routing)")
      ->check(CLI::Range(0, 1 << 24));
  score->add_option("--window", score_request.window, "sliding (context carried) or independent windows")
      ->check(CLI::IsMember({"sliding", "independent"}));
  score->add_option("--stride", score_request.stride, "New tokens scored per window (0 = the rule's default)")
      ->check(CLI::Range(0, 1 << 24));
  CLI::App* export_cmd = app.add_subcommand("export", "Write a trained run's weights for torch.load");
  export_selection.add_options(export_cmd);
  export_cmd->add_option("--out", out_dir, "Output folder")->required();
  RunSelection generate_selection;
  GenerationOptions generation;
  std::string prompt_ids_file, generate_routing = "prompt";
  bool no_cache = false;
  CLI::App* generate = app.add_subcommand("generate", "Generate token ids after a prompt with a trained run");
  generate_selection.add_options(generate);
  generate_selection.add_precision_option(generate);
  generate->add_option("--token-ids", prompt_ids_file, "File of the prompt's token ids")->required();
  generate->add_option("--max-tokens", generation.max_tokens, "Tokens to generate")->check(CLI::Range(1, 1 << 20));
  generate->add_option("--temperature", generation.sampling.temperature, "0 = greedy")->check(finite_range(0.0, 100.0));
  generate->add_option("--top-k", generation.sampling.top_k, "0 = no limit")->check(CLI::Range(0, 1 << 24));
  generate->add_option("--top-p", generation.sampling.top_p, "Nucleus mass")->check(finite_range(1e-9, 1.0));
  generate->add_option("--seed", generation.sampling.seed, "Sampling seed");
  generate->add_option("--routing", generate_routing, "prompt or segment")->check(CLI::IsMember({"prompt", "segment"}));
  generate->add_flag("--no-cache", no_cache, "Recompute the whole sequence for every token (reference, benchmarks)");
  RunSelection embed_selection;
  std::string embed_out;
  CLI::App* embed = app.add_subcommand("embed", "Mean final hidden state of every corpus document (LORYEMB2 file)");
  embed_selection.add_options(embed);
  embed_selection.add_precision_option(embed);
  embed->add_option("--out", embed_out, "Output file")->required();
  RunSelection tasks_selection;
  std::vector<std::string> tokenized_tasks;
  std::string tasks_routing = "prompt";
  CLI::App* eval_tasks = app.add_subcommand("eval-tasks", "Accuracy of a trained run on tokenized in-context tasks");
  tasks_selection.add_options(eval_tasks);
  tasks_selection.add_precision_option(eval_tasks);
  eval_tasks->add_option("--tasks", tokenized_tasks, "Task files tokenized by `lory-data tokenize-tasks`")->required();
  eval_tasks->add_option("--routing", tasks_routing, "prompt, train or inference")
      ->check(CLI::IsMember({"prompt", "train", "inference"}));
  try {
    app.parse(argc, argv);
    // Every command but training serves one `lory` command that waits for it: it dies with that
    // process (kill -9 included) instead of writing rows after it is gone. Training workers
    // outlive their supervisor by design (docs/architecture.md, crash safety).
    if (!*train) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() == 1) return 1;  // the parent died before the line above
    }
    if (*eval_tasks) return eval_tasks_command(tasks_selection, tokenized_tasks, tasks_routing);
    if (*embed) return embed_command(embed_selection, embed_out);
    if (*train) {
      install_stop_handlers();
      return train_command(train_selection);
    }
    if (*score) return score_command(score_selection, token_ids_file, score_request);
    if (*export_cmd) return export_command(export_selection, out_dir);
    if (*generate) {
      generation.routing = generate_routing == "prompt" ? EvalRouting::Rule::Prompt : EvalRouting::Rule::Train;
      generation.use_cache = !no_cache;
      return generate_command(generate_selection, prompt_ids_file, generation);
    }
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const UserError& e) {
    std::fprintf(stderr, "lory-worker: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lory-worker: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
