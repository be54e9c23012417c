// Token-level baselines: top-k token choice and expert choice (token and segment level) against
// naive per-token references, capacity, the balance loss, and causality where it is promised.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "in_tree_plugins.h"
#include "lory/testkit/router_checks.h"

namespace lory {
namespace {

using testing::plugins;

// See testkit::earlier_outputs_changed: grouped GEMMs round in the last bit depending on group
// size.
constexpr double kGroupingNoise = 1e-12;

FeedForwardSpec spec(int64_t d_model = 8, int64_t d_ff = 12) {
  return {d_model, d_ff, 0, 1, 0.3, 0.3};
}

std::shared_ptr<FeedForward> layer(const std::string& router,
                                   const std::map<std::string, ParamValue>& params,
                                   FeedForwardSpec s = spec(), double router_std = 1.0) {
  auto l = plugins().build_layer(router, s, plugins().params(router, params));
  torch::NoGradGuard no_grad;
  l->named_parameters()["router_ED"].normal_(0, router_std);
  l->to(torch::kFloat64);
  return l;
}

void expect_equivalent(FeedForward& fast, FeedForward& naive, const torch::Tensor& h_BLD,
                       const std::string& where) {
  const testkit::LayerComparison c = testkit::compare_layers(fast, naive, h_BLD);
  EXPECT_LT(c.output, 1e-12) << where;
  EXPECT_LT(c.input_gradient, 1e-12) << where;
  for (const auto& [name, difference] : c.parameters)
    EXPECT_LT(difference, 1e-12) << where << " " << name;
}

TEST(TopKRouter, GroupedDispatchEqualsTheNaivePerTokenReference) {
  struct Case {
    int64_t experts, k;
    std::string gate;
    bool renormalize;
    double capacity;
    std::string policy;
  };
  const Case cases[] = {
      {4, 1, "softmax", true, 0, "position"},  {4, 2, "softmax", true, 0, "position"},
      {8, 2, "sigmoid", false, 0, "position"}, {4, 2, "softmax", true, 0.6, "position"},
      {4, 1, "softmax", false, 1.0, "weight"}, {3, 3, "softmax", false, 0, "position"}};
  for (const Case& c : cases) {
    torch::manual_seed(20);
    std::map<std::string, ParamValue> params = {{"experts", c.experts},
                                                {"k", c.k},
                                                {"gate", c.gate},
                                                {"renormalize", c.renormalize},
                                                {"capacity_factor", c.capacity},
                                                {"drop_policy", c.policy}};
    auto fast = layer("topk", params);
    params["implementation"] = std::string("naive");
    auto naive = layer("topk", params);
    expect_equivalent(*fast, *naive, torch::randn({2, 9, 8}, torch::kFloat64),
                      fmt::format("E={} k={} {} renorm={} capacity={} {}", c.experts, c.k, c.gate,
                                  c.renormalize, c.capacity, c.policy));
  }
}

TEST(ExpertChoiceRouter, GroupedDispatchEqualsTheNaivePerTokenReferenceAtTokenAndSegmentLevel) {
  for (const std::string level : {"token", "segment"}) {
    for (const double capacity : {0.5, 1.0, 2.0}) {
      torch::manual_seed(21);
      std::map<std::string, ParamValue> params = {{"experts", int64_t{4}},
                                                  {"level", level},
                                                  {"segment_length", int64_t{3}},
                                                  {"capacity_factor", capacity}};
      auto fast = layer("expert_choice", params);
      params["implementation"] = std::string("naive");
      auto naive = layer("expert_choice", params);
      expect_equivalent(*fast, *naive, torch::randn({2, 10, 8}, torch::kFloat64),
                        fmt::format("{} capacity {}", level, capacity));
    }
  }
}

// Every token's router prefers expert 0 (h · router_0 > 0, other rows zero).
std::shared_ptr<FeedForward> topk_all_prefer_expert_zero(const std::string& policy,
                                                         double capacity) {
  auto l = layer("topk", {{"experts", int64_t{2}},
                          {"k", int64_t{1}},
                          {"capacity_factor", capacity},
                          {"drop_policy", policy},
                          {"renormalize", false}});
  torch::NoGradGuard no_grad;
  torch::Tensor router = l->named_parameters()["router_ED"];
  router.zero_();
  router[0].fill_(1.0);
  return l;
}

TEST(TopKRouter, CapacityDropsExactlyTheLaterPositionsUnderThePositionPolicy) {
  auto l = topk_all_prefer_expert_zero("position", 0.5);
  // 2 x 4 tokens, all positive: all choose expert 0; capacity = ceil(0.5 * 8 * 1 / 2) = 2 slots.
  const torch::Tensor h_BLD = torch::rand({2, 4, 8}, torch::kFloat64) + 0.5;
  RoutingContext context(ForwardMode::Train, true);
  const torch::Tensor y_BLD = l->forward(h_BLD, context);
  // Position 0 of both sequences fits; every later position is dropped (its output is zero).
  for (int64_t b = 0; b < 2; ++b) {
    EXPECT_GT(y_BLD[b][0].abs().sum().item<double>(), 0) << b;
    for (int64_t t = 1; t < 4; ++t)
      EXPECT_EQ(y_BLD[b][t].abs().sum().item<double>(), 0) << b << "," << t;
  }
  double dropped = -1;
  for (const auto& stat : context.records().at(0).stats) {
    if (stat.name == "dropped_fraction") dropped = stat.value;
  }
  EXPECT_DOUBLE_EQ(dropped, 6.0 / 8.0);
}

TEST(TopKRouter, CapacityKeepsTheHighestGatesUnderTheWeightPolicy) {
  auto l = topk_all_prefer_expert_zero("weight", 0.5);
  torch::Tensor h_BLD = torch::full({1, 4, 8}, 0.1, torch::kFloat64);
  h_BLD[0][2].fill_(2.0);  // the strongest preference for expert 0, then position 3
  h_BLD[0][3].fill_(1.0);
  RoutingContext context(ForwardMode::Train, false);
  const torch::Tensor y_BLD = l->forward(h_BLD, context);
  // capacity = ceil(0.5 * 4 tokens * 1 / 2 experts) = 1 slot: only the highest gate fits.
  for (int64_t t : {0, 1, 3}) EXPECT_EQ(y_BLD[0][t].abs().sum().item<double>(), 0) << t;
  EXPECT_GT(y_BLD[0][2].abs().sum().item<double>(), 0);
}

TEST(TopKRouter, KEqualToEWithoutCapacityIsTheSoftmaxMixtureOfAllExperts) {
  torch::manual_seed(22);
  auto l = layer("topk", {{"experts", int64_t{4}}, {"k", int64_t{4}}, {"renormalize", false}});
  const torch::Tensor h_BLD = torch::randn({2, 5, 8}, torch::kFloat64);
  RoutingContext context(ForwardMode::Eval, false);
  const torch::Tensor y_BLD = l->forward(h_BLD, context);
  auto p = l->named_parameters();
  const torch::Tensor probs_BLE = torch::softmax(torch::matmul(h_BLD, p["router_ED"].t()), -1);
  torch::Tensor expected_BLD = torch::zeros_like(h_BLD);
  for (int64_t e = 0; e < 4; ++e) {
    expected_BLD += probs_BLE.select(-1, e).unsqueeze(-1) *
                    swiglu(h_BLD, p["w_gate_EFD"][e], p["w_up_EFD"][e], p["w_down_EDF"][e]);
  }
  EXPECT_TRUE(torch::allclose(y_BLD, expected_BLD, 1e-12, 1e-12));
}

TEST(TopKRouter, BalanceLossEqualsItsFormulaOnAHandComputedCase) {
  // D = 2, E = 2, router = identity, so the router logits are the inputs themselves. Three of the
  // four tokens choose expert 0, so f = (3/4, 1/4): an uneven case, where E * sum_e f_e P_e
  // differs from look-alikes such as E * sum_e f_e^2 (1.25) or a constant 1.
  auto l = layer("topk", {{"experts", int64_t{2}}, {"k", int64_t{1}}, {"balance_loss_weight", 0.5}},
                 spec(2, 4));
  {
    torch::NoGradGuard no_grad;
    l->named_parameters()["router_ED"].copy_(torch::eye(2, torch::kFloat64));
  }
  const double h[4][2] = {{2.0, 0.0}, {1.0, 0.5}, {0.5, 0.0}, {0.0, 3.0}};
  torch::Tensor h_BLD = torch::zeros({1, 4, 2}, torch::kFloat64);
  double p0[4], p0_sum = 0;
  for (int t = 0; t < 4; ++t) {
    h_BLD[0][t][0] = h[t][0];
    h_BLD[0][t][1] = h[t][1];
    p0[t] = 1.0 / (1.0 + std::exp(h[t][1] - h[t][0]));
    p0_sum += p0[t];
  }
  const double f0 = 3.0 / 4, f1 = 1.0 / 4, P0 = p0_sum / 4, P1 = 1 - P0;
  const double expected = 2.0 * (f0 * P0 + f1 * P1);
  RoutingContext context(ForwardMode::Train, false);
  l->forward(h_BLD, context);
  double unscaled = -1, scaled = -1;
  for (const auto& [layer_index, stat] : context.aux_stats()) {
    if (stat.name == "aux/balance_unscaled") unscaled = stat.value;
    if (stat.name == "aux/balance") scaled = stat.value;
  }
  EXPECT_NEAR(unscaled, expected, 1e-12);
  EXPECT_GT(std::abs(unscaled - 1.25), 0.05);  // not E * sum f^2
  EXPECT_NEAR(scaled, 0.5 * expected, 1e-12);
  const torch::Tensor aux = context.total_aux_loss();
  EXPECT_NEAR(aux.item<double>(), 0.5 * expected, 1e-12);

  // Its gradient reaches the router through P only (f counts choices): with logits z_t = h_t and
  // dp_t0/dz_t0 = p_t0 (1 - p_t0) = -dp_t0/dz_t1, d(aux)/dR_j = 0.5 * 2/4 * sum_t (f0 - f1) *
  // p_t0 (1 - p_t0) * (+h_t for j = 0, -h_t for j = 1).
  aux.backward();
  const torch::Tensor grad_router = l->named_parameters()["router_ED"].grad();
  ASSERT_TRUE(grad_router.defined());
  for (int d = 0; d < 2; ++d) {
    double g0 = 0;
    for (int t = 0; t < 4; ++t) g0 += 0.5 * 2.0 / 4 * (f0 - f1) * p0[t] * (1 - p0[t]) * h[t][d];
    EXPECT_NEAR(grad_router[0][d].item<double>(), g0, 1e-12) << "d " << d;
    EXPECT_NEAR(grad_router[1][d].item<double>(), -g0, 1e-12) << "d " << d;
  }
}

TEST(TopKRouter, TopOneGateIsTheRawProbabilitySoTheLmLossTrainsTheRouter) {
  // renormalize = true (the default) over a single choice would make every gate 1 and cut the
  // router off from the LM loss: with k = 1 the gate stays the softmax probability.
  torch::manual_seed(26);
  auto l =
      layer("topk", {{"experts", int64_t{4}}, {"k", int64_t{1}}, {"balance_loss_weight", 0.0}});
  const torch::Tensor h_BLD = torch::randn({2, 6, 8}, torch::kFloat64);
  RoutingContext context(ForwardMode::Train, true);
  const torch::Tensor y_BLD = l->forward(h_BLD, context);
  const torch::Tensor probs_BLE =
      torch::softmax(torch::matmul(h_BLD, l->named_parameters()["router_ED"].t()), -1);
  const torch::Tensor w_BLE = context.records().at(0).weights_BLE.to(torch::kFloat64);
  EXPECT_TRUE(torch::allclose(w_BLE.amax(-1), probs_BLE.amax(-1), 1e-6, 1e-6));
  (y_BLD * torch::randn_like(y_BLD)).sum().backward();
  EXPECT_GT(l->named_parameters()["router_ED"].grad().abs().max().item<double>(), 0);
}

// gate_scale multiplies every gate: with gate_scale = E an upcycled top-1 layer (every expert the
// dense FFN, a fresh router giving each expert about 1/E) starts near the dense FFN's output,
// where the raw probability shrinks it to about 1/E of it.
TEST(TopKRouter, GateScaleMultipliesTheGatesSoAnUpcycledTopOneLayerStartsNearTheDenseFfn) {
  torch::manual_seed(27);
  const FeedForwardSpec s = spec(16, 24);
  const torch::Tensor h_BLD = torch::randn({2, 6, 16}, torch::kFloat64);
  const lory::DenseFFNWeights dense{torch::randn({24, 16}, torch::kFloat64) * 0.3,
                                    torch::randn({24, 16}, torch::kFloat64) * 0.3,
                                    torch::randn({16, 24}, torch::kFloat64) * 0.3};
  const torch::Tensor dense_BLD = swiglu(h_BLD, dense.w_gate_FD, dense.w_up_FD, dense.w_down_DF);
  std::map<double, torch::Tensor> outputs;
  for (const double scale : {1.0, 8.0}) {
    torch::manual_seed(28);
    auto l = plugins().build_layer(
        "topk", s,
        plugins().params("topk",
                         {{"experts", int64_t{8}}, {"k", int64_t{1}}, {"gate_scale", scale}}));
    l->to(torch::kFloat64);
    l->upcycle_from(dense);
    RoutingContext context(ForwardMode::Eval, false);
    torch::NoGradGuard no_grad;
    outputs[scale] = l->forward(h_BLD, context);
  }
  EXPECT_TRUE(torch::allclose(outputs[8.0], outputs[1.0] * 8.0, 1e-12, 1e-12));
  const double raw_ratio = (outputs[1.0].norm() / dense_BLD.norm()).item<double>();
  const double scaled_ratio = (outputs[8.0].norm() / dense_BLD.norm()).item<double>();
  EXPECT_LT(raw_ratio, 0.25)
      << "the raw top-1 gate keeps the upcycled output near 1/E of the dense one";
  EXPECT_GT(scaled_ratio, 0.8);
  EXPECT_LT(scaled_ratio, 1.6);
}

// The evaluator's routing statistics read where each token goes, not how large its gate is: a
// scaled top-1 gate (8 x a probability, above 1) gave a negative "entropy" before the weights were
// normalised per token.
TEST(RoutingDistribution, IsOneHotForTopOneWhateverTheGateScaleAndLeavesMergeWeightsAlone) {
  torch::manual_seed(29);
  auto l = layer("topk", {{"experts", int64_t{8}}, {"k", int64_t{1}}, {"gate_scale", 8.0}});
  const torch::Tensor h_BLD = torch::randn({2, 6, 8}, torch::kFloat64);
  RoutingContext context(ForwardMode::Eval, true);
  torch::NoGradGuard no_grad;
  l->forward(h_BLD, context);
  const torch::Tensor w_BLE = context.records().at(0).weights_BLE.to(torch::kFloat64);
  EXPECT_GT(w_BLE.amax().item<double>(), 1.0) << "the scaled gates this test is about";
  const torch::Tensor p_BLE = routing_distribution(w_BLE);
  EXPECT_TRUE(torch::equal(p_BLE.amax(-1), torch::ones({2, 6}, torch::kFloat64)));
  EXPECT_TRUE(torch::equal(p_BLE.argmax(-1), w_BLE.argmax(-1)));
  EXPECT_TRUE(torch::allclose(p_BLE.sum(-1), torch::ones({2, 6}, torch::kFloat64)));

  const torch::Tensor merge_BLE = torch::softmax(torch::randn({2, 6, 8}, torch::kFloat64), -1);
  EXPECT_TRUE(torch::allclose(routing_distribution(merge_BLE), merge_BLE, 1e-15, 1e-15));
  const torch::Tensor untaken_BLE = torch::zeros({1, 3, 8}, torch::kFloat64);
  EXPECT_TRUE(torch::equal(routing_distribution(untaken_BLE), untaken_BLE))
      << "a token no expert took stays empty";
}

TEST(TopKRouter, TokenChoiceIsCausalWithoutCapacityAndWithPositionCapacity) {
  for (const double capacity : {0.0, 0.75}) {
    torch::manual_seed(23);
    auto l =
        layer("topk", {{"experts", int64_t{4}}, {"k", int64_t{2}}, {"capacity_factor", capacity}});
    const torch::Tensor h_BLD = torch::randn({3, 10, 8}, torch::kFloat64);
    for (int64_t p = 1; p < 10; ++p) {
      EXPECT_EQ(testkit::earlier_outputs_changed(*l, h_BLD, p, ForwardMode::Train, kGroupingNoise),
                std::vector<int64_t>{})
          << "capacity " << capacity << " position " << p;
    }
  }
}

TEST(ExpertChoiceRouter, InferenceModeIsCausalWhileTrainingIsNot) {
  for (const std::string level : {"token", "segment"}) {
    torch::manual_seed(24);
    auto l = layer("expert_choice",
                   {{"experts", int64_t{4}}, {"level", level}, {"segment_length", int64_t{2}}});
    const torch::Tensor h_BLD = torch::randn({2, 12, 8}, torch::kFloat64);
    bool training_leaks = false;
    for (int64_t p = 1; p < 12; ++p) {
      EXPECT_EQ(testkit::earlier_outputs_changed(*l, h_BLD, p, ForwardMode::Eval, kGroupingNoise),
                std::vector<int64_t>{})
          << level << " position " << p;
      training_leaks = training_leaks || !testkit::earlier_outputs_changed(
                                              *l, h_BLD, p, ForwardMode::Train, kGroupingNoise)
                                              .empty();
    }
    EXPECT_TRUE(training_leaks) << level
                                << ": expert choice in training should look ahead (documented)";
  }
}

TEST(ExpertChoiceRouter, EveryExpertTakesCapacityFactorTimesUnitsOverE) {
  torch::manual_seed(25);
  auto l = layer("expert_choice", {{"experts", int64_t{4}}, {"capacity_factor", 1.0}});
  RoutingContext context(ForwardMode::Train, true);
  l->forward(torch::randn({2, 8, 8}, torch::kFloat64), context);
  const torch::Tensor w_BLE = context.records().at(0).weights_BLE;
  // 16 tokens, 4 experts: each expert processes exactly 4 tokens.
  EXPECT_TRUE(
      torch::equal((w_BLE > 0).sum(torch::IntArrayRef{0, 1}), torch::full({4}, 4, torch::kInt64)));
}

TEST(LoryRouter, PrefixRoutingReusesTheFirstSegmentsWeightsForEverySegment) {
  torch::manual_seed(26);
  auto l = layer("lory", {{"experts", int64_t{4}},
                          {"segment_length", int64_t{3}},
                          {"routing", std::string("prefix")}});
  RoutingContext context(ForwardMode::Train, true);
  l->forward(torch::randn({2, 12, 8}, torch::kFloat64), context);
  const torch::Tensor w_BLE = context.records().at(0).weights_BLE;
  for (int64_t t = 1; t < 12; ++t)
    EXPECT_TRUE(torch::equal(w_BLE.select(1, t), w_BLE.select(1, 0))) << t;
}

}  // namespace
}  // namespace lory
