// The `topk` router: token choice. A linear router scores every token, each token goes to its k
// best experts (softmax or sigmoid gates, optionally renormalised over the k), experts run one
// GEMM chain over the tokens grouped to them. Options: capacity per expert with a drop policy, a
// Switch-style load-balancing loss (default weight 0.01), router z-loss, input jitter, and the
// recipes of current token-level MoEs:
//  - fine-grained experts (DeepSeekMoE): `granularity` m splits each expert into m experts of
//    width d_ff / m; with k multiplied by m the active size stays the same;
//  - shared experts (DeepSeekMoE): `shared_experts` always-on experts beside the routed ones,
//    added to every token's output ungated;
//  - auxiliary-loss-free balancing (Wang et al., 2024): a per-expert bias added to the scores for
//    the choice of experts only (the gates stay the unbiased scores), moved after every optimizer
//    step by `bias_update_rate` times the sign of the expert's load error over the step's batch
//    (all data-parallel ranks together) and recentred to mean zero.
//
// Capacity and causality: with drop_policy = "position" the tokens that compete for an expert's
// slots are ranked by position first (then first choices before second, then batch row), so
// whether a token is dropped never depends on later positions: the layer stays causal.
// drop_policy = "weight" keeps the highest gates instead, which looks at the whole batch and is
// not causal. The balancing bias changes only between optimizer steps, so within a forward every
// token's choice depends on that token alone.
#include <nlohmann/json.hpp>

#include <cmath>

#include "lory/core/param_declaration.h"
#include "lory/core/plugin.h"
#include "lory/nn/expert_dispatch.h"
#include "lory/nn/router_api.h"

