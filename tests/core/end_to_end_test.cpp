// The whole path through the real binaries: lory-data prepares a corpus, `lory run` trains a tiny
// dense model in a worker process, the results store holds every row, and the run can be scored,
// continued (`lory generate`) and exported for Python.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "core/store/sqlite_db.h"
#include "test_support.h"

namespace lory {
namespace {

using testing::build_dir;
using testing::run_command;
using testing::TempDir;

class TinyExperiment : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    testing::prepare_byte_corpus(*dir_, testing::synthetic_documents(3, 40, 20, 80));
    testing::write_text(
        dir_->file("tiny.toml"),
        testing::tiny_experiment("tiny", "steps = 12\nbatch_size = 4\nlr = 0.003\nlog_every = 4",
                                 "every = 6"));
    run_ = new testing::CommandResult(run_command(fmt::format(
        "{}/lory run {} --db {}", build_dir(), dir_->file("tiny.toml"), dir_->file("r.sqlite"))));
  }
  static void TearDownTestSuite() {
    delete run_;
    delete dir_;
  }
  static int64_t count(const std::string& sql) {
    Database db(dir_->file("r.sqlite"), Database::Mode::ReadOnly);
    return db.query_int(sql).value_or(-1);
  }
  static TempDir* dir_;
  static testing::CommandResult* run_;
};
TempDir* TinyExperiment::dir_ = nullptr;
testing::CommandResult* TinyExperiment::run_ = nullptr;

TEST_F(TinyExperiment, TrainsAndRecordsRunsMetricsAndEvalsForEveryDomain) {
  ASSERT_EQ(run_->exit_code, 0) << run_->output;
  EXPECT_NE(run_->output.find("held-out perplexity per domain"), std::string::npos) << run_->output;
  EXPECT_EQ(count("SELECT count(*) FROM runs WHERE status = 'done' AND last_step = 12"), 1);
  EXPECT_EQ(count("SELECT count(*) FROM metrics WHERE name = 'train/loss'"), 3);
  EXPECT_EQ(count("SELECT count(DISTINCT step) FROM evals"), 2);
  EXPECT_EQ(count("SELECT count(*) FROM evals WHERE step = 12 AND domain IN ('domain0', 'domain1', "
                  "'domain2', 'all')"),
            4);
  EXPECT_EQ(count("SELECT count(*) FROM evals WHERE NOT (ppl > 1 AND ppl < 300)"), 0);
  EXPECT_EQ(count("SELECT count(*) FROM routing_stats WHERE step = 12"),
            2 * 3);  // layers x domains x 1 expert
  EXPECT_EQ(count("SELECT count(*) FROM run_attributes WHERE name = 'parameters_total'"), 1);
  // Loss falls: last logged training loss below the first.
  EXPECT_EQ(count("SELECT (SELECT value FROM metrics WHERE name = 'train/loss' ORDER BY step DESC "
                  "LIMIT 1) < "
                  "(SELECT value FROM metrics WHERE name = 'train/loss' ORDER BY step LIMIT 1)"),
            1);
}

TEST_F(TinyExperiment, RerunningSkipsDoneCells) {
  const auto again = run_command(fmt::format("{}/lory run {} --db {}", build_dir(),
                                             dir_->file("tiny.toml"), dir_->file("r.sqlite")));
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("1 cell, 1 done before, 0 to train"), std::string::npos)
      << again.output;
  EXPECT_EQ(count("SELECT count(*) FROM runs"), 1);
  EXPECT_EQ(count("SELECT count(*) FROM metrics WHERE name = 'train/loss'"), 3);
}

TEST_F(TinyExperiment, ScorePrintsPerTokenLogProbabilities) {
  testing::write_text(dir_->file("text.txt"), "a01 a12 a20 b03");
  const auto scored = run_command(fmt::format("{}/lory score 1 --text {} --db {}", build_dir(),
                                              dir_->file("text.txt"), dir_->file("r.sqlite")));
  ASSERT_EQ(scored.exit_code, 0) << scored.output;
  EXPECT_NE(scored.output.find("# 14 tokens scored"), std::string::npos) << scored.output;
  // Each line carries its token's text (the byte tokenizer: token 49 is "1", 32 is a space).
  EXPECT_NE(scored.output.find("position\ttoken\tlogprob\ttext\n"), std::string::npos)
      << scored.output;
  EXPECT_NE(scored.output.find("\t49\t"), std::string::npos) << scored.output;
  std::istringstream lines(scored.output);
  int with_text = 0;
  for (std::string line; std::getline(lines, line);) {
    std::vector<std::string> fields;
    std::istringstream cells(line);
    for (std::string cell; std::getline(cells, cell, '\t');) fields.push_back(cell);
    if (fields.size() != 4 || fields[0] == "position") continue;
    ++with_text;
    if (fields[1] == "49") {
      EXPECT_EQ(fields[3], "1") << line;
    }
    if (fields[1] == "32") {
      EXPECT_EQ(fields[3], " ") << line;
    }
  }
  EXPECT_EQ(with_text, 14) << scored.output;
}

// The JSON line of `lory generate --json` (the summary line follows it on standard error).
std::string json_line(const std::string& output) {
  const size_t start = output.find("{\"text\"");
  return start == std::string::npos ? "" : output.substr(start, output.find('\n', start) - start);
}

