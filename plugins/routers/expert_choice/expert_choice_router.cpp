// The `expert_choice` router (Zhou et al., 2022), the baseline the Lory paper trained against:
// instead of tokens choosing experts, every expert chooses its top C = capacity_factor * units / E
// units of the batch by router score, where a unit is a token (level = "token") or a whole
// segment of T tokens scored by its mean (level = "segment", every token of a chosen segment is
// processed). Gates are the softmax scores.
//
// Not causal in training: an expert's choice compares units across the whole batch, later
// positions included. So inference uses another rule (inference_routing): "token_topk" routes each
// token to its inference_k best experts by the same router (what the Lory paper did), which is
// causal; "expert_choice" keeps the training rule (not causal, for analysis only).
#include <nlohmann/json.hpp>

#include <cmath>

#include "lory/core/param_declaration.h"
#include "lory/core/plugin.h"
#include "lory/nn/expert_dispatch.h"
#include "lory/nn/router_api.h"

namespace lory_plugins::expert_choice {

enum class Level { Token, Segment };
enum class InferenceRouting { TokenTopK, ExpertChoice };
enum class Implementation { Grouped, Naive };

struct Options {
  int64_t experts = 0, segment_length = 0, inference_k = 0, expert_d_ff = 0;
  Level level = Level::Token;
  InferenceRouting inference_routing = InferenceRouting::TokenTopK;
  bool inference_renormalize = false;
  Implementation implementation = Implementation::Grouped;
  double capacity_factor = 0, router_init_std = 0;
};

const lory::ParamDeclaration<Options>& params() {
  static const auto declaration =
      lory::ParamDeclaration<Options>("router.expert_choice")
          .integer("experts", &Options::experts, 8, 1, 1024, "E: experts per FFN layer")
          .real("capacity_factor", &Options::capacity_factor, 1, 0.01, 1024,
                "each expert takes capacity_factor * units / E units (1 = as many expert passes as "
                "tokens)")
          .choice("level", &Options::level, {{"token", Level::Token}, {"segment", Level::Segment}},
                  Level::Token,
                  "what experts choose: tokens, or whole segments scored by their mean")
          .integer("segment_length", &Options::segment_length, 256, 1, 1 << 20,
                   "T of the segment level")
          .choice("inference_routing", &Options::inference_routing,
                  {{"token_topk", InferenceRouting::TokenTopK},
                   {"expert_choice", InferenceRouting::ExpertChoice}},
                  InferenceRouting::TokenTopK,
                  "rule outside training: causal token top-k, or expert choice as in training")
          .integer("inference_k", &Options::inference_k, 1, 1, 1024,
                   "k of the token top-k inference rule")
          .flag("inference_renormalize", &Options::inference_renormalize, false,
                "token top-k inference: rescale the k chosen gates to sum to 1 (default: softmax "
                "scores, as in "
                "training)")
          .integer("expert_d_ff", &Options::expert_d_ff, 0, 0, 1 << 20,
                   "FFN width of each expert; 0 = the model's d_ff")
          .real("router_init_std", &Options::router_init_std, 0.02, 0, 1,
                "std of the router's normal init")
          .choice("implementation", &Options::implementation,
                  {{"grouped", Implementation::Grouped}, {"naive", Implementation::Naive}},
                  Implementation::Grouped,
                  "grouped = one GEMM chain per expert; naive = per-token reference")
          .rule([](const Options& o) -> std::vector<lory::ParamProblem> {
            if (o.inference_k > o.experts) {
              return {{"inference_k", "inference_k = " + std::to_string(o.inference_k) +
                                          " exceeds experts = " + std::to_string(o.experts)}};
            }
            return {};
          });
  return declaration;
}

Options read_options(const lory::ParamValues& values, const lory::FeedForwardSpec& spec) {
  Options o = params().read(values);
  if (o.expert_d_ff == 0) o.expert_d_ff = spec.d_ff;
  return o;
}

class ExpertChoiceFeedForward final : public lory::ExpertRouterLayer<Options> {
 public:
  ExpertChoiceFeedForward(const lory::FeedForwardSpec& spec, Options options)
      : ExpertRouterLayer(spec, options, options.expert_d_ff) {}

