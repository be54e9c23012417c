// trainer.precision = "bf16": the scope that turns bf16 matmuls on and off, and every in-tree
// router, the chunked loss and whole models in bf16 against fp32 on the same weights. bf16 has an
// 8-bit mantissa (relative rounding 2^-9 = 0.2% per value), so outputs and gradients must agree
// within a few percent norm-wise, and must differ from fp32 at all (else bf16 was not used).
#include <gtest/gtest.h>

#include <map>

#include "in_tree_plugins.h"
#include "lory/nn/precision.h"
#include "train/linear_cross_entropy.h"

namespace lory {
namespace {

double relative_error(const torch::Tensor& a, const torch::Tensor& b) {
  const double denominator = b.to(torch::kFloat64).norm().item<double>();
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).norm().item<double>() /
         std::max(denominator, 1e-300);
}

TEST(MatmulPrecisionScope, Bf16ScopeRunsMatmulsInBf16AndRestoresOnExitAndFp32ChangesNothing) {
  const torch::Tensor a = torch::randn({8, 16}), b = torch::randn({16, 4});
  EXPECT_EQ(torch::matmul(a, b).scalar_type(), torch::kFloat32);
  {
    MatmulPrecisionScope fp32(Precision::Fp32, torch::kCPU);
    EXPECT_EQ(torch::matmul(a, b).scalar_type(), torch::kFloat32);
    EXPECT_EQ(matmul_dtype(a), torch::kFloat32);
  }
  {
    MatmulPrecisionScope bf16(Precision::Bf16, torch::kCPU);
    EXPECT_EQ(torch::matmul(a, b).scalar_type(), torch::kBFloat16);
    EXPECT_EQ(matmul_dtype(a), torch::kBFloat16);
    EXPECT_EQ(matmul_dtype(torch::zeros({2}, torch::kInt64)), torch::kInt64);
    {
      MatmulPrecisionScope nested(Precision::Bf16, torch::kCPU);
      NoAutocast off;
      EXPECT_EQ(torch::matmul(a, b).scalar_type(), torch::kFloat32);
      EXPECT_EQ(matmul_dtype(a), torch::kFloat32);
    }
    EXPECT_EQ(torch::matmul(a, b).scalar_type(), torch::kBFloat16);
    // Elementwise work and the softmax keep their inputs' precision.
    EXPECT_EQ(torch::softmax(a, -1).scalar_type(), torch::kFloat32);
  }
  EXPECT_EQ(torch::matmul(a, b).scalar_type(), torch::kFloat32);
  EXPECT_FALSE(at::autocast::is_cpu_enabled());
  EXPECT_EQ(parse_precision("bf16"), Precision::Bf16);
  EXPECT_EQ(parse_precision("fp32"), Precision::Fp32);
  EXPECT_FALSE(parse_precision("fp16"));
}

struct Pass {
  torch::Tensor y, dh;
  std::map<std::string, torch::Tensor> grads;
};

Pass layer_pass(FeedForward& layer, const torch::Tensor& h_BLD, const torch::Tensor& probe_BLD,
                Precision precision) {
  for (auto& p : layer.parameters()) p.mutable_grad() = torch::Tensor();
  const torch::Tensor h = h_BLD.detach().clone().requires_grad_();
  RoutingContext context(ForwardMode::Train, false);
  torch::Tensor y;
  {
    MatmulPrecisionScope scope(precision, torch::kCPU);
    y = layer.forward(h, context);
  }
  // A random projection: a plain sum would let errors of opposite sign cancel.
  (y.to(torch::kFloat32) * probe_BLD).sum().backward();
  Pass pass{y.detach().to(torch::kFloat32), h.grad(), {}};
  for (const auto& item : layer.named_parameters()) {
    if (item.value().grad().defined()) pass.grads[item.key()] = item.value().grad().clone();
  }
  return pass;
}

TEST(Bf16Matmuls, EveryInTreeRouterAgreesWithFp32WithinTwoPercentInOutputAndEveryGradient) {
  const FeedForwardSpec spec{64, 96, 0, 2, 0.05, 0.05};
  const std::vector<std::pair<std::string, ParamValues>> routers = {
      {"dense", testing::plugins().params("dense")},
      {"lory", testing::plugins().params("lory", {{"experts", ParamValue(int64_t{4})},
                                                  {"segment_length", ParamValue(int64_t{8})}})},
      {"topk", testing::plugins().params(
                   "topk", {{"experts", ParamValue(int64_t{4})}, {"k", ParamValue(int64_t{2})}})},
      {"expert_choice",
       testing::plugins().params("expert_choice", {{"experts", ParamValue(int64_t{4})}})},
  };
  for (const auto& [name, params] : routers) {
    torch::manual_seed(11);
    auto layer = testing::plugins().build_layer(name, spec, params);
    layer->train();
    const torch::Tensor h_BLD = torch::randn({2, 32, 64}), probe_BLD = torch::randn({2, 32, 64});
    const Pass fp32 = layer_pass(*layer, h_BLD, probe_BLD, Precision::Fp32);
    const Pass bf16 = layer_pass(*layer, h_BLD, probe_BLD, Precision::Bf16);
    const double output_error = relative_error(bf16.y, fp32.y);
    EXPECT_LT(output_error, 2e-2) << name;
    EXPECT_GT(output_error, 1e-5) << name << ": the bf16 pass equals fp32: bf16 was not used";
    EXPECT_LT(relative_error(bf16.dh, fp32.dh), 2e-2) << name << ": input gradient";
    EXPECT_EQ(bf16.dh.scalar_type(), torch::kFloat32) << name;
    ASSERT_EQ(bf16.grads.size(), fp32.grads.size()) << name;
    for (const auto& [param, reference] : fp32.grads) {
      ASSERT_TRUE(bf16.grads.count(param)) << name << ": " << param;
      // Master weights: the gradient lands in fp32, whatever the matmuls ran in.
      EXPECT_EQ(bf16.grads.at(param).scalar_type(), torch::kFloat32) << name << ": " << param;
      EXPECT_LT(relative_error(bf16.grads.at(param), reference), 2e-2) << name << ": " << param;
    }
  }
}

TEST(Bf16Matmuls, ChunkedLossAndWholeModelsAgreeWithFp32AndKeepFp32Gradients) {
  // The chunked LM head + loss alone.
  torch::manual_seed(3);
  const int64_t N = 300, D = 32, V = 500;
  const torch::Tensor h_ND = torch::randn({N, D}), weight_VD = torch::randn({V, D}) * 0.3;
  const torch::Tensor targets_N = torch::randint(V, {N}, torch::kInt64);
  std::vector<std::tuple<double, torch::Tensor, torch::Tensor>> results;
  for (const Precision precision : {Precision::Fp32, Precision::Bf16}) {
    const torch::Tensor h = h_ND.clone().requires_grad_(), w = weight_VD.clone().requires_grad_();
    torch::Tensor loss;
    {
      MatmulPrecisionScope scope(precision, torch::kCPU);
      loss = linear_cross_entropy(h, w, targets_N);
    }
    EXPECT_EQ(loss.scalar_type(), torch::kFloat32);
    loss.backward();
    EXPECT_EQ(h.grad().scalar_type(), torch::kFloat32);
    EXPECT_EQ(w.grad().scalar_type(), torch::kFloat32);
    results.emplace_back(loss.item<double>(), h.grad(), w.grad());
  }
  const auto& [loss32, dh32, dw32] = results[0];
  const auto& [loss16, dh16, dw16] = results[1];
  EXPECT_NEAR(loss16, loss32, 5e-3 * loss32);
  EXPECT_NE(loss16, loss32);
  EXPECT_LT(relative_error(dh16, dh32), 2e-2);
  EXPECT_LT(relative_error(dw16, dw32), 2e-2);

  // Whole models: the training loss and every parameter's gradient.
  const int64_t vocab = 301, context = 32;
  for (const std::string router : {"dense", "lory"}) {
    torch::manual_seed(5);
    const ParamValues router_params =
        router == "lory"
            ? testing::plugins().params("lory", {{"experts", ParamValue(int64_t{4})},
                                                 {"segment_length", ParamValue(int64_t{8})}})
            : testing::plugins().params("dense");
    auto model = testing::plugins().build_model(
        router, router_params, testing::plugins().transformer_params(32, 2, 2), vocab, context);
    model->train();
    const torch::Tensor tokens_BL1 = torch::randint(vocab, {3, context + 1}, torch::kInt64);
    std::map<std::string, torch::Tensor> grads[2];
    double losses[2];
    int index = 0;
    for (const Precision precision : {Precision::Fp32, Precision::Bf16}) {
      for (auto& p : model->parameters()) p.mutable_grad() = torch::Tensor();
      RoutingContext routing(ForwardMode::Train, false);
      torch::Tensor loss;
      {
        MatmulPrecisionScope scope(precision, torch::kCPU);
        loss = language_model_loss(*model, tokens_BL1.slice(1, 0, -1), tokens_BL1.slice(1, 1),
                                   routing);
      }
      loss.backward();
      losses[index] = loss.item<double>();
      for (const auto& item : model->named_parameters()) {
        if (item.value().grad().defined()) grads[index][item.key()] = item.value().grad().clone();
      }
      ++index;
    }
    EXPECT_NEAR(losses[1], losses[0], 5e-3 * losses[0]) << router;
    for (const auto& [name, reference] : grads[0]) {
      ASSERT_TRUE(grads[1].count(name)) << router << ": " << name;
      EXPECT_EQ(grads[1].at(name).scalar_type(), torch::kFloat32) << router << ": " << name;
      // Through two blocks the rounding compounds: 5% norm-wise.
      EXPECT_LT(relative_error(grads[1].at(name), reference), 5e-2) << router << ": " << name;
    }
    // Evaluation logits come back in fp32 (the log-softmax must not run over bf16 logits).
    torch::NoGradGuard no_grad;
    MatmulPrecisionScope scope(Precision::Bf16, torch::kCPU);
    RoutingContext eval(ForwardMode::Eval, false);
    EXPECT_EQ(model->forward(tokens_BL1.slice(1, 0, -1), eval).scalar_type(), torch::kFloat32)
        << router;
  }
}

}  // namespace
}  // namespace lory