namespace lory_plugins::topk {

enum class Gate { Softmax, Sigmoid };
enum class DropPolicy { Position, Weight };
enum class Implementation { Grouped, Naive };

struct Options {
  int64_t experts = 0, k = 0, expert_d_ff = 0, granularity = 1, shared_experts = 0, shared_d_ff = 0;
  Gate gate = Gate::Softmax;
  DropPolicy drop_policy = DropPolicy::Position;
  Implementation implementation = Implementation::Grouped;
  bool renormalize = true;
  double capacity_factor = 0, balance_loss_weight = 0, z_loss_weight = 0, jitter = 0,
         router_init_std = 0, gate_scale = 1, bias_update_rate = 0;
};

const lory::ParamDeclaration<Options>& params() {
  static const auto declaration =
      lory::ParamDeclaration<Options>("router.topk")
          .integer("experts", &Options::experts, 8, 1, 1024, "E: routed experts per FFN layer")
          .integer("k", &Options::k, 2, 1, 1024, "experts per token (k <= E)")
          .integer("expert_d_ff", &Options::expert_d_ff, 0, 0, 1 << 20,
                   "FFN width of each expert; 0 = the model's d_ff / granularity (top-2 with half "
                   "width matches "
                   "dense FLOPs)")
          .integer("granularity", &Options::granularity, 1, 1, 1024,
                   "fine-grained experts (DeepSeekMoE): with expert_d_ff = 0 each expert is d_ff / "
                   "granularity "
                   "wide; set experts and k to granularity times a coarse layer's to keep its "
                   "total and active "
                   "size")
          .integer("shared_experts", &Options::shared_experts, 0, 0, 1024,
                   "always-on experts beside the routed ones (DeepSeekMoE), each shared_d_ff wide, "
                   "added to every "
                   "token's output without a gate")
          .integer("shared_d_ff", &Options::shared_d_ff, 0, 0, 1 << 20,
                   "FFN width of each shared expert; 0 = the routed experts' width")
          .choice("gate", &Options::gate, {{"softmax", Gate::Softmax}, {"sigmoid", Gate::Sigmoid}},
                  Gate::Softmax, "router nonlinearity")
          .flag("renormalize", &Options::renormalize, true,
                "rescale the k chosen gates to sum to 1 (k > 1 only: with k = 1 the gate stays the "
                "raw "
                "probability)")
          .real("capacity_factor", &Options::capacity_factor, 0, 0, 1000,
                "expert capacity = ceil(factor * tokens * k / E); 0 = dropless")
          .choice("drop_policy", &Options::drop_policy,
                  {{"position", DropPolicy::Position}, {"weight", DropPolicy::Weight}},
                  DropPolicy::Position,
                  "who fits when an expert is full: earlier positions (causal) or the highest "
                  "gates (not causal)")
          .real("balance_loss_weight", &Options::balance_loss_weight, 0.01, 0, 100,
                "Switch balance loss weight; the loss per layer is E * sum_e f_e P_e (1 when "
                "balanced): f_e the "
                "share of the tokens*k choices (before capacity) that picked e, P_e the mean "
                "normalised router "
                "score of e over the layer's tokens of the micro-batch; summed over layers, times "
                "this weight")
          .real("z_loss_weight", &Options::z_loss_weight, 0, 0, 100,
                "router z-loss weight (ST-MoE); the loss per layer is the mean over tokens of "
                "logsumexp(logits)^2, not divided by k; summed over layers, times this weight")
          .real("bias_update_rate", &Options::bias_update_rate, 0, 0, 1,
                "u of auxiliary-loss-free balancing (Wang et al. 2024; 0 = off, they use 0.001): "
                "after each "
                "optimizer step bias_e += u * sign(mean load - load_e) over the step's tokens (all "
                "micro-batches "
                "and ranks), recentred to mean 0; the bias shifts the choice of experts only, not "
                "the gates. "
                "Usually with balance_loss_weight = 0")
          .real("jitter", &Options::jitter, 0, 0, 1,
                "multiplicative uniform noise on the router input in training")
          .real("router_init_std", &Options::router_init_std, 0.02, 0, 1,
                "std of the router's normal init")
          .real("gate_scale", &Options::gate_scale, 1, 1e-6, 1e6,
                "multiplies every gate (DeepSeek's routed scaling factor); = experts makes an "
                "upcycled top-1 "
                "layer start at about the dense FFN's output instead of 1/E of it")
          .choice("implementation", &Options::implementation,
                  {{"grouped", Implementation::Grouped}, {"naive", Implementation::Naive}},
                  Implementation::Grouped,
                  "grouped = one GEMM chain per expert; naive = per-token reference")
          .rule([](const Options& o) -> std::vector<lory::ParamProblem> {
            if (o.k > o.experts) {
              return {{"k", "k = " + std::to_string(o.k) +
                                " exceeds experts = " + std::to_string(o.experts) +
                                " (each token picks k distinct experts)"}};
            }
            return {};
          });
  return declaration;
}

Options read_options(const lory::ParamValues& values, const lory::FeedForwardSpec& spec) {
  Options o = params().read(values);
  if (o.expert_d_ff == 0) {
    if (spec.d_ff % o.granularity != 0) {
      throw std::invalid_argument(
          "router.topk: granularity = " + std::to_string(o.granularity) +
          " does not divide the model's d_ff = " + std::to_string(spec.d_ff));
    }
    o.expert_d_ff = spec.d_ff / o.granularity;
  }
  if (o.shared_d_ff == 0) o.shared_d_ff = o.expert_d_ff;
  return o;
}

class TopKFeedForward final : public lory::ExpertRouterLayer<Options> {
 public:
  // The shared experts and the bias are registered after the routed experts and the router, so
  // that a configuration without them draws the same initial weights as before they existed.
  TopKFeedForward(const lory::FeedForwardSpec& spec, Options options)
      : ExpertRouterLayer(spec, options, options.expert_d_ff) {
    if (options_.shared_experts > 0) {
      // S shared SwiGLU experts of width f are one SwiGLU of width S * f: its hidden units split
      // into the S experts' and the down projection sums their outputs.
      const int64_t F = options_.shared_experts * options_.shared_d_ff, D = spec.d_model;
      shared_gate_FD = register_parameter("shared_gate_FD", torch::randn({F, D}) * spec.init_std);
      shared_up_FD = register_parameter("shared_up_FD", torch::randn({F, D}) * spec.init_std);
      shared_down_DF =
          register_parameter("shared_down_DF", torch::randn({D, F}) * spec.output_init_std);
    }
    if (options_.bias_update_rate > 0) {
      expert_bias_E = register_buffer("expert_bias_E", torch::zeros({options_.experts}));
      step_load_E = torch::zeros({options_.experts}, torch::kFloat64);
    }
  }

