// The `topk` router: token choice. A linear router scores every token, each token goes to its k
// best experts (softmax or sigmoid gates, optionally renormalised over the k), experts run one
// GEMM chain over the tokens grouped to them. Options: capacity per expert with a drop policy, a
// Switch-style load-balancing loss (default weight 0.01), router z-loss, input jitter.
//
// Capacity and causality: with drop_policy = "position" the tokens that compete for an expert's
// slots are ranked by position first (then first choices before second, then batch row), so
// whether a token is dropped never depends on later positions: the layer stays causal.
// drop_policy = "weight" keeps the highest gates instead, which looks at the whole batch and is
// not causal.
#include <fmt/format.h>

#include <cmath>

#include "lory/expert_dispatch.h"
#include "lory/plugin.h"
#include "lory/router_api.h"

namespace lory_plugins::topk {

struct Options {
  int64_t experts, k, expert_d_ff;
  bool sigmoid_gate, renormalize, drop_by_weight, naive;
  double capacity_factor, balance_loss_weight, z_loss_weight, jitter, router_init_std, gate_scale;
};

std::vector<lory::ParamProblem> check(const lory::ParamValues& p) {
  if (p.get_int("k") > p.get_int("experts")) {
    return {{"k", fmt::format("k = {} exceeds experts = {} (each token picks k distinct experts)", p.get_int("k"),
                              p.get_int("experts"))}};
  }
  return {};
}

Options read_options(const lory::ParamValues& p, const lory::FeedForwardSpec& spec) {
  lory::throw_param_problems("router.topk", check(p));
  Options o{};
  o.experts = p.get_int("experts");
  o.k = p.get_int("k");
  o.expert_d_ff = p.get_int("expert_d_ff") > 0 ? p.get_int("expert_d_ff") : spec.d_ff;
  o.sigmoid_gate = p.get_string("gate") == "sigmoid";
  o.renormalize = p.get_bool("renormalize");
  o.drop_by_weight = p.get_string("drop_policy") == "weight";
  o.naive = p.get_string("implementation") == "naive";
  o.capacity_factor = p.get_float("capacity_factor");
  o.balance_loss_weight = p.get_float("balance_loss_weight");
  o.z_loss_weight = p.get_float("z_loss_weight");
  o.jitter = p.get_float("jitter");
  o.router_init_std = p.get_float("router_init_std");
  o.gate_scale = p.get_float("gate_scale");
  return o;
}

class TopKFeedForward final : public lory::ExpertRouterLayer<Options> {
 public:
  TopKFeedForward(const lory::FeedForwardSpec& spec, Options options)
      : ExpertRouterLayer(spec, options, options.expert_d_ff) {}

