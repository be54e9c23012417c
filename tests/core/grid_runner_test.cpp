// The grid runner against crashes, kills, divergence, broken plugins, parallel jobs, interrupts
// and a changed corpus: nothing lost, nothing duplicated, and resumed runs end where
// uninterrupted ones do (bit-identical on CPU with one thread).
#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>
#include <tuple>

#include "core/store/results_store.h"
#include "core/store/sqlite_db.h"
#include "core/support/process_identity.h"
#include "test_support.h"

namespace lory {
namespace {

using testing::build_dir;
using testing::run_command;
using testing::TempDir;

// Every result row of a database except timings, in a canonical order: what "the same results"
// means.
using Rows = std::vector<std::tuple<std::string, std::string, int64_t, std::string, double>>;

Rows result_rows(const std::string& db_path) {
  Database db(db_path, Database::Mode::ReadOnly);
  Rows rows;
  Statement metrics = db.prepare(
      "SELECT r.cell_hash, m.name, m.step, m.value FROM metrics m JOIN runs r ON r.id = m.run_id "
      "WHERE m.name != "
      "'train/tokens_per_s' ORDER BY 1, 2, 3");
  while (metrics.step()) {
    rows.emplace_back("metric", metrics.column_text(0), metrics.column_int(2),
                      metrics.column_text(1), metrics.column_double(3));
  }
  Statement evals = db.prepare(
      "SELECT r.cell_hash, v.mode || '/' || v.domain, v.step, v.loss FROM evals v JOIN runs r ON "
      "r.id = v.run_id "
      "ORDER BY 1, 2, 3");
  while (evals.step())
    rows.emplace_back("eval", evals.column_text(0), evals.column_int(2), evals.column_text(1),
                      evals.column_double(3));
  Statement routing = db.prepare(
      "SELECT r.cell_hash, s.layer || '/' || s.domain || '/' || s.expert, s.step, s.weight_mean "
      "FROM routing_stats s "
      "JOIN runs r ON r.id = s.run_id ORDER BY 1, 2, 3");
  while (routing.step()) {
    rows.emplace_back("routing", routing.column_text(0), routing.column_int(2),
                      routing.column_text(1), routing.column_double(3));
  }
  return rows;
}

int64_t count(const std::string& db_path, const std::string& sql) {
  Database db(db_path, Database::Mode::ReadOnly);
  return db.query_int(sql).value_or(-1);
}

std::string query_text(const std::string& db_path, const std::string& sql) {
  Database db(db_path, Database::Mode::ReadOnly);
  Statement s = db.prepare(sql);
  return s.step() ? s.column_text(0) : "";
}

// Whether the store shows a run past `step`; false while the store is still being created (a
// polling test may look between the file's creation and its schema).
bool run_reached_step(const std::string& db_path, int64_t step) {
  if (!std::filesystem::exists(db_path)) return false;
  try {
    return count(db_path, fmt::format("SELECT count(*) FROM runs WHERE last_step >= {}", step)) ==
           1;
  } catch (const std::exception&) {
    return false;
  }
}

// Starts `lory run FILE --db DB` as a child process (output to LOG) and returns its pid once its
// run has passed `step` (or after 30 s), for tests that interrupt it.
pid_t start_supervisor_when_step_reached(const std::string& file, const std::string& db,
                                         const std::string& log, int64_t step) {
  const pid_t supervisor = fork();
  if (supervisor == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    execl((build_dir() + "/lory").c_str(), "lory", "run", file.c_str(), "--db", db.c_str(),
          nullptr);
    _exit(127);
  }
  for (int i = 0; i < 1200 && !run_reached_step(db, step); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  return supervisor;
}

class GridRunner : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    testing::prepare_byte_corpus(*dir_, testing::synthetic_documents(3, 40, 20, 80));
  }
  static void TearDownTestSuite() { delete dir_; }

