// The `transformer` model: a LLaMA-style decoder. Token embedding, pre-norm blocks of RMSNorm ->
// causal multi-head attention with rotary position embeddings and RMSNorm -> FFN (built by the
// router plugin), a final RMSNorm and an LM head (untied by default).
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>

#include "lory/core/param_declaration.h"
#include "lory/core/plugin.h"
#include "lory/nn/decode_state.h"
#include "lory/nn/model_api.h"

namespace lory_plugins::transformer {

class RMSNorm : public torch::nn::Module {
 public:
  RMSNorm(int64_t width, double eps) : eps_(eps) {
    weight_D = register_parameter("weight_D", torch::ones({width}));
  }
  torch::Tensor forward(const torch::Tensor& x_BLD) {
    return x_BLD * torch::rsqrt(x_BLD.pow(2).mean(-1, /*keepdim=*/true) + eps_) * weight_D;
  }

 private:
  double eps_;
  torch::Tensor weight_D;
};

class CausalSelfAttention : public torch::nn::Module {
 public:
  CausalSelfAttention(int64_t d_model, int64_t heads, int64_t max_length, double rope_theta,
                      double init_std, double output_init_std)
      : heads_(heads), head_width_(d_model / heads) {
    w_qkv_3DD = register_parameter("w_qkv_3DD", torch::randn({3 * d_model, d_model}) * init_std);
    w_out_DD = register_parameter("w_out_DD", torch::randn({d_model, d_model}) * output_init_std);
    // Rotary embeddings (rotate-half form): frequency theta^(-2i/K) for the i-th pair.
    const int64_t half = head_width_ / 2;
    const torch::Tensor inverse_frequency_half =
        torch::pow(rope_theta, -torch::arange(0, half, torch::kFloat64) * 2.0 /
                                   static_cast<double>(head_width_));
    const torch::Tensor angles_LHalf =
        torch::outer(torch::arange(0, max_length, torch::kFloat64), inverse_frequency_half);
    const torch::Tensor angles_LK = torch::cat({angles_LHalf, angles_LHalf}, -1);
    cos_LK_ = register_buffer("rope_cos_LK", angles_LK.cos().to(torch::kFloat32));
    sin_LK_ = register_buffer("rope_sin_LK", angles_LK.sin().to(torch::kFloat32));
  }

