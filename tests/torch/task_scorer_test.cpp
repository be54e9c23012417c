// In-context task scoring (train/task_scorer.h): a choice's log-likelihood is what scoring the
// whole sequence gives over the choice's tokens (training routing; score_tokens reports float32,
// hence 1e-5), what decoding gives under
// Lory's prompt rule (the experts merged once from the context), and a context that does not fit
// loses its first tokens.
#include <gtest/gtest.h>

#include "core/support/diagnostics.h"
#include "in_tree_plugins.h"
#include "train/evaluator.h"
#include "train/generator.h"
#include "train/task_scorer.h"

namespace lory {
namespace {

using testing::plugins;

constexpr int64_t kVocab = 40, kContext = 24;

std::shared_ptr<LanguageModel> model_with(const std::string& router,
                                          const std::map<std::string, ParamValue>& params) {
  torch::manual_seed(0);
  auto model = plugins().build_model(
      router, plugins().params(router, params),
      plugins().transformer_params(32, 2, 2, {{"d_ff", int64_t{48}}}), kVocab, kContext);
  torch::NoGradGuard no_grad;
  // Larger router weights than the init, so that routing differs visibly between segments.
  for (auto& item : model->named_parameters()) {
    if (item.key().find("router_ED") != std::string::npos) item.value().normal_(0, 1.0);
  }
  model->to(torch::kFloat64);
  return model;
}

std::vector<int64_t> tokens(int64_t length, int64_t salt) {
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < length; ++i) ids.push_back((7 * i + salt) % kVocab);
  return ids;
}

// One example: a shared context of `context` tokens and choices of the given lengths.
TokenizedTask task_of(int64_t context, const std::vector<int64_t>& choice_lengths) {
  TokenizedTask task;
  task.name = "t";
  TokenizedExample example;
  example.line = 1;
  for (size_t c = 0; c < choice_lengths.size(); ++c) {
    TokenizedChoice choice;
    choice.ids = tokens(context, 3);
    const auto tail = tokens(choice_lengths[c], 11 + static_cast<int64_t>(c));
    choice.ids.insert(choice.ids.end(), tail.begin(), tail.end());
    choice.context = context;
    choice.bytes = choice_lengths[c];
    example.choices.push_back(choice);
  }
  task.examples.push_back(example);
  return task;
}

TEST(TaskScorer, TrainingRoutingScoresTheChoiceTokensOfTheWholeSequence) {
  const std::map<std::string, ParamValue> lory{{"experts", int64_t{4}},
                                               {"segment_length", int64_t{4}}};
  for (const auto& [router, params] :
       std::vector<std::pair<std::string, std::map<std::string, ParamValue>>>{
           {"dense", {}}, {"lory", lory}, {"topk", {{"experts", int64_t{4}}, {"k", int64_t{2}}}}}) {
    const auto model = model_with(router, params);
    const TokenizedTask task = task_of(9, {3, 6});
    const ScoredTask scored = score_task(*model, task, kContext, EvalRouting::Rule::Train);
    ASSERT_EQ(scored.scores.size(), 1u);
    EXPECT_EQ(scored.truncated, 0);
    for (size_t c = 0; c < 2; ++c) {
      const auto& ids = task.examples[0].choices[c].ids;
      const torch::Tensor all = score_tokens(*model, torch::tensor(ids, torch::kInt64), kContext,
                                             {EvalRouting::Rule::Train, 0});
      const double expected = all.slice(0, 9 - 1).sum().item<double>();
      EXPECT_NEAR(scored.scores[0][c].log_likelihood, expected, 1e-5) << router << " choice " << c;
      EXPECT_EQ(scored.scores[0][c].tokens, static_cast<int64_t>(ids.size()) - 9);
    }
  }
}

TEST(TaskScorer, LoryPromptRuleScoresAChoiceAsDecodingAfterTheContextWould) {
  const auto model = model_with("lory", {{"experts", int64_t{4}}, {"segment_length", int64_t{4}}});
  const std::vector<int64_t> context = tokens(10, 3);
  GenerationOptions greedy;
  greedy.max_tokens = 6;
  greedy.sampling.temperature = 0;
  greedy.routing = EvalRouting::Rule::Prompt;
  const GenerationResult generated = generate_tokens(*model, context, kContext, greedy);
  ASSERT_EQ(generated.ffn_merges, 2);  // once per layer, from the context
  TokenizedTask task = task_of(10, {6, 6});
  auto& ids = task.examples[0].choices[0].ids;
  double decoded = 0;
  for (size_t i = 0; i < generated.tokens.size(); ++i) {
    ids[10 + i] = generated.tokens[i].id;
    decoded += generated.tokens[i].log_prob;
  }
  const ScoredTask scored = score_task(*model, task, kContext, EvalRouting::Rule::Prompt);
  EXPECT_NEAR(scored.scores[0][0].log_likelihood, decoded, 1e-9);
  // The greedy continuation is the most likely six tokens only token by token, but it beats the
  // arbitrary other choice here: accuracy agrees with gold 0.
  EXPECT_GT(scored.scores[0][0].log_likelihood, scored.scores[0][1].log_likelihood);
  // Training routing routes later segments from the choice's own tokens: another number.
  const ScoredTask trained = score_task(*model, task, kContext, EvalRouting::Rule::Train);
  EXPECT_GT(std::abs(trained.scores[0][0].log_likelihood - decoded), 1e-6);
}

TEST(TaskScorer, AContextThatDoesNotFitLosesItsFirstTokens) {
  const auto model = model_with("dense", {});
  // 30 context tokens + 4 choice tokens: 33 inputs, the context keeps its last 30 - 9 = 21.
  const TokenizedTask task = task_of(30, {4});
  const ScoredTask scored = score_task(*model, task, kContext, EvalRouting::Rule::Train);
  EXPECT_EQ(scored.truncated, 1);
  const auto& ids = task.examples[0].choices[0].ids;
  const std::vector<int64_t> kept(ids.begin() + 9, ids.end());
  const torch::Tensor all = score_tokens(*model, torch::tensor(kept, torch::kInt64), kContext,
                                         {EvalRouting::Rule::Train, 0});
  EXPECT_NEAR(scored.scores[0][0].log_likelihood, all.slice(0, 21 - 1).sum().item<double>(), 1e-5);
  // A choice as long as the context leaves no room for any context token.
  try {
    score_task(*model, task_of(5, {kContext + 1}), kContext, EvalRouting::Rule::Train);
    FAIL() << "a choice longer than the context was scored";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("does not fit the model's context of 24 tokens"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace lory