  // An experiment of `seeds` tiny dense cells; `extra` is appended to the [trainer] table.
  static std::string experiment(const std::string& name, int seeds, int steps,
                                const std::string& extra = "",
                                const std::string& more_tables = "") {
    std::string seed_list;
    for (int s = 1; s <= seeds; ++s) seed_list += (s > 1 ? ", " : "") + std::to_string(s);
    const std::string path = dir_->file(name + ".toml");
    testing::write_text(
        path,
        testing::tiny_experiment(
            name,
            fmt::format(
                "steps = {}\nbatch_size = 4\nlr = 0.003\nlog_every = 2\ncheckpoint_every = 4\n"
                "dense_warmup_fraction = 0.2\n{}",
                steps, extra),
            "every = 6",
            fmt::format(
                "[router]\nplugin = \"lory\"\n[router.lory]\nexperts = 4\nsegment_length = 8\n"
                "[grid]\nseeds = [{}]\n{}",
                seed_list, more_tables)));
    return path;
  }
  static testing::CommandResult lory_run(const std::string& file, const std::string& db,
                                         const std::string& flags = "",
                                         const std::string& environment = "") {
    return run_command(
        fmt::format("{} {}/lory run {} --db {} {}", environment, build_dir(), file, db, flags));
  }
  static TempDir* dir_;
};
TempDir* GridRunner::dir_ = nullptr;

TEST_F(GridRunner, KillNineAtSixPointsThenResumeGivesExactlyTheUninterruptedResults) {
  const std::string file = experiment("crash", 1, 12);
  const std::string baseline_db = dir_->file("crash-baseline/r.sqlite");
  const auto baseline = lory_run(file, baseline_db);
  ASSERT_EQ(baseline.exit_code, 0) << baseline.output;
  const Rows expected = result_rows(baseline_db);
  ASSERT_GT(expected.size(), 30u);
  const std::vector<std::string> points = {"after_step:6",        "metrics_transaction:6",
                                           "evals_transaction:6", "checkpoint_file:8",
                                           "checkpoint_index:8",  "before_done:12"};
  for (const std::string& point : points) {
    const std::string db =
        dir_->file(fmt::format("crash-{}/r.sqlite", point.substr(0, point.find(':'))));
    const auto crashed = lory_run(file, db, "", "LORY_TEST_KILL_AT=" + point);
    EXPECT_NE(crashed.exit_code, 0) << point;
    // Killed from outside (kill -9, the OOM killer): interrupted, so a plain rerun resumes it.
    EXPECT_EQ(query_text(db, "SELECT status FROM runs"), "interrupted") << point << "\n"
                                                                        << crashed.output;
    EXPECT_NE(query_text(db, "SELECT reason FROM runs").find("signal 9"), std::string::npos)
        << point;
    const auto resumed = lory_run(file, db);
    ASSERT_EQ(resumed.exit_code, 0) << point << "\n" << resumed.output;
    EXPECT_EQ(count(db, "SELECT count(*) FROM runs"), 1) << point;
    EXPECT_EQ(query_text(db, "SELECT status FROM runs"), "done") << point;
    EXPECT_EQ(query_text(db, "PRAGMA integrity_check"), "ok") << point;
    EXPECT_EQ(result_rows(db), expected)
        << point << ": the resumed run's rows differ from the uninterrupted run's";
  }
}

// The `copy` upcycling recipe with an LR re-warm-up: killed after the upcycling step (3 of 12)
// and resumed from the checkpoint of step 4, the run ends with exactly the rows of an
// uninterrupted one, so the inherited optimizer state and the re-warm-up clock are checkpointed.
// The re-warm-up shows in train/lr: k/6 of the flat schedule at the k-th of the 6 steps after it.
TEST_F(GridRunner, TheCopyUpcyclingRecipeResumesAcrossTheUpcyclingStepExactly) {
  const std::string file =
      experiment("copy-recipe", 1, 12,
                 "upcycling_optimizer = \"copy\"\nupcycling_lr_rewarmup_fraction = 0.5\n"
                 "warmup_fraction = 0\nmin_lr_ratio = 1.0\n");
  const std::string baseline_db = dir_->file("copy-baseline/r.sqlite");
  const auto baseline = lory_run(file, baseline_db);
  ASSERT_EQ(baseline.exit_code, 0) << baseline.output;
  EXPECT_EQ(
      query_text(baseline_db,
                 "SELECT value FROM run_attributes WHERE name = 'upcycling_inherited_tensors'"),
      "6");  // 2 layers x (gate, up, down)
  // Upcycling before step 3 (0.2 x 12, rounded); logged every 2 steps: 2/6, 4/6, 6/6 of 0.003.
  for (const auto& [step, lr] :
       std::vector<std::pair<int, double>>{{2, 0.003}, {4, 0.001}, {6, 0.002}, {8, 0.003}}) {
    EXPECT_NEAR(std::stod(query_text(
                    baseline_db, fmt::format("SELECT value FROM metrics WHERE name = 'train/lr' "
                                             "AND step = {}",
                                             step))),
                lr, 1e-12)
        << "step " << step;
  }
  const Rows expected = result_rows(baseline_db);
  const std::string db = dir_->file("copy-killed/r.sqlite");
  const auto crashed = lory_run(file, db, "", "LORY_TEST_KILL_AT=after_step:6");
  EXPECT_NE(crashed.exit_code, 0);
  const auto resumed = lory_run(file, db);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resuming after step"), std::string::npos) << resumed.output;
  EXPECT_EQ(result_rows(db), expected)
      << "the resumed copy-recipe run differs from the uninterrupted one";
}

// trainer.precision = "bf16": a bf16 run killed after step 6 and resumed from its checkpoint of
// step 4 ends with exactly the rows of an uninterrupted bf16 run (the weights and moments are fp32
// and checkpointed as such; the bf16 copies are made afresh each step), and those rows are not the
// fp32 run's, under another cell identity.
TEST_F(GridRunner, ABf16RunKilledAndResumedGivesExactlyTheUninterruptedBf16Results) {
  const std::string file = experiment("bf16", 1, 12, "precision = \"bf16\"\n");
  const std::string baseline_db = dir_->file("bf16-baseline/r.sqlite");
  const auto baseline = lory_run(file, baseline_db);
  ASSERT_EQ(baseline.exit_code, 0) << baseline.output;
  const Rows expected = result_rows(baseline_db);
  ASSERT_GT(expected.size(), 30u);
  const std::string fp32_db = dir_->file("bf16-fp32/r.sqlite");
  ASSERT_EQ(lory_run(experiment("bf16-as-fp32", 1, 12), fp32_db).exit_code, 0);
  EXPECT_NE(query_text(fp32_db, "SELECT cell_hash FROM runs"),
            query_text(baseline_db, "SELECT cell_hash FROM runs"));
  EXPECT_NE(
      query_text(fp32_db, "SELECT value FROM metrics WHERE name = 'train/loss' AND step = 12"),
      query_text(baseline_db, "SELECT value FROM metrics WHERE name = 'train/loss' AND step = 12"))
      << "the bf16 run trained exactly as the fp32 one: bf16 was not used";
  const std::string db = dir_->file("bf16-killed/r.sqlite");
  const auto crashed = lory_run(file, db, "", "LORY_TEST_KILL_AT=after_step:6");
  EXPECT_NE(crashed.exit_code, 0);
  const auto resumed = lory_run(file, db);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resuming"), std::string::npos) << resumed.output;
  EXPECT_EQ(result_rows(db), expected) << "the resumed bf16 run differs from the uninterrupted one";
}

TEST_F(GridRunner, AWorkerThatCrashesByItsOwnFaultFailsItsCellAndAPlainRerunLeavesIt) {
  const std::string file = experiment("abort", 1, 8);
  const std::string db = dir_->file("abort/r.sqlite");
  const auto crashed =
      lory_run(file, db, "", "LORY_TEST_KILL_AT=after_step:3 LORY_TEST_KILL_SIGNAL=6");
  EXPECT_NE(crashed.exit_code, 0);
  EXPECT_EQ(query_text(db, "SELECT status FROM runs"), "failed") << crashed.output;
  EXPECT_NE(query_text(db, "SELECT reason FROM runs").find("signal 6"), std::string::npos)
      << query_text(db, "SELECT reason FROM runs");
  const auto plain = lory_run(file, db);
  EXPECT_NE(plain.exit_code, 0);
  EXPECT_NE(plain.output.find("not retried (pass --retry-failed)"), std::string::npos)
      << plain.output;
  EXPECT_EQ(query_text(db, "SELECT status FROM runs"), "failed");
  const auto retried = lory_run(file, db, "--retry-failed");
  EXPECT_EQ(retried.exit_code, 0) << retried.output;
  EXPECT_EQ(query_text(db, "SELECT status FROM runs"), "done");
}

// A process named lory-worker that is not training anything: a zombie (it has exited, its parent
// has not reaped it) or a live one started after the run's last heartbeat (a reused process id).
pid_t fake_worker(bool zombie) {
  const pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_NAME, "lory-worker", 0, 0, 0);
    if (!zombie) pause();
    _exit(0);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // named (and, for a zombie, exited)
  return pid;
}

