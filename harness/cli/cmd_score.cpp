// `lory score`: per-token log-probabilities and perplexity of a text under a trained run (lory-data
// tokenizes, lory-worker scores, lory-data adds each token's text).
#include <fmt/format.h>

#include "child_programs.h"
#include "commands.h"
#include "core/support/command_line_options.h"
#include "core/support/diagnostics.h"
#include "run_inputs.h"
#include "worker_job.h"

namespace lory::cli {

namespace {

void run_score(const TrainedRunOptions& options) {
  ResultsStore store(options.db, ResultsStore::Open::MustExist);
  const RunRecord run = store.resolve_run(options.run);
  const std::string corpus = run_corpus_dir(store, run, options.corpus);
  std::string ids_file = options.token_ids_file;
  TemporaryFile encoded("score.ids");
  if (!options.text_file.empty()) {
    const std::string ending =
        run_program_to_file({executable_dir() + "/lory-data", "encode", "--corpus", corpus,
                             "--text", options.text_file},
                            encoded.path);
    if (!ending.empty()) throw UserError("tokenizing the text failed: " + ending);
    ids_file = encoded.path;
  }
  auto arguments = worker_arguments("score", options, run, corpus,
                                    run_plugin_path(store, run, options.plugin_path));
  arguments.insert(arguments.end(),
                   {"--token-ids", ids_file, "--routing", options.routing, "--prompt-length",
                    std::to_string(options.prompt_length), "--window", options.window, "--stride",
                    std::to_string(options.stride)});
  std::fflush(stdout);
  // Through lory-data (the tokenizer lives there, apart from LibTorch): each token's text is added.
  const std::string ending = run_pipeline(
      arguments, {executable_dir() + "/lory-data", "decode", "--corpus", corpus, "--score-table"});
  if (!ending.empty()) throw UserError("scoring failed: " + ending);
}

}  // namespace

void register_score_command(CLI::App& app) {
  auto options = std::make_shared<TrainedRunOptions>();
  CLI::App* cmd = app.add_subcommand(
      "score", "Per-token log-probabilities and perplexity of a text under a trained run");
  options->add_common(cmd);
  auto* text =
      cmd->add_option("--text", options->text_file, "Text file to score")->check(CLI::ExistingFile);
  auto* ids = cmd->add_option("--token-ids", options->token_ids_file, "File of token ids to score")
                  ->check(CLI::ExistingFile)
                  ->excludes(text);
  add_evaluation_routing_option(
      cmd, options->routing,
      "train: route as in training (Lory: segment by segment); prompt: every window routes once "
      "per layer from its "
      "first --prompt-length tokens, and the text's first --prompt-length tokens are not scored; "
      "inference: the "
      "router's inference rule (lory: inference_routing), with the prompt as under prompt");
  cmd->add_option("--prompt-length", options->prompt_length,
                  "Prompt tokens under prompt/inference routing; must leave room in the context")
      ->check(CLI::Range(1, 1 << 24))
      ->capture_default_str();
  cmd->add_option("--window", options->window,
                  "Text longer than the context: sliding = windows overlap, each scores only new "
                  "tokens with the "
                  "tokens before them as context; independent = each window starts afresh")
      ->check(CLI::IsMember({"sliding", "independent"}))
      ->capture_default_str();
  cmd->add_option(
         "--stride", options->stride,
         "New tokens per sliding window (default: half the context, at most context - prompt)")
      ->check(CLI::Range(0, 1 << 24));
  options->add_precision_option(cmd);
  cmd->callback([options, text, ids] {
    if (!*text && !*ids) throw UserError("give --text FILE or --token-ids FILE");
    if (options->window == "independent" && options->stride > 0) {
      throw UserError(
          "--stride goes with --window sliding (independent windows advance by the context minus "
          "the prompt)");
    }
    run_score(*options);
  });
}

}  // namespace lory::cli
