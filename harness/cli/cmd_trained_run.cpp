// `lory score`, `lory generate`, `lory eval-tasks`, `lory export` and `lory embed`: use a trained run (its final
// checkpoint) from the CLI. All hand the work to lory-worker; text is tokenized by lory-data (SentencePiece and
// LibTorch never share a process).
#include <fmt/format.h>
#include <signal.h>

#include <cerrno>
#include <cstdio>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>

#include "commands.h"
#include "core/numeric_options.h"
#include "core/results_store.h"
#include "core/task_file.h"
#include "trained_run.h"

namespace lory::cli {

namespace {

struct TrainedRunOptions {
  std::string run;
  std::string db = ResultsStore::kDefaultPath;
  std::string corpus;
  std::string text_file, token_ids_file;  // score
  std::string routing = "train";
  int64_t prompt_length = 128;
  std::string window = "sliding";
  int64_t stride = 0;
  std::string out_dir;                    // export
  std::string out_file;                   // embed
  std::string precision;                  // score, generate, eval-tasks: "" = the run's trainer.precision
  std::vector<std::string> plugin_path;   // besides the run's experiment's [plugins] path
  std::string runs_dir;                   // "" = <db>.runs beside the database

  void add_common(CLI::App* cmd) {
    cmd->add_option("run", run, "Run id, or a prefix of its cell hash")->required();
    add_store_options(cmd);
  }
  void add_precision_option(CLI::App* cmd) {
    cmd->add_option("--precision", precision,
                    "Matmul precision of the forward passes: fp32 or bf16 (default: the run's trainer.precision)")
        ->check(CLI::IsMember({"fp32", "bf16"}));
  }
  void add_store_options(CLI::App* cmd) {
    cmd->add_option("--db", db, "Results database")->capture_default_str();
    cmd->add_option("--corpus", corpus, "Corpus folder of the run (default: from its experiment file)");
    cmd->add_option("--runs-dir", runs_dir,
                    "Folder of the runs' checkpoints (default: <db>.runs beside the database, then where the run "
                    "was trained)");
    cmd->add_option("--plugin-path", plugin_path,
                    "Extra plugin folder or file (repeatable), besides the run's experiment's [plugins] path and "
                    "LORY_PLUGIN_PATH");
  }
};

// `plugin_path`: run_plugin_path(store, run, options.plugin_path).
std::vector<std::string> worker_arguments(const std::string& command, const TrainedRunOptions& options,
                                          const RunRecord& run, const std::string& corpus,
                                          const std::vector<std::string>& plugin_path) {
  std::vector<std::string> arguments{executable_dir() + "/lory-worker", command, "--db", options.db, "--run-id",
                                     std::to_string(run.id), "--corpus", corpus};
  for (const std::string& p : plugin_path) arguments.insert(arguments.end(), {"--plugin-path", p});
  if (!options.runs_dir.empty()) arguments.insert(arguments.end(), {"--runs-dir", options.runs_dir});
  if (!options.precision.empty()) arguments.insert(arguments.end(), {"--precision", options.precision});
  return arguments;
}

// Temporary files of `lory` processes that no longer exist (killed with -9, which no cleanup
// survives): "lory-<pid>-..." in the temp folder whose pid is gone. Removed once per process.
void remove_stale_temporary_files() {
  static bool done = false;
  if (done) return;
  done = true;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(std::filesystem::temp_directory_path(), ec)) {
    const std::string name = entry.path().filename().string();
    long pid = 0;
    char rest = 0;
    if (std::sscanf(name.c_str(), "lory-%ld-%c", &pid, &rest) != 2 || pid <= 0 || pid == ::getpid()) continue;
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // alive, or not ours to judge
    std::error_code remove_error;
    std::filesystem::remove(entry.path(), remove_error);
  }
}

// A temporary file removed when this goes out of scope (also after Ctrl-C, SIGTERM or SIGHUP:
// they end the command with an error, see trained_run.h).
struct TemporaryFile {
  std::string path;
  explicit TemporaryFile(const std::string& name)
      : path((std::filesystem::temp_directory_path() / fmt::format("lory-{}-{}", ::getpid(), name)).string()) {
    remove_stale_temporary_files();
  }
  ~TemporaryFile() {
    std::error_code ec;
    std::filesystem::remove(path, ec);
  }
};

void run_score(const TrainedRunOptions& options) {
  ResultsStore store(options.db, ResultsStore::Open::MustExist);
  const RunRecord run = store.resolve_run(options.run);
  const std::string corpus = run_corpus_dir(store, run, options.corpus);
  std::string ids_file = options.token_ids_file;
  TemporaryFile encoded("score.ids");
  if (!options.text_file.empty()) {
    const std::string ending = run_program_to_file(
        {executable_dir() + "/lory-data", "encode", "--corpus", corpus, "--text", options.text_file}, encoded.path);
    if (!ending.empty()) throw UserError("tokenizing the text failed: " + ending);
    ids_file = encoded.path;
  }
  auto arguments = worker_arguments("score", options, run, corpus, run_plugin_path(store, run, options.plugin_path));
  arguments.insert(arguments.end(), {"--token-ids", ids_file, "--routing", options.routing, "--prompt-length",
                                     std::to_string(options.prompt_length), "--window", options.window, "--stride",
                                     std::to_string(options.stride)});
  std::fflush(stdout);
  // Through lory-data (the tokenizer lives there, apart from LibTorch): each token's text is added.
  const std::string ending =
      run_pipeline(arguments, {executable_dir() + "/lory-data", "decode", "--corpus", corpus, "--score-table"});
  if (!ending.empty()) throw UserError("scoring failed: " + ending);
}

struct GenerateOptions {
  std::string prompt, prompt_file;
  int64_t max_tokens = 64;
  double temperature = 1.0;
  int64_t top_k = 0;
  double top_p = 1.0;
  uint64_t seed = 0;
  std::string routing = "prompt";
  bool json = false, no_cache = false;
};

void run_generate(const TrainedRunOptions& options, const GenerateOptions& generate) {
  ResultsStore store(options.db, ResultsStore::Open::MustExist);
  const RunRecord run = store.resolve_run(options.run);
  // Like score, export and embed: a run that is not done is read at its latest checkpoint, and the
  // worker says which (only eval-tasks, which stores results under the run, needs it done).
  const std::string corpus = run_corpus_dir(store, run, options.corpus);
  TemporaryFile prompt_text("prompt.txt"), prompt_ids("prompt.ids");
  std::string text_file = generate.prompt_file;
  if (text_file.empty()) {
    std::ofstream(prompt_text.path, std::ios::binary) << generate.prompt;
    text_file = prompt_text.path;
  }
  const std::string ending = run_program_to_file(
      {executable_dir() + "/lory-data", "encode", "--corpus", corpus, "--text", text_file}, prompt_ids.path);
  if (!ending.empty()) throw UserError("tokenizing the prompt failed: " + ending);
  auto worker = worker_arguments("generate", options, run, corpus, run_plugin_path(store, run, options.plugin_path));
  worker.insert(worker.end(), {"--token-ids", prompt_ids.path, "--max-tokens", std::to_string(generate.max_tokens),
                               "--temperature", fmt::format("{}", generate.temperature), "--top-k",
                               std::to_string(generate.top_k), "--top-p", fmt::format("{}", generate.top_p), "--seed",
                               std::to_string(generate.seed), "--routing", generate.routing});
  if (generate.no_cache) worker.push_back("--no-cache");
  std::vector<std::string> decoder{executable_dir() + "/lory-data", "decode", "--corpus", corpus, "--stream",
                                   "--prefix-ids", prompt_ids.path};
  if (generate.json) decoder.push_back("--json");
  std::fflush(stdout);
  const std::string pipeline_ending = run_pipeline(worker, decoder);
  if (!pipeline_ending.empty()) throw UserError("generation failed: " + pipeline_ending);
}

struct EvalTasksOptions {
  std::vector<std::string> runs;
  std::vector<std::string> task_files;
  std::string routing = "prompt";
};

// Every run must be done and every task file valid before any run is scored: bad input ends the
// command before a worker starts, and each run's accuracies are written in one transaction.
void run_eval_tasks(const TrainedRunOptions& options, const EvalTasksOptions& tasks) {
  std::vector<RunRecord> runs;
  std::vector<std::string> corpora;
  std::vector<std::vector<std::string>> plugin_paths;
  {
    ResultsStore store(options.db, ResultsStore::Open::MustExist);
    for (const std::string& id : tasks.runs) {
      RunRecord run = store.resolve_run(id);
      if (run.status != run_status::kDone) {
        throw UserError(fmt::format("run {} ({}) is {}, not done: finish it with `lory run` before evaluating it; "
                                    "nothing was evaluated",
                                    run.id, run.label, run.status));
      }
      corpora.push_back(run_corpus_dir(store, run, options.corpus));
      plugin_paths.push_back(run_plugin_path(store, run, options.plugin_path));
      runs.push_back(std::move(run));
    }
  }
  // A task is stored under its file's name: two files of one name would replace each other's rows.
  std::map<std::string, std::string> file_of_name;
  for (const std::string& task_file : tasks.task_files) {
    const std::string name = task_name_of(task_file);
    const auto [it, inserted] = file_of_name.emplace(name, task_file);
    if (!inserted) {
      throw UserError(fmt::format("'{}' and '{}' are both task '{}' (a task is named by its file name): rename one; "
                                  "nothing was evaluated",
                                  it->second, task_file, name));
    }
  }
  // Tokenized once per corpus (runs of one experiment share one).
  std::map<std::string, std::vector<std::unique_ptr<TemporaryFile>>> tokenized;
  for (const std::string& corpus : corpora) {
    if (tokenized.count(corpus)) continue;
    auto& files = tokenized[corpus];
    for (const std::string& task_file : tasks.task_files) {
      files.push_back(std::make_unique<TemporaryFile>(fmt::format("tasks-{}-{}.jsonl", tokenized.size(), files.size())));
      const std::string ending = run_program({executable_dir() + "/lory-data", "tokenize-tasks", "--corpus", corpus,
                                              "--tasks", task_file, "--out", files.back()->path});
      if (!ending.empty()) throw UserError(fmt::format("reading task file '{}' failed ({}); nothing was evaluated", task_file, ending));
    }
  }
  for (size_t i = 0; i < runs.size(); ++i) {
    auto arguments = worker_arguments("eval-tasks", options, runs[i], corpora[i], plugin_paths[i]);
    arguments.insert(arguments.end(), {"--routing", tasks.routing, "--tasks"});
    for (const auto& file : tokenized[corpora[i]]) arguments.push_back(file->path);
    std::fflush(stdout);
    const std::string ending = run_program(arguments);
    if (!ending.empty()) {
      throw UserError(fmt::format("evaluating run {} failed ({}){}", runs[i].id, ending,
                                  i > 0 ? "; the runs before it were evaluated and stored" : ""));
    }
  }
}

// Hands `command` with `extra` arguments to lory-worker for the options' run.
void run_worker_command(const TrainedRunOptions& options, const std::string& command,
                        const std::vector<std::string>& extra, const std::string& what) {
  ResultsStore store(options.db, ResultsStore::Open::MustExist);
  const RunRecord run = store.resolve_run(options.run);
  auto arguments = worker_arguments(command, options, run, run_corpus_dir(store, run, options.corpus),
                                    run_plugin_path(store, run, options.plugin_path));
  arguments.insert(arguments.end(), extra.begin(), extra.end());
  std::fflush(stdout);
  const std::string ending = run_program(arguments);
  if (!ending.empty()) throw UserError(what + " failed: " + ending);
}

}  // namespace

