#include "core/store/results_store.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>

#include "core/code_version.h"
#include "core/store/run_tables.h"
#include "core/store/schema_migrations.h"
#include "core/support/kill_points.h"
#include "core/support/process_identity.h"
#include "lory/core/build_info.h"

namespace lory {

namespace {

RunRecord read_run(Statement& s) {
  RunRecord r;
  r.id = s.column_int(0);
  r.experiment_id = s.column_int(1);
  r.experiment = s.column_text(2);
  r.cell_hash = s.column_text(3);
  r.label = s.column_text(4);
  r.config_json = s.column_text(5);
  r.status = s.column_text(6);
  r.seed = s.column_int(7);
  r.started_at = s.column_text(8);
  r.ended_at = s.column_text(9);
  r.code_version = s.column_text(10);
  r.host = s.column_text(11);
  r.last_step = s.column_int(12);
  r.total_steps = s.column_int(13);
  r.reason = s.column_text(14);
  r.corpus_checksum = s.column_text(15);
  r.worker_pid = s.column_int(16);
  r.heartbeat_at = s.column_text(17);
  return r;
}

constexpr const char* kRunColumns =
    "r.id, r.experiment_id, e.name, r.cell_hash, r.label, r.config, r.status, r.seed, "
    "r.started_at, r.ended_at, "
    "r.code_version, r.host, r.last_step, r.total_steps, r.reason, r.corpus_checksum, "
    "r.worker_pid, r.heartbeat_at";

}  // namespace

std::string run_directory(const std::string& db_path, const RunRecord& run) {
  // Next to the database and named after it: two databases in one folder never share a run's
  // checkpoints (run ids restart at 1 in every database).
  const std::filesystem::path db(db_path);
  return run_directory_under((db.parent_path() / (db.stem().string() + ".runs")).string(), run);
}

std::string run_directory_under(const std::string& runs_dir, const RunRecord& run) {
  return (std::filesystem::path(runs_dir) / run.experiment /
          fmt::format("{}-{}", run.id, run.cell_hash.substr(0, 12)))
      .string();
}

std::string cache_directory(const std::string& db_path) {
  return (std::filesystem::path(db_path).parent_path() / "cache").string();
}

std::string utc_now_iso8601() {
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buffer;
}

std::string current_host() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0) return "unknown";
  return name;
}

std::string current_code_version() {
  // Baked in at build time (cmake/CodeVersion.cmake): the binaries' own source tree.
  return std::string("v") + LORY_VERSION + "-" + LORY_CODE_VERSION;
}

ResultsFileState check_results_file(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (ec && ec != std::errc::no_such_file_or_directory) {
    throw UserError(fmt::format("cannot look at database '{}': {}", path, ec.message()));
  }
  if (!fs::exists(status)) return ResultsFileState::Missing;
  if (fs::is_directory(status)) {
    throw UserError(
        fmt::format("'{}' is a folder, not a results database: --db takes a file, e.g. {}", path,
                    (fs::path(path) / "lory.sqlite").string()));
  }
  if (!fs::is_regular_file(status)) {
    throw UserError(fmt::format(
        "'{}' is not a regular file, so not a lory results database; pass another --db", path));
  }
  if (fs::file_size(path, ec) == 0 && !ec) return ResultsFileState::Empty;
  {
    std::ifstream in(path, std::ios::binary);
    char header[16] = {};
    in.read(header, sizeof header);
    if (!in || std::memcmp(header, "SQLite format 3", 16) != 0) {
      throw UserError(
          fmt::format("'{}' is not a lory database (not an SQLite file); pass another --db", path));
    }
  }
  Database db(path, Database::Mode::ReadOnly);
  std::vector<std::string> tables;
  Statement s = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name");
  while (s.step()) tables.push_back(s.column_text(0));
  if (tables.empty()) return ResultsFileState::Empty;
  const auto has = [&](const char* table) {
    return std::find(tables.begin(), tables.end(), table) != tables.end();
  };
  // Lory creates schema_version, experiments and runs in one transaction: all three, or it is not
  // ours (schema_version alone is a common table name).
  if (!has("schema_version") || !has("experiments") || !has("runs")) {
    if (tables.size() > 5) tables.resize(5), tables.back() = "...";
    throw UserError(fmt::format(
        "'{}' is not a lory database: it holds another program's tables ({}) and no lory "
        "schema version; nothing was changed, pass another --db",
        path, fmt::join(tables, ", ")));
  }
  const int64_t version = db.query_int("SELECT max(version) FROM schema_version").value_or(0);
  const int64_t known = static_cast<int64_t>(results_schema_migrations().size());
  if (version > known) {
    throw UserError(fmt::format(
        "database '{}' has schema version {}, newer than this lory understands ({}): use a "
        "newer lory, or another --db; nothing was changed",
        path, version, known));
  }
  return ResultsFileState::Lory;
}