  torch::Tensor forward(const torch::Tensor& h_BLD, lory::RoutingContext& context) override {
    const int64_t B = h_BLD.size(0), L = h_BLD.size(1), D = h_BLD.size(2), E = options_.experts;
    const torch::Tensor h_XD = h_BLD.reshape({B * L, D});
    // Outside training the causal rule is used for every evaluation mode (see lory::EvalRouting).
    const bool token_topk =
        !context.training() && options_.inference_routing == InferenceRouting::TokenTopK;
    torch::Tensor probs_XE;
    lory::ExpertAssignments assignments;
    if (token_topk) {
      probs_XE = torch::softmax(lory::router_logits(h_XD, router_ED), -1);
      assignments = choose_by_tokens(probs_XE);
    } else if (options_.level == Level::Segment) {
      std::tie(assignments, probs_XE) = choose_segments(h_BLD);
    } else {
      probs_XE = torch::softmax(lory::router_logits(h_XD, router_ED), -1);
      assignments = choose_units(
          probs_XE,
          torch::arange(B * L, torch::dtype(torch::kInt64).device(h_XD.device())).view({-1, 1}));
    }
    const torch::Tensor y_XD =
        options_.implementation == Implementation::Naive
            ? lory::dispatch_to_experts_reference(h_XD, assignments, experts_)
            : lory::dispatch_to_experts(h_XD, assignments, experts_);
    if (context.recording()) {
      const torch::Tensor weights_BLE =
          lory::assignment_weights(assignments, B * L, E).view({B, L, E});
      // "Dropped" for expert choice: tokens that no expert chose.
      const int64_t unrouted = (weights_BLE.sum(-1) == 0).sum().item<int64_t>();
      const torch::Tensor load_E = lory::tokens_per_expert(assignments, E);
      lory::record_routing(
          context, layer_, weights_BLE,
          lory::dispatch_statistics(probs_XE.detach(), load_E, B * L - unrouted, unrouted), load_E);
    }
    return y_XD.view({B, L, D});
  }

  // Outside training the token top-k rule routes each token on its own; the expert-choice rule
  // compares tokens across the batch.
  bool supports_incremental_decoding() const override {
    return options_.inference_routing == InferenceRouting::TokenTopK;
  }

  std::string export_layout_json() const override {
    nlohmann::json layout = expert_layer_layout("expert_choice", params().to_json(options_));
    layout["inference_rule"] =
        "token_topk: p = softmax(h @ router_ED.T); each token goes to its inference_k largest p "
        "with gate p (divided "
        "by their sum when inference_renormalize); y = sum of gate * SwiGLU_e(h)";
    layout["training_rule"] =
        "each expert takes the capacity_factor * units / E units (tokens or segments scored by "
        "their mean) of the "
        "batch with the highest p; not causal";
    return layout.dump();
  }
  // On average a token is processed by capacity_factor experts.
  int64_t active_parameter_count() const override {
    return static_cast<int64_t>(
               std::llround(options_.capacity_factor *
                            static_cast<double>(experts_.w_gate_EFD[0].numel() * 3))) +
           router_ED.numel();
  }
  void upcycle_from(const lory::DenseFFNWeights& dense) override {
    lory::copy_dense_into_experts(experts_, dense);
  }