void register_score_command(CLI::App& app) {
  auto options = std::make_shared<TrainedRunOptions>();
  CLI::App* cmd = app.add_subcommand("score", "Per-token log-probabilities and perplexity of a text under a trained run");
  options->add_common(cmd);
  auto* text = cmd->add_option("--text", options->text_file, "Text file to score")->check(CLI::ExistingFile);
  auto* ids = cmd->add_option("--token-ids", options->token_ids_file, "File of token ids to score")
                  ->check(CLI::ExistingFile)
                  ->excludes(text);
  cmd->add_option("--routing", options->routing,
                  "train: route as in training (Lory: segment by segment); prompt: every window routes once per layer "
                  "from its first --prompt-length tokens, and the text's first --prompt-length tokens are not scored; "
                  "inference: the router's inference rule (lory: inference_routing), with the prompt as under prompt")
      ->check(CLI::IsMember({"train", "prompt", "inference"}))
      ->capture_default_str();
  cmd->add_option("--prompt-length", options->prompt_length,
                  "Prompt tokens under prompt/inference routing; must leave room in the context")
      ->check(CLI::Range(1, 1 << 24))
      ->capture_default_str();
  cmd->add_option("--window", options->window,
                  "Text longer than the context: sliding = windows overlap, each scores only new tokens with the "
                  "tokens before them as context; independent = each window starts afresh")
      ->check(CLI::IsMember({"sliding", "independent"}))
      ->capture_default_str();
  cmd->add_option("--stride", options->stride,
                  "New tokens per sliding window (default: half the context, at most context - prompt)")
      ->check(CLI::Range(0, 1 << 24));
  options->add_precision_option(cmd);
  cmd->callback([options, text, ids] {
    if (!*text && !*ids) throw UserError("give --text FILE or --token-ids FILE");
    if (options->window == "independent" && options->stride > 0) {
      throw UserError("--stride goes with --window sliding (independent windows advance by the context minus the prompt)");
    }
    run_score(*options);
  });
}

