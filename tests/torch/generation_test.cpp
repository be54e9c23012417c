// Generation (train/generator.h): decoding with the key/value cache and the routers' decoding
// state gives exactly what recomputing the whole sequence gives, for every router and both Lory
// rules; the log-probs it reports are what scoring gives; Lory's prompt rule merges once per
// layer; sampling is reproducible; bad requests are refused.
#include <gtest/gtest.h>

#include <algorithm>

#include "core/support/diagnostics.h"
#include "in_tree_plugins.h"
#include "train/evaluator.h"
#include "train/generator.h"

namespace lory {
namespace {

using testing::plugins;

constexpr int64_t kVocab = 40, kContext = 48, kLayers = 2;

std::shared_ptr<LanguageModel> model_with(const std::string& router,
                                          const std::map<std::string, ParamValue>& params) {
  torch::manual_seed(0);
  auto model = plugins().build_model(
      router, plugins().params(router, params),
      plugins().transformer_params(32, kLayers, 2, {{"d_ff", int64_t{48}}}), kVocab, kContext);
  torch::NoGradGuard no_grad;
  // Larger router weights than the init, so that routing differs visibly between segments and
  // tokens.
  for (auto& item : model->named_parameters()) {
    if (item.key().find("router_ED") != std::string::npos) item.value().normal_(0, 1.0);
  }
  model->to(torch::kFloat64);
  return model;
}

std::vector<int64_t> prompt_of(int64_t length) {
  std::vector<int64_t> prompt;
  for (int64_t i = 0; i < length; ++i) prompt.push_back((7 * i + 3) % kVocab);
  return prompt;
}

GenerationOptions greedy(EvalRouting::Rule rule, int64_t tokens, bool cache) {
  GenerationOptions options;
  options.max_tokens = tokens;
  options.sampling.temperature = 0;
  options.routing = rule;
  options.use_cache = cache;
  return options;
}

struct Case {
  std::string name, router;
  std::map<std::string, ParamValue> params;
  EvalRouting::Rule rule;
};

std::vector<Case> every_router() {
  const std::map<std::string, ParamValue> lory{{"experts", int64_t{4}},
                                               {"segment_length", int64_t{4}}};
  auto with = [](std::map<std::string, ParamValue> base, const std::string& key, ParamValue value) {
    base[key] = std::move(value);
    return base;
  };
  return {
      {"dense", "dense", {}, EvalRouting::Rule::Prompt},
      {"lory prompt rule", "lory", lory, EvalRouting::Rule::Prompt},
      {"lory segment rule", "lory", lory, EvalRouting::Rule::Train},
      {"lory segment rule, first_token", "lory",
       with(lory, "first_segment", std::string("first_token")), EvalRouting::Rule::Train},
      {"lory segment rule, uniform", "lory", with(lory, "first_segment", std::string("uniform")),
       EvalRouting::Rule::Train},
      {"lory prefix routing", "lory", with(lory, "routing", std::string("prefix")),
       EvalRouting::Rule::Train},
      {"lory prefix routing, uniform", "lory",
       with(with(lory, "routing", std::string("prefix")), "first_segment", std::string("uniform")),
       EvalRouting::Rule::Train},
      {"lory prefix routing, first_token", "lory",
       with(with(lory, "routing", std::string("prefix")), "first_segment",
            std::string("first_token")),
       EvalRouting::Rule::Train},
      {"topk", "topk", {{"experts", int64_t{4}}, {"k", int64_t{2}}}, EvalRouting::Rule::Train},
      {"expert choice (token top-k inference)",
       "expert_choice",
       {{"experts", int64_t{4}}},
       EvalRouting::Rule::Train},
  };
}

TEST(Generation, CachedGreedyDecodingGivesTheTokensOfFullRecomputation) {
  // A prompt of 10 tokens covers segment 1 (T = 4), so the segment rule has nothing left to guess.
  const std::vector<int64_t> prompt = prompt_of(10);
  for (const Case& c : every_router()) {
    auto model = model_with(c.router, c.params);
    ASSERT_TRUE(model->supports_incremental_decoding()) << c.name;
    const GenerationResult cached =
        generate_tokens(*model, prompt, kContext, greedy(c.rule, 30, true));
    const GenerationResult recomputed =
        generate_tokens(*model, prompt, kContext, greedy(c.rule, 30, false));
    EXPECT_TRUE(cached.cached) << c.name;
    EXPECT_FALSE(recomputed.cached) << c.name;
    ASSERT_EQ(cached.tokens.size(), 30u) << c.name;
    ASSERT_EQ(recomputed.tokens.size(), 30u) << c.name;
    for (size_t i = 0; i < cached.tokens.size(); ++i) {
      EXPECT_EQ(cached.tokens[i].id, recomputed.tokens[i].id) << c.name << ", token " << i;
      EXPECT_NEAR(cached.tokens[i].log_prob, recomputed.tokens[i].log_prob, 1e-9)
          << c.name << ", token " << i;
    }
    // The cache feeds each token once; recomputation feeds the whole sequence every step.
    EXPECT_EQ(cached.forward_tokens, 10 + 29) << c.name;
    EXPECT_EQ(recomputed.forward_tokens, 30 * 10 + 29 * 30 / 2) << c.name;
  }
}

TEST(Generation, ReportedLogProbsAreTheScoresOfTheGeneratedText) {
  const int64_t P = 10;
  const std::vector<int64_t> prompt = prompt_of(P);
  for (const Case& c : every_router()) {
    auto model = model_with(c.router, c.params);
    const GenerationResult result =
        generate_tokens(*model, prompt, kContext, greedy(c.rule, 20, true));
    std::vector<int64_t> text = prompt;
    for (const auto& token : result.tokens) text.push_back(token.id);
    const EvalRouting routing{c.rule, c.rule == EvalRouting::Rule::Prompt ? P : 0};
    const torch::Tensor scores =
        score_tokens(*model, torch::tensor(text, torch::kInt64), kContext, routing);
    for (size_t i = 0; i < result.tokens.size(); ++i) {
      // Scoring rounds its log-probs to float32.
      EXPECT_NEAR(result.tokens[i].log_prob, scores[P - 1 + static_cast<int64_t>(i)].item<double>(),
                  1e-5)
          << c.name << ", token " << i;
    }
  }
}

// lory score's windows: every token after the prompt is scored exactly once, with the tokens
// before it in its window as context; the first window matches a plain forward.
TEST(ScoreText, SlidingWindowsScoreEachTokenOnceWithCarriedContext) {
  auto model = model_with("lory", {{"experts", int64_t{4}}, {"segment_length", int64_t{4}}});
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < 120; ++i) ids.push_back((i * 11 + 5) % kVocab);
  const torch::Tensor tokens_N = torch::tensor(ids, torch::kInt64);
  for (const int64_t P : {int64_t{0}, int64_t{10}}) {
    const EvalRouting routing{P > 0 ? EvalRouting::Rule::Prompt : EvalRouting::Rule::Train, P};
    const ScoredText scored = score_text(*model, tokens_N, kContext, routing, {20, P});
    std::vector<int64_t> expected;
    for (int64_t t = std::max<int64_t>(1, P); t < 120; ++t) expected.push_back(t);
    EXPECT_EQ(scored.positions, expected) << "prompt " << P;
    // Token 60 is scored by the window that starts at 20 (targets 49..68 after 1..48): its
    // log-prob is what a forward over tokens 20..59 gives.
    const size_t index = static_cast<size_t>(
        std::find(scored.positions.begin(), scored.positions.end(), 60) - scored.positions.begin());
    torch::NoGradGuard no_grad;
    RoutingContext context(ForwardMode::Eval, false);
    context.set_eval_routing(routing);
    const torch::Tensor logits_1LV =
        model->forward(tokens_N.slice(0, 20, 60).unsqueeze(0), context);
    const double direct = torch::log_softmax(logits_1LV[0][-1], -1)[ids[60]].item<double>();
    EXPECT_NEAR(scored.log_probs[static_cast<int64_t>(index)].item<double>(), direct, 1e-9)
        << "prompt " << P;
  }
  EXPECT_THROW(score_text(*model, tokens_N, kContext, {EvalRouting::Rule::Prompt, 48}, {1, 48}),
               UserError);
  EXPECT_THROW(score_text(*model, tokens_N, kContext, {EvalRouting::Rule::Prompt, 10}, {39, 10}),
               UserError);
}

TEST(Generation, LoryPromptRuleMergesEachLayerOnceAndTheSegmentRuleOncePerSegment) {
  const std::map<std::string, ParamValue> params{{"experts", int64_t{4}},
                                                 {"segment_length", int64_t{4}}};
  auto model = model_with("lory", params);
  const GenerationResult prompt_rule =
      generate_tokens(*model, prompt_of(10), kContext, greedy(EvalRouting::Rule::Prompt, 25, true));
  EXPECT_EQ(prompt_rule.ffn_merges, kLayers);
  // The segment rule processes positions 0 .. 10 + 25 - 2 (the last token is never fed back):
  // 34 positions, ceil(34 / 4) = 9 segments per layer.
  const GenerationResult segment_rule =
      generate_tokens(*model, prompt_of(10), kContext, greedy(EvalRouting::Rule::Train, 25, true));
  EXPECT_EQ(segment_rule.ffn_merges, kLayers * 9);
}

TEST(Generation, ARouterWithoutIncrementalDecodingFallsBackToRecomputation) {
  // With a capacity, top-k tokens compete for expert slots: no token's output is its own alone.
  auto model =
      model_with("topk", {{"experts", int64_t{4}}, {"k", int64_t{1}}, {"capacity_factor", 1.0}});
  EXPECT_FALSE(model->supports_incremental_decoding());
  const GenerationResult result =
      generate_tokens(*model, prompt_of(6), kContext, greedy(EvalRouting::Rule::Train, 5, true));
  EXPECT_FALSE(result.cached);
  EXPECT_EQ(result.tokens.size(), 5u);
}

TEST(Generation, SamplingIsReproducibleBySeedAndTopKOfOneIsGreedy) {
  auto model = model_with("lory", {{"experts", int64_t{4}}, {"segment_length", int64_t{4}}});
  GenerationOptions sampled = greedy(EvalRouting::Rule::Prompt, 20, true);
  sampled.sampling = {1.0, 0, 0.95, 42};
  const auto ids = [](const GenerationResult& r) {
    std::vector<int64_t> out;
    for (const auto& t : r.tokens) out.push_back(t.id);
    return out;
  };
  const auto first = ids(generate_tokens(*model, prompt_of(8), kContext, sampled));
  EXPECT_EQ(first, ids(generate_tokens(*model, prompt_of(8), kContext, sampled)));
  sampled.sampling.seed = 43;
  EXPECT_NE(first, ids(generate_tokens(*model, prompt_of(8), kContext, sampled)));
  sampled.sampling.top_k = 1;
  EXPECT_EQ(ids(generate_tokens(*model, prompt_of(8), kContext, sampled)),
            ids(generate_tokens(*model, prompt_of(8), kContext,
                                greedy(EvalRouting::Rule::Prompt, 20, true))));
}

TEST(Generation, TopPSamplesOnlyFromTheNucleus) {
  const torch::Tensor logits_V = torch::tensor({0.5, 0.3, 0.15, 0.05}, torch::kFloat64).log();
  std::vector<int> seen(4, 0);
  SeededRandom rng(7);
  for (int i = 0; i < 2000; ++i) ++seen[sample_token(logits_V, {1.0, 0, 0.8, 0}, rng)];
  EXPECT_EQ(seen[2] + seen[3], 0);  // 0.5 + 0.3 reaches 0.8: tokens 2 and 3 are outside
  EXPECT_NEAR(seen[0] / 2000.0, 0.5 / 0.8, 0.05);
  for (int i = 0; i < 2000; ++i) ++seen[sample_token(logits_V, {1.0, 0, 1.0, 0}, rng)];
  EXPECT_GT(seen[3], 0);
}

TEST(Generation, RequestsThatCannotFitAreRefusedClearly) {
  auto model = model_with("dense", {});
  try {
    generate_tokens(*model, prompt_of(40), kContext, greedy(EvalRouting::Rule::Prompt, 10, true));
    FAIL() << "expected an error";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("exceed the model's context of 48 tokens"),
              std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("at most 9 tokens"), std::string::npos) << e.what();
  }
  // Nine fit: the ninth new token is sampled from position 47 and never fed back.
  EXPECT_EQ(
      generate_tokens(*model, prompt_of(40), kContext, greedy(EvalRouting::Rule::Prompt, 9, true))
          .tokens.size(),
      9u);
  EXPECT_THROW(generate_tokens(*model, {}, kContext, greedy(EvalRouting::Rule::Prompt, 4, true)),
               UserError);
}

}  // namespace
}  // namespace lory
