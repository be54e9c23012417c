// The `lory` router: causal segment routing with soft merging of experts (Zhong et al., 2024).
// Every FFN layer holds E SwiGLU experts ([E, ...] tensors) and a linear router d_model -> E.
// A sequence is cut into segments of T tokens; segment k > 1 goes through one merged FFN whose
// weights are sum_e w_e W_e with w = softmax(R(mean of h over segment k - 1 of the same
// sequence)); segment 1 follows the `first_segment` rule. No auxiliary loss unless asked.
// When T does not divide the sequence length, the last segment is shorter (its mean is over its
// own tokens) and is routed like any other. When T >= the sequence length there is one segment
// only: it follows the first-segment rule, so under `paper` (stop-gradient) and `uniform` the
// router gets no gradient from the LM loss at all; choose T < context_length.
#include <nlohmann/json.hpp>

#include <cmath>

#include "lory/core/param_declaration.h"
#include "lory/core/plugin.h"
#include "lory/nn/decode_state.h"
#include "lory/nn/expert_merge.h"
#include "lory/nn/router_api.h"

namespace lory_plugins::lory_router {

enum class FirstSegment { Paper, Uniform, FirstToken };
enum class InferenceRouting { Segment, Prompt };
enum class Routing { Segment, Prefix };
enum class Implementation { Chunked, Naive };

struct Options {
  int64_t experts = 0, segment_length = 0, chunk_segments = 0;
  FirstSegment first_segment = FirstSegment::Paper;
  double router_init_std = 0, balance_loss_weight = 0;
  InferenceRouting inference_routing = InferenceRouting::Segment;
  Routing routing = Routing::Segment;
  Implementation implementation = Implementation::Chunked;
};

const lory::ParamDeclaration<Options>& params() {
  static const auto declaration =
      lory::ParamDeclaration<Options>("router.lory")
          .integer("experts", &Options::experts, 8, 1, 1024, "E: SwiGLU experts per FFN layer")
          .integer("segment_length", &Options::segment_length, 256, 1, 1 << 20,
                   "T: tokens per routing segment (the last segment is shorter when T does not "
                   "divide the length)")
          .choice("first_segment", &Options::first_segment,
                  {{"paper", FirstSegment::Paper},
                   {"uniform", FirstSegment::Uniform},
                   {"first_token", FirstSegment::FirstToken}},
                  FirstSegment::Paper,
                  "segment 1: paper = its own mean, stop-gradient (leaks within segment 1); "
                  "uniform = 1/E; "
                  "first_token = routed from its first token (causal)")
          .real("router_init_std", &Options::router_init_std, 0.02, 1e-8, 1,
                "std of the router's normal init; never 0: a zero router gives every segment "
                "uniform weights, so "
                "upcycled experts get identical gradients and stay identical")
          .real("balance_loss_weight", &Options::balance_loss_weight, 0, 0, 100,
                "weight of a Switch-style balance loss over segments (ablation; the paper uses "
                "none); per layer "
                "E * sum_e f_e P_e over the segments routed from a previous one (f_e: share whose "
                "largest weight "
                "is e, P_e: mean weight of e), summed over layers, times this weight")
          .choice("inference_routing", &Options::inference_routing,
                  {{"segment", InferenceRouting::Segment}, {"prompt", InferenceRouting::Prompt}},
                  InferenceRouting::Segment,
                  "rule of `lory score --routing inference`: segment = as in training; prompt = "
                  "once per layer from "
                  "the prompt's mean")
          .choice("routing", &Options::routing,
                  {{"segment", Routing::Segment}, {"prefix", Routing::Prefix}}, Routing::Segment,
                  "segment = each segment from the previous one (Lory); prefix = every segment "
                  "from segment 1 (the "
                  "paper's prefix-routing ablation)")
          .integer("chunk_segments", &Options::chunk_segments, 16, 1, 1 << 20,
                   "segments merged at a time: bounds the merged weights alive at once")
          .choice("implementation", &Options::implementation,
                  {{"chunked", Implementation::Chunked}, {"naive", Implementation::Naive}},
                  Implementation::Chunked,
                  "chunked = GEMM merges with recomputation in backward; naive = explicit "
                  "per-segment loop "
                  "(reference)");
  return declaration;
}

Options read_options(const lory::ParamValues& values, const lory::FeedForwardSpec&) {
  return params().read(values);
}

class LoryFeedForward final : public lory::ExpertRouterLayer<Options> {
 public:
  LoryFeedForward(const lory::FeedForwardSpec& spec, Options options)
      : ExpertRouterLayer(spec, options, spec.d_ff) {}

