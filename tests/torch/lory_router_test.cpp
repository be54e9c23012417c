// The `lory` router against §1 of the method: causality per segment, the fast path against the
// naive per-segment reference, the reductions, the stop-gradient on segment 1, and upcycling.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "in_tree_plugins.h"
#include "lory/nn/expert_merge.h"
#include "lory/testkit/router_checks.h"
#include "train/adamw.h"
#include "train/upcycling.h"

namespace lory {
namespace {

using testing::plugins;

FeedForwardSpec spec(int64_t d_model = 8, int64_t d_ff = 12) {
  return {d_model, d_ff, 0, 1, 0.3, 0.3};
}

std::shared_ptr<FeedForward> lory_layer(const std::map<std::string, ParamValue>& params,
                                        FeedForwardSpec s = spec(),
                                        torch::Dtype dtype = torch::kFloat64) {
  auto layer = plugins().build_layer("lory", s, plugins().params("lory", params));
  // A larger router init than the default makes routing weights differ visibly between segments.
  {
    torch::NoGradGuard no_grad;
    layer->named_parameters()["router_ED"].normal_(0, 1.0);
  }
  layer->to(dtype);
  return layer;
}

// ---- causality ----------------------------------------------------------------------------------

TEST(LoryRouter, PerturbingALaterSegmentLeavesEveryEarlierOutputBitIdentical) {
  torch::manual_seed(0);
  for (const std::string rule : {"paper", "uniform", "first_token"}) {
    auto layer = lory_layer(
        {{"experts", int64_t{4}}, {"segment_length", int64_t{4}}, {"first_segment", rule}});
    const torch::Tensor h_BLD =
        torch::randn({2, 14, 8}, torch::kFloat64);  // segments of 4, 4, 4, 2
    for (int64_t p = 4; p < 14;
         ++p) {  // every position of segments 2..4, the first of each included
      EXPECT_EQ(testkit::earlier_outputs_changed(*layer, h_BLD, p), std::vector<int64_t>{})
          << rule << ", perturbed position " << p;
    }
  }
}

TEST(LoryRouter, WithinSegmentOneOnlyThePaperRuleLeaksAndOnlyInsideSegmentOne) {
  torch::manual_seed(1);
  const torch::Tensor h_BLD = torch::randn({2, 12, 8}, torch::kFloat64);
  auto paper = lory_layer({{"experts", int64_t{4}},
                           {"segment_length", int64_t{4}},
                           {"first_segment", std::string("paper")}});
  // Under the paper rule a later token of segment 1 moves segment 1's routing, hence its earlier
  // outputs.
  EXPECT_EQ(testkit::earlier_outputs_changed(*paper, h_BLD, 3), (std::vector<int64_t>{0, 1, 2}));
  for (const std::string rule : {"uniform", "first_token"}) {
    auto strict = lory_layer(
        {{"experts", int64_t{4}}, {"segment_length", int64_t{4}}, {"first_segment", rule}});
    for (int64_t p = 1; p < 4; ++p) {
      EXPECT_EQ(testkit::earlier_outputs_changed(*strict, h_BLD, p), std::vector<int64_t>{})
          << rule << " " << p;
    }
  }
}

TEST(LoryRouter, ARouterLookingAtItsOwnSegmentWouldBeCaught) {
  // The checker itself must see a within-segment leak: prompt routing over the whole sequence is
  // exactly such a router (its decision uses every token).
  torch::manual_seed(2);
  auto layer = lory_layer({{"experts", int64_t{4}}, {"segment_length", int64_t{4}}});
  const torch::Tensor h_BLD = torch::randn({1, 8, 8}, torch::kFloat64);
  torch::Tensor base, changed;
  {
    torch::NoGradGuard no_grad;
    RoutingContext context(ForwardMode::Eval, false);
    context.set_eval_routing({EvalRouting::Rule::Prompt, 8});
    base = layer->forward(h_BLD, context);
    torch::Tensor perturbed = h_BLD.clone();
    perturbed.select(1, 6).add_(1.0);
    changed = layer->forward(perturbed, context);
  }
  EXPECT_FALSE(torch::equal(base.select(1, 5), changed.select(1, 5)));
}

TEST(LoryRouter, ModelLogitsAreCausalAcrossSegments) {
  torch::manual_seed(3);
  const int64_t vocab = 30, length = 16;
  auto model = plugins().build_model("lory",
                                     plugins().params("lory", {{"experts", int64_t{4}},
                                                               {"segment_length", int64_t{4}},
                                                               {"router_init_std", 0.5}}),
                                     plugins().transformer_params(16, 2, 2), vocab, length);
  const torch::Tensor tokens_BL = torch::randint(vocab, {2, length}, torch::kInt64);
  for (int64_t p = 4; p < length; ++p) {
    EXPECT_EQ(testkit::earlier_logits_changed(*model, tokens_BL, p, vocab), std::vector<int64_t>{})
        << "position " << p;
  }
}

// ---- fast path == naive reference
// -----------------------------------------------------------------

struct Shape {
  int64_t B, L, T, E;
};

TEST(LoryRouter, ChunkedPathEqualsNaiveReferenceInOutputsAndAllGradients) {
  const Shape shapes[] = {{2, 12, 4, 4}, {1, 10, 4, 3}, {3, 8, 8, 2},
                          {2, 9, 1, 5},  {2, 7, 3, 8},  {1, 6, 16, 4}};
  for (const Shape& s : shapes) {
    for (const std::string rule : {"paper", "uniform", "first_token"}) {
      torch::manual_seed(4);
      const std::map<std::string, ParamValue> common = {{"experts", s.E},
                                                        {"segment_length", s.T},
                                                        {"first_segment", rule},
                                                        {"chunk_segments", int64_t{3}}};
      auto fast = lory_layer(common);
      auto with_naive = common;
      with_naive["implementation"] = std::string("naive");
      auto naive = lory_layer(with_naive);
      const torch::Tensor h_BLD = torch::randn({s.B, s.L, 8}, torch::kFloat64);
      const testkit::LayerComparison c = testkit::compare_layers(*fast, *naive, h_BLD);
      const std::string where = fmt::format("B={} L={} T={} E={} {}", s.B, s.L, s.T, s.E, rule);
      EXPECT_LT(c.output, 1e-12) << where;
      EXPECT_LT(c.input_gradient, 1e-12) << where;
      for (const auto& [name, difference] : c.parameters)
        EXPECT_LT(difference, 1e-12) << where << " " << name;
      EXPECT_EQ(c.parameters.size(), 4u);
    }
  }
}

TEST(ExpertMerge, GemmMergeEqualsExplicitSumsIncludingTheRoutingWeightGradient) {
  torch::manual_seed(5);
  const int64_t S = 7, T = 5, D = 6, F = 9, E = 4;
  ExpertWeights experts{torch::randn({E, F, D}, torch::kFloat64).requires_grad_(),
                        torch::randn({E, F, D}, torch::kFloat64).requires_grad_(),
                        torch::randn({E, D, F}, torch::kFloat64).requires_grad_()};
  torch::Tensor x = torch::randn({S, T, D}, torch::kFloat64).requires_grad_();
  torch::Tensor w =
      torch::rand({S, E}, torch::kFloat64).requires_grad_();  // any weights, not only softmax
  const torch::Tensor probe = torch::randn({S, T, D}, torch::kFloat64);
  std::vector<torch::Tensor> grads[2];
  torch::Tensor outputs[2];
  for (int path = 0; path < 2; ++path) {
    for (torch::Tensor* t : {&x, &w, &experts.w_gate_EFD, &experts.w_up_EFD, &experts.w_down_EDF}) {
      t->mutable_grad() = torch::Tensor();
    }
    outputs[path] = path == 0 ? merged_expert_ffn(x, w, experts, 2)
                              : merged_expert_ffn_reference(x, w, experts);
    (outputs[path] * probe).sum().backward();
    grads[path] = {x.grad(), w.grad(), experts.w_gate_EFD.grad(), experts.w_up_EFD.grad(),
                   experts.w_down_EDF.grad()};
  }
  EXPECT_TRUE(torch::allclose(outputs[0], outputs[1], 1e-12, 1e-12));
  for (size_t i = 0; i < grads[0].size(); ++i)
    EXPECT_TRUE(torch::allclose(grads[0][i], grads[1][i], 1e-11, 1e-11)) << i;
}

TEST(LoryRouter, AnalyticGradientsMatchFiniteDifferences) {
  torch::manual_seed(6);
  // Not the paper rule: its stop-gradient on segment 1 makes the analytic gradient differ from
  // the finite difference on purpose (tested separately below).
  auto layer = lory_layer({{"experts", int64_t{3}},
                           {"segment_length", int64_t{3}},
                           {"chunk_segments", int64_t{2}},
                           {"first_segment", std::string("first_token")}});
  EXPECT_LT(testkit::gradient_check(*layer, torch::randn({2, 7, 8}, torch::kFloat64), 6), 1e-6);
}

// ---- reductions ---------------------------------------------------------------------------------

TEST(LoryRouter, OneExpertEqualsTheDenseRouterWithTheSameWeights) {
  torch::manual_seed(7);
  auto dense = plugins().build_layer("dense", spec(), ParamValues());
  dense->to(torch::kFloat64);
  auto lory = lory_layer({{"experts", int64_t{1}}, {"segment_length", int64_t{4}}});
  {
    torch::NoGradGuard no_grad;
    lory->upcycle_from(*dense->dense_weights());
  }
  const torch::Tensor h_BLD = torch::randn({2, 10, 8}, torch::kFloat64);
  RoutingContext context(ForwardMode::Train, false);
  EXPECT_TRUE(
      torch::allclose(lory->forward(h_BLD, context), dense->forward(h_BLD, context), 1e-13, 1e-13));
}

TEST(LoryRouter, IdenticalExpertsGiveAnOutputIndependentOfTheRouter) {
  torch::manual_seed(8);
  auto dense = plugins().build_layer("dense", spec(), ParamValues());
  dense->to(torch::kFloat64);
  auto a = lory_layer({{"experts", int64_t{6}}, {"segment_length", int64_t{3}}});
  auto b = lory_layer({{"experts", int64_t{6}}, {"segment_length", int64_t{3}}});
  {
    torch::NoGradGuard no_grad;
    a->upcycle_from(*dense->dense_weights());
    b->upcycle_from(*dense->dense_weights());
  }
  ASSERT_FALSE(
      torch::equal(a->named_parameters()["router_ED"], b->named_parameters()["router_ED"]));
  const torch::Tensor h_BLD = torch::randn({2, 9, 8}, torch::kFloat64);
  RoutingContext context(ForwardMode::Train, false);
  const torch::Tensor y_a = a->forward(h_BLD, context), y_b = b->forward(h_BLD, context);
  EXPECT_TRUE(torch::allclose(y_a, y_b, 1e-12, 1e-12));
  EXPECT_TRUE(torch::allclose(y_a, dense->forward(h_BLD, context), 1e-12, 1e-12));
}

TEST(ExpertMerge, AOneHotRouterGivesExactlyThatExpert) {
  torch::manual_seed(9);
  const int64_t E = 5;
  ExpertWeights experts{torch::randn({E, 12, 8}, torch::kFloat64),
                        torch::randn({E, 12, 8}, torch::kFloat64),
                        torch::randn({E, 8, 12}, torch::kFloat64)};
  const torch::Tensor x_STD = torch::randn({E, 4, 8}, torch::kFloat64);
  const torch::Tensor w_SE = torch::eye(E, torch::kFloat64);  // segment s -> expert s
  const torch::Tensor y_STD = merged_expert_ffn(x_STD, w_SE, experts, 2);
  for (int64_t e = 0; e < E; ++e) {
    // The merged weights are exactly expert e's (1 * W_e + 0 * others); only the GEMM shapes
    // differ.
    const torch::Tensor expected_TD =
        swiglu(x_STD[e], experts.w_gate_EFD[e], experts.w_up_EFD[e], experts.w_down_EDF[e]);
    EXPECT_TRUE(torch::allclose(y_STD[e], expected_TD, 1e-13, 1e-13)) << "expert " << e;
  }
}

// ---- stop-gradient and upcycling
// ------------------------------------------------------------------

TEST(LoryRouter, TheRouterGetsNoGradientThroughSegmentOnesWeights) {
  torch::manual_seed(10);
  auto layer = lory_layer({{"experts", int64_t{4}}, {"segment_length", int64_t{4}}});
  torch::Tensor router = layer->named_parameters()["router_ED"];
  const torch::Tensor h_BLD = torch::randn({2, 8, 8}, torch::kFloat64);
  RoutingContext context(ForwardMode::Train, false);
  layer->forward(h_BLD, context).slice(1, 0, 4).pow(2).sum().backward();  // a loss on segment 1
                                                                          // only
  ASSERT_TRUE(router.grad().defined());
  EXPECT_EQ(router.grad().abs().max().item<double>(), 0.0);
  EXPECT_GT(layer->named_parameters()["w_gate_EFD"].grad().abs().max().item<double>(),
            0.0);  // experts still learn
  router.mutable_grad() = torch::Tensor();
  RoutingContext again(ForwardMode::Train, false);
  layer->forward(h_BLD, again).slice(1, 4, 8).pow(2).sum().backward();  // segment 2 is routed from
                                                                        // segment 1
  EXPECT_GT(router.grad().abs().max().item<double>(), 0.0);
}

TEST(Upcycling, RightAfterTheCopyTheMoeModelsLogitsEqualTheDenseModels) {
  torch::manual_seed(11);
  const int64_t vocab = 30;
  auto model = plugins().build_model("dense", ParamValues(), plugins().transformer_params(16, 2, 2),
                                     vocab, 16);
  model->to(torch::kFloat64);
  const torch::Tensor tokens_BL = torch::randint(vocab, {2, 16}, torch::kInt64);
  torch::Tensor dense_logits;
  {
    torch::NoGradGuard no_grad;
    RoutingContext context(ForwardMode::Eval, false);
    dense_logits = model->forward(tokens_BL, context);
  }
  const ParamValues lory_params =
      plugins().params("lory", {{"experts", int64_t{8}}, {"segment_length", int64_t{4}}});
  upcycle_feed_forwards(*model, [&](const FeedForwardSpec& s) {
    auto layer = plugins().build_layer("lory", s, lory_params);
    layer->to(torch::kFloat64);
    return layer;
  });
  EXPECT_EQ(model->feed_forward(0)->expert_count(), 8);
  torch::NoGradGuard no_grad;
  RoutingContext context(ForwardMode::Eval, false);
  EXPECT_TRUE(torch::allclose(model->forward(tokens_BL, context), dense_logits, 1e-10, 1e-10));
}

// trainer.upcycling_optimizer = copy: after upcycling, every expert's AdamW moments and step count
// equal the dense FFN's (for lory's stacked experts and topk's alike) and the router starts
// fresh; `reset` gives the experts no state. Both recipes leave the same weights and the same
// random stream behind (the probe layers of `copy` draw nothing from it).
TEST(Upcycling, CopyRecipeGivesEveryExpertTheDenseFfnsOptimizerState) {
  const int64_t vocab = 30;
  using Named = std::vector<std::pair<std::string, torch::Tensor>>;
  const auto named = [](const torch::nn::Module& m) {
    Named out;
    for (const auto& item : m.named_parameters()) out.emplace_back(item.key(), item.value());
    return out;
  };
  const auto trained_dense = [&](AdamW& optimizer) {
    torch::manual_seed(21);
    auto model = plugins().build_model("dense", ParamValues(),
                                       plugins().transformer_params(16, 2, 2), vocab, 16);
    for (int step = 0; step < 3; ++step) {
      RoutingContext context(ForwardMode::Train, false);
      model->forward(torch::randint(vocab, {2, 16}, torch::kInt64), context)
          .pow(2)
          .mean()
          .backward();
      optimizer.step(named(*model), 1e-3);
      for (auto& [name, p] : named(*model)) p.mutable_grad() = torch::Tensor();
    }
    return model;
  };
  const auto full_name = [&](const torch::nn::Module& model, const torch::Tensor& p) {
    for (const auto& [name, q] : named(model)) {
      if (q.data_ptr() == p.data_ptr()) return name;
    }
    return std::string();
  };
  for (const std::string router : {"lory", "topk"}) {
    const ParamValues params =
        router == "lory"
            ? plugins().params("lory", {{"experts", int64_t{4}}, {"segment_length", int64_t{4}}})
            : plugins().params("topk", {{"experts", int64_t{4}}, {"k", int64_t{1}}});
    const auto build = [&](const FeedForwardSpec& s) {
      return plugins().build_layer(router, s, params);
    };

    AdamW reset_optimizer({0.9, 0.95, 1e-8, 0.1});
    auto reset_model = trained_dense(reset_optimizer);
    torch::manual_seed(5);
    EXPECT_EQ(upcycle_feed_forwards(*reset_model, build, nullptr).inherited_tensors, 0);
    const torch::Tensor stream_after_reset = torch::rand({4});

    AdamW optimizer({0.9, 0.95, 1e-8, 0.1});
    auto model = trained_dense(optimizer);
    const auto dense = model->feed_forward(1)->dense_weights();
    const AdamW::Moments dense_gate = *optimizer.moments(full_name(*model, dense->w_gate_FD));
    const AdamW::Moments dense_down = *optimizer.moments(full_name(*model, dense->w_down_DF));
    ASSERT_EQ(dense_gate.steps, 3);
    ASSERT_GT(dense_gate.exp_avg.abs().max().item<double>(), 0.0);
    torch::manual_seed(5);
    const UpcyclingOutcome copied = upcycle_feed_forwards(*model, build, &optimizer);
    EXPECT_TRUE(torch::equal(torch::rand({4}), stream_after_reset))
        << router << ": the probes moved the random stream";
    EXPECT_EQ(copied.inherited_tensors, 2 * 3) << router;  // 2 layers x (gate, up, down)
    EXPECT_GE(copied.fresh_tensors, 2) << router;  // at least one router projection per layer
    for (const auto& [a, b] : [&] {
           std::vector<std::pair<torch::Tensor, torch::Tensor>> pairs;
           const Named x = named(*reset_model), y = named(*model);
           for (size_t i = 0; i < x.size(); ++i) pairs.emplace_back(x[i].second, y[i].second);
           return pairs;
         }()) {
      EXPECT_TRUE(torch::equal(a, b)) << router << ": the recipes left different weights";
    }
    int experts_checked = 0, routers_checked = 0;
    for (const auto& [local, p] : named(*model->feed_forward(1))) {
      const auto state = optimizer.moments(full_name(*model, p));
      const bool gate = local.find("w_gate") != std::string::npos,
                 down = local.find("w_down") != std::string::npos;
      if (gate || down) {
        ASSERT_TRUE(state) << router << " " << local;
        const AdamW::Moments& expected = gate ? dense_gate : dense_down;
        EXPECT_EQ(state->steps, 3);
        for (int64_t e = 0; e < 4; ++e) {
          EXPECT_TRUE(torch::equal(state->exp_avg[e], expected.exp_avg))
              << router << " " << local << " expert " << e;
          EXPECT_TRUE(torch::equal(state->exp_avg_sq[e], expected.exp_avg_sq))
              << router << " " << local;
        }
        ++experts_checked;
      } else if (local.find("w_up") == std::string::npos) {
        EXPECT_FALSE(state) << router << ": the router parameter " << local << " inherited state";
        ++routers_checked;
      }
    }
    EXPECT_EQ(experts_checked, 2) << router;
    EXPECT_GE(routers_checked, 1) << router;
  }
}

TEST(LoryRouter, RoutingRecordsBroadcastSegmentWeightsToTokens) {
  torch::manual_seed(12);
  auto layer = lory_layer({{"experts", int64_t{4}}, {"segment_length", int64_t{3}}});
  RoutingContext context(ForwardMode::Eval, true);
  layer->forward(torch::randn({2, 8, 8}, torch::kFloat64), context);
  ASSERT_EQ(context.records().size(), 1u);
  const torch::Tensor w_BLE = context.records()[0].weights_BLE;
  EXPECT_EQ(w_BLE.sizes(), (std::vector<int64_t>{2, 8, 4}));
  EXPECT_TRUE(torch::allclose(w_BLE.sum(-1), torch::ones({2, 8})));
  EXPECT_TRUE(
      torch::equal(w_BLE.select(1, 3), w_BLE.select(1, 5)));  // one segment, one weight vector
  // Under the paper rule segments 1 and 2 are both routed from segment 1's mean; segment 3 differs.
  EXPECT_TRUE(torch::equal(w_BLE.select(1, 2), w_BLE.select(1, 3)));
  EXPECT_FALSE(torch::equal(w_BLE.select(1, 5), w_BLE.select(1, 6)));
  std::set<std::string> stats;
  for (const auto& s : context.records()[0].stats) stats.insert(s.name);
  for (const char* name :
       {"entropy", "max_weight", "active_experts", "load_imbalance", "unused_experts"}) {
    EXPECT_TRUE(stats.count(name)) << name;
  }
}

TEST(LoryRouter, RoutingWeightsEqualAnExplicitPerSegmentLoopOfThePreviousSegmentsMean) {
  // Written with plain loops over sequences and segments, independent of the router's shift: the
  // weights of segment k > 1 of sequence b are softmax(R · mean(h[b, segment k-1])), those of
  // segment 1 softmax(R · mean(h[b, segment 1])) (paper rule). A router reading segment k-2, the
  // next segment, or another sequence's segment fails here even where causality holds.
  torch::manual_seed(13);
  const int64_t B = 3, L = 11, T = 3, E = 4;  // segments 3, 3, 3, 2: the last one short
  auto layer = lory_layer({{"experts", E}, {"segment_length", T}});
  const torch::Tensor h_BLD = torch::randn({B, L, 8}, torch::kFloat64);
  RoutingContext context(ForwardMode::Train, true);
  layer->forward(h_BLD, context);
  const torch::Tensor w_BLE = context.records().at(0).weights_BLE.to(torch::kFloat64);
  const torch::Tensor router_ED = layer->named_parameters()["router_ED"];
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t start = 0, k = 0; start < L; start += T, ++k) {
      const int64_t source_start = k == 0 ? 0 : start - T;
      const int64_t source_end = std::min(source_start + T, L);
      torch::Tensor mean_D = torch::zeros({8}, torch::kFloat64);
      for (int64_t t = source_start; t < source_end; ++t) mean_D += h_BLD[b][t];
      mean_D /= static_cast<double>(source_end - source_start);
      const torch::Tensor expected_E = torch::softmax(torch::matmul(router_ED, mean_D), 0);
      for (int64_t t = start; t < std::min(start + T, L); ++t) {
        // Records are float32: compare at float32 precision.
        EXPECT_TRUE(torch::allclose(w_BLE[b][t], expected_E, 1e-6, 1e-6))
            << "sequence " << b << ", segment " << k + 1 << ", position " << t << ": "
            << w_BLE[b][t] << " vs " << expected_E;
      }
    }
  }
}

}  // namespace
}  // namespace lory
