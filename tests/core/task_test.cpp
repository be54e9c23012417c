// In-context task files, their tokenized hand-over, the accuracy rule, and the task_evals table
// (including its merge; and the experiment_files the same merge carries): everything of `lory
// eval-tasks` that does not need a model.
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>

#include "core/store/results_merge.h"
#include "core/store/results_store.h"
#include "core/support/diagnostics.h"
#include "core/tasks/task_file.h"
#include "core/tasks/task_metrics.h"
#include "core/tasks/tokenized_task.h"
#include "test_support.h"

namespace lory {
namespace {

using testing::TempDir;

std::string refusal(const std::string& path) {
  try {
    read_task_file(path);
  } catch (const UserError& e) {
    return e.what();
  }
  return "(accepted)";
}

TEST(TaskFile, JoinsFewShotExamplesBeforeTheContext) {
  TempDir dir;
  testing::write_text(
      dir.file("t.jsonl"),
      "{\"context\": \"Q: 2+2?\\nA:\", \"choices\": [\" 4\", \" 5\"], \"gold\": 0, \"id\": \"x\", "
      "\"few_shot\": [{\"context\": \"Q: 1+1?\\nA:\", \"answer\": \" 2\"}]}\n\n"
      "{\"context\": \"c\", \"choices\": [\"a\", \"b\", \"c\"], \"gold\": 2}\r\n");
  const TaskFile task = read_task_file(dir.file("t.jsonl"));
  EXPECT_EQ(task.name, "t");
  EXPECT_EQ(task.sha256.size(), 64u);
  ASSERT_EQ(task.examples.size(), 2u);
  EXPECT_EQ(task.examples[0].prompt_text, "Q: 1+1?\nA: 2\n\nQ: 2+2?\nA:");
  EXPECT_EQ(task.examples[0].few_shot, 1);
  EXPECT_EQ(task.examples[1].line, 3);
  EXPECT_EQ(task.examples[1].gold, 2);
  EXPECT_EQ(task.examples[1].choices.size(), 3u);
}

TEST(TaskFile, RefusesEveryMalformedLineWithItsNumber) {
  TempDir dir;
  const std::string good = "{\"context\": \"c\", \"choices\": [\"a\", \"b\"], \"gold\": 0}\n";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "has no examples"},
      {"\n  \n", "has no examples"},
      {"{\"context\": \"c\"", "line 2: not JSON"},
      {"[1, 2]", "line 2: each line must be one JSON object"},
      {"{\"choices\": [\"a\", \"b\"], \"gold\": 0}", "line 2: no \"context\""},
      {"{\"context\": 3, \"choices\": [\"a\", \"b\"], \"gold\": 0}",
       "\"context\" must be a string, not number"},
      {"{\"context\": \"c\", \"choices\": [\"a\"], \"gold\": 0}",
       "1 choice(s): a task needs at least two"},
      {"{\"context\": \"c\", \"choices\": [\"a\", \"\"], \"gold\": 0}", "a choice is empty"},
      {"{\"context\": \"c\", \"choices\": [\"a\", 2], \"gold\": 0}", "must be an array of strings"},
      {"{\"context\": \"c\", \"choices\": [\"a\", \"b\"], \"gold\": \"0\"}",
       "\"gold\" must be an integer"},
      {"{\"context\": \"c\", \"choices\": [\"a\", \"b\"], \"gold\": -1}",
       "\"gold\" is -1, but the choices are numbered 0 to 1"},
      {"{\"context\": \"c\", \"choices\": [\"a\", \"b\"], \"gold\": 0, \"answer\": 1}",
       "unknown field \"answer\""},
      {"{\"context\": \"c\", \"choices\": [\"a\", \"b\"], \"gold\": 0, \"few_shot\": "
       "[{\"context\": \"x\"}]}",
       "no \"answer\""},
      {"{\"context\": \"\", \"choices\": [\"a\", \"b\"], \"gold\": 0}", "the context is empty"},
      {"{\"context\": \"c\", \"choices\": [\"a\", \"b\"], \"gold\": 0, \"few_shot\": "
       "[{\"context\": \"x\", "
       "\"answer\": \"y\", \"label\": 1}]}",
       "unknown field \"label\" in a few_shot example"},
  };
  for (const auto& [line, expected] : cases) {
    testing::write_text(dir.file("bad.jsonl"),
                        line.empty() || line[0] == '\n' ? line : good + line + "\n");
    const std::string message = refusal(dir.file("bad.jsonl"));
    EXPECT_NE(message.find(expected), std::string::npos) << "for " << line << ": " << message;
  }
  EXPECT_NE(refusal(dir.file("missing.jsonl")).find("cannot read task file"), std::string::npos);
}