Database open_results_read_only(const std::string& path) {
  switch (check_results_file(path)) {
    case ResultsFileState::Missing:
      throw UserError(fmt::format(
          "database '{}' does not exist (pass --db PATH, or run an experiment first)", path));
    case ResultsFileState::Empty:
      throw UserError(
          fmt::format("'{}' is empty: not a lory database (yet); pass another --db", path));
    case ResultsFileState::Lory:
      break;
  }
  return Database(path, Database::Mode::ReadOnly);
}

bool results_file_writable(const std::string& path) {
  std::filesystem::path folder = std::filesystem::path(path).parent_path();
  if (folder.empty()) folder = ".";
  std::error_code ec;
  const bool exists = std::filesystem::exists(path, ec);
  return ::access(folder.c_str(), W_OK) == 0 && (!exists || ::access(path.c_str(), W_OK) == 0);
}

bool results_schema_is_current(Database& db) {
  return db.query_int("SELECT max(version) FROM schema_version").value_or(0) ==
         static_cast<int64_t>(results_schema_migrations().size());
}

// Checked before the read-write connection exists: opening one already switches the journal
// mode (the header changes), which must never happen to a file that is not ours.
ResultsStore::CheckedPath ResultsStore::check(const std::string& path, Open open) {
  const ResultsFileState state = check_results_file(path);
  if (open == Open::MustExist && state == ResultsFileState::Missing) {
    throw UserError(fmt::format(
        "database '{}' does not exist (pass --db PATH, or run an experiment first)", path));
  }
  if (open == Open::MustExist && state == ResultsFileState::Empty) {
    throw UserError(
        fmt::format("'{}' is empty: not a lory database (yet); pass another --db", path));
  }
  if (state != ResultsFileState::Missing) {
    // Writing needs the journal files beside the database: a folder this user cannot write makes
    // every write fail later with SQLite's "attempt to write a readonly database".
    std::filesystem::path folder = std::filesystem::path(path).parent_path();
    if (folder.empty()) folder = ".";
    if (!results_file_writable(path)) {
      throw UserError(fmt::format(
          "database '{}' cannot be written by this user (its folder '{}' or the file is "
          "read-only): this command writes to it; `lory status`, `query` and `report` read "
          "it as it is, or copy it to a folder you can write",
          path, folder.string()));
    }
  }
  return CheckedPath(path);
}

ResultsStore::ResultsStore(const CheckedPath& checked)
    : db_(checked.path(), Database::Mode::ReadWrite) {
  migrate();
}

ResultsStore::ResultsStore(const std::string& path, Open open) : ResultsStore(check(path, open)) {}

void ResultsStore::migrate() {
  Transaction transaction(db_);
  db_.exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)");
  int64_t version = db_.query_int("SELECT max(version) FROM schema_version").value_or(0);
  const int64_t known = static_cast<int64_t>(results_schema_migrations().size());
  if (version > known) {
    throw SqliteError(
        fmt::format(
            "database '{}' has schema version {}, newer than this lory understands ({}): use a "
            "newer lory, or another --db",
            db_.path(), version, known),
        SQLITE_ERROR);
  }
  if (version == 0) {
    // A database written by something else is not ours to migrate.
    const int64_t foreign =
        db_.query_int(
               "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT IN "
               "('schema_version')")
            .value_or(0);
    if (foreign > 0) {
      throw SqliteError(
          fmt::format("'{}' holds tables but no lory schema version: it is not a lory results "
                      "database; pass another --db",
                      db_.path()),
          SQLITE_ERROR);
    }
  }
  for (; version < known; ++version) {
    db_.exec(results_schema_migrations()[static_cast<size_t>(version)]);
    db_.prepare("INSERT INTO schema_version (version) VALUES (?)").bind(1, version + 1).run();
  }
  transaction.commit();
}