  torch::Tensor forward(const torch::Tensor& h_BLD, lory::RoutingContext& context) override {
    const int64_t B = h_BLD.size(0), L = h_BLD.size(1), D = h_BLD.size(2), E = options_.experts,
                  k = options_.k;
    const int64_t X = B * L;
    const torch::Tensor h_XD = h_BLD.reshape({X, D});
    torch::Tensor router_in_XD = h_XD;
    if (context.training() && options_.jitter > 0) {
      router_in_XD =
          h_XD * torch::empty_like(h_XD).uniform_(1 - options_.jitter, 1 + options_.jitter);
    }
    const torch::Tensor logits_XE = lory::router_logits(router_in_XD, router_ED);
    const torch::Tensor probs_XE =
        options_.gate == Gate::Sigmoid ? torch::sigmoid(logits_XE) : torch::softmax(logits_XE, -1);
    torch::Tensor top_experts_XK, gates_XK;
    if (expert_bias_E.defined()) {
      // The bias decides which experts; the gates are the unbiased scores of those experts.
      top_experts_XK =
          std::get<1>((probs_XE.detach() + expert_bias_E.to(probs_XE.dtype())).topk(k, -1));
      gates_XK = probs_XE.gather(-1, top_experts_XK);
    } else {
      std::tie(gates_XK, top_experts_XK) = probs_XE.topk(k, -1);
    }
    // Only over several choices: with k = 1 a renormalised gate is always 1, and the router would
    // get no gradient from the LM loss at all (Switch Transformer keeps the raw probability).
    if (options_.renormalize && k > 1) gates_XK = gates_XK / gates_XK.sum(-1, true);
    // A constant on every gate (DeepSeek-V2/V3's routed scaling factor). Upcycled top-1 needs it:
    // a fresh router's softmax gives every expert about 1/E, so without it the upcycled layer's
    // output drops to about 1/E of the dense FFN's at the upcycling step.
    if (options_.gate_scale != 1.0) gates_XK = gates_XK * options_.gate_scale;

    const auto index_options = torch::dtype(torch::kInt64).device(h_XD.device());
    lory::ExpertAssignments assignments{torch::arange(X, index_options).repeat_interleave(k),
                                        top_experts_XK.reshape({-1}), gates_XK.reshape({-1})};
    // The balancing bias's load: every choice, before capacity drops any (training only).
    if (step_load_E.defined() && context.training()) {
      step_load_E += lory::tokens_per_expert(assignments, E).to(torch::kFloat64).cpu();
    }
    const int64_t proposed = assignments.token_A.size(0);
    if (options_.capacity_factor > 0) {
      const int64_t capacity = static_cast<int64_t>(std::ceil(
          options_.capacity_factor * static_cast<double>(X * k) / static_cast<double>(E)));
      torch::Tensor priority_A;
      if (options_.drop_policy == DropPolicy::Weight) {
        priority_A = -assignments.gate_A.detach();
      } else {
        // Position first, then choice rank, then batch row: earlier positions always win.
        const torch::Tensor position_A = (assignments.token_A % L).to(torch::kFloat64);
        const torch::Tensor batch_A = assignments.token_A.div(L, "floor").to(torch::kFloat64);
        const torch::Tensor rank_A =
            torch::arange(k, index_options.dtype(torch::kFloat64)).repeat({X});
        priority_A =
            position_A * static_cast<double>(k * B) + rank_A * static_cast<double>(B) + batch_A;
      }
      assignments = lory::apply_capacity(assignments, priority_A, E, capacity);
    }
    torch::Tensor y_XD = options_.implementation == Implementation::Naive
                             ? lory::dispatch_to_experts_reference(h_XD, assignments, experts_)
                             : lory::dispatch_to_experts(h_XD, assignments, experts_);
    if (shared_gate_FD.defined())
      y_XD = y_XD + lory::swiglu(h_XD, shared_gate_FD, shared_up_FD, shared_down_DF);

    if (context.training()) {
      add_aux_losses(logits_XE, probs_XE, top_experts_XK, context);
    }
    if (context.recording()) {
      const torch::Tensor load_E = lory::tokens_per_expert(assignments, E);
      lory::record_routing(
          context, layer_, lory::assignment_weights(assignments, X, E).view({B, L, E}),
          lory::dispatch_statistics(probs_XE.detach(), load_E, assignments.token_A.size(0),
                                    proposed - assignments.token_A.size(0)),
          load_E);
    }
    return y_XD.view({B, L, D});
  }

  // Each token's output depends on that token alone, unless a capacity makes tokens compete.
  bool supports_incremental_decoding() const override { return options_.capacity_factor == 0; }

  std::vector<torch::Tensor> training_step_accumulators() override {
    return step_load_E.defined() ? std::vector<torch::Tensor>{step_load_E}
                                 : std::vector<torch::Tensor>{};
  }

  // Aux-loss-free balancing: an overloaded expert's bias goes down by u, an underloaded one's up
  // by u (sign of the load error over the whole step), then all are shifted to mean zero.
  void finish_training_step() override {
    if (!step_load_E.defined()) return;
    torch::NoGradGuard no_grad;
    const torch::Tensor error_E = step_load_E.mean() - step_load_E;
    expert_bias_E += (torch::sign(error_E) * options_.bias_update_rate)
                         .to(expert_bias_E.dtype())
                         .to(expert_bias_E.device());
    expert_bias_E -= expert_bias_E.mean();
    step_load_E.zero_();
  }

