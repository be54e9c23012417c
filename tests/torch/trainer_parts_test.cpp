// Pieces of the trainer: the optimizer against LibTorch's AdamW, the schedule, checkpoints.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/support/diagnostics.h"
#include "in_tree_plugins.h"
#include "test_support.h"
#include "train/adamw.h"
#include "train/checkpoint.h"
#include "train/failure_reason.h"
#include "train/lr_schedule.h"

namespace lory {
namespace {

TEST(FailureReason, KeepsLibTorchsMessageWithoutItsStackTrace) {
  try {
    torch::ones({2, 3}).view(
        {4});  // shape mismatch: a c10::Error whose what() carries a C++ backtrace
    FAIL();
  } catch (const std::exception& e) {
    const std::string reason = failure_reason(e);
    EXPECT_NE(reason.find("shape '[4]' is invalid for input of size 6"), std::string::npos)
        << reason;
    EXPECT_EQ(reason.find("frame #"), std::string::npos) << reason;
    EXPECT_EQ(reason.find("Exception raised from"), std::string::npos) << reason;
    EXPECT_LE(reason.size(), kMaxFailureReason + 6);
  }
  EXPECT_EQ(failure_reason(std::runtime_error(std::string(5000, 'x'))).size(),
            kMaxFailureReason + 6);
}

TEST(AdamW, MatchesLibTorchAdamWOnAMatrix) {
  torch::manual_seed(3);
  torch::Tensor mine = torch::randn({5, 7}, torch::kFloat64).requires_grad_();
  torch::Tensor reference = mine.detach().clone().requires_grad_();
  AdamW optimizer({0.9, 0.95, 1e-8, 0.1});
  torch::optim::AdamW torch_adamw(
      {reference}, torch::optim::AdamWOptions(0.01).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.1));
  for (int step = 0; step < 5; ++step) {
    const torch::Tensor target = torch::randn({5, 7}, torch::kFloat64);
    (mine - target).pow(2).sum().backward();
    (reference - target).pow(2).sum().backward();
    optimizer.step({{"w", mine}}, 0.01);
    torch_adamw.step();
    mine.mutable_grad() = torch::Tensor();
    torch_adamw.zero_grad();
  }
  EXPECT_TRUE(torch::allclose(mine, reference, 1e-12, 1e-12));
}

TEST(LrSchedule, LinearWarmupThenCosineToTheMinimum) {
  const LrSchedule schedule{1.0, 0.1, 10, 110};
  EXPECT_DOUBLE_EQ(schedule.at(0), 0.1);
  EXPECT_DOUBLE_EQ(schedule.at(9), 1.0);
  EXPECT_DOUBLE_EQ(schedule.at(10), 1.0);
  EXPECT_NEAR(schedule.at(60), 0.55, 1e-12);  // half way down the cosine
  EXPECT_NEAR(schedule.at(110), 0.1, 1e-12);
  for (int64_t s = 10; s < 110; ++s) EXPECT_LE(schedule.at(s + 1), schedule.at(s));
}

TEST(Checkpoint, RestoresModelAndOptimizerExactlyAndRejectsACorruptedFile) {
  testing::TempDir dir;
  torch::manual_seed(0);
  auto model = testing::plugins().build_model(
      "dense", ParamValues(), testing::plugins().transformer_params(16, 1, 2), 20, 8);
  AdamW optimizer({0.9, 0.95, 1e-8, 0.1});
  RoutingContext context(ForwardMode::Train, false);
  model->forward(torch::randint(20, {2, 8}, torch::kInt64), context).sum().backward();
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (const auto& item : model->named_parameters()) named.emplace_back(item.key(), item.value());
  optimizer.step(named, 0.01);
  TrainingState state;
  state.step = 7;
  state.data = {1, 3};
  state.tokens_seen = 112;
  CheckpointStore store(dir.path());
  store.save(*model, optimizer, state);

  torch::manual_seed(99);
  auto other = testing::plugins().build_model(
      "dense", ParamValues(), testing::plugins().transformer_params(16, 1, 2), 20, 8);
  AdamW other_optimizer({0.9, 0.95, 1e-8, 0.1});
  const TrainingState restored = store.restore(*other, &other_optimizer);
  EXPECT_EQ(restored.step, 7);
  EXPECT_EQ(restored.data.epoch, 1);
  EXPECT_EQ(restored.data.instance, 3);
  const auto a = model->named_parameters(), b = other->named_parameters();
  for (const auto& item : a) EXPECT_TRUE(torch::equal(item.value(), b[item.key()])) << item.key();
  // Same next update from both optimizers.
  for (auto* m : {model.get(), other.get()}) {
    for (auto& p : m->parameters()) p.mutable_grad() = torch::ones_like(p);
  }
  std::vector<std::pair<std::string, torch::Tensor>> named_other;
  for (const auto& item : other->named_parameters())
    named_other.emplace_back(item.key(), item.value());
  optimizer.step(named, 0.01);
  other_optimizer.step(named_other, 0.01);
  for (const auto& item : a) EXPECT_TRUE(torch::equal(item.value(), b[item.key()])) << item.key();

  const std::string file = dir.file("checkpoint-00000007.pt");
  ASSERT_TRUE(std::filesystem::exists(file));
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(200);
    f.put('\x01');
  }
  try {
    store.restore(*other, &other_optimizer);
    FAIL() << "a corrupted checkpoint was restored";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("fails its sha256 check"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace lory