int64_t ResultsStore::upsert_experiment(
    const std::string& name, const std::string& file, const std::string& description,
    const std::string& source_text,
    const std::vector<std::pair<std::string, std::string>>& included_files) {
  Transaction transaction(db_);
  const std::string now = utc_now_iso8601();
  db_.prepare(
         "INSERT INTO experiments (name, file, description, source_toml, created_at, updated_at) "
         "VALUES (?, ?, ?, ?, "
         "?, ?) ON CONFLICT (name) DO UPDATE SET file = excluded.file, description = "
         "excluded.description, "
         "source_toml = excluded.source_toml, updated_at = excluded.updated_at")
      .bind(1, name)
      .bind(2, file)
      .bind(3, description)
      .bind(4, source_text)
      .bind(5, now)
      .bind(6, now)
      .run();
  Statement select = db_.prepare("SELECT id FROM experiments WHERE name = ?");
  select.bind(1, name);
  select.step();
  const int64_t id = select.column_int(0);
  select.reset();
  db_.prepare("DELETE FROM experiment_files WHERE experiment_id = ?").bind(1, id).run();
  Statement insert = db_.prepare(
      "INSERT OR REPLACE INTO experiment_files (experiment_id, path, text) VALUES (?, ?, ?)");
  for (const auto& [path, text] : included_files)
    insert.bind(1, id).bind(2, path).bind(3, text).run();
  transaction.commit();
  return id;
}

int64_t ResultsStore::ensure_run(int64_t experiment_id, const std::string& cell_hash,
                                 const std::string& label, const std::string& config_json,
                                 int64_t seed) {
  Transaction transaction(db_);
  db_.prepare(
         "INSERT INTO runs (experiment_id, cell_hash, label, config, status, seed) VALUES (?, ?, "
         "?, ?, 'queued', ?) "
         "ON CONFLICT (experiment_id, cell_hash) DO UPDATE SET label = excluded.label")
      .bind(1, experiment_id)
      .bind(2, cell_hash)
      .bind(3, label)
      .bind(4, config_json)
      .bind(5, seed)
      .run();
  Statement select = db_.prepare("SELECT id FROM runs WHERE experiment_id = ? AND cell_hash = ?");
  select.bind(1, experiment_id).bind(2, cell_hash);
  select.step();
  const int64_t id = select.column_int(0);
  select.reset();
  transaction.commit();
  return id;
}

std::optional<RunRecord> ResultsStore::find_run(int64_t run_id) {
  Statement s =
      db_.prepare(fmt::format("SELECT {} FROM runs r JOIN experiments e ON e.id = r.experiment_id "
                              "WHERE r.id = ?",
                              kRunColumns));
  s.bind(1, run_id);
  if (!s.step()) return std::nullopt;
  return read_run(s);
}

std::vector<RunRecord> ResultsStore::runs_of_experiment(const std::string& experiment_name) {
  Statement s =
      db_.prepare(fmt::format("SELECT {} FROM runs r JOIN experiments e ON e.id = r.experiment_id "
                              "WHERE e.name = ? ORDER BY r.id",
                              kRunColumns));
  s.bind(1, experiment_name);
  std::vector<RunRecord> out;
  while (s.step()) out.push_back(read_run(s));
  return out;
}

