// The SQLite results store: round trips, read-only queries, concurrent writers, bad files.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmath>
#include <filesystem>

#include "core/store/results_merge.h"
#include "core/store/results_store.h"
#include "lory/core/sha256.h"
#include "test_support.h"

namespace lory {
namespace {

using testing::TempDir;

TEST(ResultsStore, RunsMetricsEvalsAndRoutingStatsRoundTrip) {
  TempDir dir;
  ResultsStore store(dir.file("r.sqlite"));
  const int64_t experiment = store.upsert_experiment("exp", "/x/exp.toml", "d", "source");
  EXPECT_EQ(store.upsert_experiment("exp", "/x/exp.toml", "d2", "source"), experiment);
  const int64_t run =
      store.ensure_run(experiment, "abc123", "lory seed=1", R"({"trainer":{"seed":1}})", 1);
  EXPECT_EQ(store.ensure_run(experiment, "abc123", "lory seed=1", R"({"trainer":{"seed":1}})", 1),
            run);
  store.mark_running(run, "v1", "host", 100, "checksum");
  store.write_metrics(run, {{10, "train/loss", 3.5}, {20, "train/loss", 3.0}});
  store.write_evals(run, {{20, "books", "default", 512, 3.1, 22.2}});
  store.write_routing_stats(run, {{20, "default", 0, "books", 3, 0.25, 0.5, 512}});
  store.mark_finished(run, run_status::kDone, "", 20);

  const auto record = store.find_run(run);
  ASSERT_TRUE(record);
  EXPECT_EQ(record->status, "done");
  EXPECT_EQ(record->last_step, 20);
  EXPECT_EQ(record->total_steps, 100);
  EXPECT_EQ(record->label, "lory seed=1");
  EXPECT_EQ(record->experiment, "exp");
  EXPECT_EQ(record->corpus_checksum, "checksum");
  EXPECT_EQ(store.resolve_run("abc").id, run);
  EXPECT_EQ(store.database().query_int("SELECT count(*) FROM metrics WHERE run_id = " +
                                       std::to_string(run)),
            2);
  EXPECT_EQ(store.database().query_int("SELECT tokens FROM evals"), 512);
  EXPECT_EQ(store.database().query_int("SELECT expert FROM routing_stats"), 3);
  // Writing a step again replaces it instead of duplicating it (resumed runs).
  store.write_metrics(run, {{20, "train/loss", 2.9}});
  EXPECT_EQ(store.database().query_int("SELECT count(*) FROM metrics"), 2);
  store.delete_rows_after(run, 10);
  EXPECT_EQ(store.database().query_int("SELECT count(*) FROM metrics"), 1);
  EXPECT_EQ(store.database().query_int("SELECT count(*) FROM evals"), 0);
}

TEST(ResultsStore, NonFiniteMetricValuesAreRejectedNotStored) {
  TempDir dir;
  ResultsStore store(dir.file("r.sqlite"));
  const int64_t run =
      store.ensure_run(store.upsert_experiment("e", "f", "", ""), "h", "l", "{}", 1);
  EXPECT_THROW(store.write_metrics(run, {{1, "train/loss", std::nan("")}}), SqliteError);
  EXPECT_EQ(store.database().query_int("SELECT count(*) FROM metrics"), 0);
}

TEST(ResultsStore, FourProcessesInsertingTenThousandRowsEachLoseNothing) {
  TempDir dir;
  const std::string path = dir.file("r.sqlite");
  std::vector<int64_t> runs;
  {
    ResultsStore store(path);
    const int64_t experiment = store.upsert_experiment("e", "f", "", "");
    for (int i = 0; i < 4; ++i)
      runs.push_back(store.ensure_run(experiment, "cell" + std::to_string(i), "l", "{}", i));
  }
  std::vector<pid_t> children;
  for (int child = 0; child < 4; ++child) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      int code = 0;
      try {
        ResultsStore store(path);
        for (int batch = 0; batch < 100; ++batch) {
          std::vector<MetricRow> rows;
          for (int i = 0; i < 100; ++i)
            rows.push_back({batch * 100 + i, "m", static_cast<double>(i)});
          store.write_metrics(runs[static_cast<size_t>(child)], rows);
        }
      } catch (const std::exception& e) {
        std::fprintf(stderr, "child %d: %s\n", child, e.what());
        code = 1;
      }
      _exit(code);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "a writer failed (see its stderr)";
  }
  Database db(path, Database::Mode::ReadOnly);
  EXPECT_EQ(db.query_int("SELECT count(*) FROM metrics"), 40000);
  EXPECT_EQ(db.query_int("SELECT count(DISTINCT run_id) FROM metrics"), 4);
  auto check = db.prepare("PRAGMA integrity_check");
  ASSERT_TRUE(check.step());
  EXPECT_EQ(check.column_text(0), "ok");
}

std::string lory_query(const std::string& db, const std::string& sql,
                       const std::string& flags = "") {
  return testing::run_command(testing::build_dir() + "/lory query \"" + sql + "\" --db " + db +
                              " " + flags)
      .output;
}

TEST(LoryQuery, PrintsAlignedTablesCsvAndJson) {
  TempDir dir;
  {
    ResultsStore store(dir.file("r.sqlite"));
    store.ensure_run(store.upsert_experiment("exp", "f", "", ""), "hash", "label", "{}", 7);
  }
  const std::string table = lory_query(dir.file("r.sqlite"), "SELECT seed, label FROM runs");
  EXPECT_NE(table.find("seed  label"), std::string::npos) << table;
  EXPECT_NE(table.find("   7  label"), std::string::npos) << table;
  EXPECT_NE(table.find("(1 row)"), std::string::npos) << table;
  EXPECT_EQ(lory_query(dir.file("r.sqlite"), "SELECT seed, label FROM runs", "--csv"),
            "seed,label\n7,label\n");
  const std::string json = lory_query(dir.file("r.sqlite"), "SELECT seed FROM runs", "--json");
  EXPECT_NE(json.find("\"seed\": 7"), std::string::npos) << json;
}

// A WAL-mode database in a folder the user cannot write (a committed study, a shared copy): the
// read-only commands read it where it is; a writer says the folder is not writable. As root the
// folder's mode does not stop anyone, so the commands run as `nobody` there.
TEST(LoryQuery, ReadOnlyCommandsWorkInAFolderTheUserCannotWriteAndWritersSaySo) {
  TempDir dir;
  const std::string folder = dir.file("readonly");
  std::filesystem::create_directories(folder);
  const std::string path = folder + "/r.sqlite";
  {
    ResultsStore store(path);
    store.ensure_run(store.upsert_experiment("exp", "f", "", ""), "hash", "label", "{}", 7);
  }
  std::string as_user;
  if (::geteuid() == 0) {
    if (testing::run_command("command -v runuser").exit_code != 0)
      GTEST_SKIP() << "root without runuser";
    as_user = "runuser -u nobody -- ";
    if (testing::run_command(as_user + "test -x " + testing::build_dir() + "/lory").exit_code !=
        0) {
      GTEST_SKIP() << "nobody cannot run " << testing::build_dir()
                   << "/lory (a folder on the way is private)";
    }
    // nobody must reach the build and the files: every folder on the way readable and searchable.
    for (std::filesystem::path p = dir.file(""); p.has_relative_path(); p = p.parent_path()) {
      std::filesystem::permissions(
          p, std::filesystem::perms::others_read | std::filesystem::perms::others_exec,
          std::filesystem::perm_options::add);
    }
    std::filesystem::permissions(path, std::filesystem::perms::others_read,
                                 std::filesystem::perm_options::add);
  }
  std::filesystem::permissions(folder,
                               std::filesystem::perms::owner_write |
                                   std::filesystem::perms::group_write |
                                   std::filesystem::perms::others_write,
                               std::filesystem::perm_options::remove);
  const auto query =
      testing::run_command(fmt::format("{}{}/lory query \"SELECT seed FROM runs\" --db {} --csv",
                                       as_user, testing::build_dir(), path));
  EXPECT_EQ(query.exit_code, 0) << query.output;
  EXPECT_NE(query.output.find("seed\n7"), std::string::npos) << query.output;
  const auto status = testing::run_command(
      fmt::format("{}{}/lory status --db {}", as_user, testing::build_dir(), path));
  EXPECT_EQ(status.exit_code, 0) << status.output;
  { ResultsStore other(dir.file("other.sqlite")); }
  std::filesystem::permissions(dir.file("other.sqlite"), std::filesystem::perms::others_read,
                               std::filesystem::perm_options::add);
  const auto merge =
      testing::run_command(fmt::format("{}{}/lory merge {} --into {}", as_user,
                                       testing::build_dir(), dir.file("other.sqlite"), path));
  EXPECT_NE(merge.exit_code, 0);
  EXPECT_NE(merge.output.find("cannot be written by this user"), std::string::npos) << merge.output;
  std::filesystem::permissions(folder, std::filesystem::perms::owner_write,
                               std::filesystem::perm_options::add);
}

// A run the store calls running but whose recorded worker is not a lory-worker (here: this test
// process) is shown as stale with what to do, not as running with an ETA.
TEST(LoryStatus, ARunningRunWithoutItsWorkerIsShownStaleNotWithAnEta) {
  TempDir dir;
  const std::string path = dir.file("r.sqlite");
  {
    ResultsStore store(path);
    const int64_t run =
        store.ensure_run(store.upsert_experiment("exp", "f", "", ""), "hash", "label",
                         R"({"trainer": {"batch_size": 4}, "model": {"context_length": 8}})", 7);
    store.mark_running(run, "v", current_host(), 100, "");
  }
  const auto status =
      testing::run_command(fmt::format("{}/lory status exp --db {}", testing::build_dir(), path));
  EXPECT_EQ(status.exit_code, 0) << status.output;
  EXPECT_NE(status.output.find("stale"), std::string::npos) << status.output;
  EXPECT_NE(status.output.find("its worker is gone"), std::string::npos) << status.output;
}

TEST(LoryQuery, RefusesWritingStatementsAndLeavesTheFileUnchanged) {
  TempDir dir;
  const std::string path = dir.file("r.sqlite");
  {
    ResultsStore store(path);
    store.ensure_run(store.upsert_experiment("exp", "f", "", ""), "hash", "label", "{}", 7);
    store.database().exec("PRAGMA wal_checkpoint(TRUNCATE)");
  }
  const std::string before = sha256_file_hex(path);
  for (const std::string sql :
       {"DELETE FROM runs", "UPDATE runs SET seed = 1", "DROP TABLE runs",
        "INSERT INTO experiments (name, file, created_at, updated_at) VALUES (1,1,1,1)"}) {
    const auto result =
        testing::run_command(testing::build_dir() + "/lory query \"" + sql + "\" --db " + path);
    EXPECT_NE(result.exit_code, 0) << sql;
    EXPECT_NE(result.output.find("read-only"), std::string::npos) << result.output;
  }
  EXPECT_EQ(sha256_file_hex(path), before);
  Database db(path, Database::Mode::ReadOnly);
  EXPECT_EQ(db.query_int("SELECT count(*) FROM runs"), 1);
}

std::string refusal(const std::string& path) {
  try {
    ResultsStore store(path);
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

// A file that is not a lory database is refused before the read-write connection exists: its
// bytes, its journal mode and its change counters stay exactly as they were, and no -wal or -shm
// file appears beside it.
TEST(ResultsStore, RefusesFilesThatAreNotLoryDatabasesWithoutChangingAByte) {
  TempDir dir;
  testing::write_text(dir.file("text.sqlite"),
                      "this is not a database at all, just some text that is long enough");
  const std::string text_hash = sha256_file_hex(dir.file("text.sqlite"));
  EXPECT_NE(refusal(dir.file("text.sqlite"))
                .find("'" + dir.file("text.sqlite") +
                      "' is not a lory database (not an "
                      "SQLite file)"),
            std::string::npos)
      << refusal(dir.file("text.sqlite"));
  EXPECT_EQ(sha256_file_hex(dir.file("text.sqlite")), text_hash);
  {
    Database other(dir.file("other.sqlite"), Database::Mode::ReadWrite);
    other.exec("PRAGMA journal_mode=DELETE");
    other.exec("CREATE TABLE customers (id INTEGER)");
    other.exec("INSERT INTO customers VALUES (1), (2)");
  }
  const std::string other_hash = sha256_file_hex(dir.file("other.sqlite"));
  const std::string message = refusal(dir.file("other.sqlite"));
  EXPECT_NE(message.find("is not a lory database: it holds another program's tables (customers)"),
            std::string::npos)
      << message;
  EXPECT_EQ(sha256_file_hex(dir.file("other.sqlite")), other_hash)
      << "the foreign database was written";
  EXPECT_FALSE(std::filesystem::exists(dir.file("other.sqlite-wal")));
  EXPECT_THROW(open_results_read_only(dir.file("other.sqlite")), UserError);
  EXPECT_EQ(sha256_file_hex(dir.file("other.sqlite")), other_hash);
  Database still_there(dir.file("other.sqlite"), Database::Mode::ReadOnly);
  EXPECT_EQ(still_there.query_int("SELECT count(*) FROM customers"), 2);

  // A table named schema_version is common: without lory's own tables it is still not ours.
  {
    Database other(dir.file("migrations.sqlite"), Database::Mode::ReadWrite);
    other.exec("PRAGMA journal_mode=DELETE");
    other.exec(
        "CREATE TABLE schema_version (version INTEGER); INSERT INTO schema_version VALUES (1)");
  }
  const std::string migrations_hash = sha256_file_hex(dir.file("migrations.sqlite"));
  EXPECT_NE(
      refusal(dir.file("migrations.sqlite")).find("another program's tables (schema_version)"),
      std::string::npos)
      << refusal(dir.file("migrations.sqlite"));
  EXPECT_EQ(sha256_file_hex(dir.file("migrations.sqlite")), migrations_hash);

  std::filesystem::create_directories(dir.file("folder.sqlite"));
  EXPECT_NE(refusal(dir.file("folder.sqlite")).find("is a folder, not a results database"),
            std::string::npos)
      << refusal(dir.file("folder.sqlite"));
  try {
    open_results_read_only(dir.file("folder.sqlite"));
    FAIL();
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("is a folder"), std::string::npos) << e.what();
  }
}

TEST(ResultsStore, AnEmptyFileIsNotALoryDatabaseToReadButMayBecomeOne) {
  TempDir dir;
  testing::write_text(dir.file("empty.sqlite"), "");
  try {
    open_results_read_only(dir.file("empty.sqlite"));
    FAIL();
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("is empty: not a lory database"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(std::filesystem::file_size(dir.file("empty.sqlite")), 0u);
  // Nothing in it to lose: `lory run` may create its store there.
  ResultsStore store(dir.file("empty.sqlite"));
  EXPECT_EQ(check_results_file(dir.file("empty.sqlite")), ResultsFileState::Lory);
}

TEST(LoryMerge, CopiesRunsWithTheirRowsAndKeepsRunsAlreadyDoneInTheTarget) {
  TempDir dir;
  const auto fill = [](const std::string& path, const std::string& status, double loss) {
    ResultsStore store(path);
    const int64_t experiment = store.upsert_experiment("grid", "/x/grid.toml", "", "");
    const int64_t run = store.ensure_run(experiment, "cellA", "a", "{}", 1);
    store.write_metrics(run, {{1, "train/loss", loss}, {2, "train/loss", loss - 1}});
    store.set_run_attribute(run, "world_size", "1");
    store.mark_finished(run, status, "", 2);
    return run;
  };
  fill(dir.file("target.sqlite"), run_status::kFailed, 9.0);
  fill(dir.file("cell1.sqlite"), run_status::kDone, 5.0);
  {
    ResultsStore other(dir.file("cell2.sqlite"));
    const int64_t run = other.ensure_run(other.upsert_experiment("grid", "/x/grid.toml", "", ""),
                                         "cellB", "b", "{}", 2);
    other.write_evals(run, {{2, "all", "default", 10, 1.0, 2.7}});
    other.mark_finished(run, run_status::kDone, "", 2);
  }
  const MergeSummary first = merge_results(dir.file("target.sqlite"),
                                           {dir.file("cell1.sqlite"), dir.file("cell2.sqlite")});
  EXPECT_EQ(first.runs_copied, 2u);
  EXPECT_EQ(first.runs_kept, 0u);
  Database db(dir.file("target.sqlite"), Database::Mode::ReadOnly);
  EXPECT_EQ(db.query_int("SELECT count(*) FROM runs WHERE status = 'done'"), 2);
  EXPECT_EQ(db.query_int("SELECT count(*) FROM metrics"),
            2);  // the failed attempt's rows were replaced
  EXPECT_EQ(db.query_int("SELECT CAST(value AS INTEGER) FROM metrics WHERE step = 1"), 5);
  EXPECT_EQ(db.query_int("SELECT count(*) FROM evals"), 1);
  EXPECT_EQ(db.query_int("SELECT count(*) FROM run_attributes"), 1);
  // Merging again changes nothing: both runs are done in the target.
  const MergeSummary second = merge_results(dir.file("target.sqlite"),
                                            {dir.file("cell1.sqlite"), dir.file("cell2.sqlite")});
  EXPECT_EQ(second.runs_copied, 0u);
  EXPECT_EQ(second.runs_kept, 2u);
  EXPECT_EQ(db.query_int("SELECT count(*) FROM metrics"), 2);
}

TEST(ResultsStore, RefusesASchemaNewerThanItKnows) {
  TempDir dir;
  { ResultsStore store(dir.file("r.sqlite")); }
  {
    Database db(dir.file("r.sqlite"), Database::Mode::ReadWrite);
    db.exec("INSERT INTO schema_version (version) VALUES (999)");
  }
  const std::string hash = sha256_file_hex(dir.file("r.sqlite"));
  EXPECT_NE(
      refusal(dir.file("r.sqlite")).find("schema version 999, newer than this lory understands"),
      std::string::npos)
      << refusal(dir.file("r.sqlite"));
  // The read side (status, query, report tables) refuses it too, instead of misreading it.
  try {
    open_results_read_only(dir.file("r.sqlite"));
    FAIL();
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("schema version 999"), std::string::npos) << e.what();
  }
  EXPECT_EQ(sha256_file_hex(dir.file("r.sqlite")), hash);
}

// The commands a user points at a database: every one says what the file is and exits non-zero,
// and the file is left as it was.
TEST(LoryCommands, RefuseDatabasesThatAreNotLorysAndLeaveThemUnchanged) {
  TempDir dir;
  {
    Database other(dir.file("other.sqlite"), Database::Mode::ReadWrite);
    other.exec("PRAGMA journal_mode=DELETE");
    other.exec("CREATE TABLE notes (text TEXT)");
  }
  testing::write_text(dir.file("empty.sqlite"), "");
  std::filesystem::create_directories(dir.file("folder"));
  { ResultsStore store(dir.file("newer.sqlite")); }
  {
    Database db(dir.file("newer.sqlite"), Database::Mode::ReadWrite);
    db.exec("INSERT INTO schema_version (version) VALUES (999)");
  }
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"other.sqlite", "another program's tables (notes)"},
      {"empty.sqlite", "not a lory database"},
      {"folder", "is a folder"},
      {"newer.sqlite", "schema version 999"}};
  for (const auto& [file, expected] : cases) {
    const std::string path = dir.file(file);
    const std::string before = std::filesystem::is_directory(path) ? "" : sha256_file_hex(path);
    for (const std::string& command : std::vector<std::string>{
             "status", "query \"SELECT 1\"", "report x --out " + dir.file("report")}) {
      const auto result = testing::run_command(
          fmt::format("{}/lory {} --db {}", testing::build_dir(), command, path));
      EXPECT_NE(result.exit_code, 0) << command << " " << file << "\n" << result.output;
      EXPECT_NE(result.output.find(expected), std::string::npos) << command << " " << file << "\n"
                                                                 << result.output;
    }
    if (!before.empty()) {
      EXPECT_EQ(sha256_file_hex(path), before) << file;
    }
  }
}

}  // namespace
}  // namespace lory
