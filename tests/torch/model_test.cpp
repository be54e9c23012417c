// The transformer model with the dense router: causality, parameter count, and that it learns.
#include <gtest/gtest.h>

#include "in_tree_plugins.h"
#include "train/adamw.h"

namespace lory {
namespace {

std::shared_ptr<LanguageModel> small_dense_model(int64_t vocab, int64_t context,
                                                 int64_t d_model = 32, int64_t layers = 2) {
  torch::manual_seed(0);
  return testing::plugins().build_model("dense", ParamValues(),
                                        testing::plugins().transformer_params(d_model, layers, 2),
                                        vocab, context);
}

torch::Tensor logits_of(LanguageModel& model, const torch::Tensor& tokens_BL) {
  torch::NoGradGuard no_grad;
  RoutingContext context(ForwardMode::Eval, false);
  return model.forward(tokens_BL, context);
}

TEST(TransformerModel, ChangingTokenTChangesNoLogitBeforeT) {
  const int64_t vocab = 50, length = 24;
  auto model = small_dense_model(vocab, length);
  model->eval();
  const torch::Tensor tokens_BL = torch::randint(vocab, {2, length}, torch::kInt64);
  const torch::Tensor base_BLV = logits_of(*model, tokens_BL);
  for (const int64_t t : std::vector<int64_t>{0, 5, 13, length - 1}) {
    torch::Tensor perturbed_BL = tokens_BL.clone();
    perturbed_BL.index_put_({torch::indexing::Slice(), t},
                            (tokens_BL.index({torch::indexing::Slice(), t}) + 1) % vocab);
    const torch::Tensor changed_BLV = logits_of(*model, perturbed_BL);
    EXPECT_TRUE(torch::equal(changed_BLV.slice(1, 0, t), base_BLV.slice(1, 0, t)))
        << "position " << t;
    EXPECT_FALSE(torch::equal(changed_BLV.slice(1, t, t + 1), base_BLV.slice(1, t, t + 1)))
        << "position " << t;
  }
}

TEST(TransformerModel, ParameterCountMatchesTheFormula) {
  const int64_t V = 101, D = 32, L = 3, F = 96;
  torch::manual_seed(0);
  auto params = testing::plugins().transformer_params(D, L, 4, {{"d_ff", F}});
  auto model = testing::plugins().build_model("dense", ParamValues(), params, V, 16);
  int64_t count = 0;
  for (const auto& p : model->parameters()) count += p.numel();
  // Embedding + untied head, per layer qkv + output projection + SwiGLU + two norm gains, final
  // norm.
  EXPECT_EQ(count, 2 * V * D + L * (4 * D * D + 3 * D * F + 2 * D) + D);
  params.set("tie_embeddings", true);
  auto tied = testing::plugins().build_model("dense", ParamValues(), params, V, 16);
  int64_t tied_count = 0;
  for (const auto& p : tied->parameters()) tied_count += p.numel();
  EXPECT_EQ(tied_count, count - V * D);
}

TEST(TransformerModel, TwoLayerModelOverfitsATinyBatch) {
  const int64_t vocab = 40, length = 16;
  auto model = small_dense_model(vocab, length);
  model->train();
  torch::manual_seed(1);
  const torch::Tensor batch_BL1 = torch::randint(vocab, {4, length + 1}, torch::kInt64);
  AdamW optimizer({0.9, 0.95, 1e-8, 0.0});
  double loss_value = 0;
  for (int step = 0; step < 150; ++step) {
    RoutingContext context(ForwardMode::Train, false);
    const torch::Tensor logits_BLV = model->forward(batch_BL1.slice(1, 0, -1), context);
    const torch::Tensor loss = torch::nn::functional::cross_entropy(
        logits_BLV.reshape({-1, vocab}), batch_BL1.slice(1, 1).reshape({-1}));
    loss.backward();
    std::vector<std::pair<std::string, torch::Tensor>> named;
    for (const auto& item : model->named_parameters()) named.emplace_back(item.key(), item.value());
    optimizer.step(named, 1e-2);
    for (auto& p : model->parameters()) p.mutable_grad() = torch::Tensor();
    loss_value = loss.item<double>();
  }
  // Random tokens start at ln(40) = 3.7 nats; memorising 64 of them takes the loss near zero.
  EXPECT_LT(loss_value, 0.2);
}

}  // namespace
}  // namespace lory
