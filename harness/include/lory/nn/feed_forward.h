// The FFN sub-layer that router plugins build for every transformer block, and the SwiGLU
// function they all share: FFN(h) = W_down (SiLU(W_gate h) * W_up h), no biases.
#pragma once

#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <optional>

#include "lory/nn/routing.h"

namespace lory {

// What a model asks of a router for one layer.
struct FeedForwardSpec {
  int64_t d_model = 0;
  int64_t d_ff = 0;
  int64_t layer_index = 0;
  int64_t layer_count = 1;
  double init_std = 0.02;         // W_gate, W_up (and routers' own projections)
  double output_init_std = 0.02;  // W_down: scaled down with depth by the model
};

// A dense SwiGLU FFN's weights, in nn.Linear layout ([out, in]).
struct DenseFFNWeights {
  torch::Tensor w_gate_FD;
  torch::Tensor w_up_FD;
  torch::Tensor w_down_DF;
};

// E SwiGLU experts as [E, ...] tensors (the layout the expert-merge and dispatch executors take).
struct ExpertWeights {
  torch::Tensor w_gate_EFD;
  torch::Tensor w_up_EFD;
  torch::Tensor w_down_EDF;
};

// Registers E experts of width d_ff on `module` as parameters w_gate_EFD, w_up_EFD, w_down_EDF,
// normally initialised with the spec's scales (init_std; output_init_std for W_down).
ExpertWeights register_experts(torch::nn::Module& module, const FeedForwardSpec& spec,
                               int64_t experts, int64_t d_ff);

// The linear router d_model -> E of an MoE layer (no bias), registered on `module` as parameter
// router_ED with a normal init of std `init_std`. Register it after the experts: a layer's random
// draws happen in that order, so the same seed gives the same layer.
torch::Tensor register_router(torch::nn::Module& module, const FeedForwardSpec& spec,
                              int64_t experts, double init_std);

// logits_XE = h_XD @ router_EDᵀ, always in the router's own precision (fp32), also when the
// model's matmuls run in bf16 (trainer.precision): routing decisions, gates and Lory's merge
// weights must not move with the matmul precision. h_XD is cast to the router's dtype if needed.
torch::Tensor router_logits(const torch::Tensor& h_XD, const torch::Tensor& router_ED);

// Upcycling: every expert becomes a copy of `dense`. Throws when the widths differ.
void copy_dense_into_experts(const ExpertWeights& experts, const DenseFFNWeights& dense);

// y_XD = SwiGLU(h_XD) for any leading shape X.
torch::Tensor swiglu(const torch::Tensor& h_XD, const torch::Tensor& w_gate_FD,
                     const torch::Tensor& w_up_FD, const torch::Tensor& w_down_DF);

class FeedForward : public torch::nn::Module {
 public:
  // h_BLD: the sub-layer's input (after the block's pre-norm). Returns y_BLD.
  virtual torch::Tensor forward(const torch::Tensor& h_BLD, RoutingContext& context) = 0;

  virtual int64_t expert_count() const { return 1; }
  // Whether forward() handles a context with a DecodeState: given only the new tokens, it returns
  // exactly what a full forward over the whole sequence gives at their positions. A router whose
  // output at a token depends on that token alone (dense, token top-k) needs no state and says
  // true; one that routes from earlier tokens (Lory) keeps its state in the DecodeState. `lory
  // generate` falls back to recomputing the whole sequence for a router that says false.
  virtual bool supports_incremental_decoding() const { return false; }
  // The layer's own rule for `--routing inference` (EvalRouting::Rule::Inference): whether it then
  // routes from the prompt (once, from the mean of its first prompt_length tokens) or as in
  // training. The harness asks this, never a plugin parameter, to decide whether a scored text
  // starts with a routing prompt.
  virtual bool routes_from_prompt_at_inference() const { return false; }
  // Training state a layer changes outside the gradient (aux-loss-free balancing's expert bias).
  // During a training step's forwards the layer adds what its update needs into these float64
  // tensors; after the step's backward passes the trainer sums them over data-parallel ranks (in
  // place) and calls finish_training_step() once, so every rank makes the same update from the
  // whole step's batch. Forwards outside the trainer's steps (tests, evaluation) never finish.
  virtual std::vector<torch::Tensor> training_step_accumulators() { return {}; }
  virtual void finish_training_step() {}
  // The FFN's part of `lory export`'s layout (see LanguageModel::export_layout_json): a JSON
  // object with the resolved options, the tensors (names relative to the layer, shapes, layout)
  // and the routing rule in words and formulas. "{}" when the plugin says nothing.
  virtual std::string export_layout_json() const { return "{}"; }
  // Parameters one token goes through (for a merged or top-k MoE, less than all of them).
  // Default: every parameter of the module.
  virtual int64_t active_parameter_count() const;
  // A dense FFN exposes its weights, so that MoE layers can be upcycled from it.
  virtual std::optional<DenseFFNWeights> dense_weights() const { return std::nullopt; }
  // Sets every expert to `dense` (dense warm-up, then upcycling). Routers that cannot be
  // upcycled keep the default, which throws.
  virtual void upcycle_from(const DenseFFNWeights& dense);
};

// What every expert router's layer holds: its options, its layer index, E SwiGLU experts of width
// `expert_d_ff` and the bias-free router, registered in that order (so that a seed gives the same
// layer). `Options` has `experts` and `router_init_std`. The in-tree lory, topk and expert_choice
// layers derive from it and add only their routing.
template <typename Options>
class ExpertRouterLayer : public FeedForward {
 public:
  int64_t expert_count() const override { return options_.experts; }

 protected:
  ExpertRouterLayer(const FeedForwardSpec& spec, Options options, int64_t expert_d_ff)
      : options_(options), layer_(spec.layer_index) {
    experts_ = register_experts(*this, spec, options_.experts, expert_d_ff);
    router_ED = register_router(*this, spec, options_.experts, options_.router_init_std);
  }

  // The export layout every expert router starts from: its declared parameters (`parameters`,
  // from its ParamDeclaration::to_json), its name, the experts' width in use and the tensors this
  // class registers; the router adds its rule.
  nlohmann::json expert_layer_layout(const std::string& router, nlohmann::json parameters) const {
    parameters["router"] = router;
    parameters["d_ff"] = experts_.w_gate_EFD.size(1);
    parameters["tensors"] = {{"w_gate_EFD", "[E, F, D] expert e's W_gate at [e]"},
                             {"w_up_EFD", "[E, F, D]"},
                             {"w_down_EDF", "[E, D, F]"},
                             {"router_ED", "[E, D] router, no bias: logits = h @ router_ED.T"}};
    return parameters;
  }

  Options options_;
  int64_t layer_;
  ExpertWeights experts_;
  torch::Tensor router_ED;
};

}  // namespace lory