  // x_BLD: the block's normalised input. With a DecodeState, x holds only the tokens from
  // position p = decode->position() on: their keys and values are appended to the layer's cache
  // and their queries attend to every cached position up to their own.
  torch::Tensor forward(const torch::Tensor& x_BLD, int64_t layer, lory::DecodeState* decode) {
    const int64_t B = x_BLD.size(0), L = x_BLD.size(1), D = x_BLD.size(2);
    const int64_t start = decode ? decode->position() : 0;
    TORCH_CHECK(start + L <= cos_LK_.size(0), "positions ", start, "..", start + L - 1,
                " exceed the model's context length ", cos_LK_.size(0));
    const torch::Tensor qkv_BL3HK =
        torch::matmul(x_BLD, w_qkv_3DD.t()).view({B, L, 3, heads_, head_width_});
    // [3, B, H, L, K]
    const torch::Tensor qkv_3BHLK = qkv_BL3HK.permute({2, 0, 3, 1, 4});
    // RoPE in the projections' precision (bf16 under bf16 matmuls): rotating in fp32 would promote
    // q and k only for the score GEMM to cast them back.
    const torch::Tensor cos_LK = cos_LK_.slice(0, start, start + L).to(qkv_BL3HK.dtype());
    const torch::Tensor sin_LK = sin_LK_.slice(0, start, start + L).to(qkv_BL3HK.dtype());
    const torch::Tensor q_BHLK = rotate(qkv_3BHLK[0], cos_LK, sin_LK);
    torch::Tensor k_BHLK = rotate(qkv_3BHLK[1], cos_LK, sin_LK);
    torch::Tensor v_BHLK = qkv_3BHLK[2];
    if (decode) {
      const torch::Tensor cached_k_BHPK = decode->get(layer, "attention/k_BHLK");
      if (cached_k_BHPK.defined()) {
        k_BHLK = torch::cat({cached_k_BHPK, k_BHLK}, 2);
        v_BHLK = torch::cat({decode->get(layer, "attention/v_BHLK"), v_BHLK}, 2);
      }
      decode->set(layer, "attention/k_BHLK", k_BHLK);
      decode->set(layer, "attention/v_BHLK", v_BHLK);
    }
    const int64_t keys = k_BHLK.size(2);  // start + L
    const int64_t H = heads_, K = head_width_;
    const double scale = 1.0 / std::sqrt(static_cast<double>(K));
    // G = B * H batches of [L, P] attention weights. The softmax runs in the residual stream's
    // precision (fp32) also when the score GEMM ran in bf16 (trainer.precision).
    torch::Tensor weights_GLP;
    if (torch::GradMode::is_enabled()) {
      // Training: an additive mask (0 or -inf) that the score GEMM adds as its beta term together
      // with the 1/sqrt(K) scale (alpha), so that the scores are written once, not by a GEMM, a
      // scaling and a masked fill.
      const torch::Tensor mask_1LP = causal_mask(L, keys, start, x_BLD.options());
      weights_GLP = torch::softmax(torch::baddbmm(mask_1LP, q_BHLK.reshape({B * H, L, K}),
                                                  k_BHLK.reshape({B * H, keys, K}).transpose(1, 2),
                                                  /*beta=*/1.0, /*alpha=*/scale),
                                   -1, x_BLD.scalar_type());
    } else {
      // Without a gradient (evaluation, scoring, decoding): the unfused form, the one whose
      // KV-cache decoding was established to equal full recomputation bit for bit; evaluations of
      // given weights stay what earlier versions computed. Only training needs the speed.
      torch::Tensor scores_BHLP = torch::matmul(q_BHLK, k_BHLK.transpose(-2, -1)) * scale;
      const torch::Tensor future_LP = future_positions(L, keys, start, x_BLD.device());
      weights_GLP = torch::softmax(scores_BHLP.masked_fill(
                                       future_LP, -std::numeric_limits<double>::infinity()),
                                   -1, x_BLD.scalar_type())
                        .reshape({B * H, L, keys});
    }
    const torch::Tensor attended_BHLK =
        torch::bmm(weights_GLP, v_BHLK.reshape({B * H, keys, K})).view({B, H, L, K});
    const torch::Tensor attended_BLD = attended_BHLK.transpose(1, 2).reshape({B, L, D});
    return torch::matmul(attended_BLD, w_out_DD.t());
  }

 private:
  // [1, L, P] for training: 0 where query i may see key j (j <= start + i), -inf elsewhere. Kept
  // for the last shape asked for (training asks for one shape every step). Not a buffer:
  // Module::to(dtype) would convert it, and it is not state.
  torch::Tensor causal_mask(int64_t L, int64_t keys, int64_t start,
                            const torch::TensorOptions& options) {
    const bool reuse = mask_1LP_.defined() && mask_1LP_.size(1) == L && mask_1LP_.size(2) == keys &&
                       mask_start_ == start && mask_1LP_.dtype() == options.dtype() &&
                       mask_1LP_.device() == options.device();
    if (!reuse) {
      mask_1LP_ = torch::zeros({1, L, keys}, options)
                      .masked_fill_(future_positions(L, keys, start, options.device()).unsqueeze(0),
                                    -std::numeric_limits<double>::infinity());
      mask_start_ = start;
    }
    return mask_1LP_;
  }

  // [L, P], true where query i (position start + i) must not see key j: j > start + i.
  static torch::Tensor future_positions(int64_t L, int64_t keys, int64_t start,
                                        const torch::Device& device) {
    return torch::ones({L, keys}, torch::dtype(torch::kBool).device(device)).triu(start + 1);
  }