TEST_F(TinyExperiment, GenerateContinuesAPromptAndTheCacheChangesNothing) {
  const std::string base =
      fmt::format("{}/lory generate 1 --db {} --prompt 'a01 a1' --max-tokens 12", build_dir(),
                  dir_->file("r.sqlite"));
  const auto cached = run_command(base + " --temperature 0 --json");
  ASSERT_EQ(cached.exit_code, 0) << cached.output;
  EXPECT_NE(cached.output.find("KV cache"), std::string::npos) << cached.output;
  const std::string tokens = json_line(cached.output);
  ASSERT_NE(tokens.find("\"tokens\": [{\"id\": "), std::string::npos) << cached.output;
  const auto recomputed = run_command(base + " --temperature 0 --json --no-cache");
  ASSERT_EQ(recomputed.exit_code, 0) << recomputed.output;
  EXPECT_NE(recomputed.output.find("full recomputation per token (--no-cache)"), std::string::npos)
      << recomputed.output;
  EXPECT_EQ(json_line(recomputed.output), tokens);
  // Sampling: the same seed gives the same text.
  const auto sampled = run_command(base + " --seed 3 --json");
  const auto again = run_command(base + " --seed 3 --json");
  ASSERT_EQ(sampled.exit_code, 0) << sampled.output;
  EXPECT_EQ(json_line(again.output), json_line(sampled.output));
  // Streaming text mode prints the continuation, then the summary.
  const auto streamed = run_command(base + " --temperature 0");
  ASSERT_EQ(streamed.exit_code, 0) << streamed.output;
  EXPECT_NE(streamed.output.find("tokens after a 6-token prompt"), std::string::npos)
      << streamed.output;
}

TEST_F(TinyExperiment, GenerateRefusesWhatCannotFitTheContext) {
  const auto refused =
      run_command(fmt::format("{}/lory generate 1 --db {} --prompt 'a01 a12 a20' --max-tokens 30",
                              build_dir(), dir_->file("r.sqlite")));
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(
      refused.output.find(
          "the prompt (11 tokens) plus 30 new tokens exceed the model's context of 32 tokens"),
      std::string::npos)
      << refused.output;
  const auto empty = run_command(
      fmt::format("{}/lory generate 1 --db {} --prompt ''", build_dir(), dir_->file("r.sqlite")));
  EXPECT_NE(empty.exit_code, 0);
  EXPECT_NE(empty.output.find("the prompt is empty"), std::string::npos) << empty.output;
}

// lory, lory-worker and lory-data end one way (core/support/program_main.h): each --help lists the
// exit statuses, a wrong command line is the user's error (1, "<program>: error: ..."), and an
// exception nobody anticipated is an internal error (3). Not done (2) and interrupted (130) are
// pinned by the grid runner's and eval-tasks' tests.
TEST(LoryCommand, TheThreeProgramsShareOneErrorPathAndItsExitStatuses) {
  for (const std::string program : {"lory", "lory-worker", "lory-data"}) {
    SCOPED_TRACE(program);
    const auto help = run_command(build_dir() + "/" + program + " --help");
    EXPECT_EQ(help.exit_code, 0) << help.output;
    EXPECT_NE(help.output.find("Exit status:"), std::string::npos) << help.output;
    for (const char* line :
         {"  1    the input is wrong", "  2    the input was right but the work did not finish",
          "  3    internal error", "  130  interrupted"}) {
      EXPECT_NE(help.output.find(line), std::string::npos) << line << "\n" << help.output;
    }
    const auto usage = run_command(build_dir() + "/" + program + " --no-such-option");
    EXPECT_EQ(usage.exit_code, 1) << usage.output;
    EXPECT_EQ(usage.output.rfind(program + ": error: ", 0), 0u) << usage.output;
    const auto internal = run_command("LORY_TEST_FAULT=internal_error:0 " + build_dir() + "/" +
                                      program + " --version");
    EXPECT_EQ(internal.exit_code, 3) << internal.output;
    EXPECT_NE(internal.output.find(program + ": internal error: injected internal error"),
              std::string::npos)
        << internal.output;
  }
}

TEST(LoryCommand, AnUnknownCommandIsNamedWithTheCommandsThereAre) {
  const auto result = run_command(build_dir() + "/lory nosuch");
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find("unknown command 'nosuch'; the commands are: plugins, run"),
            std::string::npos)
      << result.output;
  EXPECT_EQ(run_command(build_dir() + "/lory --version").exit_code, 0);
}

// One rule for a run that is not done: score and generate read its latest checkpoint and say so;
// eval-tasks (which stores results under the run) refuses it.
TEST_F(TinyExperiment, ARunThatIsNotDoneIsReadAtItsLatestCheckpointAndSaysSo) {
  ASSERT_EQ(run_->exit_code, 0) << run_->output;
  const auto set_status = [&](const std::string& status) {
    Database db(dir_->file("r.sqlite"), Database::Mode::ReadWrite);
    db.exec("UPDATE runs SET status = '" + status + "' WHERE id = 1");
  };
  set_status("interrupted");
  testing::write_text(dir_->file("few.ids"), "1 2 3 4 5\n");
  const auto scored = run_command(fmt::format("{}/lory score 1 --db {} --token-ids {}", build_dir(),
                                              dir_->file("r.sqlite"), dir_->file("few.ids")));
  const auto generated =
      run_command(fmt::format("{}/lory generate 1 --db {} --prompt ab --max-tokens 2", build_dir(),
                              dir_->file("r.sqlite")));
  set_status("done");
  for (const auto* result : {&scored, &generated}) {
    EXPECT_EQ(result->exit_code, 0) << result->output;
    EXPECT_NE(
        result->output.find("is interrupted, not done: using its latest checkpoint, step 12 of 12"),
        std::string::npos)
        << result->output;
  }
}

// A database copied elsewhere still finds its runs' checkpoints (recorded where they were trained);
// a moved runs folder is named with --runs-dir, and without it the message says where it looked.
TEST_F(TinyExperiment, ACopiedDatabaseFindsItsCheckpointsAndAMovedRunsFolderIsGivenWithRunsDir) {
  ASSERT_EQ(run_->exit_code, 0) << run_->output;
  namespace fs = std::filesystem;
  fs::create_directories(dir_->file("copy"));
  {
    Database db(dir_->file("r.sqlite"), Database::Mode::ReadWrite);
    db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  }
  fs::copy_file(dir_->file("r.sqlite"), dir_->file("copy/r.sqlite"),
                fs::copy_options::overwrite_existing);
  const std::string generate = fmt::format("{}/lory generate 1 --db {} --prompt ab --max-tokens 2",
                                           build_dir(), dir_->file("copy/r.sqlite"));
  const auto copied = run_command(generate);
  EXPECT_EQ(copied.exit_code, 0) << copied.output;
  fs::rename(dir_->file("r.runs"), dir_->file("moved.runs"));
  const auto lost = run_command(generate);
  const auto given = run_command(generate + " --runs-dir " + dir_->file("moved.runs"));
  fs::rename(dir_->file("moved.runs"), dir_->file("r.runs"));
  EXPECT_NE(lost.exit_code, 0);
  EXPECT_NE(lost.output.find("has no checkpoint (status done); looked in " +
                             dir_->file("copy/r.runs/tiny/1-")),
            std::string::npos)
      << lost.output;
  EXPECT_NE(lost.output.find(" and " + dir_->file("r.runs/tiny/1-")), std::string::npos)
      << lost.output;
  EXPECT_NE(lost.output.find("pass --runs-dir DIR"), std::string::npos) << lost.output;
  EXPECT_EQ(given.exit_code, 0) << given.output;
}