RunRecord ResultsStore::resolve_run(const std::string& id_or_hash_prefix) {
  const bool numeric = !id_or_hash_prefix.empty() &&
                       id_or_hash_prefix.find_first_not_of("0123456789") == std::string::npos;
  if (numeric && id_or_hash_prefix.size() < 8) {
    if (auto run = find_run(std::stoll(id_or_hash_prefix))) return *run;
    throw UserError(fmt::format("no run with id {} in '{}'", id_or_hash_prefix, db_.path()));
  }
  Statement s =
      db_.prepare(fmt::format("SELECT {} FROM runs r JOIN experiments e ON e.id = r.experiment_id "
                              "WHERE r.cell_hash LIKE ? || '%' ORDER BY r.id",
                              kRunColumns));
  s.bind(1, id_or_hash_prefix);
  std::vector<RunRecord> matches;
  while (s.step()) matches.push_back(read_run(s));
  if (matches.empty())
    throw UserError(fmt::format("no run matches '{}' in '{}'", id_or_hash_prefix, db_.path()));
  if (matches.size() > 1) {
    throw UserError(
        fmt::format("'{}' matches {} runs in '{}'; use the run id or a longer hash prefix",
                    id_or_hash_prefix, matches.size(), db_.path()));
  }
  return matches.front();
}

std::string ResultsStore::experiment_file(const RunRecord& run) {
  Statement s = db_.prepare("SELECT file FROM experiments WHERE id = ?");
  s.bind(1, run.experiment_id);
  if (!s.step())
    throw UserError(fmt::format("run {} has no experiment row in '{}'", run.id, db_.path()));
  return s.column_text(0);
}

void ResultsStore::mark_running(int64_t run_id, const std::string& code_version,
                                const std::string& host, int64_t total_steps,
                                const std::string& corpus_checksum) {
  Transaction transaction(db_);
  const std::string now = utc_now_iso8601();
  db_.prepare(
         "UPDATE runs SET status = 'running', started_at = coalesce(started_at, ?), ended_at = "
         "NULL, code_version = ?, "
         "host = ?, total_steps = ?, corpus_checksum = ?, reason = '', worker_pid = ?, "
         "heartbeat_at = ? WHERE id = ?")
      .bind(1, now)
      .bind(2, code_version)
      .bind(3, host)
      .bind(4, total_steps)
      .bind(5, corpus_checksum)
      .bind(6, static_cast<int64_t>(::getpid()))
      .bind(7, now)
      .bind(8, run_id)
      .run();
  // Which process this is, beyond its reusable id (see worker_liveness in the CLI).
  db_.prepare(
         "INSERT OR REPLACE INTO run_attributes (run_id, name, value) VALUES (?, 'worker_start', "
         "?)")
      .bind(1, run_id)
      .bind(2, process_start_identity(::getpid()))
      .run();
  transaction.commit();
}

std::optional<std::string> ResultsStore::run_attribute(int64_t run_id, const std::string& name) {
  Statement s = db_.prepare("SELECT value FROM run_attributes WHERE run_id = ? AND name = ?");
  s.bind(1, run_id).bind(2, name);
  if (!s.step()) return std::nullopt;
  return s.column_text(0);
}

void ResultsStore::mark_finished(int64_t run_id, const std::string& status,
                                 const std::string& reason, int64_t last_step) {
  Transaction transaction(db_);
  db_.prepare("UPDATE runs SET status = ?, reason = ?, last_step = ?, ended_at = ? WHERE id = ?")
      .bind(1, status)
      .bind(2, reason)
      .bind(3, last_step)
      .bind(4, utc_now_iso8601())
      .bind(5, run_id)
      .run();
  transaction.commit();
}

void ResultsStore::set_run_attribute(int64_t run_id, const std::string& name,
                                     const std::string& value) {
  Transaction transaction(db_);
  db_.prepare(insert_or_replace_sql(run_table("run_attributes")))
      .bind(1, run_id)
      .bind(2, name)
      .bind(3, value)
      .run();
  transaction.commit();
}

void ResultsStore::write_metrics(int64_t run_id, const std::vector<MetricRow>& rows) {
  if (rows.empty()) return;
  Transaction transaction(db_);
  Statement insert = db_.prepare(insert_or_replace_sql(run_table("metrics")));
  int64_t last_step = 0;
  for (const MetricRow& row : rows) {
    insert.bind(1, run_id).bind(2, row.step).bind(3, row.name).bind(4, row.value);
    insert.run();
    last_step = std::max(last_step, row.step);
  }
  db_.prepare("UPDATE runs SET last_step = ?, heartbeat_at = ? WHERE id = ?")
      .bind(1, last_step)
      .bind(2, utc_now_iso8601())
      .bind(3, run_id)
      .run();
  kill_point("metrics_transaction", last_step);
  transaction.commit();
}

