// `lory generate`: continue a prompt with a trained run (`lory-worker generate | lory-data decode
// --stream`).
#include <fmt/format.h>

#include <fstream>

#include "child_programs.h"
#include "commands.h"
#include "core/support/command_line_options.h"
#include "core/support/diagnostics.h"
#include "run_inputs.h"
#include "worker_job.h"

namespace lory::cli {

namespace {

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
      {executable_dir() + "/lory-data", "encode", "--corpus", corpus, "--text", text_file},
      prompt_ids.path);
  if (!ending.empty()) throw UserError("tokenizing the prompt failed: " + ending);
  auto worker = worker_arguments("generate", options, run, corpus,
                                 run_plugin_path(store, run, options.plugin_path));
  worker.insert(
      worker.end(),
      {"--token-ids", prompt_ids.path, "--max-tokens", std::to_string(generate.max_tokens),
       "--temperature", fmt::format("{}", generate.temperature), "--top-k",
       std::to_string(generate.top_k), "--top-p", fmt::format("{}", generate.top_p), "--seed",
       std::to_string(generate.seed), "--routing", generate.routing});
  if (generate.no_cache) worker.push_back("--no-cache");
  std::vector<std::string> decoder{executable_dir() + "/lory-data",
                                   "decode",
                                   "--corpus",
                                   corpus,
                                   "--stream",
                                   "--prefix-ids",
                                   prompt_ids.path};
  if (generate.json) decoder.push_back("--json");
  std::fflush(stdout);
  const std::string pipeline_ending = run_pipeline(worker, decoder);
  if (!pipeline_ending.empty()) throw UserError("generation failed: " + pipeline_ending);
}

}  // namespace

void register_generate_command(CLI::App& app) {
  auto options = std::make_shared<TrainedRunOptions>();
  auto generate = std::make_shared<GenerateOptions>();
  CLI::App* cmd = app.add_subcommand("generate",
                                     "Continue a prompt with a trained run (KV cache; Lory merges "
                                     "its experts once from the prompt)");
  options->add_common(cmd);
  auto* prompt = cmd->add_option("--prompt", generate->prompt, "Prompt text");
  auto* prompt_file =
      cmd->add_option("--prompt-file", generate->prompt_file, "File holding the prompt text")
          ->check(CLI::ExistingFile)
          ->excludes(prompt);
  cmd->add_option("--max-tokens", generate->max_tokens,
                  "Tokens to generate (prompt + these must fit the context)")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--temperature", generate->temperature, "Sampling temperature; 0 = greedy")
      ->check(finite_range(0.0, 100.0))
      ->capture_default_str();
  cmd->add_option("--top-k", generate->top_k, "Sample from the k most likely tokens; 0 = all")
      ->check(CLI::Range(0, 1 << 24))
      ->capture_default_str();
  cmd->add_option("--top-p", generate->top_p,
                  "Sample from the smallest set of tokens whose probability reaches p")
      ->check(finite_range(1e-9, 1.0))
      ->capture_default_str();
  cmd->add_option("--seed", generate->seed, "Sampling seed (the same seed gives the same text)")
      ->capture_default_str();
  cmd->add_option("--routing", generate->routing,
                  "prompt: Lory routes each layer once from the prompt and reuses that FFN; "
                  "segment: re-routes "
                  "every T tokens from the previous segment, as in training (token routers: alike)")
      ->check(CLI::IsMember({"prompt", "segment"}))
      ->capture_default_str();
  cmd->add_flag("--json", generate->json,
                "Print {text, tokens: [{id, piece, logprob}]} at the end instead of streaming");
  cmd->add_flag("--no-cache", generate->no_cache,
                "Recompute the whole sequence for every new token (slow; a reference)");
  options->add_precision_option(cmd);
  cmd->callback([options, generate, prompt, prompt_file] {
    if (!*prompt && !*prompt_file) throw UserError("give --prompt TEXT or --prompt-file FILE");
    run_generate(*options, *generate);
  });
}

}  // namespace lory::cli
