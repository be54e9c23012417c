// `smear`: SMEAR-style soft merging of experts (Muqeeth et al., 2023), Lory's direct ancestor,
// written against the installed lory SDK as an example of an out-of-tree router.
//
// Every sequence is routed ONCE, from the mean of all its tokens, and all of its tokens go through
// the one FFN merged with those weights. NOT causal: the routing of position t depends on tokens
// after t (the causality check of lory::testkit flags it, as it should). Useful as the ablation
// "what if routing could see the whole sequence", and as a bound on what segment routing loses.
#include <lory/expert_merge.h>
#include <lory/plugin.h>
#include <lory/router_api.h>

namespace smear_example {

class SmearFeedForward final : public lory::FeedForward {
 public:
  SmearFeedForward(const lory::FeedForwardSpec& spec, int64_t experts, double router_init_std)
      : layer_(spec.layer_index), expert_count_(experts) {
    experts_ = lory::register_experts(*this, spec, experts, spec.d_ff);
    router_ED = lory::register_router(*this, spec, experts, router_init_std);
  }

  // h_BLD -> y_BLD. One routing decision per sequence: w_BE = softmax(R(mean_L h)).
  torch::Tensor forward(const torch::Tensor& h_BLD, lory::RoutingContext& context) override {
    const torch::Tensor w_BE = torch::softmax(lory::router_logits(h_BLD.mean(1), router_ED), -1);
    // The executor takes segments [S, T, D]: here every sequence is one segment (S = B, T = L).
    const torch::Tensor y_BLD = lory::merged_expert_ffn(h_BLD, w_BE, experts_, /*chunk_segments=*/16);
    if (context.recording()) {
      lory::RoutingRecord record;
      record.layer = layer_;
      record.expert_count = expert_count_;
      record.weights_BLE = w_BE.detach().to(torch::kFloat32).unsqueeze(1).expand({-1, h_BLD.size(1), -1}).contiguous();
      record.stats = lory::weight_statistics(record.weights_BLE);
      context.add_record(std::move(record));
    }
    return y_BLD;
  }

  int64_t expert_count() const override { return expert_count_; }
  int64_t active_parameter_count() const override { return experts_.w_gate_EFD[0].numel() * 3 + router_ED.numel(); }
  void upcycle_from(const lory::DenseFFNWeights& dense) override { lory::copy_dense_into_experts(experts_, dense); }

 private:
  int64_t layer_, expert_count_;
  lory::ExpertWeights experts_;
  torch::Tensor router_ED;
};

class SmearRouter final : public lory::RouterPlugin {
 public:
  std::shared_ptr<lory::FeedForward> build(const lory::FeedForwardSpec& spec, const lory::ParamValues& p) override {
    return std::make_shared<SmearFeedForward>(spec, p.get_int("experts"), p.get_float("router_init_std"));
  }
};

std::unique_ptr<lory::RouterPlugin> create() { return std::make_unique<SmearRouter>(); }

const LoryParamSpec kParams[] = {
    {"experts", LORY_PARAM_INT, "8", 1, 1024, nullptr, "E: SwiGLU experts per layer"},
    {"router_init_std", LORY_PARAM_FLOAT, "0.02", 1e-8, 1, nullptr, "std of the router's normal init (not 0)"},
};

}  // namespace smear_example

LORY_PLUGIN_METADATA(LORY_PLUGIN_ROUTER, "smear",
                     "SMEAR: one soft merge of the experts per sequence, from the mean of the whole sequence "
                     "(not causal)",
                     smear_example::kParams)
LORY_ROUTER_FACTORY(smear_example::create)
