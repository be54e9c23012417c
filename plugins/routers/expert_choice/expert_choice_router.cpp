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
#include <fmt/format.h>

#include <cmath>

#include "lory/expert_dispatch.h"
#include "lory/plugin.h"
#include "lory/router_api.h"

namespace lory_plugins::expert_choice {

struct Options {
  int64_t experts, segment_length, inference_k, expert_d_ff;
  bool segment_level, topk_inference, inference_renormalize, naive;
  double capacity_factor, router_init_std;
};

std::vector<lory::ParamProblem> check(const lory::ParamValues& p) {
  if (p.get_int("inference_k") > p.get_int("experts")) {
    return {{"inference_k", fmt::format("inference_k = {} exceeds experts = {}", p.get_int("inference_k"),
                                        p.get_int("experts"))}};
  }
  return {};
}

Options read_options(const lory::ParamValues& p, const lory::FeedForwardSpec& spec) {
  lory::throw_param_problems("router.expert_choice", check(p));
  Options o{};
  o.experts = p.get_int("experts");
  o.segment_length = p.get_int("segment_length");
  o.inference_k = p.get_int("inference_k");
  o.expert_d_ff = p.get_int("expert_d_ff") > 0 ? p.get_int("expert_d_ff") : spec.d_ff;
  o.segment_level = p.get_string("level") == "segment";
  o.topk_inference = p.get_string("inference_routing") == "token_topk";
  o.inference_renormalize = p.get_bool("inference_renormalize");
  o.naive = p.get_string("implementation") == "naive";
  o.capacity_factor = p.get_float("capacity_factor");
  o.router_init_std = p.get_float("router_init_std");
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
    const bool token_topk = !context.training() && options_.topk_inference;
    torch::Tensor probs_XE;
    lory::ExpertAssignments assignments;
    if (token_topk) {
      probs_XE = torch::softmax(lory::router_logits(h_XD, router_ED), -1);
      assignments = choose_by_tokens(probs_XE);
    } else if (options_.segment_level) {
      std::tie(assignments, probs_XE) = choose_segments(h_BLD);
    } else {
      probs_XE = torch::softmax(lory::router_logits(h_XD, router_ED), -1);
      assignments = choose_units(probs_XE, torch::arange(B * L, torch::dtype(torch::kInt64).device(h_XD.device())).view({-1, 1}));
    }
        const torch::Tensor y_XD = options_.naive ? lory::dispatch_to_experts_reference(h_XD, assignments, experts_)
                                              : lory::dispatch_to_experts(h_XD, assignments, experts_);
    if (context.recording()) {
      lory::RoutingRecord record;
      record.layer = layer_;
      record.expert_count = E;
      record.weights_BLE = torch::zeros({B * L, E}, h_XD.options().dtype(torch::kFloat32))
                               .index_put_({assignments.token_A, assignments.expert_A},
                                           assignments.gate_A.detach().to(torch::kFloat32), true)
                               .view({B, L, E});
      // "Dropped" for expert choice: tokens that no expert chose.
      const int64_t unrouted = (record.weights_BLE.sum(-1) == 0).sum().item<int64_t>();
      record.stats = lory::dispatch_statistics(probs_XE.detach(), lory::tokens_per_expert(assignments, E),
                                               B * L - unrouted, unrouted);
      context.add_record(std::move(record));
    }
    return y_XD.view({B, L, D});
  }

  // Outside training the token top-k rule routes each token on its own; the expert-choice rule
  // compares tokens across the batch.
  bool supports_incremental_decoding() const override { return options_.topk_inference; }