  std::string export_layout_json() const override {
    nlohmann::json layout = expert_layer_layout("topk", params().to_json(options_));
    if (shared_gate_FD.defined()) {
      layout["tensors"]["shared_gate_FD"] =
          "[S * shared_d_ff, D] the shared experts' W_gate, stacked";
      layout["tensors"]["shared_up_FD"] = "[S * shared_d_ff, D]";
      layout["tensors"]["shared_down_DF"] = "[D, S * shared_d_ff]";
    }
    if (expert_bias_E.defined())
      layout["tensors"]["expert_bias_E"] = "[E] balancing bias (a buffer)";
    layout["rule"] =
        "p = gate(h @ router_ED.T) (softmax or sigmoid); each token goes to its k largest p (p + "
        "expert_bias_E when "
        "bias_update_rate > 0); gate g = p (divided by the sum of the k chosen when renormalize "
        "and k > 1) times "
        "gate_scale; y = sum over chosen e of g_e * SwiGLU_e(h) + SwiGLU_shared(h) when "
        "shared_experts > 0, "
        "SwiGLU_e(h) = (silu(h @ w_gate_EFD[e].T) * (h @ w_up_EFD[e].T)) @ w_down_EDF[e].T; "
        "capacity_factor 0 = "
        "no token dropped";
    return layout.dump();
  }

  int64_t active_parameter_count() const override {
    int64_t active = options_.k * experts_.w_gate_EFD[0].numel() * 3 + router_ED.numel();
    if (shared_gate_FD.defined()) active += shared_gate_FD.numel() * 3;
    return active;
  }

  void upcycle_from(const lory::DenseFFNWeights& dense) override {
    lory::copy_dense_into_experts(experts_, dense);
    if (shared_gate_FD.defined()) {
      // The shared part takes the dense FFN's weights when it is exactly as wide; otherwise it
      // keeps its own initialisation (say so rather than guess a split).
      if (shared_gate_FD.sizes() != dense.w_gate_FD.sizes()) {
        throw std::runtime_error(
            "router.topk: shared experts of total width " + std::to_string(shared_gate_FD.size(0)) +
            " cannot be upcycled from a dense FFN of width " +
            std::to_string(dense.w_gate_FD.size(0)) +
            "; set trainer.dense_warmup_fraction = 0 or shared_experts * shared_d_ff = d_ff");
      }
      torch::NoGradGuard no_grad;
      shared_gate_FD.copy_(dense.w_gate_FD);
      shared_up_FD.copy_(dense.w_up_FD);
      shared_down_DF.copy_(dense.w_down_DF);
    }
  }

 private:
  // Switch Transformer's balance loss generalised to k choices (see balance_loss_weight's doc).
  // Router z-loss: mean logsumexp(logits)^2.
  void add_aux_losses(const torch::Tensor& logits_XE, const torch::Tensor& probs_XE,
                      const torch::Tensor& top_experts_XK, lory::RoutingContext& context) const {
    const int64_t E = options_.experts;
    if (options_.balance_loss_weight > 0) {
      const torch::Tensor distribution_XE =
          options_.gate == Gate::Sigmoid ? probs_XE / probs_XE.sum(-1, true) : probs_XE;
      const torch::Tensor fraction_E =
          torch::bincount(top_experts_XK.reshape({-1}), {}, E).to(probs_XE.dtype()) /
          static_cast<double>(top_experts_XK.numel());
      const torch::Tensor balance =
          static_cast<double>(E) * (fraction_E * distribution_XE.mean(0)).sum();
      context.add_aux_loss(layer_, "balance", balance * options_.balance_loss_weight,
                           balance.item<double>());
    }
    if (options_.z_loss_weight > 0) {
      const torch::Tensor z = torch::logsumexp(logits_XE, -1).pow(2).mean();
      context.add_aux_loss(layer_, "z", z * options_.z_loss_weight, z.item<double>());
    }
  }

  torch::Tensor shared_gate_FD, shared_up_FD, shared_down_DF;
  torch::Tensor expert_bias_E;  // aux-loss-free balancing (a buffer: checkpointed, exported)
  torch::Tensor step_load_E;    // tokens per expert (before capacity) since the last optimizer step
};

std::unique_ptr<lory::RouterPlugin> create() {
  return std::make_unique<lory::RouterPluginOf<TopKFeedForward, read_options>>();
}

}  // namespace lory_plugins::topk

LORY_DECLARED_PLUGIN(
    LORY_PLUGIN_ROUTER, "topk",
    "Token choice: each token goes to its k best experts (capacity, balance and z losses, shared "
    "and fine-grained experts, aux-loss-free balancing)",
    lory_plugins::topk::params)
LORY_ROUTER_FACTORY(lory_plugins::topk::create)