  torch::Tensor forward(const torch::Tensor& h_BLD, lory::RoutingContext& context) override {
    lory::EvalRouting::Rule rule =
        context.training() ? lory::EvalRouting::Rule::Train : context.eval_routing().rule;
    if (rule == lory::EvalRouting::Rule::Inference) {
      rule = routes_from_prompt_at_inference() ? lory::EvalRouting::Rule::Prompt
                                               : lory::EvalRouting::Rule::Train;
    }
    if (context.decode() && !context.training()) return forward_decoding(h_BLD, context, rule);
    if (rule == lory::EvalRouting::Rule::Prompt) return forward_prompt_routed(h_BLD, context);
    return forward_segment_routed(h_BLD, context);
  }

  bool supports_incremental_decoding() const override { return true; }
  bool routes_from_prompt_at_inference() const override {
    return options_.inference_routing == InferenceRouting::Prompt;
  }

  std::string export_layout_json() const override {
    nlohmann::json layout = expert_layer_layout("lory", params().to_json(options_));
    layout["expert"] =
        "SwiGLU with merged weights: y = (silu(h @ G.T) * (h @ U.T)) @ W.T where G = sum_e w_e "
        "w_gate_EFD[e], U = "
        "sum_e w_e w_up_EFD[e], W = sum_e w_e w_down_EDF[e]";
    layout["segment_rule"] =
        "cut each sequence into segments of segment_length tokens from position 0 (the last may be "
        "shorter); "
        "segment k > 1 uses w = softmax(router(mean of h over segment k - 1)) (routing = prefix: "
        "softmax(router(mean of h over segment 1)) for every k > 1, whatever first_segment); "
        "segment 1 uses "
        "first_segment: paper = softmax(router(mean of h over segment 1 itself)), uniform = 1/E, "
        "first_token = "
        "softmax(router(h at position 0)); when segment_length >= the sequence length there is one "
        "segment";
    layout["prompt_rule"] =
        "w = softmax(router(mean of h over the first P tokens)) for every token (lory score / "
        "generate --routing "
        "prompt, eval.prompt_routing)";
    return layout.dump();
  }

  // What one token goes through: the merged FFN (one expert's size) and the router.
  int64_t active_parameter_count() const override {
    return experts_.w_gate_EFD[0].numel() * 3 + router_ED.numel();
  }

  void upcycle_from(const lory::DenseFFNWeights& dense) override {
    lory::copy_dense_into_experts(experts_, dense);
  }

 private:
  torch::Tensor route(const torch::Tensor& mean_XD) const {
    return torch::softmax(lory::router_logits(mean_XD, router_ED), -1);
  }

  torch::Tensor run_experts(const torch::Tensor& x_STD, const torch::Tensor& w_SE) const {
    return options_.implementation == Implementation::Naive
               ? lory::merged_expert_ffn_reference(x_STD, w_SE, experts_)
               : lory::merged_expert_ffn(x_STD, w_SE, experts_, options_.chunk_segments);
  }

  torch::Tensor forward_segment_routed(const torch::Tensor& h_BLD, lory::RoutingContext& context) {
    const int64_t B = h_BLD.size(0), L = h_BLD.size(1), D = h_BLD.size(2), E = options_.experts;
    const int64_t T = std::min(options_.segment_length, L);
    const int64_t N = (L + T - 1) / T;
    const int64_t padding = N * T - L;
    const torch::Tensor padded_BLD =
        padding > 0 ? torch::cat({h_BLD, torch::zeros({B, padding, D}, h_BLD.options())}, 1)
                    : h_BLD;
    const torch::Tensor x_STD = padded_BLD.reshape({B * N, T, D});
    // Segment means over each segment's real tokens (the last one may be shorter).
    torch::Tensor tokens_N = torch::full({N}, static_cast<double>(T), h_BLD.options());
    if (padding > 0) tokens_N[N - 1] = static_cast<double>(T - padding);
    const torch::Tensor mean_BND = x_STD.view({B, N, T, D}).sum(2) / tokens_N.view({1, N, 1});
    const torch::Tensor probs_BNE = route(mean_BND);
    torch::Tensor first_BE;
    switch (options_.first_segment) {
      case FirstSegment::Paper:
        // Segment 1 is routed on its own mean, which leaks later tokens of segment 1 into earlier
        // ones; the paper stops the gradient of these weights.
        first_BE = probs_BNE.select(1, 0).detach();
        break;
      case FirstSegment::Uniform:
        first_BE = torch::full({B, E}, 1.0 / static_cast<double>(E), h_BLD.options());
        break;
      case FirstSegment::FirstToken:
        // Routed from the first token alone: every token of segment 1 comes after it, so this is
        // causal.
        first_BE = route(h_BLD.select(1, 0));
        break;
    }
    // Segment k uses the weights computed from segment k - 1 of the same sequence: a shift along
    // the segment axis of [B, N, E], never a flat roll across sequences. The prefix-routing
    // ablation instead reuses segment 1's weights for every later segment.
    torch::Tensor w_BNE = first_BE.unsqueeze(1);
    if (N > 1) {
      const torch::Tensor later_BNE = options_.routing == Routing::Prefix
                                          ? probs_BNE.slice(1, 0, 1).expand({B, N - 1, E})
                                          : probs_BNE.slice(1, 0, N - 1);
      w_BNE = torch::cat({w_BNE, later_BNE}, 1);
    }
    const torch::Tensor y_STD = run_experts(x_STD, w_BNE.reshape({B * N, E}));
    const torch::Tensor y_BLD = y_STD.view({B, N * T, D}).slice(1, 0, L);
    if (context.training() && options_.balance_loss_weight > 0 && N > 1) {
      add_balance_loss(probs_BNE.slice(1, 0, N - 1), context);
    }
    if (context.recording()) record(w_BNE.repeat_interleave(T, 1).slice(1, 0, L), context);
    return y_BLD;
  }