  std::string export_layout_json() const override {
    return fmt::format(
        R"json({{"router": "expert_choice", "experts": {}, "d_ff": {}, "level": "{}", "segment_length": {},
"inference_routing": "{}", "inference_k": {}, "inference_renormalize": {},
"tensors": {{"w_gate_EFD": "[E, F, D] expert e's W_gate at [e]", "w_up_EFD": "[E, F, D]", "w_down_EDF": "[E, D, F]", "router_ED": "[E, D] router, no bias: logits = h @ router_ED.T"}},
"inference_rule": "token_topk: p = softmax(h @ router_ED.T); each token goes to its inference_k largest p with gate p (divided by their sum when inference_renormalize); y = sum of gate * SwiGLU_e(h)",
"training_rule": "each expert takes the capacity_factor * units / E units (tokens or segments scored by their mean) of the batch with the highest p; not causal"}})json",
        options_.experts, experts_.w_gate_EFD.size(1), options_.segment_level ? "segment" : "token",
        options_.segment_length, options_.topk_inference ? "token_topk" : "expert_choice", options_.inference_k,
        options_.inference_renormalize ? "true" : "false");
  }
  // On average a token is processed by capacity_factor experts.
  int64_t active_parameter_count() const override {
    return static_cast<int64_t>(std::llround(options_.capacity_factor * static_cast<double>(experts_.w_gate_EFD[0].numel() * 3))) +
           router_ED.numel();
  }
  void upcycle_from(const lory::DenseFFNWeights& dense) override { lory::copy_dense_into_experts(experts_, dense); }

 private:
  // Every expert takes its C highest-scoring units; unit u covers the tokens unit_tokens_UT[u]
  // (-1 = padding). Scores are probs_UE.
  lory::ExpertAssignments choose_units(const torch::Tensor& probs_UE, const torch::Tensor& unit_tokens_UT) const {
    const int64_t U = probs_UE.size(0), E = options_.experts;
    const int64_t capacity = std::clamp<int64_t>(
        static_cast<int64_t>(std::llround(options_.capacity_factor * static_cast<double>(U) / static_cast<double>(E))),
        1, U);
    const auto [gates_CE, units_CE] = probs_UE.topk(capacity, 0);
    const torch::Tensor unit_A = units_CE.t().reshape({-1});          // expert-major
    const torch::Tensor expert_A = torch::arange(E, torch::dtype(torch::kInt64).device(probs_UE.device())).repeat_interleave(capacity);
    const torch::Tensor gate_A = gates_CE.t().reshape({-1});
    const int64_t T = unit_tokens_UT.size(1);
    const torch::Tensor tokens_AT = unit_tokens_UT.index_select(0, unit_A);
    const torch::Tensor real_AT = tokens_AT >= 0;
    return {tokens_AT.masked_select(real_AT), expert_A.unsqueeze(1).expand({-1, T}).masked_select(real_AT),
            gate_A.unsqueeze(1).expand({-1, T}).masked_select(real_AT)};
  }

  // Segment level: units are segments of each sequence, scored by their mean hidden state.
  std::pair<lory::ExpertAssignments, torch::Tensor> choose_segments(const torch::Tensor& h_BLD) const {
    const int64_t B = h_BLD.size(0), L = h_BLD.size(1), D = h_BLD.size(2);
    const int64_t T = std::min(options_.segment_length, L), N = (L + T - 1) / T;
    const auto index_options = torch::dtype(torch::kInt64).device(h_BLD.device());
    torch::Tensor position_NT = torch::arange(N * T, index_options).view({N, T});
    const torch::Tensor real_NT = position_NT < L;
    const torch::Tensor token_BNT =
        torch::where(real_NT.unsqueeze(0), position_NT.unsqueeze(0) + (torch::arange(B, index_options) * L).view({B, 1, 1}),
                     torch::full({}, -1, index_options));
    const torch::Tensor padded_BLD =
        N * T > L ? torch::cat({h_BLD, torch::zeros({B, N * T - L, D}, h_BLD.options())}, 1) : h_BLD;
    const torch::Tensor counts_N = real_NT.sum(1).to(h_BLD.dtype());
    const torch::Tensor mean_SD = (padded_BLD.view({B, N, T, D}).sum(2) / counts_N.view({1, N, 1})).reshape({B * N, D});
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
    const torch::Tensor gates_XK = options_.inference_renormalize ? values_XK / values_XK.sum(-1, true) : values_XK;
    return {torch::arange(X, torch::dtype(torch::kInt64).device(probs_XE.device())).repeat_interleave(k), experts_XK.reshape({-1}), gates_XK.reshape({-1})};
  }

};

std::unique_ptr<lory::RouterPlugin> create() {
  return std::make_unique<lory::RouterPluginOf<ExpertChoiceFeedForward, read_options>>();
}

const LoryParamSpec kParams[] = {
    {"experts", LORY_PARAM_INT, "8", 1, 1024, nullptr, "E: experts per FFN layer"},
    {"capacity_factor", LORY_PARAM_FLOAT, "1", 0.01, 1024, nullptr,
     "each expert takes capacity_factor * units / E units (1 = as many expert passes as tokens)"},
    {"level", LORY_PARAM_STRING, "token", -LORY_UNBOUNDED, LORY_UNBOUNDED, "token|segment",
     "what experts choose: tokens, or whole segments scored by their mean"},
    {"segment_length", LORY_PARAM_INT, "256", 1, 1 << 20, nullptr, "T of the segment level"},
    {"inference_routing", LORY_PARAM_STRING, "token_topk", -LORY_UNBOUNDED, LORY_UNBOUNDED,
     "token_topk|expert_choice", "rule outside training: causal token top-k, or expert choice as in training"},
    {"inference_k", LORY_PARAM_INT, "1", 1, 1024, nullptr, "k of the token top-k inference rule"},
    {"inference_renormalize", LORY_PARAM_BOOL, "false", -LORY_UNBOUNDED, LORY_UNBOUNDED, nullptr,
     "token top-k inference: rescale the k chosen gates to sum to 1 (default: softmax scores, as in training)"},
    {"expert_d_ff", LORY_PARAM_INT, "0", 0, 1 << 20, nullptr, "FFN width of each expert; 0 = the model's d_ff"},
    {"router_init_std", LORY_PARAM_FLOAT, "0.02", 0, 1, nullptr, "std of the router's normal init"},
    {"implementation", LORY_PARAM_STRING, "grouped", -LORY_UNBOUNDED, LORY_UNBOUNDED, "grouped|naive",
     "grouped = one GEMM chain per expert; naive = per-token reference"},
};

}  // namespace lory_plugins::expert_choice

LORY_PLUGIN_METADATA(LORY_PLUGIN_ROUTER, "expert_choice",
                     "Expert choice: each expert picks its top tokens or segments (not causal; token top-k at "
                     "inference)",
                     lory_plugins::expert_choice::kParams)
LORY_ROUTER_FACTORY(lory_plugins::expert_choice::create)
LORY_PARAM_CHECK(lory_plugins::expert_choice::check)