// Makes run `run` look as if process `pid` were training it. `start` is its worker_start attribute:
// the process's own identity (what a real worker records), another one, or none (a run recorded
// before the attribute existed, judged by its heartbeat).
enum class RecordedStart { ThisProcess, Unchanged, None };
void mark_running(const std::string& db, int64_t run, pid_t pid, const std::string& heartbeat_sql,
                  RecordedStart start) {
  Database writable(db, Database::Mode::ReadWrite);
  writable.exec(fmt::format(
      "UPDATE runs SET status = 'running', worker_pid = {}, host = '{}', heartbeat_at = "
      "strftime('%Y-%m-%dT%H:%M:%SZ', {}) WHERE id = {}",
      pid, current_host(), heartbeat_sql, run));
  if (start == RecordedStart::ThisProcess) {
    writable.exec(fmt::format(
        "UPDATE run_attributes SET value = '{}' WHERE run_id = {} AND name = 'worker_start'",
        process_start_identity(pid), run));
  } else if (start == RecordedStart::None) {
    writable.exec(
        fmt::format("DELETE FROM run_attributes WHERE run_id = {} AND name = 'worker_start'", run));
  }
}

TEST_F(GridRunner, ARunWhoseWorkerIsAZombieOrAReusedProcessIdIsResumedNotLeftToIt) {
  const std::string file = experiment("zombie", 3, 6);
  const std::string db = dir_->file("zombie/r.sqlite");
  ASSERT_EQ(lory_run(file, db).exit_code, 0);
  const pid_t zombie = fake_worker(/*zombie=*/true);
  const pid_t reused = fake_worker(/*zombie=*/false);
  mark_running(db, 1, zombie, "'now'", RecordedStart::ThisProcess);
  // The id now names a newer lory-worker: its start differs from the one the run recorded...
  mark_running(db, 2, reused, "'now', '+1 minute'", RecordedStart::Unchanged);
  // ... or, for a run recorded without one, it started after the run's last heartbeat.
  mark_running(db, 3, reused, "'now', '-1 hour'", RecordedStart::None);
  const auto rerun = lory_run(file, db);
  EXPECT_EQ(rerun.exit_code, 0) << rerun.output;
  EXPECT_EQ(rerun.output.find("left to it"), std::string::npos) << rerun.output;
  EXPECT_NE(rerun.output.find(fmt::format(
                "was left running by process {}: its process has exited (a zombie)", zombie)),
            std::string::npos)
      << rerun.output;
  EXPECT_NE(rerun.output.find(fmt::format(
                "process {} is a newer lory-worker than the one that trained it", reused)),
            std::string::npos)
      << rerun.output;
  EXPECT_NE(rerun.output.find(fmt::format("process {} is a newer lory-worker;", reused)),
            std::string::npos)
      << rerun.output;
  EXPECT_NE(rerun.output.find("0 done before, 3 to train"), std::string::npos) << rerun.output;
  EXPECT_EQ(count(db, "SELECT count(*) FROM runs WHERE status = 'done'"), 3);
  ::kill(reused, SIGKILL);
  waitpid(reused, nullptr, 0);
  waitpid(zombie, nullptr, 0);
}