void register_generate_command(CLI::App& app) {
  auto options = std::make_shared<TrainedRunOptions>();
  auto generate = std::make_shared<GenerateOptions>();
  CLI::App* cmd = app.add_subcommand(
      "generate", "Continue a prompt with a trained run (KV cache; Lory merges its experts once from the prompt)");
  options->add_common(cmd);
  auto* prompt = cmd->add_option("--prompt", generate->prompt, "Prompt text");
  auto* prompt_file =
      cmd->add_option("--prompt-file", generate->prompt_file, "File holding the prompt text")->check(CLI::ExistingFile)->excludes(prompt);
  cmd->add_option("--max-tokens", generate->max_tokens, "Tokens to generate (prompt + these must fit the context)")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--temperature", generate->temperature, "Sampling temperature; 0 = greedy")
      ->check(finite_range(0.0, 100.0))
      ->capture_default_str();
  cmd->add_option("--top-k", generate->top_k, "Sample from the k most likely tokens; 0 = all")
      ->check(CLI::Range(0, 1 << 24))
      ->capture_default_str();
  cmd->add_option("--top-p", generate->top_p, "Sample from the smallest set of tokens whose probability reaches p")
      ->check(finite_range(1e-9, 1.0))
      ->capture_default_str();
  cmd->add_option("--seed", generate->seed, "Sampling seed (the same seed gives the same text)")->capture_default_str();
  cmd->add_option("--routing", generate->routing,
                  "prompt: Lory routes each layer once from the prompt and reuses that FFN; segment: re-routes "
                  "every T tokens from the previous segment, as in training (token routers: alike)")
      ->check(CLI::IsMember({"prompt", "segment"}))
      ->capture_default_str();
  cmd->add_flag("--json", generate->json, "Print {text, tokens: [{id, piece, logprob}]} at the end instead of streaming");
  cmd->add_flag("--no-cache", generate->no_cache, "Recompute the whole sequence for every new token (slow; a reference)");
  options->add_precision_option(cmd);
  cmd->callback([options, generate, prompt, prompt_file] {
    if (!*prompt && !*prompt_file) throw UserError("give --prompt TEXT or --prompt-file FILE");
    run_generate(*options, *generate);
  });
}