  torch::Tensor forward_prompt_routed(const torch::Tensor& h_BLD, lory::RoutingContext& context) {
    const int64_t L = h_BLD.size(1);
    const int64_t prompt = std::clamp<int64_t>(context.eval_routing().prompt_length, 1, L);
    const torch::Tensor w_BE = route(h_BLD.slice(1, 0, prompt).mean(1));
    // One merged FFN per sequence, applied to all of its tokens: the sequence is one "segment".
    const torch::Tensor y_BLD = run_experts(h_BLD, w_BE);
    if (context.recording()) record(w_BE.unsqueeze(1).expand({-1, L, -1}), context);
    return y_BLD;
  }

  // Incremental decoding: h_BLD holds the tokens at positions p .. p + L - 1 (p =
  // decode->position()). The layer keeps, in the DecodeState, the merged FFN of the segment it is
  // in (or of the prompt), so a new token costs one dense FFN, and it merges again only when a new
  // segment starts (counted as "lory/ffn_merges"):
  //  - prompt rule: one merge per layer, from the mean of the first prompt_length tokens, which the
  //    first forward must carry whole;
  //  - segment rule: segment k > 1 is merged from the mean of segment k - 1 once that is complete,
  //    as in training. Segment 1 follows first_segment; under `paper` it is routed from its tokens
  //    in the first forward (all of segment 1 when the prompt is at least T tokens long, the same
  //    weights as a full forward; otherwise the prompt's, since later tokens are not known yet).
  torch::Tensor forward_decoding(const torch::Tensor& h_BLD, lory::RoutingContext& context,
                                 lory::EvalRouting::Rule rule) {
    lory::DecodeState& decode = *context.decode();
    const int64_t B = h_BLD.size(0), L = h_BLD.size(1), D = h_BLD.size(2), E = options_.experts;
    const int64_t start = decode.position();
    std::vector<torch::Tensor> outputs, weights;
    if (rule == lory::EvalRouting::Rule::Prompt) {
      if (!decode.get(layer_, "lory/w_BE").defined()) {
        const int64_t prompt = context.eval_routing().prompt_length;
        TORCH_CHECK(start == 0 && L >= prompt && prompt >= 1,
                    "prompt routing while decoding needs the whole prompt (", prompt,
                    " tokens) in the first forward; it carried positions ", start, "..",
                    start + L - 1);
        merge_for_decoding(route(h_BLD.slice(1, 0, prompt).mean(1)), decode);
      }
      outputs.push_back(run_merged(h_BLD, decode));
      weights.push_back(decode.get(layer_, "lory/w_BE").unsqueeze(1).expand({B, L, E}));
    } else {
      const int64_t T = options_.segment_length;
      for (int64_t piece_start = 0; piece_start < L;) {
        const int64_t position = start + piece_start;
        const int64_t piece_end = std::min(L, piece_start + (T - position % T));
        const torch::Tensor piece_BPD = h_BLD.slice(1, piece_start, piece_end);
        if (position % T == 0) {
          torch::Tensor w_BE;
          if (position == 0) {
            w_BE = first_segment_weights(piece_BPD);
          } else if (options_.routing != Routing::Prefix) {
            w_BE = route(decode.get(layer_, "lory/sum_BD") / static_cast<double>(T));
          } else {
            // Prefix routing: every later segment takes the weights of segment 1's mean, whatever
            // rule segment 1 itself followed (as forward_segment_routed does).
            if (position == T)
              decode.set(layer_, "lory/prefix_BE",
                         route(decode.get(layer_, "lory/sum_BD") / static_cast<double>(T)));
            w_BE = decode.get(layer_, "lory/prefix_BE");
          }
          merge_for_decoding(w_BE, decode);
          decode.set(layer_, "lory/sum_BD", torch::zeros({B, D}, h_BLD.options()));
        }
        TORCH_CHECK(decode.get(layer_, "lory/w_BE").defined(), "decoding must start at position 0");
        outputs.push_back(run_merged(piece_BPD, decode));
        weights.push_back(
            decode.get(layer_, "lory/w_BE").unsqueeze(1).expand({B, piece_end - piece_start, E}));
        decode.set(layer_, "lory/sum_BD", decode.get(layer_, "lory/sum_BD") + piece_BPD.sum(1));
        piece_start = piece_end;
      }
    }
    if (context.recording()) record(torch::cat(weights, 1), context);
    return torch::cat(outputs, 1);
  }

