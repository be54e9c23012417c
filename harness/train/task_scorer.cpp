#include "train/task_scorer.h"

#include <fmt/format.h>

#include "core/support/diagnostics.h"
#include "train/device_placement.h"

namespace lory {

ScoredTask score_task(LanguageModel& model, const TokenizedTask& task, int64_t context_length,
                      EvalRouting::Rule rule, const std::function<void(int64_t)>& progress) {
  torch::NoGradGuard no_grad;
  model.eval();
  ScoredTask scored;
  for (const TokenizedExample& example : task.examples) {
    std::vector<ChoiceScore> choices;
    for (const TokenizedChoice& choice : example.choices) {
      const int64_t n = static_cast<int64_t>(choice.ids.size());
      // Inputs are all tokens but the last: at most context_length of them.
      const int64_t drop = std::max<int64_t>(0, n - 1 - context_length);
      const int64_t kept_context = choice.context - drop;
      if (kept_context < 1) {
        throw UserError(fmt::format(
            "task '{}', line {}: a choice of {} tokens does not fit the model's context of {} "
            "tokens with any of its context before it",
            task.name, example.line, n - choice.context, context_length));
      }
      scored.truncated += drop > 0;
      const torch::Tensor window_1L1 =
          torch::tensor(std::vector<int64_t>(choice.ids.begin() + drop, choice.ids.end()),
                        torch::kInt64)
              .unsqueeze(0)
              .to(module_device(model));
      RoutingContext routing(ForwardMode::Eval, false);
      routing.set_eval_routing({rule, kept_context});
      const torch::Tensor logits_1LV = model.forward(window_1L1.slice(1, 0, -1), routing);
      // The choice's tokens are targets kept_context .. end, predicted at inputs kept_context - 1
      // ...
      const torch::Tensor log_probs_C =
          torch::log_softmax(logits_1LV[0].slice(0, kept_context - 1).to(torch::kFloat64), -1)
              .gather(-1, window_1L1[0].slice(0, kept_context).unsqueeze(-1))
              .view({-1});
      choices.push_back({log_probs_C.sum().item<double>(), log_probs_C.size(0), choice.bytes});
    }
    scored.scores.push_back(std::move(choices));
    scored.gold.push_back(example.gold);
    if (progress) progress(static_cast<int64_t>(scored.gold.size()));
  }
  return scored;
}

}  // namespace lory