void register_eval_tasks_command(CLI::App& app) {
  auto options = std::make_shared<TrainedRunOptions>();
  auto tasks = std::make_shared<EvalTasksOptions>();
  CLI::App* cmd = app.add_subcommand(
      "eval-tasks", "In-context multiple-choice accuracy of trained runs on task files (stored; shown by lory report)");
  cmd->add_option("runs", tasks->runs, "Run ids, or prefixes of their cell hashes")->required();
  options->add_store_options(cmd);
  cmd->add_option("--tasks", tasks->task_files,
                  "Task files (JSONL: context, choices, gold, optional few_shot; docs/inference.md), e.g. "
                  "experiments/tasks/*.jsonl")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--routing", tasks->routing,
                  "prompt: Lory routes each layer once from the context and scores every choice with that FFN (the "
                  "paper's inference rule); train: segment by segment, as in training; inference: the router's own "
                  "inference rule (token routers: all alike)")
      ->check(CLI::IsMember({"prompt", "train", "inference"}))
      ->capture_default_str();
  options->add_precision_option(cmd);
  cmd->callback([options, tasks] { run_eval_tasks(*options, *tasks); });
}

void register_embed_command(CLI::App& app) {
  auto options = std::make_shared<TrainedRunOptions>();
  CLI::App* cmd = app.add_subcommand(
      "embed", "Embed every corpus document with a trained run (mean final hidden state), for the similarity batcher");
  options->add_common(cmd);
  cmd->add_option("--out", options->out_file, "Output file (use as batcher.similarity.embedding_file)")->required();
  cmd->callback([options] { run_worker_command(*options, "embed", {"--out", options->out_file}, "embedding"); });
}

void register_export_command(CLI::App& app) {
  auto options = std::make_shared<TrainedRunOptions>();
  CLI::App* cmd = app.add_subcommand("export", "Write a trained run's weights (torch.load-able) and config to a folder");
  options->add_common(cmd);
  cmd->add_option("--out", options->out_dir, "Output folder")->required();
  cmd->callback([options] { run_worker_command(*options, "export", {"--out", options->out_dir}, "export"); });
}

}  // namespace lory::cli
