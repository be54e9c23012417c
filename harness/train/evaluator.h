// Held-out evaluation per domain: the held-out documents of each domain, joined by
// end-of-document tokens and cut into sequences of context_length + 1 tokens (the last one padded
// and masked), give per-domain loss and perplexity plus an "all" row (token-weighted), and the
// routing statistics per layer x domain x expert.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "core/store/results_store.h"
#include "data_parallel.h"
#include "lory/core/corpus.h"
#include "lory/nn/model_api.h"

namespace lory {

struct EvalResult {
  std::vector<EvalRow> evals;
  std::vector<RoutingStatRow> routing;
  std::vector<RoutingLayerRow> layers;
};

class Evaluator {
 public:
  Evaluator(const Corpus& corpus, int64_t context_length, int64_t batch_size,
            int64_t tokens_per_domain, int64_t skip_first_tokens);

  // `mode` names the routing rule in the stored rows ("default" or "prompt"). Targets before
  // skip_first_tokens are never scored; under the prompt rule, neither are the prompt's.
  // With a data-parallel group, every rank evaluates its share of the sequences and the sums are
  // reduced: every rank returns the same result.
  EvalResult evaluate(LanguageModel& model, int64_t step, const std::string& mode,
                      const EvalRouting& routing, bool routing_stats,
                      DataParallel* group = nullptr) const;

  int64_t domain_count() const { return static_cast<int64_t>(domains_.size()); }
  // The input tokens ([N, context_length] int64) of the first `per_domain` held-out sequences of
  // every domain: a fixed probe (routing stability).
  torch::Tensor probe_tokens(int64_t per_domain) const;

 private:
  struct DomainSequences {
    std::string name;
    torch::Tensor tokens_NL1;  // int64
    torch::Tensor valid_NL;    // bool: the target at this position is real text (not padding)
  };
  std::vector<DomainSequences> domains_;
  int64_t batch_size_;
  int64_t skip_first_tokens_;
};

// Per-token log-probabilities of the targets: tokens_N (int64) gives n - 1 log-probabilities, in
// independent windows of the context length (each starts with no context). For tests.
torch::Tensor score_tokens(LanguageModel& model, const torch::Tensor& tokens_N,
                           int64_t context_length, const EvalRouting& routing);

// How `lory score` cuts a text longer than the context (docs/inference.md, "Scoring text").
struct ScoringWindows {
  // Windows of the context length advance by `stride` targets: each scores the targets after the
  // previous one's, with the tokens before them in the window as context. stride = context
  // minus the prompt gives independent windows (no context carried beyond the routing prompt).
  int64_t stride = 0;
  // Prompt routing (routing.rule Prompt or Inference): the text's first prompt_length tokens are
  // the prompt and are not scored; every window routes from its own first prompt_length tokens,
  // which in later windows are carried context (stride <= context - prompt_length). 0 otherwise.
  int64_t prompt_length = 0;
};

struct ScoredText {
  std::vector<int64_t> positions;  // index in the text of each scored token
  torch::Tensor log_probs;         // [positions.size()], float64
  int64_t windows = 0;
};

// Checks the windows against the text and context (UserError with what to change) and scores.
ScoredText score_text(LanguageModel& model, const torch::Tensor& tokens_N, int64_t context_length,
                      const EvalRouting& routing, const ScoringWindows& windows);

}  // namespace lory
