// `lory eval-tasks`: in-context multiple-choice accuracy of trained runs on task files, stored
// under each run.
#include <fmt/format.h>

#include <map>
#include <memory>

#include "child_programs.h"
#include "commands.h"
#include "core/support/command_line_options.h"
#include "core/support/diagnostics.h"
#include "core/tasks/task_file.h"
#include "run_inputs.h"
#include "worker_job.h"

namespace lory::cli {

namespace {

struct EvalTasksOptions {
  std::vector<std::string> runs;
  std::vector<std::string> task_files;
  std::string routing = "prompt";
};

// Every run must be done and every task file valid before any run is scored: bad input ends the
// command before a worker starts, and each run's accuracies are written in one transaction.
void run_eval_tasks(const TrainedRunOptions& options, const EvalTasksOptions& tasks) {
  std::vector<RunRecord> runs;
  std::vector<std::string> corpora;
  std::vector<std::vector<std::string>> plugin_paths;
  {
    ResultsStore store(options.db, ResultsStore::Open::MustExist);
    for (const std::string& id : tasks.runs) {
      RunRecord run = store.resolve_run(id);
      if (run.status != run_status::kDone) {
        throw UserError(fmt::format(
            "run {} ({}) is {}, not done: finish it with `lory run` before evaluating it; "
            "nothing was evaluated",
            run.id, run.label, run.status));
      }
      corpora.push_back(run_corpus_dir(store, run, options.corpus));
      plugin_paths.push_back(run_plugin_path(store, run, options.plugin_path));
      runs.push_back(std::move(run));
    }
  }
  // A task is stored under its file's name: two files of one name would replace each other's rows.
  std::map<std::string, std::string> file_of_name;
  for (const std::string& task_file : tasks.task_files) {
    const std::string name = task_name_of(task_file);
    const auto [it, inserted] = file_of_name.emplace(name, task_file);
    if (!inserted) {
      throw UserError(fmt::format(
          "'{}' and '{}' are both task '{}' (a task is named by its file name): rename one; "
          "nothing was evaluated",
          it->second, task_file, name));
    }
  }
  // Tokenized once per corpus (runs of one experiment share one).
  std::map<std::string, std::vector<std::unique_ptr<TemporaryFile>>> tokenized;
  for (const std::string& corpus : corpora) {
    if (tokenized.count(corpus)) continue;
    auto& files = tokenized[corpus];
    for (const std::string& task_file : tasks.task_files) {
      files.push_back(std::make_unique<TemporaryFile>(
          fmt::format("tasks-{}-{}.jsonl", tokenized.size(), files.size())));
      const std::string ending =
          run_program({executable_dir() + "/lory-data", "tokenize-tasks", "--corpus", corpus,
                       "--tasks", task_file, "--out", files.back()->path});
      if (!ending.empty())
        throw UserError(fmt::format("reading task file '{}' failed ({}); nothing was evaluated",
                                    task_file, ending));
    }
  }
  for (size_t i = 0; i < runs.size(); ++i) {
    auto arguments = worker_arguments("eval-tasks", options, runs[i], corpora[i], plugin_paths[i]);
    arguments.insert(arguments.end(), {"--routing", tasks.routing, "--tasks"});
    for (const auto& file : tokenized[corpora[i]]) arguments.push_back(file->path);
    std::fflush(stdout);
    const std::string ending = run_program(arguments);
    if (!ending.empty()) {
      throw UserError(fmt::format("evaluating run {} failed ({}){}", runs[i].id, ending,
                                  i > 0 ? "; the runs before it were evaluated and stored" : ""));
    }
  }
}

}  // namespace

void register_eval_tasks_command(CLI::App& app) {
  auto options = std::make_shared<TrainedRunOptions>();
  auto tasks = std::make_shared<EvalTasksOptions>();
  CLI::App* cmd = app.add_subcommand("eval-tasks",
                                     "In-context multiple-choice accuracy of trained runs on task "
                                     "files (stored; shown by lory report)");
  cmd->add_option("runs", tasks->runs, "Run ids, or prefixes of their cell hashes")->required();
  options->add_store_options(cmd);
  cmd->add_option(
         "--tasks", tasks->task_files,
         "Task files (JSONL: context, choices, gold, optional few_shot; docs/inference.md), e.g. "
         "experiments/tasks/*.jsonl")
      ->required()
      ->check(CLI::ExistingFile);
  add_evaluation_routing_option(cmd, tasks->routing,
                                "prompt: Lory routes each layer once from the context and scores "
                                "every choice with that FFN (the paper's "
                                "inference rule); train: segment by segment, as in training; "
                                "inference: the router's own inference rule "
                                "(token routers: all alike)");
  options->add_precision_option(cmd);
  cmd->callback([options, tasks] { run_eval_tasks(*options, *tasks); });
}

}  // namespace lory::cli
