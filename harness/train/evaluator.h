// Held-out evaluation per domain: the held-out documents of each domain, joined by
// end-of-document tokens and cut into sequences of context_length + 1 tokens (the last one padded
// and masked), give per-domain loss and perplexity plus an "all" row (token-weighted), and the
// routing statistics per layer x domain x expert.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "core/results_store.h"
#include "data_parallel.h"
#include "lory/corpus.h"
#include "lory/model_api.h"

namespace lory {

struct EvalResult {
  std::vector<EvalRow> evals;
  std::vector<RoutingStatRow> routing;
  std::vector<RoutingLayerRow> layers;
};

class Evaluator {
 public:
  Evaluator(const Corpus& corpus, int64_t context_length, int64_t batch_size, int64_t tokens_per_domain,
            int64_t skip_first_tokens);

  // `mode` names the routing rule in the stored rows ("default" or "prompt"). Targets before
  // skip_first_tokens are never scored; under the prompt rule, neither are the prompt's.
  // With a data-parallel group, every rank evaluates its share of the sequences and the sums are
  // reduced: every rank returns the same result.
  EvalResult evaluate(LanguageModel& model, int64_t step, const std::string& mode, const EvalRouting& routing,
                      bool routing_stats, DataParallel* group = nullptr) const;

  int64_t domain_count() const { return static_cast<int64_t>(domains_.size()); }
  int64_t scored_tokens(int64_t domain) const;

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

// Per-token log-probabilities of the targets, for `lory score`: tokens_L1 (int64, length n + 1)
// gives n log-probabilities. Sequences longer than the context are scored in windows.
torch::Tensor score_tokens(LanguageModel& model, const torch::Tensor& tokens_N, int64_t context_length,
                           const EvalRouting& routing);

}  // namespace lory