TEST_F(TinyExperiment, ScoringABinaryFileSaysItIsNotAListOfTokenIds) {
  ASSERT_EQ(run_->exit_code, 0) << run_->output;
  {
    std::ofstream out(dir_->file("binary.ids"), std::ios::binary);
    const char bytes[] = {'\x7f', 'E', 'L', 'F', '\0', '\x01', '\x02'};
    out.write(bytes, sizeof bytes);
  }
  const auto result = run_command(fmt::format("{}/lory score 1 --db {} --token-ids {}", build_dir(),
                                              dir_->file("r.sqlite"), dir_->file("binary.ids")));
  EXPECT_NE(result.exit_code, 0);
  EXPECT_NE(result.output.find("is not a text file of whitespace-separated token ids"),
            std::string::npos)
      << result.output;
  EXPECT_EQ(result.output.find("ELF"), std::string::npos) << result.output;
}

// Every numeric option is checked up front: NaN and infinities are refused (CLI11's ranges alone
// let NaN through), and a range is printed as numbers a reader can read.
TEST_F(TinyExperiment, NumericOptionsRefuseNanInfinityAndOutOfRangeValuesUpFront) {
  ASSERT_EQ(run_->exit_code, 0) << run_->output;
  const std::string generate =
      fmt::format("{}/lory generate 1 --db {} --prompt ab ", build_dir(), dir_->file("r.sqlite"));
  const struct {
    std::string command, expected;
  } cases[] = {
      {generate + "--temperature nan", "--temperature: value nan is not a finite number"},
      {generate + "--top-p nan", "--top-p: value nan is not a finite number"},
      {generate + "--temperature inf", "--temperature: value inf is not a finite number"},
      {generate + "--top-k -3", "--top-k: Value -3 not in range 0 to 16777216"},
      {generate + "--max-tokens 0", "--max-tokens: Value 0 not in range 1 to 1048576"},
      {fmt::format("{}/lory-data prepare --out {} --jsonl {} --heldout-fraction nan", build_dir(),
                   dir_->file("never"), dir_->file("tiny.toml")),
       "--heldout-fraction: value nan is not a finite number"},
      {fmt::format("{}/lory-data prepare --out {} --jsonl {} --tokenizer-sample-mb nan",
                   build_dir(), dir_->file("never"), dir_->file("tiny.toml")),
       "--tokenizer-sample-mb: value nan is not a finite number"},
      {fmt::format("{}/lory-data prepare --out {} --jsonl {} --threads 0", build_dir(),
                   dir_->file("never"), dir_->file("tiny.toml")),
       "--threads: Value 0 not in range 1 to 1024"},
  };
  for (const auto& c : cases) {
    const auto result = run_command(c.command);
    EXPECT_NE(result.exit_code, 0) << c.command;
    EXPECT_NE(result.output.find(c.expected), std::string::npos) << c.command << "\n"
                                                                 << result.output;
  }
  EXPECT_FALSE(std::filesystem::exists(dir_->file("never")));
}

TEST_F(TinyExperiment, EvalTasksStoresAccuracyAndTheReportShowsIt) {
  // Each domain's documents are words of one letter: which letter follows is learnable.
  testing::write_text(
      dir_->file("letters.jsonl"),
      "{\"context\": \"a01 a12 a20\", \"choices\": [\" a07\", \" b07\", \" c07\"], \"gold\": 0}\n"
      "\n"
      "{\"context\": \"b01 b12 b20\", \"choices\": [\" a07\", \" b07\", \" c07\"], \"gold\": 1,"
      " \"few_shot\": [{\"context\": \"c01 c02\", \"answer\": \" c03\"}]}\n"
      "{\"context\": \"c01 c12 c20\", \"choices\": [\" a07\", \" b07\", \" c07\"], \"gold\": 2}\n");
  const auto evaluated =
      run_command(fmt::format("{}/lory eval-tasks 1 --db {} --tasks {}", build_dir(),
                              dir_->file("r.sqlite"), dir_->file("letters.jsonl")));
  ASSERT_EQ(evaluated.exit_code, 0) << evaluated.output;
  EXPECT_NE(evaluated.output.find("letters"), std::string::npos) << evaluated.output;
  EXPECT_EQ(count("SELECT count(*) FROM task_evals WHERE run_id = 1 AND task = 'letters' AND "
                  "routing = 'prompt' AND "
                  "examples = 3 AND step = 12 AND abs(chance - 1.0 / 3) < 1e-12 AND accuracy "
                  "BETWEEN 0 AND 1 AND "
                  "truncated = 0"),
            1);
  // Again under training routing: a second row; the same routing again replaces its row.
  const auto train =
      run_command(fmt::format("{}/lory eval-tasks 1 --db {} --tasks {} --routing train",
                              build_dir(), dir_->file("r.sqlite"), dir_->file("letters.jsonl")));
  ASSERT_EQ(train.exit_code, 0) << train.output;
  EXPECT_EQ(count("SELECT count(*) FROM task_evals"), 2);
  const auto report = run_command(fmt::format("{}/lory report tiny --db {} --out {}", build_dir(),
                                              dir_->file("r.sqlite"), dir_->file("report")));
  ASSERT_EQ(report.exit_code, 0) << report.output;
  const std::string markdown = testing::read_text(dir_->file("report/report.md"));
  EXPECT_NE(markdown.find("## In-context tasks"), std::string::npos) << markdown;
  EXPECT_NE(markdown.find("| letters | prompt |"), std::string::npos) << markdown;
}