 private:
  // Every expert takes its C highest-scoring units; unit u covers the tokens unit_tokens_UT[u]
  // (-1 = padding). Scores are probs_UE.
  lory::ExpertAssignments choose_units(const torch::Tensor& probs_UE,
                                       const torch::Tensor& unit_tokens_UT) const {
    const int64_t U = probs_UE.size(0), E = options_.experts;
    const int64_t capacity = std::clamp<int64_t>(
        static_cast<int64_t>(std::llround(options_.capacity_factor * static_cast<double>(U) /
                                          static_cast<double>(E))),
        1, U);
    const auto [gates_CE, units_CE] = probs_UE.topk(capacity, 0);
    const torch::Tensor unit_A = units_CE.t().reshape({-1});  // expert-major
    const torch::Tensor expert_A =
        torch::arange(E, torch::dtype(torch::kInt64).device(probs_UE.device()))
            .repeat_interleave(capacity);
    const torch::Tensor gate_A = gates_CE.t().reshape({-1});
    const int64_t T = unit_tokens_UT.size(1);
    const torch::Tensor tokens_AT = unit_tokens_UT.index_select(0, unit_A);
    const torch::Tensor real_AT = tokens_AT >= 0;
    return {tokens_AT.masked_select(real_AT),
            expert_A.unsqueeze(1).expand({-1, T}).masked_select(real_AT),
            gate_A.unsqueeze(1).expand({-1, T}).masked_select(real_AT)};
  }

  // Segment level: units are segments of each sequence, scored by their mean hidden state.
  std::pair<lory::ExpertAssignments, torch::Tensor> choose_segments(
      const torch::Tensor& h_BLD) const {
    const int64_t B = h_BLD.size(0), L = h_BLD.size(1), D = h_BLD.size(2);
    const int64_t T = std::min(options_.segment_length, L), N = (L + T - 1) / T;
    const auto index_options = torch::dtype(torch::kInt64).device(h_BLD.device());
    torch::Tensor position_NT = torch::arange(N * T, index_options).view({N, T});
    const torch::Tensor real_NT = position_NT < L;
    const torch::Tensor token_BNT = torch::where(
        real_NT.unsqueeze(0),
        position_NT.unsqueeze(0) + (torch::arange(B, index_options) * L).view({B, 1, 1}),
        torch::full({}, -1, index_options));
    const torch::Tensor padded_BLD =
        N * T > L ? torch::cat({h_BLD, torch::zeros({B, N * T - L, D}, h_BLD.options())}, 1)
                  : h_BLD;
    const torch::Tensor counts_N = real_NT.sum(1).to(h_BLD.dtype());
    const torch::Tensor mean_SD =
        (padded_BLD.view({B, N, T, D}).sum(2) / counts_N.view({1, N, 1})).reshape({B * N, D});
    const torch::Tensor probs_SE = torch::softmax(lory::router_logits(mean_SD, router_ED), -1);
    return {choose_units(probs_SE, token_BNT.reshape({B * N, T})), probs_SE};
  }

  // Inference: token choice with the same router. The gates are the softmax scores, as in
  // training (an expert's output is scaled by the token's score there too); renormalising over
  // the k chosen is an option: with k = 1 it makes every gate 1, several times the scale the
  // model was trained with.
  lory::ExpertAssignments choose_by_tokens(const torch::Tensor& probs_XE) const {
    const int64_t X = probs_XE.size(0), k = options_.inference_k;
    const auto [values_XK, experts_XK] = probs_XE.topk(k, -1);
    const torch::Tensor gates_XK =
        options_.inference_renormalize ? values_XK / values_XK.sum(-1, true) : values_XK;
    return {torch::arange(X, torch::dtype(torch::kInt64).device(probs_XE.device()))
                .repeat_interleave(k),
            experts_XK.reshape({-1}), gates_XK.reshape({-1})};
  }
};

std::unique_ptr<lory::RouterPlugin> create() {
  return std::make_unique<lory::RouterPluginOf<ExpertChoiceFeedForward, read_options>>();
}

}  // namespace lory_plugins::expert_choice

LORY_DECLARED_PLUGIN(
    LORY_PLUGIN_ROUTER, "expert_choice",
    "Expert choice: each expert picks its top tokens or segments (not causal; token top-k at "
    "inference)",
    lory_plugins::expert_choice::params)
LORY_ROUTER_FACTORY(lory_plugins::expert_choice::create)
