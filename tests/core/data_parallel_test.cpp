// Data parallelism on c10d/Gloo: two ranks on localhost against one rank with the same global
// batch, a rank killed under the supervisor and resumed, and a rank killed without a supervisor
// (torchrun style), which the collective timeout must turn into a clean failure, not a hang.
#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>

#include "core/store/sqlite_db.h"
#include "test_support.h"

namespace lory {
namespace {

using testing::build_dir;
using testing::run_command;
using testing::TempDir;

std::vector<std::pair<int64_t, double>> losses(const std::string& db_path,
                                               const std::string& name = "train/loss") {
  Database db(db_path, Database::Mode::ReadOnly);
  Statement s = db.prepare("SELECT step, value FROM metrics WHERE name = ? ORDER BY step");
  s.bind(1, name);
  std::vector<std::pair<int64_t, double>> out;
  while (s.step()) out.emplace_back(s.column_int(0), s.column_double(1));
  return out;
}

std::string text(const std::string& db_path, const std::string& sql) {
  Database db(db_path, Database::Mode::ReadOnly);
  Statement s = db.prepare(sql);
  return s.step() ? s.column_text(0) : "";
}

class DataParallelTraining : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    testing::prepare_byte_corpus(*dir_, testing::synthetic_documents(3, 40, 20, 80));
    testing::write_text(
        dir_->file("dp.toml"),
        testing::tiny_experiment("dp",
                                 "steps = 12\nbatch_size = 8\nlr = 0.003\nlog_every = 2\n"
                                 "checkpoint_every = 4\ndense_warmup_fraction = 0.2",
                                 "every = 6",
                                 "[router]\nplugin = \"lory\"\n[router.lory]\nexperts = 4\n"
                                 "segment_length = 8"));
    one_rank_ = new testing::CommandResult(lory_run("one/r.sqlite", ""));
    two_ranks_ = new testing::CommandResult(lory_run("two/r.sqlite", "--nproc-per-node 2"));
  }
  static void TearDownTestSuite() {
    delete one_rank_;
    delete two_ranks_;
    delete dir_;
  }
  static testing::CommandResult lory_run(const std::string& db, const std::string& flags,
                                         const std::string& env = "") {
    return run_command(fmt::format("{} {}/lory run {} --db {} {}", env, build_dir(),
                                   dir_->file("dp.toml"), dir_->file(db), flags));
  }
  static TempDir* dir_;
  static testing::CommandResult *one_rank_, *two_ranks_;
};
TempDir* DataParallelTraining::dir_ = nullptr;
testing::CommandResult* DataParallelTraining::one_rank_ = nullptr;
testing::CommandResult* DataParallelTraining::two_ranks_ = nullptr;

TEST_F(DataParallelTraining, TwoRanksFollowTheOneRankLossTrajectoryWithOneSetOfRows) {
  ASSERT_EQ(one_rank_->exit_code, 0) << one_rank_->output;
  ASSERT_EQ(two_ranks_->exit_code, 0) << two_ranks_->output;
  const auto one = losses(dir_->file("one/r.sqlite")), two = losses(dir_->file("two/r.sqlite"));
  ASSERT_EQ(one.size(), 6u);
  ASSERT_EQ(two.size(), one.size());  // one row per logged step: only rank 0 writes
  for (size_t i = 0; i < one.size(); ++i) {
    EXPECT_EQ(one[i].first, two[i].first);
    // Documented tolerance: the same sums in another order (per-rank means, then the average).
    EXPECT_NEAR(two[i].second, one[i].second, 1e-4 * std::abs(one[i].second))
        << "step " << one[i].first;
  }
  EXPECT_EQ(text(dir_->file("two/r.sqlite"),
                 "SELECT value FROM run_attributes WHERE name = 'world_size'"),
            "2");
  EXPECT_EQ(text(dir_->file("two/r.sqlite"), "SELECT count(*) FROM runs"), "1");
  EXPECT_EQ(text(dir_->file("two/r.sqlite"), "SELECT count(*) FROM evals"),
            text(dir_->file("one/r.sqlite"), "SELECT count(*) FROM evals"));
  // Sharded evaluation, reduced: the same perplexities.
  const double ppl_one = std::stod(
      text(dir_->file("one/r.sqlite"), "SELECT ppl FROM evals WHERE step = 12 AND domain = 'all'"));
  const double ppl_two = std::stod(
      text(dir_->file("two/r.sqlite"), "SELECT ppl FROM evals WHERE step = 12 AND domain = 'all'"));
  EXPECT_NEAR(ppl_two, ppl_one, 1e-4 * ppl_one);
  EXPECT_FALSE(losses(dir_->file("two/r.sqlite"), "train/allreduce_s").empty());
  // Routing stability: the step-6 evaluation's routing of the probe against the final one's.
  for (const char* db : {"one/r.sqlite", "two/r.sqlite"}) {
    const auto agreement = losses(dir_->file(db), "routing_stability/top1_agreement");
    ASSERT_EQ(agreement.size(), 1u) << db;
    EXPECT_EQ(agreement[0].first, 6);
    EXPECT_GE(agreement[0].second, 0.0);
    EXPECT_LE(agreement[0].second, 1.0);
    EXPECT_EQ(losses(dir_->file(db), "routing_stability/layer1/tv_distance").size(), 1u) << db;
  }
  // Training routing statistics are combined over ranks (means of equal shards averaged), so
  // they describe the whole global batch, as one rank's would.
  // The balance metrics come from the loads summed over ranks: the whole batch's, exactly.
  for (const char* name : {"router/entropy", "router/max_weight", "router/layer1/active_experts",
                           "router/max_violation", "router/layer0/load_p50"}) {
    const auto stat_one = losses(dir_->file("one/r.sqlite"), name),
               stat_two = losses(dir_->file("two/r.sqlite"), name);
    ASSERT_FALSE(stat_one.empty()) << name;
    ASSERT_EQ(stat_two.size(), stat_one.size()) << name;
    for (size_t i = 0; i < stat_one.size(); ++i) {
      EXPECT_NEAR(stat_two[i].second, stat_one[i].second,
                  1e-4 * std::max(1.0, std::abs(stat_one[i].second)))
          << name << " at step " << stat_one[i].first;
    }
  }
}