TEST_F(GridRunner, ARunALiveWorkerIsTrainingIsLeftToItAndTheGridIsNotReportedDone) {
  const std::string file = experiment("live", 2, 6);
  const std::string db = dir_->file("live/r.sqlite");
  ASSERT_EQ(lory_run(file, db).exit_code, 0);
  const pid_t worker = fake_worker(/*zombie=*/false);
  mark_running(db, 2, worker, "'now'", RecordedStart::ThisProcess);
  const auto rerun = lory_run(file, db);
  EXPECT_NE(rerun.exit_code, 0) << rerun.output;
  EXPECT_NE(rerun.output.find(fmt::format("is being trained by process {}; left to it", worker)),
            std::string::npos)
      << rerun.output;
  EXPECT_NE(rerun.output.find("1 not done, 1 being trained by another process"), std::string::npos)
      << rerun.output;
  EXPECT_NE(rerun.output.find("1 of 2 cells of 'live' are not done"), std::string::npos)
      << rerun.output;
  ::kill(worker, SIGKILL);
  waitpid(worker, nullptr, 0);
}

TEST_F(GridRunner, KillNineOfTheSupervisorAndItsWorkerThenAPlainRerunFinishesTheGrid) {
  const std::string file = experiment("both-killed", 1, 400);
  const std::string db = dir_->file("both-killed/r.sqlite");
  const pid_t supervisor =
      start_supervisor_when_step_reached(file, db, dir_->file("both-killed.log"), 6);
  const pid_t worker = static_cast<pid_t>(count(db, "SELECT worker_pid FROM runs"));
  ASSERT_GT(worker, 0);
  ::kill(supervisor, SIGKILL);
  ::kill(worker, SIGKILL);
  waitpid(supervisor, nullptr, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_EQ(query_text(db, "SELECT status FROM runs"),
            "running");  // nobody was left to record the ending
  const auto rerun = lory_run(file, db);
  EXPECT_EQ(rerun.exit_code, 0) << rerun.output;
  EXPECT_EQ(rerun.output.find("left to it"), std::string::npos) << rerun.output;
  EXPECT_EQ(query_text(db, "SELECT status FROM runs"), "done");
  EXPECT_EQ(count(db, "SELECT count(DISTINCT step) FROM metrics WHERE name = 'train/loss'"), 200);
}

TEST_F(GridRunner, ASecondLoryRunOfAGridBeingTrainedIsRefusedWithWhoHoldsIt) {
  const std::string file = experiment("twice-run", 1, 400);
  const std::string db = dir_->file("twice-run/r.sqlite");
  const pid_t first = start_supervisor_when_step_reached(file, db, dir_->file("twice-run.log"), 4);
  const auto second = lory_run(file, db);
  EXPECT_NE(second.exit_code, 0) << second.output;
  EXPECT_NE(second.output.find(fmt::format(
                "'twice-run' in '{}' is being run by another lory process (process {}", db, first)),
            std::string::npos)
      << second.output;
  EXPECT_NE(second.output.find("nothing was started"), std::string::npos) << second.output;
  ::kill(first, SIGINT);
  waitpid(first, nullptr, 0);
  // Once the first has stopped, the grid is free again and finishes.
  const auto third = lory_run(file, db);
  EXPECT_EQ(third.exit_code, 0) << third.output;
}

TEST_F(GridRunner, APluginThatThrowsFailsOnlyItsOwnCell) {
  const std::string file =
      experiment("throwing", 1, 4, "",
                 fmt::format("[[grid.cells]]\nbatcher.plugin = "
                             "\"random\"\n[[grid.cells]]\nbatcher.plugin = \"throwing_batcher\"\n"
                             "[plugins]\npath = [\"{}/tests/plugins/factory_throws.so\"]\n",
                             build_dir()));
  const std::string db = dir_->file("throwing/r.sqlite");
  const auto result = lory_run(file, db);
  EXPECT_NE(result.exit_code, 0);
  EXPECT_EQ(count(db, "SELECT count(*) FROM runs WHERE status = 'done'"), 1) << result.output;
  EXPECT_EQ(
      count(db,
            "SELECT count(*) FROM runs WHERE status = 'failed' AND reason LIKE '%out of coffee%'"),
      1)
      << result.output;
  EXPECT_NE(result.output.find("1 of 2 cells of 'throwing' are not done"), std::string::npos)
      << result.output;
}

TEST_F(GridRunner, ANonFiniteLossStopsTheCellAsDivergedWithinOneStep) {
  const std::string file = experiment("nan", 1, 12, "");
  const std::string db = dir_->file("nan/r.sqlite");
  const auto result = lory_run(file, db, "", "LORY_TEST_FAULT=nan_loss:5");
  EXPECT_EQ(result.exit_code, 2) << result.output;  // not done: the input was right
  EXPECT_EQ(query_text(db, "SELECT status FROM runs"), "diverged") << result.output;
  EXPECT_NE(query_text(db, "SELECT reason FROM runs").find("non-finite loss at step 5"),
            std::string::npos);
  EXPECT_EQ(count(db, "SELECT last_step FROM runs"), 4);
  EXPECT_EQ(count(db, "SELECT max(step) FROM metrics"), 4);
  EXPECT_EQ(count(db, "SELECT count(*) FROM metrics WHERE value != value OR abs(value) > 1e300"),
            0);
}

TEST_F(GridRunner, ANonFiniteGradientWithAFiniteLossStopsTheCellAsDiverged) {
  const std::string file = experiment("nan-grad", 1, 12, "");
  const std::string db = dir_->file("nan-grad/r.sqlite");
  const auto result = lory_run(file, db, "", "LORY_TEST_FAULT=inf_grad:7");
  EXPECT_NE(result.exit_code, 0);
  EXPECT_EQ(query_text(db, "SELECT status FROM runs"), "diverged") << result.output;
  EXPECT_NE(query_text(db, "SELECT reason FROM runs").find("non-finite gradient at step 7"),
            std::string::npos)
      << query_text(db, "SELECT reason FROM runs");
  EXPECT_EQ(count(db, "SELECT last_step FROM runs"), 6);
  EXPECT_EQ(count(db, "SELECT count(*) FROM metrics WHERE value != value OR abs(value) > 1e300"),
            0);
}

TEST_F(GridRunner, FailFastStopsTheGridAtTheFirstFailedCell) {
  // The throwing cell comes first in grid order; without --fail-fast the others would train.
  const std::string file =
      experiment("fail-fast", 2, 4, "",
                 fmt::format("[[grid.cells]]\nbatcher.plugin = "
                             "\"throwing_batcher\"\n[[grid.cells]]\nbatcher.plugin = \"random\"\n"
                             "[plugins]\npath = [\"{}/tests/plugins/factory_throws.so\"]\n",
                             build_dir()));
  const std::string db = dir_->file("fail-fast/r.sqlite");
  const auto result = lory_run(file, db, "--fail-fast");
  EXPECT_NE(result.exit_code, 0);
  EXPECT_NE(result.output.find("--fail-fast: stopping the grid"), std::string::npos)
      << result.output;
  EXPECT_NE(result.output.find("3 not started"), std::string::npos) << result.output;
  EXPECT_EQ(count(db, "SELECT count(*) FROM runs WHERE status = 'done'"), 0) << result.output;
  EXPECT_EQ(count(db, "SELECT count(*) FROM runs WHERE status = 'failed'"), 1) << result.output;
  // The default goes on past a failure.
  const auto without = lory_run(file, db);
  EXPECT_EQ(count(db, "SELECT count(*) FROM runs WHERE status = 'done'"), 2) << without.output;
}

TEST_F(GridRunner, ShuffledOrderIsSeededAndDiffersFromGridOrder) {
  const std::string file = experiment("order", 4, 2);
  // Each in a fresh store, where run ids follow grid order.
  const auto launch_order = [&](const std::string& store, const std::string& flags) {
    const auto trained = lory_run(file, dir_->file("order-" + store + "/r.sqlite"), flags);
    EXPECT_EQ(trained.exit_code, 0) << trained.output;
    std::vector<std::string>
        runs;  // "[i/N] label (run R, ...": the order the cells were launched in
    size_t at = 0;
    while ((at = trained.output.find("(run ", at)) != std::string::npos) {
      runs.push_back(trained.output.substr(at, trained.output.find(',', at) - at));
      ++at;
    }
    return runs;
  };
  const auto grid = launch_order("grid", ""),
             a = launch_order("a", "--order shuffled --order-seed 3"),
             b = launch_order("b", "--order shuffled --order-seed 3"),
             c = launch_order("c", "--order shuffled --order-seed 4");
  ASSERT_EQ(grid.size(), 4u);
  EXPECT_EQ(a, b);     // one seed, one order
  EXPECT_NE(a, grid);  // and not the grid's
  EXPECT_NE(a, c);     // another seed, another order
  auto sorted = a;
  std::sort(sorted.begin(), sorted.end());
  auto sorted_grid = grid;
  std::sort(sorted_grid.begin(), sorted_grid.end());
  EXPECT_EQ(sorted, sorted_grid);  // the same cells
}

TEST_F(GridRunner, ParallelJobsGiveTheSameResultsAsSequentialOnes) {
  const std::string file = experiment("parallel", 4, 8);
  const std::string sequential = dir_->file("parallel-1/r.sqlite"),
                    parallel = dir_->file("parallel-2/r.sqlite");
  ASSERT_EQ(lory_run(file, sequential).exit_code, 0);
  const auto result = lory_run(file, parallel, "--jobs 2 --order shuffled --order-seed 7");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("2 at a time"), std::string::npos) << result.output;
  EXPECT_EQ(count(parallel, "SELECT count(*) FROM runs WHERE status = 'done'"), 4);
  EXPECT_EQ(result_rows(parallel), result_rows(sequential));
  EXPECT_EQ(query_text(parallel, "PRAGMA integrity_check"), "ok");
}