  torch::Tensor first_segment_weights(const torch::Tensor& first_BPD) const {
    switch (options_.first_segment) {
      case FirstSegment::Uniform:
        return torch::full({first_BPD.size(0), options_.experts},
                           1.0 / static_cast<double>(options_.experts), first_BPD.options());
      case FirstSegment::FirstToken:
        return route(first_BPD.select(1, 0));
      case FirstSegment::Paper:
        break;
    }
    return route(first_BPD.mean(1));
  }

  // W̄_b = sum_e w[b, e] W_e for each sequence b, kept for the tokens that follow.
  void merge_for_decoding(const torch::Tensor& w_BE, lory::DecodeState& decode) const {
    const auto merge = [&](const torch::Tensor& w_EXY) {
      return torch::matmul(w_BE, w_EXY.reshape({w_EXY.size(0), -1}))
          .view({w_BE.size(0), w_EXY.size(1), w_EXY.size(2)});
    };
    decode.set(layer_, "lory/w_BE", w_BE);
    decode.set(layer_, "lory/gate_BFD", merge(experts_.w_gate_EFD));
    decode.set(layer_, "lory/up_BFD", merge(experts_.w_up_EFD));
    decode.set(layer_, "lory/down_BDF", merge(experts_.w_down_EDF));
    decode.count("lory/ffn_merges");
  }

  torch::Tensor run_merged(const torch::Tensor& h_BLD, const lory::DecodeState& decode) const {
    const torch::Tensor gate_BLF =
        torch::bmm(h_BLD, decode.get(layer_, "lory/gate_BFD").transpose(1, 2));
    const torch::Tensor up_BLF =
        torch::bmm(h_BLD, decode.get(layer_, "lory/up_BFD").transpose(1, 2));
    return torch::bmm(torch::silu(gate_BLF) * up_BLF,
                      decode.get(layer_, "lory/down_BDF").transpose(1, 2));
  }

  // Switch-style balance over segments: E * sum_e f_e P_e, with f_e the fraction of segments
  // whose largest weight is e and P_e the mean weight of e (1 when perfectly balanced).
  void add_balance_loss(const torch::Tensor& probs_BNE, lory::RoutingContext& context) {
    const int64_t E = options_.experts;
    const torch::Tensor probs_XE = probs_BNE.reshape({-1, E});
    const torch::Tensor fraction_E =
        torch::one_hot(probs_XE.argmax(-1), E).to(probs_XE.dtype()).mean(0);
    const torch::Tensor balance = static_cast<double>(E) * (fraction_E * probs_XE.mean(0)).sum();
    context.add_aux_loss(layer_, "balance", balance * options_.balance_loss_weight,
                         balance.item<double>());
  }

  void record(const torch::Tensor& w_BLE, lory::RoutingContext& context) const {
    lory::record_routing(context, layer_, w_BLE);
  }
};

std::unique_ptr<lory::RouterPlugin> create() {
  return std::make_unique<lory::RouterPluginOf<LoryFeedForward, read_options>>();
}

}  // namespace lory_plugins::lory_router

LORY_DECLARED_PLUGIN(
    LORY_PLUGIN_ROUTER, "lory",
    "Lory: causal segment routing with soft merging of SwiGLU experts (Zhong et al., 2024)",
    lory_plugins::lory_router::params)
LORY_ROUTER_FACTORY(lory_plugins::lory_router::create)