  static torch::Tensor rotate(const torch::Tensor& x_BHLK, const torch::Tensor& cos_LK,
                              const torch::Tensor& sin_LK) {
    const int64_t half = x_BHLK.size(-1) / 2;
    const torch::Tensor rotated_BHLK =
        torch::cat({-x_BHLK.slice(-1, half), x_BHLK.slice(-1, 0, half)}, -1);
    return x_BHLK * cos_LK + rotated_BHLK * sin_LK;
  }

  int64_t heads_, head_width_;
  torch::Tensor w_qkv_3DD, w_out_DD;
  torch::Tensor cos_LK_, sin_LK_;
  torch::Tensor mask_1LP_;
  int64_t mask_start_ = 0;
};

class Block : public torch::nn::Module {
 public:
  Block(int64_t d_model, int64_t heads, int64_t max_length, double rope_theta, double norm_eps,
        double init_std, double output_init_std, std::shared_ptr<lory::FeedForward> ffn,
        int64_t layer)
      : layer_(layer) {
    attention_norm =
        register_module("attention_norm", std::make_shared<RMSNorm>(d_model, norm_eps));
    attention = register_module(
        "attention", std::make_shared<CausalSelfAttention>(d_model, heads, max_length, rope_theta,
                                                           init_std, output_init_std));
    ffn_norm = register_module("ffn_norm", std::make_shared<RMSNorm>(d_model, norm_eps));
    this->ffn = register_module("ffn", std::move(ffn));
  }

  torch::Tensor forward(const torch::Tensor& x_BLD, lory::RoutingContext& context) {
    const torch::Tensor h_BLD =
        x_BLD + attention->forward(attention_norm->forward(x_BLD), layer_, context.decode());
    return h_BLD + ffn->forward(ffn_norm->forward(h_BLD), context);
  }

  void replace_ffn(std::shared_ptr<lory::FeedForward> replacement) {
    ffn = replace_module("ffn", std::move(replacement));
  }

  std::shared_ptr<RMSNorm> attention_norm, ffn_norm;
  std::shared_ptr<CausalSelfAttention> attention;
  std::shared_ptr<lory::FeedForward> ffn;