// Ctrl-C (SIGINT) and a closed terminal (SIGHUP) to the supervisor are the same interruption: the
// worker checkpoints and stops, the run is `interrupted` (not left `running` with an orphan worker
// training on), and a rerun resumes it.
TEST_F(GridRunner, CtrlCOrSighupCheckpointsAndMarksInterruptedThenARerunResumes) {
  for (const auto& [name, signal_number] :
       {std::pair<std::string, int>{"interrupt", SIGINT}, {"hangup", SIGHUP}}) {
    SCOPED_TRACE(name);
    const std::string file = experiment(name, 1, 400);
    const std::string db = dir_->file(name + "/r.sqlite");
    const std::string log = dir_->file(name + ".log");
    // Wait for training to be under way, then interrupt the supervisor once.
    const pid_t supervisor = start_supervisor_when_step_reached(file, db, log, 10);
    ::kill(supervisor, signal_number);
    int status = 0;
    waitpid(supervisor, &status, 0);
    EXPECT_TRUE(WIFEXITED(status)) << "the supervisor must not die of the signal";
    EXPECT_EQ(WEXITSTATUS(status), 130);  // interrupted
    ASSERT_EQ(query_text(db, "SELECT status FROM runs"), "interrupted") << testing::read_text(log);
    const int64_t stopped_at = count(db, "SELECT last_step FROM runs");
    EXPECT_LT(stopped_at, 400);
    EXPECT_TRUE(std::filesystem::exists(
        dir_->file(name + "/r.runs/" + name + "/1-" +
                   query_text(db, "SELECT substr(cell_hash, 1, 12) FROM runs") + "/latest.json")));
    const auto resumed = lory_run(file, db);
    ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
    EXPECT_NE(resumed.output.find("resuming after step"), std::string::npos) << resumed.output;
    EXPECT_EQ(query_text(db, "SELECT status FROM runs"), "done");
    EXPECT_EQ(count(db, "SELECT count(*) FROM metrics WHERE name = 'train/loss'"), 200);
  }
}