void ResultsStore::write_evals(int64_t run_id, const std::vector<EvalRow>& rows) {
  if (rows.empty()) return;
  Transaction transaction(db_);
  Statement insert = db_.prepare(insert_or_replace_sql(run_table("evals")));
  for (const EvalRow& row : rows) {
    insert.bind(1, run_id)
        .bind(2, row.step)
        .bind(3, row.mode)
        .bind(4, row.domain)
        .bind(5, row.tokens);
    insert.bind(6, row.loss).bind(7, row.ppl);
    insert.run();
  }
  kill_point("evals_transaction", rows.front().step);
  transaction.commit();
}

void ResultsStore::write_routing_stats(int64_t run_id, const std::vector<RoutingStatRow>& rows) {
  if (rows.empty()) return;
  Transaction transaction(db_);
  Statement insert = db_.prepare(insert_or_replace_sql(run_table("routing_stats")));
  for (const RoutingStatRow& row : rows) {
    insert.bind(1, run_id)
        .bind(2, row.step)
        .bind(3, row.mode)
        .bind(4, row.layer)
        .bind(5, row.domain);
    insert.bind(6, row.expert)
        .bind(7, row.weight_mean)
        .bind(8, row.activated_frac)
        .bind(9, row.tokens);
    insert.run();
  }
  transaction.commit();
}

void ResultsStore::write_routing_layer_stats(int64_t run_id,
                                             const std::vector<RoutingLayerRow>& rows) {
  if (rows.empty()) return;
  Transaction transaction(db_);
  Statement insert = db_.prepare(insert_or_replace_sql(run_table("routing_layer_stats")));
  for (const RoutingLayerRow& row : rows) {
    insert.bind(1, run_id)
        .bind(2, row.step)
        .bind(3, row.mode)
        .bind(4, row.layer)
        .bind(5, row.experts);
    insert.bind(6, row.entropy)
        .bind(7, row.load_imbalance)
        .bind(8, row.unused_experts)
        .bind(9, row.specialisation);
    insert.bind(10, row.tokens);
    insert.run();
  }
  transaction.commit();
}

void ResultsStore::write_task_evals(int64_t run_id, const std::vector<TaskEvalRow>& rows) {
  Transaction transaction(db_);
  Statement insert = db_.prepare(insert_or_replace_sql(run_table("task_evals")));
  const std::string now = utc_now_iso8601(), code_version = current_code_version();
  for (const TaskEvalRow& row : rows) {
    insert.bind(1, run_id)
        .bind(2, row.task)
        .bind(3, row.routing)
        .bind(4, row.step)
        .bind(5, row.task_sha256);
    insert.bind(6, row.examples).bind(7, row.chance).bind(8, row.accuracy);
    // A standard error needs two examples; NULL says "not defined" (SQLite would store NaN as NULL
    // anyway).
    if (std::isfinite(row.accuracy_stderr))
      insert.bind(9, row.accuracy_stderr);
    else
      insert.bind_null(9);
    insert.bind(10, row.accuracy_norm);
    if (std::isfinite(row.accuracy_norm_stderr))
      insert.bind(11, row.accuracy_norm_stderr);
    else
      insert.bind_null(11);
    insert.bind(12, row.gold_loss_per_token)
        .bind(13, row.truncated)
        .bind(14, now)
        .bind(15, code_version);
    insert.run();
  }
  transaction.commit();
}

void ResultsStore::delete_rows_after(int64_t run_id, int64_t step) {
  Transaction transaction(db_);
  for (const RunTable& table : run_tables()) {
    if (!table.stepped) continue;
    db_.prepare(fmt::format("DELETE FROM {} WHERE run_id = ? AND step > ?", table.name))
        .bind(1, run_id)
        .bind(2, step)
        .run();
  }
  transaction.commit();
}

}  // namespace lory
