// `lory-worker train`: trains one run to its end (or to a stop request), resuming from its latest
// checkpoint, and records how it ended in the results store. Rank 0 of a data-parallel group
// writes.
#include <fmt/format.h>

#include <cstdio>
#include <cstdlib>

#include "core/support/diagnostics.h"
#include "core/support/kill_points.h"
#include "core/support/program_main.h"
#include "train/data_parallel.h"
#include "train/failure_reason.h"
#include "train/stop_request.h"
#include "train/trainer.h"
#include "worker/commands.h"
#include "worker/trained_model.h"

namespace lory::worker {

namespace {

int train_command(const RunSelection& selection) {
  ResultsStore store(selection.db);
  const auto run = store.find_run(selection.run_id);
  if (!run) throw UserError(fmt::format("no run {} in '{}'", selection.run_id, selection.db));
  // Data-parallel ranks other than 0 never write to the store: rank 0 records how the run ended.
  const int rank = std::getenv("RANK") ? std::atoi(std::getenv("RANK")) : 0;
  try {
    CellConfig config = CellConfig::from_json(run->config_json);
    set_threads(config);
    RunSetup setup(std::move(config), selection.corpus, selection.plugin_path,
                   experiment_folder(store, *run));
    const std::unique_ptr<DataParallel> group = DataParallel::from_environment();
    const TrainOutcome outcome =
        train_run(setup, store, *run, run_directory(selection.db, *run), *group);
    kill_point("before_done", outcome.last_step);
    if (rank != 0) {
      // The same statuses as rank 0's, so that the supervisor does not take a rank that stopped
      // on an interruption for a failed one.
      if (outcome.status == run_status::kDone) return exit_status::kSuccess;
      return outcome.status == run_status::kInterrupted ? exit_status::kInterrupted
                                                        : exit_status::kNotDone;
    }
    store.mark_finished(run->id, outcome.status, outcome.reason, outcome.last_step);
    if (outcome.status == run_status::kInterrupted) return exit_status::kInterrupted;
    if (outcome.status != run_status::kDone) {
      std::fprintf(stderr, "lory-worker: run %lld %s: %s\n", static_cast<long long>(run->id),
                   outcome.status.c_str(), outcome.reason.c_str());
      return exit_status::kNotDone;
    }
    return 0;
  } catch (const std::exception& e) {
    if (rank == 0) {
      const auto latest = store.find_run(run->id);
      store.mark_finished(run->id, run_status::kFailed, failure_reason(e),
                          latest ? latest->last_step : 0);
    }
    // Recorded as the run's failure; the status says whose it was: the input's, or the run's.
    if (dynamic_cast<const UserError*>(&e)) throw UserError(failure_reason(e));
    throw NotDone(failure_reason(e));
  }
}

}  // namespace

void add_train_command(CLI::App& app, int& status) {
  auto selection = std::make_shared<RunSelection>();
  CLI::App* command =
      app.add_subcommand("train", "Train a run to the end, resuming from its latest checkpoint");
  selection->add_options(command);
  command->callback([selection, &status] {
    install_stop_handlers();
    status = train_command(*selection);
  });
}

}  // namespace lory::worker