// An interrupted run whose checkpoint folder was deleted starts over, and says so (not "resuming").
TEST_F(GridRunner, ARunWithoutItsCheckpointFolderIsAnnouncedAsStartingOver) {
  const std::string file = experiment("restart", 1, 400);
  const std::string db = dir_->file("restart/r.sqlite");
  const pid_t supervisor =
      start_supervisor_when_step_reached(file, db, dir_->file("restart.log"), 10);
  ::kill(supervisor, SIGINT);
  int status = 0;
  waitpid(supervisor, &status, 0);
  ASSERT_EQ(query_text(db, "SELECT status FROM runs"), "interrupted");
  std::filesystem::remove_all(dir_->file("restart/r.runs"));
  const auto rerun = lory_run(file, db);
  ASSERT_EQ(rerun.exit_code, 0) << rerun.output;
  EXPECT_NE(rerun.output.find(": starting over (it had reached step"), std::string::npos)
      << rerun.output;
  EXPECT_EQ(rerun.output.find("resuming after step"), std::string::npos) << rerun.output;
  EXPECT_EQ(query_text(db, "SELECT status FROM runs"), "done");
}

TEST_F(GridRunner, ASecondCtrlCStopsAtOnceAndTheRerunResumesFromTheLastCheckpoint) {
  // Steps of a wider model take long enough (~0.1 s) that the second interrupt, 20 ms after the
  // first, lands while the worker is still finishing its step: it must be stopped at once.
  const std::string file = dir_->file("twice.toml");
  testing::write_text(file, R"([experiment]
name = "twice"
[data]
corpus = "corpus"
[model]
context_length = 128
[model.transformer]
d_model = 128
n_layers = 2
n_heads = 4
[trainer]
threads = 1
steps = 24
batch_size = 16
log_every = 1
checkpoint_every = 4
[eval]
every = 24
tokens_per_domain = 128
)");
  const std::string db = dir_->file("twice/r.sqlite");
  const std::string log = dir_->file("twice.log");
  const pid_t supervisor = start_supervisor_when_step_reached(file, db, log, 5);
  ::kill(supervisor, SIGINT);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ::kill(supervisor, SIGINT);
  int status = 0;
  waitpid(supervisor, &status, 0);
  EXPECT_NE(WEXITSTATUS(status), 0);
  const std::string output = testing::read_text(log);
  EXPECT_NE(output.find("second interrupt"), std::string::npos) << output;
  ASSERT_EQ(query_text(db, "SELECT status FROM runs"), "interrupted") << output;
  EXPECT_NE(query_text(db, "SELECT reason FROM runs").find("stopped at once by a second interrupt"),
            std::string::npos)
      << query_text(db, "SELECT reason FROM runs");
  EXPECT_LT(count(db, "SELECT last_step FROM runs"), 24);
  // Rows written after the last checkpoint are replaced on resume: one row per step, no duplicates.
  const auto resumed = lory_run(file, db);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("resuming after step"), std::string::npos) << resumed.output;
  EXPECT_EQ(query_text(db, "SELECT status FROM runs"), "done");
  EXPECT_EQ(count(db, "SELECT count(*) FROM metrics WHERE name = 'train/loss'"), 24);
  EXPECT_EQ(count(db, "SELECT count(DISTINCT step) FROM metrics WHERE name = 'train/loss'"), 24);
  EXPECT_EQ(query_text(db, "PRAGMA integrity_check"), "ok");
}