// The processes whose parent is `parent` (from /proc).
std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> children;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    std::getline(stat, line);
    const size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    char state = 0;
    long ppid = 0;
    if (std::sscanf(line.c_str() + close + 1, " %c %ld", &state, &ppid) == 2 && ppid == parent) {
      children.push_back(static_cast<pid_t>(std::stol(name)));
    }
  }
  return children;
}

bool process_exists(pid_t pid) { return ::kill(pid, 0) == 0 || errno != ESRCH; }

std::vector<std::string> lory_temporary_files(const std::string& folder) {
  std::vector<std::string> found;
  for (const auto& entry : std::filesystem::directory_iterator(folder)) {
    if (entry.path().filename().string().rfind("lory-", 0) == 0)
      found.push_back(entry.path().string());
  }
  return found;
}

// `lory eval-tasks` in the background with a private temp folder; its worker stops itself right
// after it starts (SIGSTOP at the eval_tasks_started point), so the test acts while it runs.
pid_t start_eval_tasks_with_stopped_worker(const std::string& command_line, const std::string& tmp,
                                           pid_t& worker) {
  const pid_t lory = fork();
  if (lory == 0) {
    setenv("TMPDIR", tmp.c_str(), 1);
    setenv("LORY_TEST_KILL_AT", "eval_tasks_started:0", 1);
    setenv("LORY_TEST_KILL_SIGNAL", "19", 1);
    execl("/bin/sh", "sh", "-c", ("exec " + command_line + " > /dev/null 2>&1").c_str(), nullptr);
    _exit(127);
  }
  worker = 0;
  for (int i = 0; i < 400 && worker == 0; ++i) {
    for (const pid_t child : children_of(lory)) {
      std::ifstream stat("/proc/" + std::to_string(child) + "/stat");
      std::string line;
      std::getline(stat, line);
      if (line.find("lory-worker") != std::string::npos && line.find(") T ") != std::string::npos)
        worker = child;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  return lory;
}

// An interrupted `lory eval-tasks` removes its temporary files; after kill -9 of `lory`, its worker
// dies with it (it writes nothing after its parent is gone) and the next command removes the files
// the dead process left.
TEST_F(TinyExperiment, InterruptedEvalTasksLeavesNoTemporaryFilesAndItsWorkerDiesWithIt) {
  ASSERT_EQ(run_->exit_code, 0) << run_->output;
  testing::write_text(
      dir_->file("interrupt-tasks.jsonl"),
      "{\"context\": \"a01 a12\", \"choices\": [\" a07\", \" b07\"], \"gold\": 0}\n");
  const std::string tmp = dir_->file("tmp");
  std::filesystem::create_directories(tmp);
  const std::string eval_tasks =
      fmt::format("{}/lory eval-tasks 1 --db {} --tasks {} --routing inference", build_dir(),
                  dir_->file("r.sqlite"), dir_->file("interrupt-tasks.jsonl"));
  const int64_t rows_before = count("SELECT count(*) FROM task_evals");
  for (const int signal_number : {SIGTERM, SIGHUP, SIGINT}) {
    pid_t worker = 0;
    const pid_t lory = start_eval_tasks_with_stopped_worker(eval_tasks, tmp, worker);
    ASSERT_NE(worker, 0) << "the worker never reached its stop point";
    EXPECT_FALSE(lory_temporary_files(tmp).empty());  // the tokenized task file, while it runs
    ::kill(lory, signal_number);
    ::kill(worker, SIGCONT);
    int status = 0;
    waitpid(lory, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 130) << "signal " << signal_number;
    EXPECT_EQ(lory_temporary_files(tmp), std::vector<std::string>{}) << "signal " << signal_number;
    EXPECT_FALSE(process_exists(worker));
  }
  // kill -9: nothing in `lory` runs, but its worker gets SIGKILL from the kernel
  // (PR_SET_PDEATHSIG).
  pid_t worker = 0;
  const pid_t lory = start_eval_tasks_with_stopped_worker(eval_tasks, tmp, worker);
  ASSERT_NE(worker, 0);
  ::kill(lory, SIGKILL);
  int status = 0;
  waitpid(lory, &status, 0);
  for (int i = 0; i < 200 && process_exists(worker); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_FALSE(process_exists(worker));
  EXPECT_FALSE(lory_temporary_files(tmp).empty());  // what kill -9 leaves
  EXPECT_EQ(count("SELECT count(*) FROM task_evals"), rows_before);
  // The next command with temporary files removes those of dead `lory` processes.
  const auto score =
      run_command(fmt::format("TMPDIR={} {}/lory generate 1 --db {} --prompt ab --max-tokens 1",
                              tmp, build_dir(), dir_->file("r.sqlite")));
  EXPECT_EQ(score.exit_code, 0) << score.output;
  EXPECT_EQ(lory_temporary_files(tmp), std::vector<std::string>{});
}

TEST_F(TinyExperiment, EvalTasksRefusesBadTaskFilesAndRunsThatAreNotDoneAndWritesNothing) {
  const std::string db = dir_->file("r.sqlite");
  const int64_t before = count("SELECT count(*) FROM task_evals");
  const auto eval = [&](const std::string& tasks, const std::string& database) {
    return run_command(
        fmt::format("{}/lory eval-tasks 1 --db {} --tasks {}", build_dir(), database, tasks));
  };
  testing::write_text(dir_->file("empty.jsonl"), "\n\n");
  const auto empty = eval(dir_->file("empty.jsonl"), db);
  EXPECT_NE(empty.exit_code, 0);
  EXPECT_NE(empty.output.find("has no examples"), std::string::npos) << empty.output;
  testing::write_text(dir_->file("malformed.jsonl"),
                      "{\"context\": \"a01\", \"choices\": [\" a02\", \" b02\"], \"gold\": 0}\n"
                      "{\"context\": \"a01\", \"choices\": [\" a02\", \" b02\"], \"gold\": 2}\n");
  const auto out_of_range = eval(dir_->file("malformed.jsonl"), db);
  EXPECT_NE(out_of_range.exit_code, 0);
  EXPECT_NE(out_of_range.output.find("line 2: \"gold\" is 2, but the choices are numbered 0 to 1"),
            std::string::npos)
      << out_of_range.output;
  testing::write_text(dir_->file("broken.jsonl"),
                      "{\"context\": \"a01\", \"choices\": [\" a02\"\n");
  const auto broken = eval(dir_->file("broken.jsonl"), db);
  EXPECT_NE(broken.exit_code, 0);
  EXPECT_NE(broken.output.find("line 1: not JSON"), std::string::npos) << broken.output;
  // Two files of one name would replace each other's rows.
  for (const char* folder : {"one", "two"}) {
    std::filesystem::create_directories(dir_->file(folder));
    testing::write_text(dir_->file(std::string(folder) + "/same.jsonl"),
                        "{\"context\": \"a01\", \"choices\": [\" a02\", \" b02\"], \"gold\": 0}\n");
  }
  const auto twice = eval(dir_->file("one/same.jsonl") + " " + dir_->file("two/same.jsonl"), db);
  EXPECT_NE(twice.exit_code, 0);
  EXPECT_NE(twice.output.find("are both task 'same'"), std::string::npos) << twice.output;
  EXPECT_EQ(count("SELECT count(*) FROM task_evals"), before);
  // A run that is not done: refused before any task is read.
  std::filesystem::copy_file(db, dir_->file("failed.sqlite"),
                             std::filesystem::copy_options::overwrite_existing);
  {
    Database(dir_->file("failed.sqlite"), Database::Mode::ReadWrite)
        .exec("UPDATE runs SET status = 'failed'");
  }
  testing::write_text(dir_->file("ok.jsonl"),
                      "{\"context\": \"a01\", \"choices\": [\" a02\", \" b02\"], \"gold\": 0}\n");
  const auto failed = eval(dir_->file("ok.jsonl"), dir_->file("failed.sqlite"));
  EXPECT_NE(failed.exit_code, 0);
  EXPECT_NE(failed.output.find("is failed, not done"), std::string::npos) << failed.output;
  Database copy(dir_->file("failed.sqlite"), Database::Mode::ReadOnly);
  EXPECT_EQ(copy.query_int("SELECT count(*) FROM task_evals WHERE task = 'ok'").value_or(-1), 0);
}

TEST_F(TinyExperiment, ExportLoadsInPythonTorch) {
  const auto exported = run_command(fmt::format("{}/lory export 1 --out {} --db {}", build_dir(),
                                                dir_->file("export"), dir_->file("r.sqlite")));
  ASSERT_EQ(exported.exit_code, 0) << exported.output;
  EXPECT_TRUE(std::filesystem::exists(dir_->file("export/config.json")));
  if (run_command("/usr/bin/python3 -c 'import torch'").exit_code != 0) {
    GTEST_SKIP()
        << "python3-torch is not installed: the export was written but not loaded in Python";
  }
  const auto loaded =
      run_command(fmt::format("/usr/bin/python3 -c \"import torch; d = torch.load('{}'); "
                              "print(len(d), tuple(d['embedding_VD'].shape))\"",
                              dir_->file("export/weights.pt")));
  ASSERT_EQ(loaded.exit_code, 0) << loaded.output;
  EXPECT_NE(loaded.output.find("(257, 32)"), std::string::npos) << loaded.output;
}

// The log-probs of "position<TAB>token<TAB>logprob" lines (lory score and python/lory_export.py).
std::vector<double> log_prob_column(const std::string& output) {
  std::vector<double> values;
  std::istringstream lines(output);
  std::string line;
  while (std::getline(lines, line)) {
    long long position = 0, token = 0;
    double value = 0;
    if (std::sscanf(line.c_str(), "%lld\t%lld\t%lf", &position, &token, &value) == 3)
      values.push_back(value);
  }
  return values;
}

// An outside user's path: export a run, rebuild it in PyTorch from the export folder alone with
// python/lory_export.py, and get the log-probs `lory score` gives, for dense and for Lory.
TEST_F(TinyExperiment, ExportRebuildsInPyTorchWithTheLogProbsOfScore) {
  if (run_command("/usr/bin/python3 -c 'import torch'").exit_code != 0) {
    GTEST_SKIP() << "python3-torch is not installed (scripts/setup-deps installs it)";
  }
  testing::write_text(dir_->file("lory.toml"),
                      testing::read_text(dir_->file("tiny.toml")) +
                          "[router]\nplugin = \"lory\"\n"
                          "[router.lory]\nexperts = 4\nsegment_length = 8\n");
  const auto trained = run_command(fmt::format("{}/lory run {} --db {}", build_dir(),
                                               dir_->file("lory.toml"), dir_->file("lory.sqlite")));
  ASSERT_EQ(trained.exit_code, 0) << trained.output;
  testing::write_text(dir_->file("python.txt"),
                      "a01 a12 a20 b03 b11 a02 c07 a01 a12 a20 b03 b11 a02 c07 a01 a12");
  for (const std::string db : {"r.sqlite", "lory.sqlite"}) {
    const std::string out = dir_->file("export-" + db);
    const auto exported = run_command(
        fmt::format("{}/lory export 1 --out {} --db {}", build_dir(), out, dir_->file(db)));
    ASSERT_EQ(exported.exit_code, 0) << exported.output;
    const std::string config = testing::read_text(out + "/config.json");
    const std::string router = db == "r.sqlite" ? "dense" : "lory";
    EXPECT_NE(config.find("\"router\": \"" + router + "\""), std::string::npos) << config;
    EXPECT_NE(config.find("\"head_width\": 16"), std::string::npos)
        << config;  // resolved, not in the config
    const auto ids = run_command(fmt::format("{}/lory-data encode --corpus {} --text {} > {}",
                                             build_dir(), dir_->file("corpus"),
                                             dir_->file("python.txt"), dir_->file("python.ids")));
    ASSERT_EQ(ids.exit_code, 0) << ids.output;
    const auto scored =
        run_command(fmt::format("{}/lory score 1 --token-ids {} --routing train --db {}",
                                build_dir(), dir_->file("python.ids"), dir_->file(db)));
    ASSERT_EQ(scored.exit_code, 0) << scored.output;
    const auto rebuilt =
        run_command(fmt::format("/usr/bin/python3 {}/python/lory_export.py {} --token-ids {}",
                                LORY_SOURCE_DIR_FOR_TESTS, out, dir_->file("python.ids")));
    ASSERT_EQ(rebuilt.exit_code, 0) << rebuilt.output;
    const std::vector<double> expected = log_prob_column(scored.output),
                              actual = log_prob_column(rebuilt.output);
    ASSERT_EQ(actual.size(), expected.size()) << rebuilt.output;
    ASSERT_GT(expected.size(), 32u);  // longer than the context: two windows
    for (size_t i = 0; i < expected.size(); ++i)
      EXPECT_NEAR(actual[i], expected[i], 1e-4) << db << ", token " << i;
  }
}

TEST_F(TinyExperiment, EmbedWritesOneVectorPerDocumentForTheSimilarityBatcher) {
  const auto embedded = run_command(fmt::format("{}/lory embed 1 --out {} --db {}", build_dir(),
                                                dir_->file("doc.emb"), dir_->file("r.sqlite")));
  ASSERT_EQ(embedded.exit_code, 0) << embedded.output;
  // Header (8 + 8 + 8 bytes, corpus checksum 64, run id 8), then 120 documents x d_model 32 floats.
  EXPECT_EQ(std::filesystem::file_size(dir_->file("doc.emb")), 96u + 120u * 32u * 4u);
  testing::write_text(dir_->file("embedded.toml"),
                      testing::read_text(dir_->file("tiny.toml")) +
                          "[batcher]\nplugin = \"similarity\"\n"
                          "[batcher.similarity]\nembedding = \"file\"\n"
                          "embedding_file = \"doc.emb\"\n");
  const auto trained =
      run_command(fmt::format("{}/lory run {} --db {}", build_dir(), dir_->file("embedded.toml"),
                              dir_->file("embedded.sqlite")));
  ASSERT_EQ(trained.exit_code, 0) << trained.output;
  EXPECT_NE(trained.output.find("similarity: file (mean hidden state of run 1) embeddings (d=32)"),
            std::string::npos)
      << trained.output;
  // Made from another corpus: refused by checksum, with the command that fixes it.
  TempDir other;
  testing::prepare_byte_corpus(other, testing::synthetic_documents(3, 40, 20, 81));
  std::filesystem::copy_file(dir_->file("doc.emb"), other.file("doc.emb"));
  testing::write_text(other.file("embedded.toml"), testing::read_text(dir_->file("embedded.toml")));
  const auto refused = run_command(fmt::format(
      "{}/lory run {} --db {}", build_dir(), other.file("embedded.toml"), other.file("r.sqlite")));
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.output.find("was made from another corpus"), std::string::npos)
      << refused.output;
}

TEST_F(TinyExperiment, DryRunPrintsTheCellsWithoutTraining) {
  const auto dry = run_command(fmt::format("{}/lory run {} --dry-run --db {}", build_dir(),
                                           dir_->file("tiny.toml"), dir_->file("dry.sqlite")));
  ASSERT_EQ(dry.exit_code, 0) << dry.output;
  EXPECT_NE(dry.output.find("experiment 'tiny'"), std::string::npos) << dry.output;
  EXPECT_NE(dry.output.find("new"), std::string::npos)
      << dry.output;  // no database: every cell is new
  EXPECT_FALSE(std::filesystem::exists(dir_->file("dry.sqlite")));
  // Against the database that trained it, the cell shows as done (and the file is not changed).
  ASSERT_EQ(run_->exit_code, 0) << run_->output;
  const auto known = run_command(fmt::format("{}/lory run {} --dry-run --db {}", build_dir(),
                                             dir_->file("tiny.toml"), dir_->file("r.sqlite")));
  ASSERT_EQ(known.exit_code, 0) << known.output;
  EXPECT_NE(known.output.find("in r.sqlite"), std::string::npos) << known.output;
  EXPECT_NE(known.output.find("done"), std::string::npos) << known.output;
}

// What the file cannot say about itself, found before anything is registered or spawned: every
// problem at its file:line:col, no database written, no worker started.
TEST_F(TinyExperiment, CorpusAndMemoryProblemsStopARunBeforeAnyCellIsRegistered) {
  namespace fs = std::filesystem;
  const auto experiment_with = [&](const std::string& name, const std::string& corpus,
                                   const std::string& trainer) {
    std::string text =
        testing::tiny_experiment(name, trainer.empty() ? "steps = 12\nbatch_size = 4" : trainer);
    text.replace(text.find("corpus = \"corpus\""), 17, "corpus = \"" + corpus + "\"");
    testing::write_text(dir_->file(name + ".toml"), text);
    return dir_->file(name + ".toml");
  };
  fs::create_directories(dir_->file("corpus_empty"));
  testing::write_text(dir_->file("corpus_raw/notes.txt"), "raw text, never prepared");
  for (const char* copy : {"corpus_bad_manifest", "corpus_truncated"}) {
    fs::remove_all(dir_->file(copy));
    fs::copy(dir_->file("corpus"), dir_->file(copy), fs::copy_options::recursive);
  }
  testing::write_text(dir_->file("corpus_bad_manifest/manifest.json"), "{\"format_version\": 1,");
  fs::resize_file(dir_->file("corpus_truncated/tokens.bin"),
                  fs::file_size(dir_->file("corpus/tokens.bin")) / 2);
  struct Case {
    std::string name, corpus, trainer, expected;
  };
  const std::vector<Case> cases = {
      {"missing", "no_such_corpus", "",
       "4:1: error: corpus folder '" + dir_->file("no_such_corpus") + "' does not exist"},
      {"a_file", "tiny.toml", "",
       "4:1: error: '" + dir_->file("tiny.toml") + "' is a file, not a corpus folder"},
      {"empty", "corpus_empty", "",
       "4:1: error: corpus folder '" + dir_->file("corpus_empty") + "' is empty"},
      {"raw", "corpus_raw", "",
       "4:1: error: '" + dir_->file("corpus_raw") +
           "' has no manifest.json, so it is not a "
           "prepared corpus"},
      {"bad_manifest", "corpus_bad_manifest", "",
       "4:1: error: " + dir_->file("corpus_bad_manifest") +
           "/manifest.json: malformed corpus manifest"},
      {"truncated", "corpus_truncated", "",
       "4:1: error: corpus '" + dir_->file("corpus_truncated") +
           "': tokens.bin has 23364 bytes but the manifest announces 23364 tokens "
           "(46728 bytes): the file is truncated"},
      {"huge_batch", "corpus", "steps = 2\nbatch_size = 2000000000",
       "14:1: error: one forward/backward of 2000000000 sequences x 32 tokens needs at least"},
  };
  for (const Case& c : cases) {
    const std::string file = experiment_with(c.name, c.corpus, c.trainer);
    const std::string db = dir_->file("not-created-" + c.name + ".sqlite");
    const auto result = run_command(fmt::format("{}/lory run {} --db {}", build_dir(), file, db));
    EXPECT_NE(result.exit_code, 0) << c.name << "\n" << result.output;
    EXPECT_NE(result.output.find(file + ":" + c.expected), std::string::npos)
        << c.name << ": expected '" << c.expected << "' in\n"
        << result.output;
    EXPECT_NE(result.output.find("nothing was registered or started"), std::string::npos)
        << result.output;
    EXPECT_FALSE(fs::exists(db)) << c.name << ": a database was written";
    EXPECT_FALSE(fs::exists(dir_->file("not-created-" + c.name + ".runs"))) << c.name;
  }
  // A dry run shows the same findings after its table, as a plan for a corpus still to prepare.
  const auto dry =
      run_command(fmt::format("{}/lory run {} --dry-run --db {}", build_dir(),
                              dir_->file("missing.toml"), dir_->file("dry-missing.sqlite")));
  EXPECT_EQ(dry.exit_code, 0) << dry.output;
  EXPECT_NE(dry.output.find("not ready to train (a real run stops here"), std::string::npos)
      << dry.output;
  EXPECT_NE(dry.output.find("does not exist"), std::string::npos) << dry.output;
}

TEST_F(TinyExperiment, RunRefusesADatabaseThatIsNotLorysAndLeavesItUnchanged) {
  {
    Database other(dir_->file("customers.sqlite"), Database::Mode::ReadWrite);
    other.exec("PRAGMA journal_mode=DELETE");
    other.exec("CREATE TABLE customers (id INTEGER, name TEXT)");
    other.exec("INSERT INTO customers VALUES (1, 'Ada')");
  }
  const std::string before = testing::read_text(dir_->file("customers.sqlite"));
  const auto refused =
      run_command(fmt::format("{}/lory run {} --db {}", build_dir(), dir_->file("tiny.toml"),
                              dir_->file("customers.sqlite")));
  EXPECT_NE(refused.exit_code, 0) << refused.output;
  EXPECT_NE(
      refused.output.find("is not a lory database: it holds another program's tables (customers)"),
      std::string::npos)
      << refused.output;
  EXPECT_EQ(testing::read_text(dir_->file("customers.sqlite")), before)
      << "the foreign database was written";
  EXPECT_FALSE(std::filesystem::exists(dir_->file("customers.sqlite-wal")));
  EXPECT_FALSE(std::filesystem::exists(dir_->file("customers.runs")));
  const auto folder = run_command(
      fmt::format("{}/lory run {} --db {}", build_dir(), dir_->file("tiny.toml"), dir_->path()));
  EXPECT_NE(folder.exit_code, 0);
  EXPECT_NE(folder.output.find("is a folder, not a results database"), std::string::npos)
      << folder.output;
}

// The plugins' own rules between their parameters, for every cell at once, at the lines that set
// them, before anything runs: the case of a grid that used to spawn and fail each cell in turn.
TEST_F(TinyExperiment, PluginRulesAreCheckedForEveryCellAtValidation) {
  testing::write_text(dir_->file("rules.toml"),
                      testing::tiny_experiment("rules", "steps = 12\nbatch_size = 4\nlr = 0", "",
                                               "[[grid.cells]]\nmodel.transformer.n_heads = 3\n"
                                               "[[grid.cells]]\nmodel.transformer.n_heads = 32\n"
                                               "[[grid.cells]]\nrouter.plugin = \"topk\"\n"
                                               "router.topk.experts = 4\nrouter.topk.k = 6\n"));
  for (const char* flags : {"--dry-run", ""}) {
    const auto result =
        run_command(fmt::format("{}/lory run {} {} --db {}", build_dir(), dir_->file("rules.toml"),
                                flags, dir_->file("rules.sqlite")));
    EXPECT_NE(result.exit_code, 0) << result.output;
    EXPECT_NE(result.output.find(
                  "rules.toml:20:19: error: model.transformer: d_model = 32 must be a multiple of "
                  "n_heads = 3"),
              std::string::npos)
        << result.output;
    EXPECT_NE(
        result.output.find(
            "rules.toml:22:19: error: model.transformer: the head width d_model / n_heads = 32 / "
            "32 = 1 must be even"),
        std::string::npos)
        << result.output;
    EXPECT_NE(result.output.find("rules.toml:26:13: error: router.topk: k = 6 exceeds experts = 4"),
              std::string::npos)
        << result.output;
    EXPECT_FALSE(std::filesystem::exists(dir_->file("rules.sqlite")));
  }
  // lr = 0 is legal, and said.
  testing::write_text(dir_->file("frozen.toml"),
                      testing::tiny_experiment("frozen", "steps = 12\nbatch_size = 4\nlr = 0"));
  const auto frozen =
      run_command(fmt::format("{}/lory run {} --dry-run --db {}", build_dir(),
                              dir_->file("frozen.toml"), dir_->file("frozen.sqlite")));
  EXPECT_EQ(frozen.exit_code, 0) << frozen.output;
  EXPECT_NE(
      frozen.output.find(
          "frozen.toml:15:1: warning: trainer.lr = 0: the optimizer will not change the model"),
      std::string::npos)
      << frozen.output;
}

// A small Lory model on the embedded sample corpus (byte-level tokens, so no tokenizer training):
// a dense warm-up, upcycling into 4 experts, and a training loss that keeps falling after it.
TEST(SampleCorpusTraining, SmallLoryModelTrainsOnTheEmbeddedSampleAfterDenseWarmUp) {
  TempDir dir;
  std::string inputs;
  for (const auto& entry : std::filesystem::directory_iterator(
           std::string(LORY_SOURCE_DIR_FOR_TESTS) + "/data/sample")) {
    if (entry.path().extension() == ".gz") inputs += " --jsonl " + entry.path().string();
  }
  const auto prepared = run_command(fmt::format("{}/lory-data prepare --out {} --tokenizer byte {}",
                                                build_dir(), dir.file("corpus"), inputs));
  ASSERT_EQ(prepared.exit_code, 0) << prepared.output;
  std::string experiment = testing::tiny_experiment(
      "sample-lory",
      "steps = 40\nbatch_size = 8\nlr = 0.004\nlog_every = 4\ndense_warmup_fraction = 0.1",
      "every = 40", "[router]\nplugin = \"lory\"\n[router.lory]\nexperts = 4\nsegment_length = 8");
  testing::write_text(dir.file("sample.toml"), experiment);
  const auto trained = run_command(fmt::format("{}/lory run {} --db {}", build_dir(),
                                               dir.file("sample.toml"), dir.file("r.sqlite")));
  ASSERT_EQ(trained.exit_code, 0) << trained.output;
  Database db(dir.file("r.sqlite"), Database::Mode::ReadOnly);
  EXPECT_EQ(db.query_int("SELECT count(*) FROM runs WHERE status = 'done' AND last_step = 40"), 1);
  EXPECT_EQ(
      db.query_int("SELECT CAST(value AS INTEGER) FROM run_attributes WHERE name = 'upcycle_step'"),
      4);
  const auto loss_at = [&](int step) {
    Statement s = db.prepare("SELECT value FROM metrics WHERE name = 'train/loss' AND step = ?");
    s.bind(1, int64_t{step});
    return s.step() ? s.column_double(0) : -1.0;
  };
  // Byte-level loss starts near ln(257) = 5.55; it must fall, and go on falling after upcycling.
  EXPECT_LT(loss_at(40), loss_at(4) - 0.5) << trained.output;
  EXPECT_LT(loss_at(40), loss_at(8)) << trained.output;
  // The held-out evaluation covers the sample's six domains with four experts per layer.
  EXPECT_EQ(
      db.query_int("SELECT count(DISTINCT domain) FROM evals WHERE step = 40 AND domain <> 'all'"),
      6);
  EXPECT_EQ(db.query_int("SELECT count(DISTINCT expert) FROM routing_stats WHERE step = 40"), 4);
}

// Every committed experiment expands and validates against the built plugins, and the CLI
// answers --version and --help.
TEST(CommittedExperiments, EveryShippedTaskFileReadsAndTokenizes) {
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(
           std::string(LORY_SOURCE_DIR_FOR_TESTS) + "/experiments/tasks")) {
    if (entry.path().extension() != ".jsonl") continue;
    ++files;
    const auto tokenized =
        run_command(fmt::format("{}/lory-data tokenize-tasks --byte --tasks {} --out /dev/null",
                                build_dir(), entry.path().string()));
    EXPECT_EQ(tokenized.exit_code, 0) << entry.path() << "\n" << tokenized.output;
  }
  EXPECT_GE(files, 2);
}

// A cell's identity is what finds its run in an existing database: the first quickstart's cells
// (experiments/quickstart_1m.toml, the base config of the other sample-corpus experiments) keep
// the identities recorded in results/studies/quickstart.sqlite (and in every database before
// them), whatever changes in how the config is held.
TEST(CommittedExperiments, CellIdentitiesOfTheCommittedQuickstartStudyStayTheSame) {
  const auto dry =
      run_command(fmt::format("{}/lory run {}/experiments/quickstart_1m.toml --dry-run",
                              build_dir(), LORY_SOURCE_DIR_FOR_TESTS));
  ASSERT_EQ(dry.exit_code, 0) << dry.output;
  for (const char* identity : {"9b680ef1db53", "3165e0a76cea", "5a9290756873", "014923db47a5"}) {
    EXPECT_NE(dry.output.find(identity), std::string::npos) << identity << "\n" << dry.output;
  }
}

TEST(CommittedExperiments, EveryExperimentFileDryRuns) {
  TempDir dir;
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(
           std::string(LORY_SOURCE_DIR_FOR_TESTS) + "/experiments")) {
    if (entry.path().extension() != ".toml") continue;
    ++files;
    const auto dry = run_command(fmt::format("{}/lory run {} --dry-run --db {}", build_dir(),
                                             entry.path().string(), dir.file("dry.sqlite")));
    EXPECT_EQ(dry.exit_code, 0) << entry.path() << "\n" << dry.output;
    EXPECT_NE(dry.output.find(" cell"), std::string::npos) << dry.output;
  }
  EXPECT_GE(files, 3);
  EXPECT_FALSE(std::filesystem::exists(dir.file("dry.sqlite")));
  const auto version = run_command(build_dir() + "/lory --version");
  EXPECT_EQ(version.exit_code, 0) << version.output;
  EXPECT_FALSE(version.output.empty());
  for (const char* command : {"run", "run-cell", "query", "status", "report", "merge", "plugins",
                              "score", "generate", "eval-tasks", "export", "embed"}) {
    const auto help = run_command(fmt::format("{}/lory {} --help", build_dir(), command));
    EXPECT_EQ(help.exit_code, 0) << command << "\n" << help.output;
  }
}

}  // namespace
}  // namespace lory
