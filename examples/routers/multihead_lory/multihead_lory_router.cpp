// `multihead_lory`: Lory's causal segment routing with several routing heads, an example of a new
// routing idea written against the installed lory SDK.
//
// The FFN width F is split into H heads of F/H hidden units. Every head has its own router and
// merges its own slice of the experts: head h of segment k uses
//   w_h = softmax(R_h(mean of h over segment k - 1)),
// so one segment can take its gate/up/down rows for different hidden units from different expert
// mixtures (a finer-grained merge at the same cost as Lory: the merged FFN is still F wide).
// Segment 1 gets uniform weights, which keeps every position strictly causal. With H = 1 it is Lory
// with the uniform first-segment rule.
// lory/core/plugin.h comes first on purpose (its own include block, which clang-format keeps):
// the LibTorch version in the metadata is decided where LORY_PLUGIN_METADATA expands, after
// every include, so a plugin may include it before any torch header (the SDK test checks it).
#include <lory/core/plugin.h>

#include <lory/core/param_declaration.h>
#include <lory/nn/expert_merge.h>
#include <lory/nn/router_api.h>

#include <stdexcept>

namespace multihead_lory_example {

struct Options {
  int64_t experts = 0, heads = 0, segment_length = 0;
  double router_init_std = 0;
};

const lory::ParamDeclaration<Options>& params() {
  static const auto declaration =
      lory::ParamDeclaration<Options>("router.multihead_lory")
          .integer("experts", &Options::experts, 8, 1, 1024, "E: SwiGLU experts per layer")
          .integer("heads", &Options::heads, 4, 1, 1024,
                   "routing heads; each merges d_ff / heads hidden units")
          .integer("segment_length", &Options::segment_length, 256, 1, 1 << 20,
                   "T: tokens per routing segment")
          .real("router_init_std", &Options::router_init_std, 0.02, 1e-8, 1,
                "std of the routers' normal init (not 0)");
  return declaration;
}

Options read_options(const lory::ParamValues& values, const lory::FeedForwardSpec&) {
  return params().read(values);
}

class MultiHeadLoryFeedForward final : public lory::FeedForward {
 public:
  MultiHeadLoryFeedForward(const lory::FeedForwardSpec& spec, const Options& options)
      : layer_(spec.layer_index),
        experts_(options.experts),
        heads_(options.heads),
        segment_length_(options.segment_length) {
    const int64_t E = experts_, H = heads_, D = spec.d_model, F = spec.d_ff;
    if (F % H != 0)
      throw std::invalid_argument("multihead_lory: heads must divide the FFN width d_ff");
    const int64_t f = F / H;  // hidden units per head
    // Experts stored per head ([H, E, f, D]) so that each head's slice is contiguous.
    w_gate_HEfD = register_parameter("w_gate_HEfD", torch::randn({H, E, f, D}) * spec.init_std);
    w_up_HEfD = register_parameter("w_up_HEfD", torch::randn({H, E, f, D}) * spec.init_std);
    w_down_HEDf =
        register_parameter("w_down_HEDf", torch::randn({H, E, D, f}) * spec.output_init_std);
    router_HED =
        register_parameter("router_HED", torch::randn({H, E, D}) * options.router_init_std);
  }

  torch::Tensor forward(const torch::Tensor& h_BLD, lory::RoutingContext& context) override {
    const int64_t B = h_BLD.size(0), L = h_BLD.size(1), D = h_BLD.size(2), E = experts_, H = heads_;
    const int64_t T = std::min(segment_length_, L), N = (L + T - 1) / T;
    const torch::Tensor padded_BLD =
        N * T > L ? torch::cat({h_BLD, torch::zeros({B, N * T - L, D}, h_BLD.options())}, 1)
                  : h_BLD;
    const torch::Tensor x_STD = padded_BLD.reshape({B * N, T, D});
    torch::Tensor tokens_N = torch::full({N}, static_cast<double>(T), h_BLD.options());
    tokens_N[N - 1] = static_cast<double>(L - (N - 1) * T);
    const torch::Tensor mean_BND = x_STD.view({B, N, T, D}).sum(2) / tokens_N.view({1, N, 1});
    // Router logits of every head: [B, N, H, E].
    const torch::Tensor probs_BNHE =
        torch::softmax(torch::einsum("bnd,hed->bnhe", {mean_BND, router_HED}), -1);
    const torch::Tensor uniform_B1HE =
        torch::full({B, 1, H, E}, 1.0 / static_cast<double>(E), h_BLD.options());
    const torch::Tensor w_BNHE =
        N > 1 ? torch::cat({uniform_B1HE, probs_BNHE.slice(1, 0, N - 1)}, 1) : uniform_B1HE;
    torch::Tensor y_STD = torch::zeros_like(x_STD);
    for (int64_t head = 0; head < H; ++head) {
      const torch::Tensor w_SE = w_BNHE.select(2, head).reshape({B * N, E});
      y_STD = y_STD + lory::merged_expert_ffn(
                          x_STD, w_SE, {w_gate_HEfD[head], w_up_HEfD[head], w_down_HEDf[head]},
                          /*chunk_segments=*/16);
    }
    // One record per layer: the heads' weights averaged (each head weighs F/H hidden units).
    if (context.recording())
      lory::record_routing(context, layer_, w_BNHE.mean(2).repeat_interleave(T, 1).slice(1, 0, L));
    return y_STD.view({B, N * T, D}).slice(1, 0, L);
  }

  int64_t expert_count() const override { return experts_; }
  int64_t active_parameter_count() const override {
    return heads_ * (w_gate_HEfD[0][0].numel() * 3) + router_HED.numel();
  }
  void upcycle_from(const lory::DenseFFNWeights& dense) override {
    const int64_t H = heads_, f = w_gate_HEfD.size(2), D = w_gate_HEfD.size(3);
    w_gate_HEfD.copy_(dense.w_gate_FD.view({H, 1, f, D}).expand_as(w_gate_HEfD));
    w_up_HEfD.copy_(dense.w_up_FD.view({H, 1, f, D}).expand_as(w_up_HEfD));
    w_down_HEDf.copy_(
        dense.w_down_DF.view({D, H, f}).permute({1, 0, 2}).unsqueeze(1).expand_as(w_down_HEDf));
  }

 private:
  int64_t layer_, experts_, heads_, segment_length_;
  torch::Tensor w_gate_HEfD, w_up_HEfD, w_down_HEDf, router_HED;
};

std::unique_ptr<lory::RouterPlugin> create() {
  return std::make_unique<lory::RouterPluginOf<MultiHeadLoryFeedForward, read_options>>();
}

}  // namespace multihead_lory_example

LORY_DECLARED_PLUGIN(
    LORY_PLUGIN_ROUTER, "multihead_lory",
    "Lory with several routing heads, each merging its own slice of the FFN width (causal)",
    multihead_lory_example::params)
LORY_ROUTER_FACTORY(multihead_lory_example::create)