 private:
  int64_t layer_;
};

struct Options {
  int64_t d_model = 0, n_layers = 0, n_heads = 0, d_ff = 0;
  double init_std = 0, rope_theta = 0, norm_eps = 0;
  bool tie_embeddings = false;
};

// RoPE rotates pairs of a head's channels, so a head's width must be whole and even.
std::vector<lory::ParamProblem> head_width_problems(const Options& o) {
  if (o.d_model % o.n_heads != 0) {
    return {
        {"n_heads",
         fmt::format(
             "d_model = {} must be a multiple of n_heads = {} (each head gets d_model / n_heads "
             "channels)",
             o.d_model, o.n_heads)}};
  }
  if ((o.d_model / o.n_heads) % 2 != 0) {
    return {
        {"n_heads",
         fmt::format("the head width d_model / n_heads = {} / {} = {} must be even (RoPE rotates "
                     "channel pairs)",
                     o.d_model, o.n_heads, o.d_model / o.n_heads)}};
  }
  return {};
}

const lory::ParamDeclaration<Options>& params() {
  static const auto declaration =
      lory::ParamDeclaration<Options>("model.transformer")
          .integer("d_model", &Options::d_model, 128, 8, 65536, "model width D")
          .integer("n_layers", &Options::n_layers, 4, 1, 1024,
                   "transformer blocks; every block's FFN comes from the router")
          .integer("n_heads", &Options::n_heads, 4, 1, 1024,
                   "attention heads (d_model / n_heads must be even)")
          .integer("d_ff", &Options::d_ff, 0, 0, 1 << 20,
                   "FFN width F; 0 = 8/3 d_model rounded up to a multiple of 32")
          .real("init_std", &Options::init_std, 0.02, 1e-6, 1.0,
                "std of the normal init; residual outputs use init_std / sqrt(2 n_layers)")
          .flag("tie_embeddings", &Options::tie_embeddings, false,
                "share the token embedding with the LM head")
          .real("rope_theta", &Options::rope_theta, 10000, 1, 1e9, "rotary embedding base")
          .real("norm_eps", &Options::norm_eps, 1e-5, 1e-12, 1, "RMSNorm epsilon")
          .rule(head_width_problems);
  return declaration;
}

class TransformerModel final : public lory::LanguageModel {
 public:
  TransformerModel(const lory::ModelSpec& spec, const Options& o,
                   const lory::FeedForwardFactory& factory) {
    const int64_t d_model = o.d_model, heads = o.n_heads;
    layers_ = o.n_layers;
    // LLaMA's FFN width: 8/3 of d_model, rounded up to a multiple of 32 (set d_ff to match a paper
    // exactly).
    int64_t d_ff = o.d_ff;
    if (d_ff == 0) d_ff = (8 * d_model / 3 + 31) / 32 * 32;
    const double init_std = o.init_std;
    // Residual-branch outputs shrink with depth (GPT-2), so the residual stream's variance stays
    // flat.
    const double output_init_std = init_std / std::sqrt(2.0 * static_cast<double>(layers_));
    tied_ = o.tie_embeddings;
    layout_ = {d_model,      heads,     d_ff, spec.vocab_size, spec.context_length,
               o.rope_theta, o.norm_eps};
    embedding_VD =
        register_parameter("embedding_VD", torch::randn({spec.vocab_size, d_model}) * init_std);
    for (int64_t i = 0; i < layers_; ++i) {
      lory::FeedForwardSpec ffn_spec{d_model, d_ff, i, layers_, init_std, output_init_std};
      ffn_specs_.push_back(ffn_spec);
      auto ffn = factory(ffn_spec);
      blocks_.push_back(register_module(
          "block" + std::to_string(i),
          std::make_shared<Block>(d_model, heads, spec.context_length, o.rope_theta, o.norm_eps,
                                  init_std, output_init_std, std::move(ffn), i)));
    }
    final_norm = register_module("final_norm", std::make_shared<RMSNorm>(d_model, o.norm_eps));
    if (!tied_)
      lm_head_VD =
          register_parameter("lm_head_VD", torch::randn({spec.vocab_size, d_model}) * init_std);
  }

  torch::Tensor forward(const torch::Tensor& tokens_BL, lory::RoutingContext& context) override {
    const torch::Tensor h_BLD = hidden_states(tokens_BL, context);
    // Logits in the residual stream's precision: under bf16 matmuls the GEMM's output is bf16, and
    // a log-softmax over bf16 logits would lose what the loss and the evaluation measure.
    return torch::matmul(h_BLD, (tied_ ? embedding_VD : lm_head_VD).t()).to(h_BLD.scalar_type());
  }

  torch::Tensor output_projection_VD() const override { return tied_ ? embedding_VD : lm_head_VD; }

  torch::Tensor hidden_states(const torch::Tensor& tokens_BL,
                              lory::RoutingContext& context) override {
    torch::Tensor x_BLD = torch::embedding(embedding_VD, tokens_BL);
    context.set_token_ids(tokens_BL);  // for routers that route by token id (lory::RoutingContext)
    for (auto& block : blocks_) x_BLD = block->forward(x_BLD, context);
    return final_norm->forward(x_BLD);
  }

  bool supports_incremental_decoding() const override {
    for (const auto& block : blocks_) {
      if (!block->ffn->supports_incremental_decoding()) return false;
    }
    return true;
  }

