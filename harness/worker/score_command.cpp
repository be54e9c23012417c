// `lory-worker score`: per-token log-probabilities of token ids under a trained run, as a table on
// standard output (`lory score` pipes it through lory-data, which adds each token's text).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/support/command_line_options.h"
#include "core/support/diagnostics.h"
#include "train/evaluator.h"
#include "worker/commands.h"
#include "worker/trained_model.h"

namespace lory::worker {

namespace {

struct ScoreRequest {
  std::string routing = "train";   // train | prompt | inference
  int64_t prompt_length = 0;       // prompt and inference routing only
  std::string window = "sliding";  // sliding | independent
  int64_t stride = 0;              // 0 = the window rule's default
};

int score_command(const RunSelection& selection, const std::string& token_ids_file,
                  const ScoreRequest& request) {
  TrainedModel trained(selection);
  const auto& setup = trained.setup;
  const auto& model = trained.model;
  const std::vector<int64_t> ids =
      read_token_ids(token_ids_file, setup->corpus().manifest().vocab_size);
  if (ids.size() < 2) throw UserError("need at least two tokens to score");
  const int64_t context = setup->context_length();
  // Under `inference` each layer's own rule decides: a model with a layer that routes from the
  // prompt at inference (Lory with inference_routing = "prompt") is scored after a prompt.
  bool prompt_inference = false;
  for (int64_t layer = 0; layer < model->layer_count(); ++layer) {
    prompt_inference =
        prompt_inference || model->feed_forward(layer)->routes_from_prompt_at_inference();
  }
  const bool prompted =
      request.routing == "prompt" || (request.routing == "inference" && prompt_inference);
  if (prompted && request.prompt_length < 1)
    throw UserError("prompt routing needs --prompt-length of at least 1");
  ScoringWindows windows;
  windows.prompt_length = prompted ? request.prompt_length : 0;
  const int64_t free_positions = context - windows.prompt_length;
  windows.stride = request.stride > 0 ? request.stride
                   : request.window == "independent"
                       ? free_positions
                       : std::max<int64_t>(1, std::min(context / 2, free_positions));
  const EvalRouting routing{evaluation_rule(request.routing), windows.prompt_length};
  const ScoredText scored =
      score_text(*model, torch::tensor(ids, torch::kInt64), context, routing, windows);
  std::printf("position\ttoken\tlogprob\n");
  for (size_t i = 0; i < scored.positions.size(); ++i) {
    const int64_t position = scored.positions[i];
    std::printf("%lld\t%lld\t%.6f\n", static_cast<long long>(position),
                static_cast<long long>(ids[static_cast<size_t>(position)]),
                scored.log_probs[static_cast<int64_t>(i)].item<double>());
  }
  const double mean = -scored.log_probs.mean().item<double>();
  std::printf(
      "# %zu tokens scored, mean loss %.4f nats, perplexity %.3f (%lld window(s) of up to %lld "
      "tokens, stride "
      "%lld%s)\n",
      scored.positions.size(), mean, std::exp(mean), static_cast<long long>(scored.windows),
      static_cast<long long>(context), static_cast<long long>(windows.stride),
      prompted ? fmt::format("; the first {} tokens are the routing prompt, not scored",
                             windows.prompt_length)
                     .c_str()
               : "");
  return 0;
}

}  // namespace

void add_score_command(CLI::App& app, int& status) {
  auto selection = std::make_shared<RunSelection>();
  auto token_ids_file = std::make_shared<std::string>();
  auto request = std::make_shared<ScoreRequest>();
  CLI::App* command =
      app.add_subcommand("score", "Per-token log-probabilities of token ids under a trained run");
  selection->add_options(command);
  selection->add_precision_option(command);
  command->add_option("--token-ids", *token_ids_file, "File of whitespace-separated token ids")
      ->required();
  add_evaluation_routing_option(
      command, request->routing,
      "train: as in training; prompt: from the first --prompt-length tokens; inference: the "
      "router's inference rule, with the prompt");
  command
      ->add_option("--prompt-length", request->prompt_length,
                   "Prompt tokens (prompt and inference routing)")
      ->check(CLI::Range(0, 1 << 24));
  command
      ->add_option("--window", request->window, "sliding (context carried) or independent windows")
      ->check(CLI::IsMember({"sliding", "independent"}));
  command
      ->add_option("--stride", request->stride,
                   "New tokens scored per window (0 = the rule's default)")
      ->check(CLI::Range(0, 1 << 24));
  command->callback([selection, token_ids_file, request, &status] {
    end_with_parent();
    status = score_command(*selection, *token_ids_file, *request);
  });
}

}  // namespace lory::worker