TEST(TokenizedTask, RoundTripsAndRefusesIdsOfAnotherVocabulary) {
  TempDir dir;
  TokenizedTask task;
  task.name = "t";
  task.sha256 = "abc";
  task.source = "t.jsonl";
  task.examples.push_back({7, 1, {{{256, 1, 2, 3}, 2, 2}, {{256, 1, 9}, 2, 1}}});
  {
    std::ostringstream text;
    write_tokenized_task(text, task);
    testing::write_text(dir.file("t.tok"), text.str());
  }
  const TokenizedTask back = read_tokenized_task(dir.file("t.tok"), 257);
  ASSERT_EQ(back.examples.size(), 1u);
  EXPECT_EQ(back.examples[0].line, 7);
  EXPECT_EQ(back.examples[0].choices[1].ids, (std::vector<int64_t>{256, 1, 9}));
  EXPECT_EQ(back.examples[0].choices[0].context, 2);
  EXPECT_THROW(read_tokenized_task(dir.file("t.tok"), 100), UserError);
  // Cut short: the header promises one example more.
  const std::string text = testing::read_text(dir.file("t.tok"));
  testing::write_text(dir.file("short.tok"), text.substr(0, text.find('\n') + 1));
  EXPECT_THROW(read_tokenized_task(dir.file("short.tok"), 257), UserError);
}

TEST(TaskAccuracy, PicksTheMostLikelyChoiceTotalAndPerByte) {
  // Example 0: choice 1 wins in total (-2 > -3) but choice 0 per byte (-3/6 > -2/2).
  // Example 1: a tie in total goes to the lower index (0, gold).
  const std::vector<std::vector<ChoiceScore>> scores = {{{-3, 3, 6}, {-2, 1, 2}},
                                                        {{-1, 1, 1}, {-1, 1, 1}}};
  const TaskAccuracy a = task_accuracy(scores, {0, 0});
  EXPECT_EQ(a.examples, 2);
  EXPECT_DOUBLE_EQ(a.accuracy, 0.5);
  EXPECT_DOUBLE_EQ(a.accuracy_norm, 1.0);
  EXPECT_DOUBLE_EQ(a.chance, 0.5);
  EXPECT_DOUBLE_EQ(a.gold_loss_per_token, (1.0 + 1.0) / 2);
  // Sample standard deviation of {1, 0} is sqrt(0.5); over sqrt(2): 0.5.
  EXPECT_DOUBLE_EQ(a.accuracy_stderr, 0.5);
  EXPECT_DOUBLE_EQ(a.accuracy_norm_stderr, 0.0);
  EXPECT_TRUE(std::isnan(task_accuracy({{{-1, 1, 1}, {-2, 1, 1}}}, {0}).accuracy_stderr));
}

TEST(TaskEvals, AreStoredReplacedAndMergedIntoARunKeptByTheTarget) {
  TempDir dir;
  const auto fill = [&](const std::string& file, const std::string& task) {
    ResultsStore store(dir.file(file));
    const int64_t experiment =
        store.upsert_experiment("exp", "/x/exp.toml", "", "", {{"/x/base.toml", file}});
    const int64_t run =
        store.ensure_run(experiment, "abc", "dense seed=1", R"({"trainer":{"seed":1}})", 1);
    store.mark_finished(run, run_status::kDone, "", 10);
    TaskEvalRow row;
    row.task = task;
    row.routing = "prompt";
    row.step = 10;
    row.task_sha256 = "s";
    row.examples = 1;
    row.chance = 0.5;
    row.accuracy = 1;
    row.accuracy_stderr = NAN;  // one example: stored as NULL
    row.accuracy_norm = 1;
    row.accuracy_norm_stderr = NAN;
    store.write_task_evals(run, {row});
    row.accuracy = 0;
    store.write_task_evals(run, {row});  // replaces
  };
  fill("a.sqlite", "one");
  fill("b.sqlite", "two");
  {
    Database db(dir.file("a.sqlite"), Database::Mode::ReadOnly);
    EXPECT_EQ(db.query_int(
                  "SELECT count(*) FROM task_evals WHERE accuracy = 0 AND accuracy_stderr IS NULL"),
              1);
    EXPECT_EQ(db.query_int("SELECT n FROM task_evals_over_seeds"), 1);
  }
  merge_results(dir.file("a.sqlite"), {dir.file("b.sqlite")});
  Database db(dir.file("a.sqlite"), Database::Mode::ReadOnly);
  EXPECT_EQ(db.query_int("SELECT count(*) FROM task_evals"), 2);
  // The target's record of the experiment's included files stays (it knew the experiment).
  EXPECT_EQ(db.query_int("SELECT count(*) FROM experiment_files WHERE path = '/x/base.toml' AND "
                         "text = 'a.sqlite'"),
            1);
}

}  // namespace
}  // namespace lory
