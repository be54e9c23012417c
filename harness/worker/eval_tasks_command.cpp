// `lory-worker eval-tasks`: in-context multiple-choice accuracy of a done run on tokenized task
// files, stored in the results store.
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <set>

#include "core/support/command_line_options.h"
#include "core/support/diagnostics.h"
#include "core/support/kill_points.h"
#include "core/support/progress_line.h"
#include "core/support/text_table.h"
#include "core/tasks/task_metrics.h"
#include "core/tasks/tokenized_task.h"
#include "train/task_scorer.h"
#include "worker/commands.h"
#include "worker/trained_model.h"

namespace lory::worker {

namespace {

// Scores every tokenized task on the run's final checkpoint and writes the accuracies in one
// transaction, after all of them are scored: a task that fails leaves the store as it was.
int eval_tasks_command(const RunSelection& selection,
                       const std::vector<std::string>& tokenized_files,
                       const std::string& routing_name) {
  kill_point("eval_tasks_started", 0);
  TrainedModel trained(selection);
  if (trained.run.status != run_status::kDone) {
    throw UserError(
        fmt::format("run {} ({}) is {}, not done: finish it with `lory run` before evaluating it",
                    trained.run.id, trained.run.label, trained.run.status));
  }
  const int64_t vocab = trained.setup->corpus().manifest().vocab_size;
  std::vector<TokenizedTask> tasks;
  std::set<std::string> names;
  for (const std::string& file : tokenized_files) {
    tasks.push_back(read_tokenized_task(file, vocab));
    if (!names.insert(tasks.back().name).second) {
      throw UserError(fmt::format(
          "two task files are named '{}': their rows would replace each other", tasks.back().name));
    }
  }
  const EvalRouting::Rule rule = evaluation_rule(routing_name);
  std::vector<TaskEvalRow> rows;
  TextTable table({"task", "examples", "accuracy", "± se", "acc (per byte)", "± se", "chance",
                   "gold loss/token", "seconds"});
  const auto stderr_text = [](double value) {
    return std::isfinite(value) ? fmt::format("{:.3f}", value) : "-";
  };
  for (const TokenizedTask& task : tasks) {
    const auto started = std::chrono::steady_clock::now();
    ProgressLine progress("eval-tasks: " + task.name + " examples",
                          static_cast<int64_t>(task.examples.size()));
    const ScoredTask scored = score_task(*trained.model, task, trained.setup->context_length(),
                                         rule, [&](int64_t done) { progress.update(done); });
    const TaskAccuracy accuracy = task_accuracy(scored.scores, scored.gold);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    rows.push_back({task.name, routing_name, trained.step, task.sha256, accuracy.examples,
                    accuracy.chance, accuracy.accuracy, accuracy.accuracy_stderr,
                    accuracy.accuracy_norm, accuracy.accuracy_norm_stderr,
                    accuracy.gold_loss_per_token, scored.truncated});
    table.add_row(
        {task.name, std::to_string(accuracy.examples), fmt::format("{:.3f}", accuracy.accuracy),
         stderr_text(accuracy.accuracy_stderr), fmt::format("{:.3f}", accuracy.accuracy_norm),
         stderr_text(accuracy.accuracy_norm_stderr), fmt::format("{:.3f}", accuracy.chance),
         fmt::format("{:.3f}", accuracy.gold_loss_per_token), fmt::format("{:.1f}", seconds)});
    if (scored.truncated > 0) {
      std::fprintf(stderr,
                   "lory-worker: task %s: %lld choice(s) lost the start of their context to fit "
                   "the model's %lld "
                   "tokens\n",
                   task.name.c_str(), static_cast<long long>(scored.truncated),
                   static_cast<long long>(trained.setup->context_length()));
    }
  }
  trained.store.write_task_evals(trained.run.id, rows);
  std::printf("run %lld (%s), step %lld, routing %s:\n%s", static_cast<long long>(trained.run.id),
              trained.run.label.c_str(), static_cast<long long>(trained.step), routing_name.c_str(),
              table.render("  ").c_str());
  return 0;
}

}  // namespace

void add_eval_tasks_command(CLI::App& app, int& status) {
  auto selection = std::make_shared<RunSelection>();
  auto tokenized_tasks = std::make_shared<std::vector<std::string>>();
  auto routing = std::make_shared<std::string>("prompt");
  CLI::App* command =
      app.add_subcommand("eval-tasks", "Accuracy of a trained run on tokenized in-context tasks");
  selection->add_options(command);
  selection->add_precision_option(command);
  command
      ->add_option("--tasks", *tokenized_tasks,
                   "Task files tokenized by `lory-data tokenize-tasks`")
      ->required();
  add_evaluation_routing_option(command, *routing, "prompt, train or inference");
  command->callback([selection, tokenized_tasks, routing, &status] {
    end_with_parent();
    status = eval_tasks_command(*selection, *tokenized_tasks, *routing);
  });
}

}  // namespace lory::worker
