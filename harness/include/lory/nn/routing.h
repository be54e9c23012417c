// What a forward pass carries besides tensors: whether it trains or evaluates, how an evaluation
// routes, and where routers leave their auxiliary losses and routing records.
//
// Shape suffixes used across lory's model code:
//   B batch, L sequence length, D model width, F FFN width, E experts, N segments per sequence,
//   T segment length, S = B*N segments, V vocabulary, H heads, K head width, C tokens or segments
//   in a chunk.
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

// The LibTorch version a plugin reports in its metadata (see lory/core/plugin.h).
#ifndef LORY_TORCH_VERSION_OVERLOAD
#define LORY_TORCH_VERSION_OVERLOAD
namespace lory::plugin_detail {
inline const char* torch_version_of_plugin(int) { return TORCH_VERSION; }
}  // namespace lory::plugin_detail
#endif

namespace lory {

enum class ForwardMode { Train, Eval };

// How a forward that does not train routes.
//  - Train: as in training, causally (Lory: segment k routed from the mean of segment k - 1). A
//    router whose training rule is not causal (expert choice looks at the whole batch) uses its
//    causal inference rule instead. This is the rule of the evaluation rows with mode "default".
//  - Prompt: one routing decision per layer from the mean of the first `prompt_length` tokens,
//    reused for every later token (the Lory paper's inference rule).
//  - Inference: the router's own inference rule (a router option), with `prompt_length`.
// Routers without sequence-level routing (dense, token top-k) treat all three alike.
struct EvalRouting {
  enum class Rule { Train, Prompt, Inference };
  Rule rule = Rule::Train;
  int64_t prompt_length = 0;
};

// How a named statistic is combined over layers, micro-batches and ranks.
enum class Reduce { Sum, Mean, Max };

struct RoutingStat {
  std::string name;
  double value;
  Reduce reduce;
};

// One MoE layer's routing in one forward.
struct RoutingRecord {
  int64_t layer = 0;
  int64_t expert_count = 1;
  // Per-token expert weights, detached, float32. Segment routers broadcast their segment's
  // weights to its tokens; token routers scatter their gates (zeros for unchosen experts).
  torch::Tensor weights_BLE;
  std::vector<RoutingStat> stats;
  // Load per expert in this forward (float64 [E], on the CPU): tokens for routers that dispatch
  // tokens, weight mass for soft routers. The trainer sums it over data-parallel ranks and derives
  // the balance metrics from it (max_violation, load_p0 ... load_p100), so they describe the
  // whole batch exactly, as one rank's would.
  torch::Tensor load_E;
};

class DecodeState;

class RoutingContext {
 public:
  RoutingContext(ForwardMode mode, bool record) : mode_(mode), record_(record) {}

  ForwardMode mode() const { return mode_; }
  bool training() const { return mode_ == ForwardMode::Train; }
  // Routers only build records (and their statistics) when asked: it costs time.
  bool recording() const { return record_; }
  const EvalRouting& eval_routing() const { return eval_routing_; }
  void set_eval_routing(EvalRouting routing) { eval_routing_ = routing; }
  // Incremental decoding (lory/nn/decode_state.h): when set, the forward carries only the tokens
  // after decode()->position(), and layers keep their caches there. Null for every other forward.
  DecodeState* decode() const { return decode_; }
  void set_decode(DecodeState* state) { decode_ = state; }
  // The token ids of this forward ([B, L] int64, the ones the model embeds), set by the model
  // before its first layer, for routers that route by token (hash routing). Under incremental
  // decoding they are the new tokens only; their positions start at first_position().
  const torch::Tensor& token_ids_BL() const { return token_ids_BL_; }
  void set_token_ids(torch::Tensor token_ids_BL) { token_ids_BL_ = std::move(token_ids_BL); }
  // Position in the sequence of the forward's first token: 0, or the decoding position.
  int64_t first_position() const;

  // `scaled_loss` (a scalar with gradient) is added to the training loss; `unscaled` is logged.
  void add_aux_loss(int64_t layer, const std::string& name, torch::Tensor scaled_loss,
                    double unscaled);
  void add_record(RoutingRecord record) { records_.push_back(std::move(record)); }

  // Sum of every aux loss added in this forward (a zero scalar when none).
  torch::Tensor total_aux_loss() const;
  const std::vector<RoutingRecord>& records() const { return records_; }
  // Aux losses as statistics: "aux/<name>" (scaled) and "aux/<name>_unscaled", per layer.
  const std::vector<std::pair<int64_t, RoutingStat>>& aux_stats() const { return aux_stats_; }

 private:
  ForwardMode mode_;
  bool record_;
  EvalRouting eval_routing_;
  DecodeState* decode_ = nullptr;
  torch::Tensor token_ids_BL_;
  std::vector<torch::Tensor> aux_losses_;
  std::vector<std::pair<int64_t, RoutingStat>> aux_stats_;
  std::vector<RoutingRecord> records_;
};

// A layer's routing record, when the context records: `weights_BLE` (detached and cast to
// float32 here) with `stats`, or, when `stats` is empty, weight_statistics(weights_BLE); and the
// load per expert `load_E` (tokens per expert for dispatching routers), or, when undefined, the
// weight mass per expert. What every router calls after its forward instead of filling a
// RoutingRecord itself.
void record_routing(RoutingContext& context, int64_t layer, const torch::Tensor& weights_BLE,
                    std::vector<RoutingStat> stats = {}, const torch::Tensor& load_E = {});

// Where each token goes, as a distribution over experts: its weights divided by their sum. Token
// routers' weights are their gates, which need not sum to 1 (a raw top-1 probability, a
// gate_scale, expert choice's scores); Lory's merge weights already do. A token no expert took
// (expert choice) keeps all zeros. The evaluator's routing statistics (entropy, expert mass,
// activations, specialisation) are computed on this, so that they compare across routers.
torch::Tensor routing_distribution(const torch::Tensor& weights_BLE);

// Statistics every router can report from its per-token weights: mean router entropy (nats),
// mean max weight, mean number of experts above 2/E, load imbalance (max/mean weight mass per
// expert) and unused experts (no token with weight above 2/E). (The balance metrics come from the
// record's load_E; see RoutingRecord.)
std::vector<RoutingStat> weight_statistics(const torch::Tensor& weights_BLE);

// Statistics of routers that dispatch tokens: router entropy over the full router distribution
// probs_XE (nats), mean max probability, load imbalance (max/mean tokens per expert), unused
// experts (no token), tokens per expert relative to the mean (min and max), and the fraction of
// assignments dropped by capacity.
std::vector<RoutingStat> dispatch_statistics(const torch::Tensor& probs_XE,
                                             const torch::Tensor& tokens_per_expert_E,
                                             int64_t assignments_made, int64_t assignments_dropped);

}  // namespace lory
