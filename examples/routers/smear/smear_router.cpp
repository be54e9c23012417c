// `smear`: SMEAR-style soft merging of experts (Muqeeth et al., 2023), Lory's direct ancestor,
// written against the installed lory SDK as an example of an out-of-tree router.
//
// Every sequence is routed ONCE, from the mean of all its tokens, and all of its tokens go through
// the one FFN merged with those weights. NOT causal: the routing of position t depends on tokens
// after t (the causality check of lory::testkit flags it, as it should). Useful as the ablation
// "what if routing could see the whole sequence", and as a bound on what segment routing loses.
#include <lory/core/param_declaration.h>
#include <lory/core/plugin.h>
#include <lory/nn/expert_merge.h>
#include <lory/nn/router_api.h>

namespace smear_example {

struct Options {
  int64_t experts = 0;
  double router_init_std = 0;
};

const lory::ParamDeclaration<Options>& params() {
  static const auto declaration =
      lory::ParamDeclaration<Options>("router.smear")
          .integer("experts", &Options::experts, 8, 1, 1024, "E: SwiGLU experts per layer")
          .real("router_init_std", &Options::router_init_std, 0.02, 1e-8, 1,
                "std of the router's normal init (not 0)");
  return declaration;
}

Options read_options(const lory::ParamValues& values, const lory::FeedForwardSpec&) {
  return params().read(values);
}

class SmearFeedForward final : public lory::FeedForward {
 public:
  SmearFeedForward(const lory::FeedForwardSpec& spec, const Options& options)
      : layer_(spec.layer_index), expert_count_(options.experts) {
    experts_ = lory::register_experts(*this, spec, options.experts, spec.d_ff);
    router_ED = lory::register_router(*this, spec, options.experts, options.router_init_std);
  }

  // h_BLD -> y_BLD. One routing decision per sequence: w_BE = softmax(R(mean_L h)).
  torch::Tensor forward(const torch::Tensor& h_BLD, lory::RoutingContext& context) override {
    const torch::Tensor w_BE = torch::softmax(lory::router_logits(h_BLD.mean(1), router_ED), -1);
    // The executor takes segments [S, T, D]: here every sequence is one segment (S = B, T = L).
    const torch::Tensor y_BLD =
        lory::merged_expert_ffn(h_BLD, w_BE, experts_, /*chunk_segments=*/16);
    if (context.recording())
      lory::record_routing(context, layer_, w_BE.unsqueeze(1).expand({-1, h_BLD.size(1), -1}));
    return y_BLD;
  }

  int64_t expert_count() const override { return expert_count_; }
  int64_t active_parameter_count() const override {
    return experts_.w_gate_EFD[0].numel() * 3 + router_ED.numel();
  }
  void upcycle_from(const lory::DenseFFNWeights& dense) override {
    lory::copy_dense_into_experts(experts_, dense);
  }

 private:
  int64_t layer_, expert_count_;
  lory::ExpertWeights experts_;
  torch::Tensor router_ED;
};

std::unique_ptr<lory::RouterPlugin> create() {
  return std::make_unique<lory::RouterPluginOf<SmearFeedForward, read_options>>();
}

}  // namespace smear_example

LORY_DECLARED_PLUGIN(
    LORY_PLUGIN_ROUTER, "smear",
    "SMEAR: one soft merge of the experts per sequence, from the mean of the whole sequence "
    "(not causal)",
    smear_example::params)
LORY_ROUTER_FACTORY(smear_example::create)
