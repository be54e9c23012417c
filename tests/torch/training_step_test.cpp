// The training step's fast paths against their plain references: the chunked LM head +
// cross-entropy against cross_entropy over full logits (loss and every gradient), and the
// transformer's attention (fused score GEMM in training, unfused otherwise) against a naive
// per-head float64 attention.
#include <gtest/gtest.h>

#include <cmath>

#include "in_tree_plugins.h"
#include "train/linear_cross_entropy.h"

namespace lory {
namespace {

// ||a - b|| / ||b||: one number for a whole tensor, so that a 1e-6 bound means "equal up to
// fp32 summation order" and is not defeated by entries that are near zero.
double relative_error(const torch::Tensor& a, const torch::Tensor& b) {
  const double denominator = b.to(torch::kFloat64).norm().item<double>();
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).norm().item<double>() /
         std::max(denominator, 1e-300);
}

struct LossAndGrads {
  torch::Tensor loss, dh, dweight;
};

LossAndGrads full_logits_reference(const torch::Tensor& h_ND, const torch::Tensor& weight_VD,
                                   const torch::Tensor& targets_N) {
  const torch::Tensor h = h_ND.detach().clone().requires_grad_();
  const torch::Tensor w = weight_VD.detach().clone().requires_grad_();
  const torch::Tensor loss = torch::nn::functional::cross_entropy(torch::mm(h, w.t()), targets_N);
  loss.backward();
  return {loss.detach(), h.grad(), w.grad()};
}

LossAndGrads chunked(const torch::Tensor& h_ND, const torch::Tensor& weight_VD,
                     const torch::Tensor& targets_N, int64_t chunk_rows) {
  const torch::Tensor h = h_ND.detach().clone().requires_grad_();
  const torch::Tensor w = weight_VD.detach().clone().requires_grad_();
  const torch::Tensor loss = linear_cross_entropy(h, w, targets_N, chunk_rows);
  loss.backward();
  return {loss.detach(), h.grad(), w.grad()};
}

TEST(LinearCrossEntropy, EqualsCrossEntropyOverFullLogitsInLossAndBothGradients) {
  torch::manual_seed(11);
  const int64_t N = 300, D = 24, V = 517;
  for (const auto dtype : {torch::kFloat32, torch::kFloat64}) {
    const torch::Tensor h_ND = torch::randn({N, D}, dtype);
    const torch::Tensor weight_VD = torch::randn({V, D}, dtype) * 0.3;
    const torch::Tensor targets_N = torch::randint(V, {N}, torch::kInt64);
    const LossAndGrads reference = full_logits_reference(h_ND, weight_VD, targets_N);
    const double bound = dtype == torch::kFloat32 ? 1e-6 : 1e-12;
    // Chunks that divide N, that do not, a single row, one chunk bigger than N, and the default.
    for (const int64_t chunk : {int64_t{1}, int64_t{7}, int64_t{100}, int64_t{1000}, int64_t{0}}) {
      const LossAndGrads mine = chunked(h_ND, weight_VD, targets_N, chunk);
      EXPECT_LT(relative_error(mine.loss, reference.loss), bound) << "chunk " << chunk;
      EXPECT_LT(relative_error(mine.dh, reference.dh), bound) << "chunk " << chunk;
      EXPECT_LT(relative_error(mine.dweight, reference.dweight), bound) << "chunk " << chunk;
      EXPECT_EQ(mine.loss.scalar_type(), dtype);
    }
  }
}

TEST(LinearCrossEntropy, TheIncomingGradientScalesBothGradientsAndNoGradGivesTheSameLoss) {
  torch::manual_seed(12);
  const torch::Tensor h_ND = torch::randn({40, 8}, torch::kFloat64);
  const torch::Tensor weight_VD = torch::randn({33, 8}, torch::kFloat64);
  const torch::Tensor targets_N = torch::randint(33, {40}, torch::kInt64);
  const LossAndGrads once = chunked(h_ND, weight_VD, targets_N, 9);
  const torch::Tensor h = h_ND.clone().requires_grad_(), w = weight_VD.clone().requires_grad_();
  (linear_cross_entropy(h, w, targets_N, 9) * 0.25 + h.sum() * 0).backward();
  EXPECT_LT(relative_error(h.grad(), once.dh * 0.25), 1e-14);
  EXPECT_LT(relative_error(w.grad(), once.dweight * 0.25), 1e-14);
  torch::NoGradGuard no_grad;
  EXPECT_DOUBLE_EQ(linear_cross_entropy(h_ND, weight_VD, targets_N, 9).item<double>(),
                   once.loss.item<double>());
}

TEST(LinearCrossEntropy, RefusesMismatchedShapes) {
  const torch::Tensor h_ND = torch::randn({4, 8}), weight_VD = torch::randn({10, 8});
  EXPECT_THROW(linear_cross_entropy(h_ND, torch::randn({10, 7}), torch::zeros({4}, torch::kInt64)),
               c10::Error);
  EXPECT_THROW(linear_cross_entropy(h_ND, weight_VD, torch::zeros({5}, torch::kInt64)), c10::Error);
}

// The trainer's loss on a whole model: the chunked path and the full-logits path give the same
// loss and the same gradient for every parameter (the routers' included), untied and tied.
TEST(LanguageModelLoss, ChunkedEqualsFullLogitsForEveryParameterOfDenseAndLoryModels) {
  const int64_t vocab = 301, context = 32;
  for (const std::string router : {"dense", "lory"}) {
    for (const bool tied : {false, true}) {
      torch::manual_seed(5);
      const ParamValues router_params =
          router == "lory"
              ? testing::plugins().params("lory", {{"experts", ParamValue(int64_t{4})},
                                                   {"segment_length", ParamValue(int64_t{8})}})
              : testing::plugins().params("dense");
      auto model = testing::plugins().build_model(
          router, router_params,
          testing::plugins().transformer_params(32, 2, 2, {{"tie_embeddings", ParamValue(tied)}}),
          vocab, context);
      model->train();
      ASSERT_TRUE(model->output_projection_VD().defined());
      const torch::Tensor tokens_BL1 = torch::randint(vocab, {3, context + 1}, torch::kInt64);
      std::map<std::string, torch::Tensor> grads[2];
      double losses[2];
      int index = 0;
      for (const auto path : {LmLossPath::FullLogits, LmLossPath::Chunked}) {
        for (auto& p : model->parameters()) p.mutable_grad() = torch::Tensor();
        RoutingContext routing(ForwardMode::Train, false);
        const torch::Tensor loss = language_model_loss(*model, tokens_BL1.slice(1, 0, -1),
                                                       tokens_BL1.slice(1, 1), routing, path);
        loss.backward();
        losses[index] = loss.item<double>();
        for (const auto& item : model->named_parameters()) {
          if (item.value().grad().defined()) grads[index][item.key()] = item.value().grad().clone();
        }
        ++index;
      }
      const std::string which = router + (tied ? " tied" : " untied");
      EXPECT_NEAR(losses[1], losses[0], 1e-6 * std::abs(losses[0])) << which;
      ASSERT_EQ(grads[0].size(), grads[1].size()) << which;
      for (const auto& [name, reference] : grads[0]) {
        ASSERT_TRUE(grads[1].count(name)) << which << ": " << name;
        EXPECT_LT(relative_error(grads[1].at(name), reference), 1e-6) << which << ": " << name;
      }
    }
  }
}

// The transformer written out naively from its export layout (docs: export_layout_json), one
// head and one query at a time in float64: the model's batched, fused-mask attention must agree.
torch::Tensor naive_rmsnorm(const torch::Tensor& x_LD, const torch::Tensor& weight_D, double eps) {
  return x_LD / torch::sqrt(x_LD.pow(2).mean(-1, true) + eps) * weight_D;
}

torch::Tensor naive_rope(const torch::Tensor& x_LK, double theta) {
  const int64_t L = x_LK.size(0), K = x_LK.size(1), half = K / 2;
  torch::Tensor out_LK = torch::empty_like(x_LK);
  for (int64_t p = 0; p < L; ++p) {
    for (int64_t j = 0; j < K; ++j) {
      const double angle =
          static_cast<double>(p) * std::pow(theta, -2.0 * static_cast<double>(j % half) / K);
      const double rotated =
          j < half ? -x_LK[p][j + half].item<double>() : x_LK[p][j - half].item<double>();
      out_LK[p][j] = x_LK[p][j].item<double>() * std::cos(angle) + rotated * std::sin(angle);
    }
  }
  return out_LK;
}

TEST(TransformerModel, LogitsEqualANaivePerHeadReferenceInFloat64) {
  const int64_t vocab = 37, L = 12, D = 16, H = 2, K = D / H, layers = 2;
  torch::manual_seed(21);
  auto model = testing::plugins().build_model(
      "dense", ParamValues(), testing::plugins().transformer_params(D, layers, H), vocab, L);
  model->to(torch::kFloat64);
  model->eval();
  std::map<std::string, torch::Tensor> w;
  for (const auto& item : model->named_parameters()) w[item.key()] = item.value().detach();
  const torch::Tensor tokens_L = torch::randint(vocab, {L}, torch::kInt64);
  torch::Tensor x_LD = w.at("embedding_VD").index_select(0, tokens_L);
  const double eps = 1e-5, theta = 10000;
  for (int64_t layer = 0; layer < layers; ++layer) {
    const std::string b = "block" + std::to_string(layer) + ".";
    const torch::Tensor a_LD = naive_rmsnorm(x_LD, w.at(b + "attention_norm.weight_D"), eps);
    const torch::Tensor qkv_3DD = w.at(b + "attention.w_qkv_3DD");
    torch::Tensor heads_LD = torch::zeros({L, D}, torch::kFloat64);
    for (int64_t h = 0; h < H; ++h) {
      const auto rows = [&](int64_t part) {
        return qkv_3DD.slice(0, part * D + h * K, part * D + h * K + K);
      };
      const torch::Tensor q_LK = naive_rope(torch::mm(a_LD, rows(0).t()), theta);
      const torch::Tensor k_LK = naive_rope(torch::mm(a_LD, rows(1).t()), theta);
      const torch::Tensor v_LK = torch::mm(a_LD, rows(2).t());
      for (int64_t t = 0; t < L; ++t) {
        const torch::Tensor scores_P =
            torch::mv(k_LK.slice(0, 0, t + 1), q_LK[t]) / std::sqrt(static_cast<double>(K));
        heads_LD.slice(1, h * K, h * K + K)[t] =
            torch::mv(v_LK.slice(0, 0, t + 1).t(), torch::softmax(scores_P, 0));
      }
    }
    x_LD = x_LD + torch::mm(heads_LD, w.at(b + "attention.w_out_DD").t());
    const torch::Tensor f_LD = naive_rmsnorm(x_LD, w.at(b + "ffn_norm.weight_D"), eps);
    const torch::Tensor hidden_LF = torch::silu(torch::mm(f_LD, w.at(b + "ffn.w_gate_FD").t())) *
                                    torch::mm(f_LD, w.at(b + "ffn.w_up_FD").t());
    x_LD = x_LD + torch::mm(hidden_LF, w.at(b + "ffn.w_down_DF").t());
  }
  const torch::Tensor reference_LV =
      torch::mm(naive_rmsnorm(x_LD, w.at("final_norm.weight_D"), eps), w.at("lm_head_VD").t());
  // Both attention forms: the fused score GEMM of training (grad mode) and the unfused one of
  // evaluation and decoding. Not 1e-12: the model keeps its RoPE cos/sin tables in fp32
  // (converted, not recomputed, by to()).
  for (const bool grad_mode : {true, false}) {
    torch::AutoGradMode mode(grad_mode);
    RoutingContext routing(ForwardMode::Eval, false);
    const torch::Tensor logits_LV = model->forward(tokens_L.unsqueeze(0), routing)[0];
    EXPECT_LT(relative_error(logits_LV.detach(), reference_LV), 1e-9)
        << (grad_mode ? "fused" : "unfused");
  }
}

}  // namespace
}  // namespace lory