  torch::Tensor forward(const torch::Tensor& h_BLD, lory::RoutingContext& context) override {
    const int64_t B = h_BLD.size(0), L = h_BLD.size(1), D = h_BLD.size(2), E = options_.experts, k = options_.k;
    const int64_t X = B * L;
    const torch::Tensor h_XD = h_BLD.reshape({X, D});
    torch::Tensor router_in_XD = h_XD;
    if (context.training() && options_.jitter > 0) {
      router_in_XD = h_XD * torch::empty_like(h_XD).uniform_(1 - options_.jitter, 1 + options_.jitter);
    }
    const torch::Tensor logits_XE = lory::router_logits(router_in_XD, router_ED);
    const torch::Tensor probs_XE = options_.sigmoid_gate ? torch::sigmoid(logits_XE) : torch::softmax(logits_XE, -1);
    const auto [top_values_XK, top_experts_XK] = probs_XE.topk(k, -1);
    torch::Tensor gates_XK = top_values_XK;
    // Only over several choices: with k = 1 a renormalised gate is always 1, and the router would
    // get no gradient from the LM loss at all (Switch Transformer keeps the raw probability).
    if (options_.renormalize && k > 1) gates_XK = gates_XK / gates_XK.sum(-1, true);
    // A constant on every gate (DeepSeek-V2/V3's routed scaling factor). Upcycled top-1 needs it:
    // a fresh router's softmax gives every expert about 1/E, so without it the upcycled layer's
    // output drops to about 1/E of the dense FFN's at the upcycling step.
    if (options_.gate_scale != 1.0) gates_XK = gates_XK * options_.gate_scale;

    lory::ExpertAssignments assignments{torch::arange(X, torch::dtype(torch::kInt64).device(h_XD.device())).repeat_interleave(k),
                                        top_experts_XK.reshape({-1}), gates_XK.reshape({-1})};
    const int64_t proposed = assignments.token_A.size(0);
    if (options_.capacity_factor > 0) {
      const int64_t capacity = static_cast<int64_t>(
          std::ceil(options_.capacity_factor * static_cast<double>(X * k) / static_cast<double>(E)));
      torch::Tensor priority_A;
      if (options_.drop_by_weight) {
        priority_A = -assignments.gate_A.detach();
      } else {
        // Position first, then choice rank, then batch row: earlier positions always win.
        const torch::Tensor position_A = (assignments.token_A % L).to(torch::kFloat64);
        const torch::Tensor batch_A = assignments.token_A.div(L, "floor").to(torch::kFloat64);
        const torch::Tensor rank_A = torch::arange(k, torch::dtype(torch::kFloat64).device(h_XD.device())).repeat({X});
        priority_A = position_A * static_cast<double>(k * B) + rank_A * static_cast<double>(B) + batch_A;
      }
      assignments = lory::apply_capacity(assignments, priority_A, E, capacity);
    }
        const torch::Tensor y_XD = options_.naive ? lory::dispatch_to_experts_reference(h_XD, assignments, experts_)
                                              : lory::dispatch_to_experts(h_XD, assignments, experts_);

    if (context.training()) add_aux_losses(logits_XE, probs_XE, top_experts_XK, context);
    if (context.recording()) {
      lory::RoutingRecord record;
      record.layer = layer_;
      record.expert_count = E;
      record.weights_BLE = torch::zeros({X, E}, h_XD.options().dtype(torch::kFloat32))
                               .index_put_({assignments.token_A, assignments.expert_A},
                                           assignments.gate_A.detach().to(torch::kFloat32), /*accumulate=*/true)
                               .view({B, L, E});
      record.stats = lory::dispatch_statistics(probs_XE.detach(), lory::tokens_per_expert(assignments, E),
                                               assignments.token_A.size(0), proposed - assignments.token_A.size(0));
      context.add_record(std::move(record));
    }
    return y_XD.view({B, L, D});
  }

  // Each token's output depends on that token alone, unless a capacity makes tokens compete.
  bool supports_incremental_decoding() const override { return options_.capacity_factor == 0; }

  std::string export_layout_json() const override {
    return fmt::format(
        R"json({{"router": "topk", "experts": {}, "k": {}, "d_ff": {}, "gate": "{}", "renormalize": {}, "gate_scale": {},
"capacity_factor": {},
"tensors": {{"w_gate_EFD": "[E, F, D] expert e's W_gate at [e]", "w_up_EFD": "[E, F, D]", "w_down_EDF": "[E, D, F]", "router_ED": "[E, D] router, no bias: logits = h @ router_ED.T"}},
"rule": "p = gate(h @ router_ED.T) (softmax or sigmoid); each token goes to its k largest p; gate g = p (divided by the sum of the k chosen when renormalize and k > 1) times gate_scale; y = sum over chosen e of g_e * SwiGLU_e(h), SwiGLU_e(h) = (silu(h @ w_gate_EFD[e].T) * (h @ w_up_EFD[e].T)) @ w_down_EDF[e].T; capacity_factor 0 = no token dropped"}})json",
        options_.experts, options_.k, experts_.w_gate_EFD.size(1), options_.sigmoid_gate ? "sigmoid" : "softmax",
        options_.renormalize ? "true" : "false", options_.gate_scale, options_.capacity_factor);
  }
  int64_t active_parameter_count() const override {
    return options_.k * experts_.w_gate_EFD[0].numel() * 3 + router_ED.numel();
  }
  void upcycle_from(const lory::DenseFFNWeights& dense) override { lory::copy_dense_into_experts(experts_, dense); }

 private:
  // Switch Transformer's balance loss generalised to k choices: E * sum_e f_e P_e, with f_e the
  // fraction of the X*k choices (before capacity) that picked e and P_e the mean router
  // probability of e. It is 1 under perfect balance. Router z-loss: mean logsumexp(logits)^2.
  void add_aux_losses(const torch::Tensor& logits_XE, const torch::Tensor& probs_XE, const torch::Tensor& top_experts_XK,
                      lory::RoutingContext& context) const {
    const int64_t E = options_.experts;
    if (options_.balance_loss_weight > 0) {
      const torch::Tensor distribution_XE = options_.sigmoid_gate ? probs_XE / probs_XE.sum(-1, true) : probs_XE;
      const torch::Tensor fraction_E =
          torch::bincount(top_experts_XK.reshape({-1}), {}, E).to(probs_XE.dtype()) / static_cast<double>(top_experts_XK.numel());
      const torch::Tensor balance = static_cast<double>(E) * (fraction_E * distribution_XE.mean(0)).sum();
      context.add_aux_loss(layer_, "balance", balance * options_.balance_loss_weight, balance.item<double>());
    }
    if (options_.z_loss_weight > 0) {
      const torch::Tensor z = torch::logsumexp(logits_XE, -1).pow(2).mean();
      context.add_aux_loss(layer_, "z", z * options_.z_loss_weight, z.item<double>());
    }
  }

};

