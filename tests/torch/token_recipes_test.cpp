// The token-routing recipes of `topk` (shared experts, fine-grained experts, aux-loss-free
// balancing) against naive references; every in-tree router's declaration round-tripping through
// its export; and the metrics rule (each statistic combined by its declared Reduce).
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "in_tree_plugins.h"
#include "lory/testkit/router_checks.h"
#include "train/router_metrics.h"
#include "train/routing_stability.h"

namespace lory {
namespace {

using testing::plugins;

FeedForwardSpec spec() { return {8, 12, 0, 1, 0.3, 0.3}; }

std::shared_ptr<FeedForward> topk(const std::map<std::string, ParamValue>& params) {
  torch::manual_seed(7);
  auto l = plugins().build_layer("topk", spec(), plugins().params("topk", params));
  torch::NoGradGuard no_grad;
  l->named_parameters()["router_ED"].normal_(0, 1.0);
  l->to(torch::kFloat64);
  return l;
}

torch::Tensor run(FeedForward& layer, const torch::Tensor& h_BLD,
                  ForwardMode mode = ForwardMode::Train) {
  RoutingContext context(mode, false);
  return layer.forward(h_BLD, context);
}

torch::Tensor swiglu_reference(const torch::Tensor& h, const torch::Tensor& g,
                               const torch::Tensor& u, const torch::Tensor& w) {
  return torch::matmul(torch::silu(torch::matmul(h, g.t())) * torch::matmul(h, u.t()), w.t());
}

TEST(TopKRecipes, SharedExpertsAddEachSharedSwiGLUUngatedToTheRoutedOutput) {
  const torch::Tensor h_BLD = torch::randn({2, 5, 8}, torch::kFloat64);
  auto plain = topk({{"experts", int64_t{4}}, {"k", int64_t{2}}});
  auto shared = topk({{"experts", int64_t{4}},
                      {"k", int64_t{2}},
                      {"shared_experts", int64_t{2}},
                      {"shared_d_ff", int64_t{3}}});
  auto p = shared->named_parameters();
  // Registered after the routed experts and the router: the same seed gives the same experts.
  for (const char* name : {"w_gate_EFD", "w_up_EFD", "w_down_EDF"}) {
    ASSERT_TRUE(torch::equal(plain->named_parameters()[name], p[name])) << name;
  }
  {
    torch::NoGradGuard no_grad;
    p["router_ED"].copy_(
        plain->named_parameters()["router_ED"]);  // the helper redraws routers afterwards
  }
  ASSERT_EQ(p["shared_gate_FD"].size(0), 6);
  torch::Tensor expected = run(*plain, h_BLD);
  for (int64_t s = 0; s < 2; ++s) {  // two separate shared experts of width 3
    expected = expected + swiglu_reference(h_BLD, p["shared_gate_FD"].slice(0, 3 * s, 3 * s + 3),
                                           p["shared_up_FD"].slice(0, 3 * s, 3 * s + 3),
                                           p["shared_down_DF"].slice(1, 3 * s, 3 * s + 3));
  }
  EXPECT_LT((run(*shared, h_BLD) - expected).abs().max().item<double>(), 1e-12);
  EXPECT_EQ(shared->active_parameter_count(), plain->active_parameter_count() + 3 * 6 * 8);
  EXPECT_LT(testkit::gradient_check(*shared, h_BLD), 1e-6);
}

TEST(TopKRecipes, FineGrainedExpertsAreDffOverGranularityWideAndKeepTheActiveSize) {
  auto coarse = topk({{"experts", int64_t{4}}, {"k", int64_t{1}}});
  auto fine = topk({{"experts", int64_t{16}}, {"k", int64_t{4}}, {"granularity", int64_t{4}}});
  EXPECT_EQ(fine->named_parameters()["w_gate_EFD"].size(1), 3);
  EXPECT_EQ(fine->active_parameter_count() - 16 * 8,
            coarse->active_parameter_count() - 4 * 8);  // less the routers
  try {
    topk({{"granularity", int64_t{5}}});
    FAIL() << "granularity 5 does not divide d_ff 12";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("granularity = 5 does not divide the model's d_ff = 12"),
              std::string::npos);
  }
}

TEST(TopKRecipes, TheBalancingBiasChoosesTheExpertsButTheGatesStayTheUnbiasedScores) {
  auto layer = topk({{"experts", int64_t{4}}, {"k", int64_t{1}}, {"bias_update_rate", 0.001}});
  auto named = layer->named_buffers();
  ASSERT_TRUE(named.contains("expert_bias_E"));
  {
    torch::NoGradGuard no_grad;
    named["expert_bias_E"].copy_(
        torch::tensor({0.0, 0.0, 5.0, 0.0}));  // every token picks expert 2
  }
  const torch::Tensor h_BLD = torch::randn({2, 5, 8}, torch::kFloat64);
  auto p = layer->named_parameters();
  const torch::Tensor probs = torch::softmax(torch::matmul(h_BLD, p["router_ED"].t()), -1);
  const torch::Tensor expected =
      probs.select(-1, 2).unsqueeze(-1) *
      swiglu_reference(h_BLD, p["w_gate_EFD"][2], p["w_up_EFD"][2], p["w_down_EDF"][2]);
  EXPECT_LT((run(*layer, h_BLD, ForwardMode::Eval) - expected).abs().max().item<double>(), 1e-12);
  // Within one forward a token's choice depends on that token alone: causal.
  for (int64_t t = 1; t < 5; ++t)
    EXPECT_TRUE(
        testkit::earlier_outputs_changed(*layer, h_BLD, t, ForwardMode::Train, 1e-12).empty());
}

TEST(TopKRecipes, TheBiasMovesBySignOfTheLoadErrorOverTheStepAndIsRecentred) {
  const double u = 0.01;
  auto layer = topk({{"experts", int64_t{4}}, {"k", int64_t{1}}, {"bias_update_rate", u}});
  const torch::Tensor h_BLD = torch::randn({2, 6, 8}, torch::kFloat64);
  // Two micro-batches in one step: the loads add up before the update.
  run(*layer, h_BLD);
  run(*layer, h_BLD.flip(1));
  const std::vector<torch::Tensor> accumulators = layer->training_step_accumulators();
  ASSERT_EQ(accumulators.size(), 1u);
  const torch::Tensor load_E = accumulators[0].clone();
  EXPECT_EQ(load_E.sum().item<double>(), 24);  // 2 x 12 tokens, k = 1
  layer->finish_training_step();
  const torch::Tensor raw_E = torch::sign(load_E.mean() - load_E) * u;
  const torch::Tensor expected_E = raw_E - raw_E.mean();
  const torch::Tensor bias_E = layer->named_buffers()["expert_bias_E"].to(torch::kFloat64);
  EXPECT_LT((bias_E - expected_E).abs().max().item<double>(), 1e-7);
  EXPECT_LT(std::abs(bias_E.sum().item<double>()), 1e-6);
  EXPECT_EQ(layer->training_step_accumulators()[0].sum().item<double>(),
            0);  // reset for the next step
  // An overloaded expert's bias went down, an underloaded one's up.
  for (int64_t e = 0; e < 4; ++e) {
    if (load_E[e].item<double>() > load_E.mean().item<double>()) {
      EXPECT_LT(bias_E[e].item<double>(), bias_E.max().item<double>());
    }
  }
  // Evaluation forwards do not count.
  run(*layer, h_BLD, ForwardMode::Eval);
  EXPECT_EQ(layer->training_step_accumulators()[0].sum().item<double>(), 0);
}

// Every in-tree router's declared defaults come back from its export layout, by name.
TEST(ParamDeclaration, EveryInTreeRoutersDefaultsRoundTripThroughItsExportLayout) {
  for (const std::string router : {"lory", "topk", "expert_choice"}) {
    const ParamValues defaults = plugins().params(router);
    auto layer = plugins().build_layer(router, spec(), defaults);
    const nlohmann::json layout = nlohmann::json::parse(layer->export_layout_json());
    EXPECT_EQ(layout["router"], router);
    for (const auto& [name, value] : defaults.all()) {
      ASSERT_TRUE(layout.contains(name)) << router << "." << name;
      if (name == "expert_d_ff" || name == "shared_d_ff") {  // exported resolved: the width in use
        EXPECT_EQ(layout[name], 12) << router << "." << name;
        continue;
      }
      std::visit(
          [&](const auto& v) {
            EXPECT_EQ(layout[name], nlohmann::json(v)) << router << "." << name;
          },
          value);
    }
  }
  auto dense = plugins().build_layer("dense", spec(), plugins().params("dense"));
  EXPECT_EQ(nlohmann::json::parse(dense->export_layout_json())["d_ff"], 12);
}

TEST(RouterMetrics, EachStatisticCombinesOverLayersByItsDeclaredRule) {
  RoutingContext context(ForwardMode::Train, true);
  for (int64_t layer = 0; layer < 3; ++layer) {
    RoutingRecord record;
    record.layer = layer;
    const double v = static_cast<double>(layer + 1);  // 1, 2, 3
    record.stats = {
        {"mean_stat", v, Reduce::Mean}, {"sum_stat", v, Reduce::Sum}, {"max_stat", v, Reduce::Max}};
    record.load_E = torch::tensor({v, 1.0, 1.0, 1.0}, torch::kFloat64);  // mean load (v + 3) / 4
    context.add_record(std::move(record));
    context.add_aux_loss(layer, "balance", torch::tensor(0.1 * v), v);
  }
  auto group = DataParallel::from_environment();
  std::vector<MetricRow> rows;
  add_router_metrics(context, 5, *group, rows);
  std::map<std::string, double> by_name;
  for (const MetricRow& row : rows) by_name[row.name] = row.value;
  EXPECT_DOUBLE_EQ(by_name.at("router/mean_stat"), 2.0);
  EXPECT_DOUBLE_EQ(by_name.at("router/sum_stat"), 6.0);
  EXPECT_DOUBLE_EQ(by_name.at("router/max_stat"), 3.0);
  EXPECT_DOUBLE_EQ(by_name.at("router/layer1/sum_stat"), 2.0);
  EXPECT_NEAR(by_name.at("aux/balance"), 0.6, 1e-6);  // the loss added: summed over layers
  EXPECT_DOUBLE_EQ(by_name.at("aux/balance_unscaled"), 6.0);
  EXPECT_EQ(combine({}, Reduce::Max), 0.0);
  // Balance metrics from each layer's load: loads {v, 1, 1, 1}, mean (v + 3) / 4.
  EXPECT_DOUBLE_EQ(by_name.at("router/layer0/max_violation"), 0.0);
  EXPECT_DOUBLE_EQ(by_name.at("router/layer2/max_violation"), 3.0 / 1.5 - 1.0);
  EXPECT_DOUBLE_EQ(by_name.at("router/max_violation"), 3.0 / 1.5 - 1.0);  // the worst layer
  EXPECT_DOUBLE_EQ(by_name.at("router/layer1/load_p50"), 1.0 / 1.25);
  EXPECT_DOUBLE_EQ(by_name.at("router/load_p100"), 2.0);
}

TEST(RoutingStability, AgreementAndDistanceOnHandMadeRoutings) {
  const torch::Tensor final_XE =
      torch::tensor({{0.7, 0.3}, {0.2, 0.8}, {1.0, 0.0}, {0.5, 0.5}}, torch::kFloat64);
  const auto [same_agreement, same_distance] = routing_agreement(final_XE, final_XE);
  EXPECT_DOUBLE_EQ(same_agreement, 1.0);
  EXPECT_DOUBLE_EQ(same_distance, 0.0);
  // Tokens 0 and 2 had another top-1 expert (distances 0.4 and 0.6); tokens 1 and 3 are unchanged.
  const torch::Tensor earlier_XE =
      torch::tensor({{0.3, 0.7}, {0.2, 0.8}, {0.4, 0.6}, {0.5, 0.5}}, torch::kFloat64);
  const auto [agreement, distance] = routing_agreement(earlier_XE, final_XE);
  EXPECT_DOUBLE_EQ(agreement, 2.0 / 4.0);
  EXPECT_NEAR(distance, (0.4 + 0.0 + 0.6 + 0.0) / 4.0, 1e-12);
}

}  // namespace
}  // namespace lory