TEST_F(GridRunner, AChangedCorpusIsNotMixedSilently) {
  TempDir own;
  testing::prepare_byte_corpus(own, testing::synthetic_documents(2, 20, 20, 40));
  const std::string file = own.file("changing.toml");
  testing::write_text(file, testing::read_text(experiment("changing", 2, 4)));
  const std::string db = own.file("r.sqlite");
  ASSERT_EQ(lory_run(file, db, "", "").exit_code, 0);
  testing::prepare_byte_corpus(
      own, testing::synthetic_documents(2, 21, 20, 40));  // the same folder, new content
  testing::write_text(file, testing::read_text(file) + "\n# one more seed\n");
  const auto refused = lory_run(file, db);
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.output.find("the corpus of experiment 'changing' changed"), std::string::npos)
      << refused.output;
  EXPECT_NE(refused.output.find("--allow-corpus-change"), std::string::npos);
  const auto allowed = lory_run(file, db, "--allow-corpus-change");
  EXPECT_EQ(allowed.exit_code, 0) << allowed.output;
}

TEST_F(GridRunner, ARunLeftRunningByADeadWorkerIsResumedAndStatusShowsProgress) {
  const std::string file = experiment("stale", 2, 6);
  const std::string db = dir_->file("stale/r.sqlite");
  ASSERT_EQ(lory_run(file, db).exit_code, 0);
  {
    Database writable(db, Database::Mode::ReadWrite);
    // Run 2 looks as if its worker had died at step 2 of 6, last measured at 64 tokens/s.
    writable.exec(
        "UPDATE runs SET status = 'running', worker_pid = 999999, last_step = 2 WHERE id = 2");
    writable.exec("UPDATE metrics SET value = 64 WHERE run_id = 2 AND name = 'train/tokens_per_s'");
  }
  const auto status = run_command(fmt::format("{}/lory status {} --db {}", build_dir(), file, db));
  EXPECT_NE(status.output.find("experiment 'stale': 1 running, 1 done"), std::string::npos)
      << status.output;
  EXPECT_NE(status.output.find("6/6"), std::string::npos) << status.output;
  EXPECT_NE(status.output.find("2/6"), std::string::npos) << status.output;
  // Its worker (pid 999999) is gone: shown as stale with what to do, not with an ETA of 8 s.
  EXPECT_NE(status.output.find("stale"), std::string::npos) << status.output;
  EXPECT_NE(status.output.find("its worker is gone"), std::string::npos) << status.output;
  EXPECT_NE(status.output.find("     64  -"), std::string::npos)
      << status.output;  // tok/s, then no ETA
  const auto overview = run_command(fmt::format("{}/lory status --db {}", build_dir(), db));
  EXPECT_NE(overview.output.find("stale"), std::string::npos) << overview.output;
  const auto rerun = lory_run(file, db);
  EXPECT_EQ(rerun.exit_code, 0) << rerun.output;
  EXPECT_NE(rerun.output.find("1 done before, 1 to train"), std::string::npos) << rerun.output;
  EXPECT_EQ(count(db, "SELECT count(*) FROM runs WHERE status = 'done'"), 2);
}

}  // namespace
}  // namespace lory