// Aux-loss-free balancing updates its bias from the whole step's load: the two ranks sum their
// loads before the update, so both keep one bias, the one a single rank computes from the global
// batch, and the trajectories agree.
TEST_F(DataParallelTraining, TheBalancingBiasIsUpdatedFromTheLoadOfBothRanksTogether) {
  testing::write_text(
      dir_->file("bias.toml"),
      testing::tiny_experiment("dp-bias", "steps = 8\nbatch_size = 8\nlr = 0.003\nlog_every = 2",
                               "every = 8",
                               "[router]\nplugin = \"topk\"\n[router.topk]\nexperts = 4\nk = 1\n"
                               "bias_update_rate = 0.05\nbalance_loss_weight = 0.0"));
  const auto run = [&](const std::string& db, const std::string& flags) {
    return run_command(fmt::format("{}/lory run {} --db {} {}", build_dir(),
                                   dir_->file("bias.toml"), dir_->file(db), flags));
  };
  const auto one = run("bias-one/r.sqlite", ""),
             two = run("bias-two/r.sqlite", "--nproc-per-node 2");
  ASSERT_EQ(one.exit_code, 0) << one.output;
  ASSERT_EQ(two.exit_code, 0) << two.output;
  for (const char* name : {"train/loss", "router/max_violation", "router/layer1/load_p90"}) {
    const auto a = losses(dir_->file("bias-one/r.sqlite"), name),
               b = losses(dir_->file("bias-two/r.sqlite"), name);
    ASSERT_FALSE(a.empty()) << name;
    ASSERT_EQ(a.size(), b.size()) << name;
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_NEAR(b[i].second, a[i].second, 1e-4 * std::max(1.0, std::abs(a[i].second)))
          << name << " at step " << a[i].first;
    }
  }
}

TEST_F(DataParallelTraining, KillingOneRankInterruptsTheCellAndThePlainRerunMatches) {
  const auto start = std::chrono::steady_clock::now();
  const auto killed = lory_run("killed/r.sqlite", "--nproc-per-node 2",
                               "LORY_TEST_KILL_AT=after_step:6 LORY_TEST_KILL_RANK=1");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(60));
  EXPECT_NE(killed.exit_code, 0);
  // The killed rank decides (the supervisor ends the other one itself): killed from outside, so
  // the cell is interrupted and a plain rerun resumes it.
  EXPECT_EQ(text(dir_->file("killed/r.sqlite"), "SELECT status FROM runs"), "interrupted");
  EXPECT_NE(text(dir_->file("killed/r.sqlite"), "SELECT reason FROM runs").find("rank 1"),
            std::string::npos)
      << text(dir_->file("killed/r.sqlite"), "SELECT reason FROM runs");
  const auto resumed = lory_run("killed/r.sqlite", "--nproc-per-node 2");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_EQ(losses(dir_->file("killed/r.sqlite")), losses(dir_->file("two/r.sqlite")));
}

TEST_F(DataParallelTraining, WithoutASupervisorTheCollectiveTimeoutEndsTheSurvivingRank) {
  // Register the run (its first attempt dies at once), then start the two ranks by hand, the way
  // torchrun or srun would, and kill rank 1 after step 3.
  const std::string db = dir_->file("manual/r.sqlite");
  lory_run("manual/r.sqlite", "", "LORY_TEST_KILL_AT=after_step:1");
  std::vector<pid_t> ranks;
  for (int rank = 0; rank < 2; ++rank) {
    const pid_t pid = fork();
    if (pid == 0) {
      setenv("RANK", std::to_string(rank).c_str(), 1);
      setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
      setenv("WORLD_SIZE", "2", 1);
      setenv("MASTER_ADDR", "127.0.0.1", 1);
      setenv("MASTER_PORT", "29731", 1);
      setenv("LORY_COLLECTIVE_TIMEOUT", "5", 1);
      setenv("LORY_TEST_KILL_AT", "after_step:3", 1);
      setenv("LORY_TEST_KILL_RANK", "1", 1);
      const int null = ::open("/dev/null", O_WRONLY);
      dup2(null, 1);
      dup2(null, 2);
      execl((build_dir() + "/lory-worker").c_str(), "lory-worker", "train", "--db", db.c_str(),
            "--run-id", "1", "--corpus", dir_->file("corpus").c_str(), nullptr);
      _exit(127);
    }
    ranks.push_back(pid);
  }
  const auto start = std::chrono::steady_clock::now();
  for (pid_t pid : ranks) {
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(60))
      << "the surviving rank hung";
  EXPECT_EQ(text(db, "SELECT status FROM runs"), "failed");
  EXPECT_NE(text(db, "SELECT reason FROM runs").find("data-parallel"), std::string::npos)
      << text(db, "SELECT reason FROM runs");
}

}  // namespace
}  // namespace lory
