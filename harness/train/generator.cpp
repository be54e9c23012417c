#include "train/generator.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/support/diagnostics.h"
#include "lory/nn/decode_state.h"
#include "train/device_placement.h"

namespace lory {

int64_t sample_token(const torch::Tensor& logits_V, const SamplingOptions& options,
                     SeededRandom& rng) {
  const torch::Tensor logits = logits_V.to(torch::kFloat64).contiguous();
  if (options.temperature <= 0) return logits.argmax().item<int64_t>();
  const torch::Tensor probs = torch::softmax(logits / options.temperature, -1);
  const double* p = probs.data_ptr<double>();
  const int64_t V = probs.size(0);
  std::vector<int64_t> order(static_cast<size_t>(V));
  std::iota(order.begin(), order.end(), 0);
  // Most likely first; ties by id, so the order (and the sample) never depends on the sort.
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return p[a] > p[b]; });
  size_t kept = order.size();
  if (options.top_k > 0) kept = std::min(kept, static_cast<size_t>(options.top_k));
  if (options.top_p < 1.0) {
    // The nucleus of what top-k kept, renormalised (the order Hugging Face's samplers use).
    double kept_mass = 0;
    for (size_t i = 0; i < kept; ++i) kept_mass += p[order[i]];
    double mass = 0;
    for (size_t i = 0; i < kept; ++i) {
      mass += p[order[i]] / kept_mass;
      if (mass >= options.top_p - 1e-12) {  // a nucleus that reaches top_p up to rounding
        kept = i + 1;
        break;
      }
    }
  }
  double total = 0;
  for (size_t i = 0; i < kept; ++i) total += p[order[i]];
  double draw = rng.uniform() * total;
  for (size_t i = 0; i < kept; ++i) {
    draw -= p[order[i]];
    if (draw < 0) return order[i];
  }
  return order[kept - 1];
}

GenerationResult generate_tokens(LanguageModel& model, const std::vector<int64_t>& prompt,
                                 int64_t context_length, const GenerationOptions& options,
                                 const std::function<void(const GeneratedToken&)>& on_token) {
  const int64_t P = static_cast<int64_t>(prompt.size());
  if (P == 0) throw UserError("the prompt is empty: give at least one token");
  if (options.max_tokens < 1) throw UserError("max_tokens must be at least 1");
  // The last generated token is never fed back: N new tokens need P + N - 1 positions.
  if (P > context_length) {
    throw UserError(fmt::format(
        "the prompt ({} tokens) is longer than the model's context of {} tokens; shorten it", P,
        context_length));
  }
  if (P + options.max_tokens - 1 > context_length) {
    throw UserError(fmt::format(
        "the prompt ({} tokens) plus {} new tokens exceed the model's context of {} tokens; "
        "shorten the prompt or ask for at most {} tokens",
        P, options.max_tokens, context_length, context_length - P + 1));
  }
  torch::NoGradGuard no_grad;
  model.eval();
  GenerationResult result;
  result.cached = options.use_cache && model.supports_incremental_decoding();
  const EvalRouting routing{options.routing, options.routing == EvalRouting::Rule::Prompt ? P : 0};
  DecodeState state(model.layer_count());
  const torch::Device device = module_device(model);
  std::vector<int64_t> sequence = prompt;
  SeededRandom rng(options.sampling.seed);
  // The logits of the next token after `sequence`.
  const auto next_logits = [&]() {
    RoutingContext context(ForwardMode::Eval, false);
    context.set_eval_routing(routing);
    torch::Tensor tokens_1L;
    if (result.cached) {
      context.set_decode(&state);
      const auto first_new = sequence.begin() + state.position();
      tokens_1L = torch::tensor(std::vector<int64_t>(first_new, sequence.end()), torch::kInt64)
                      .unsqueeze(0);
    } else {
      tokens_1L = torch::tensor(sequence, torch::kInt64).unsqueeze(0);
    }
    tokens_1L = tokens_1L.to(device);
    const torch::Tensor logits_1LV = model.forward(tokens_1L, context);
    result.forward_tokens += tokens_1L.size(1);
    if (result.cached) state.advance(tokens_1L.size(1));
    return logits_1LV[0][-1].cpu();
  };
  for (int64_t i = 0; i < options.max_tokens; ++i) {
    const torch::Tensor logits_V = next_logits();
    GeneratedToken token;
    token.id = sample_token(logits_V, options.sampling, rng);
    token.log_prob = torch::log_softmax(logits_V.to(torch::kFloat64), -1)[token.id].item<double>();
    result.tokens.push_back(token);
    sequence.push_back(token.id);
    if (on_token) on_token(token);
    if (token.id == options.stop_token) break;
  }
  result.ffn_merges = state.counter("lory/ffn_merges");
  return result;
}

}  // namespace lory
