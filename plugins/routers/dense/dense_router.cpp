// The `dense` router: one SwiGLU FFN per layer, no experts. The parameter-matched baseline every
// MoE router is compared with, and the model a dense warm-up trains before upcycling.
#include <nlohmann/json.hpp>

#include "lory/core/plugin.h"
#include "lory/core/router_roles.h"
#include "lory/nn/router_api.h"

namespace lory_plugins::dense {

class DenseFeedForward final : public lory::FeedForward {
 public:
  explicit DenseFeedForward(const lory::FeedForwardSpec& spec) : layer_(spec.layer_index) {
    w_gate_FD =
        register_parameter("w_gate_FD", torch::randn({spec.d_ff, spec.d_model}) * spec.init_std);
    w_up_FD =
        register_parameter("w_up_FD", torch::randn({spec.d_ff, spec.d_model}) * spec.init_std);
    w_down_DF = register_parameter("w_down_DF",
                                   torch::randn({spec.d_model, spec.d_ff}) * spec.output_init_std);
  }

  torch::Tensor forward(const torch::Tensor& h_BLD, lory::RoutingContext& context) override {
    if (context.recording()) {
      lory::record_routing(context, layer_,
                           torch::ones({h_BLD.size(0), h_BLD.size(1), 1}, h_BLD.options()));
    }
    return lory::swiglu(h_BLD, w_gate_FD, w_up_FD, w_down_DF);
  }

  bool supports_incremental_decoding() const override { return true; }

  std::string export_layout_json() const override {
    return nlohmann::json{
        {"router", "dense"},
        {"d_ff", w_gate_FD.size(0)},
        {"tensors", {{"w_gate_FD", "[F, D]"}, {"w_up_FD", "[F, D]"}, {"w_down_DF", "[D, F]"}}},
        {"ffn", "SwiGLU: y = (silu(h @ w_gate_FD.T) * (h @ w_up_FD.T)) @ w_down_DF.T"}}
        .dump();
  }

  std::optional<lory::DenseFFNWeights> dense_weights() const override {
    return lory::DenseFFNWeights{w_gate_FD, w_up_FD, w_down_DF};
  }

 private:
  int64_t layer_;
  torch::Tensor w_gate_FD, w_up_FD, w_down_DF;
};

class DenseRouter final : public lory::RouterPlugin {
 public:
  std::shared_ptr<lory::FeedForward> build(const lory::FeedForwardSpec& spec,
                                           const lory::ParamValues&) override {
    return std::make_shared<DenseFeedForward>(spec);
  }
};

std::unique_ptr<lory::RouterPlugin> create() { return std::make_unique<DenseRouter>(); }

}  // namespace lory_plugins::dense

LORY_PLUGIN_METADATA_NO_PARAMS(
    LORY_PLUGIN_ROUTER, "dense",
    "One SwiGLU FFN per layer (no experts): the parameter-matched dense baseline")
LORY_ROUTER_FACTORY(lory_plugins::dense::create)
LORY_ROUTER_ROLES("dense_baseline")