std::unique_ptr<lory::RouterPlugin> create() {
  return std::make_unique<lory::RouterPluginOf<TopKFeedForward, read_options>>();
}

const LoryParamSpec kParams[] = {
    {"experts", LORY_PARAM_INT, "8", 1, 1024, nullptr, "E: experts per FFN layer"},
    {"k", LORY_PARAM_INT, "2", 1, 1024, nullptr, "experts per token (k <= E)"},
    {"expert_d_ff", LORY_PARAM_INT, "0", 0, 1 << 20, nullptr,
     "FFN width of each expert; 0 = the model's d_ff (top-2 with half width matches dense FLOPs)"},
    {"gate", LORY_PARAM_STRING, "softmax", -LORY_UNBOUNDED, LORY_UNBOUNDED, "softmax|sigmoid", "router nonlinearity"},
    {"renormalize", LORY_PARAM_BOOL, "true", -LORY_UNBOUNDED, LORY_UNBOUNDED, nullptr,
     "rescale the k chosen gates to sum to 1 (k > 1 only: with k = 1 the gate stays the raw probability)"},
    {"capacity_factor", LORY_PARAM_FLOAT, "0", 0, 1000, nullptr,
     "expert capacity = ceil(factor * tokens * k / E); 0 = dropless"},
    {"drop_policy", LORY_PARAM_STRING, "position", -LORY_UNBOUNDED, LORY_UNBOUNDED, "position|weight",
     "who fits when an expert is full: earlier positions (causal) or the highest gates (not causal)"},
    {"balance_loss_weight", LORY_PARAM_FLOAT, "0.01", 0, 100, nullptr, "Switch-style load-balancing loss weight"},
    {"z_loss_weight", LORY_PARAM_FLOAT, "0", 0, 100, nullptr, "router z-loss weight (ST-MoE)"},
    {"jitter", LORY_PARAM_FLOAT, "0", 0, 1, nullptr, "multiplicative uniform noise on the router input in training"},
    {"router_init_std", LORY_PARAM_FLOAT, "0.02", 0, 1, nullptr, "std of the router's normal init"},
    {"gate_scale", LORY_PARAM_FLOAT, "1", 1e-6, 1e6, nullptr,
     "multiplies every gate (DeepSeek's routed scaling factor); = experts makes an upcycled top-1 layer start at "
     "about the dense FFN's output instead of 1/E of it"},
    {"implementation", LORY_PARAM_STRING, "grouped", -LORY_UNBOUNDED, LORY_UNBOUNDED, "grouped|naive",
     "grouped = one GEMM chain per expert; naive = per-token reference"},
};

}  // namespace lory_plugins::topk

LORY_PLUGIN_METADATA(LORY_PLUGIN_ROUTER, "topk",
                     "Token choice: each token goes to its k best experts (capacity, balance and z losses)",
                     lory_plugins::topk::kParams)
LORY_ROUTER_FACTORY(lory_plugins::topk::create)
LORY_PARAM_CHECK(lory_plugins::topk::check)