  std::string export_layout_json() const override {
    const Layout& l = layout_;
    return nlohmann::json{
        {"model", "transformer"},
        {"d_model", l.d_model},
        {"n_layers", layers_},
        {"n_heads", l.heads},
        {"head_width", l.d_model / l.heads},
        {"d_ff", l.d_ff},
        {"vocab_size", l.vocab},
        {"context_length", l.context},
        {"rope_theta", l.rope_theta},
        {"norm_eps", l.norm_eps},
        {"tie_embeddings", tied_},
        {"layout",
         "every matrix is [out, in] (torch.nn.Linear's weight): y = x @ W.T; no biases anywhere"},
        {"tensors",
         {{"embedding_VD", "[V, D] token embedding"},
          {"lm_head_VD",
           "[V, D] output projection, logits = h @ lm_head_VD.T (absent when tie_embeddings: "
           "embedding_VD is used)"},
          {"final_norm.weight_D", "[D] final RMSNorm gain"},
          {"block{i}.attention_norm.weight_D", "[D] RMSNorm gain before attention"},
          {"block{i}.attention.w_qkv_3DD",
           "[3D, D] packed projections: rows 0..D-1 = W_q, D..2D-1 = W_k, 2D..3D-1 = W_v; within "
           "each, rows "
           "h*K..h*K+K-1 belong to head h (K = head_width)"},
          {"block{i}.attention.w_out_DD",
           "[D, D] output projection of the concatenated heads (head h at columns h*K..h*K+K-1)"},
          {"block{i}.ffn_norm.weight_D", "[D] RMSNorm gain before the FFN"},
          {"block{i}.ffn.*", "the router's tensors: see ffn.tensors"},
          {"block{i}.attention.rope_cos_LK",
           "[L, K] RoPE cosine table (a buffer; recomputable from rope_theta)"},
          {"block{i}.attention.rope_sin_LK", "[L, K] RoPE sine table (a buffer)"}}},
        {"block", "h = x + attention(rmsnorm(x)); out = h + ffn(rmsnorm(h))"},
        {"rmsnorm", "x * rsqrt(mean(x^2 over the last axis) + norm_eps) * weight_D"},
        {"rope",
         "rotate-half form applied to q and k of every head: x * cos + rotate_half(x) * sin, "
         "rotate_half(x) = "
         "cat(-x[K/2:], x[:K/2]); angle(position p, channel j) = p * rope_theta^(-2 (j mod K/2) / "
         "K); positions "
         "start at 0 for the first token of the sequence"},
        {"attention",
         "softmax(q k^T / sqrt(K)) v per head with a causal mask (position t sees positions <= t)"},
        {"output", "logits = rmsnorm_final(h) @ lm_head_VD.T"}}
        .dump();
  }

  int64_t layer_count() const override { return layers_; }
  lory::FeedForwardSpec feed_forward_spec(int64_t layer) const override {
    return ffn_specs_.at(layer);
  }
  std::shared_ptr<lory::FeedForward> feed_forward(int64_t layer) const override {
    return blocks_.at(layer)->ffn;
  }
  void replace_feed_forward(int64_t layer,
                            std::shared_ptr<lory::FeedForward> replacement) override {
    blocks_.at(layer)->replace_ffn(std::move(replacement));
  }

 private:
  struct Layout {
    int64_t d_model, heads, d_ff, vocab, context;
    double rope_theta, norm_eps;
  };
  int64_t layers_;
  bool tied_;
  Layout layout_{};
  std::vector<lory::FeedForwardSpec> ffn_specs_;
  torch::Tensor embedding_VD, lm_head_VD;
  std::vector<std::shared_ptr<Block>> blocks_;
  std::shared_ptr<RMSNorm> final_norm;
};

class TransformerPlugin final : public lory::ModelPlugin {
 public:
  std::shared_ptr<lory::LanguageModel> build(const lory::ModelSpec& spec,
                                             const lory::ParamValues& params,
                                             const lory::FeedForwardFactory& factory) override {
    return std::make_shared<TransformerModel>(
        spec, lory_plugins::transformer::params().read(params), factory);
  }
};

std::unique_ptr<lory::ModelPlugin> create() { return std::make_unique<TransformerPlugin>(); }

}  // namespace lory_plugins::transformer

LORY_DECLARED_PLUGIN(
    LORY_PLUGIN_MODEL, "transformer",
    "LLaMA-style decoder: RMSNorm pre-norm, RoPE causal attention, router-built SwiGLU FFNs",
    lory_plugins::transformer::params)
LORY_MODEL_FACTORY(lory_plugins::transformer::create)
