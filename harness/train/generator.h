// Autoregressive text generation with a trained model: sampling (greedy, temperature, top-k,
// top-p, seeded) and a key/value cache with each router's decoding state (lory/nn/decode_state.h),
// or, for a model or router without one, recomputation of the whole sequence at every step.
#pragma once

#include <functional>
#include <vector>

#include "lory/core/seeded_random.h"
#include "lory/nn/model_api.h"

namespace lory {

struct SamplingOptions {
  double temperature = 1.0;  // 0 = greedy (argmax)
  int64_t top_k = 0;         // keep the k most likely tokens; 0 = all
  double top_p = 1.0;  // then keep the smallest set whose probability (renormalised) reaches top_p
  uint64_t seed = 0;
};

struct GenerationOptions {
  int64_t max_tokens = 64;
  SamplingOptions sampling;
  // Rule::Prompt routes from the whole prompt (prompt_length is set to its length); Rule::Train
  // routes as in training (Lory: segment by segment).
  EvalRouting::Rule routing = EvalRouting::Rule::Prompt;
  bool use_cache = true;
  int64_t stop_token = -1;  // stop after generating this token; -1 = none
};

struct GeneratedToken {
  int64_t id = 0;
  double log_prob =
      0;  // log p(token | everything before) under the model, before temperature / top-k / top-p
};

struct GenerationResult {
  std::vector<GeneratedToken> tokens;
  bool cached = false;         // whether the KV cache was used (else: full recomputation per token)
  int64_t ffn_merges = 0;      // merged FFNs built by Lory layers while decoding (cached only)
  int64_t forward_tokens = 0;  // token positions the model processed, prompt included
};

// Generates up to max_tokens after `prompt` (token ids). The prompt plus the generated tokens
// must fit the model's context length. `on_token` is called as each token is produced.
GenerationResult generate_tokens(LanguageModel& model, const std::vector<int64_t>& prompt,
                                 int64_t context_length, const GenerationOptions& options,
                                 const std::function<void(const GeneratedToken&)>& on_token = {});

// The sampling rule alone: picks a token from logits_V (float) with `options`, drawing from `rng`
// (splitmix64: a seed gives the same draws on every machine).
int64_t sample_token(const torch::Tensor& logits_V, const SamplingOptions& options,
                     SeededRandom& rng);

}  // namespace lory
