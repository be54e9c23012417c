#include "core/store/results_merge.h"

#include <fmt/format.h>

#include <filesystem>

#include "core/store/results_store.h"
#include "core/store/run_tables.h"

namespace lory {

namespace fs = std::filesystem;

namespace {

// Copies a run's rows of one table from the attached source; `verb` is "INSERT" (the target's rows
// were deleted first) or "INSERT OR IGNORE" (the target's own rows win). Returns the rows copied.
size_t copy_run_rows(Database& db, const RunTable& table, const char* verb, int64_t target_id,
                     int64_t source_id) {
  db.prepare(
        fmt::format("{0} INTO main.{1} (run_id, {2}) SELECT ?, {2} FROM src.{1} WHERE run_id = ?",
                    verb, table.name, table.columns))
      .bind(1, target_id)
      .bind(2, source_id)
      .run();
  return static_cast<size_t>(sqlite3_changes(db.handle()));
}

}  // namespace

MergeSummary merge_results(const std::string& target_path,
                           const std::vector<std::string>& source_paths) {
  MergeSummary summary;
  ResultsStore target(target_path);
  Database& db = target.database();
  for (const std::string& source_path : source_paths) {
    if (fs::weakly_canonical(source_path) == fs::weakly_canonical(target_path)) continue;
    // Brings an older source to this schema; refuses a foreign, empty or missing file untouched.
    { ResultsStore migrate(source_path, ResultsStore::Open::MustExist); }
    db.prepare("ATTACH DATABASE ? AS src").bind(1, source_path).run();
    std::vector<std::pair<RunRecord, RunRecord>> copied;  // (source run, target run)
    try {
      Transaction transaction(db);
      db.exec(
          "INSERT INTO experiments (name, file, description, source_toml, created_at, updated_at) "
          "SELECT name, file, "
          "description, source_toml, created_at, updated_at FROM src.experiments WHERE true ON "
          "CONFLICT (name) DO "
          "NOTHING");
      // The included files of experiments the target lacked come with them.
      db.exec(
          "INSERT OR IGNORE INTO main.experiment_files (experiment_id, path, text) SELECT te.id, "
          "f.path, f.text FROM "
          "src.experiment_files f JOIN src.experiments e ON e.id = f.experiment_id JOIN "
          "main.experiments te ON "
          "te.name = e.name WHERE NOT EXISTS (SELECT 1 FROM main.experiment_files g WHERE "
          "g.experiment_id = te.id)");
      Statement runs = db.prepare(
          "SELECT s.id, e.name, s.cell_hash, t.id, t.status FROM src.runs s JOIN src.experiments e "
          "ON e.id = "
          "s.experiment_id JOIN main.experiments te ON te.name = e.name LEFT JOIN main.runs t ON "
          "t.experiment_id = "
          "te.id AND t.cell_hash = s.cell_hash ORDER BY s.id");
      std::vector<std::tuple<int64_t, std::string, std::string, bool, int64_t, std::string>> plan;
      while (runs.step()) {
        plan.emplace_back(runs.column_int(0), runs.column_text(1), runs.column_text(2),
                          runs.column_type(3) != SQLITE_NULL, runs.column_int(3),
                          runs.column_text(4));
      }
      for (const auto& [source_id, experiment, cell_hash, exists, existing_id, target_status] :
           plan) {
        if (exists && target_status == run_status::kDone) {
          ++summary.runs_kept;
          // A run kept in the target may still gain tasks evaluated on the source's copy only.
          summary.rows_copied += copy_run_rows(db, run_table("task_evals"), "INSERT OR IGNORE",
                                               existing_id, source_id);
          continue;
        }
        db.prepare(
              "INSERT INTO main.runs (experiment_id, cell_hash, label, config, status, seed, "
              "started_at, ended_at, "
              "code_version, host, last_step, total_steps, reason, corpus_checksum) SELECT (SELECT "
              "id FROM "
              "main.experiments WHERE name = ?), cell_hash, label, config, status, seed, "
              "started_at, ended_at, "
              "code_version, host, last_step, total_steps, reason, corpus_checksum FROM src.runs "
              "WHERE id = ? "
              "ON CONFLICT (experiment_id, cell_hash) DO UPDATE SET label = excluded.label, status "
              "= excluded.status, "
              "started_at = excluded.started_at, ended_at = excluded.ended_at, code_version = "
              "excluded.code_version, "
              "host = excluded.host, last_step = excluded.last_step, total_steps = "
              "excluded.total_steps, reason = "
              "excluded.reason, corpus_checksum = excluded.corpus_checksum")
            .bind(1, experiment)
            .bind(2, source_id)
            .run();
        Statement find = db.prepare(
            "SELECT r.id FROM main.runs r JOIN main.experiments e ON e.id = r.experiment_id WHERE "
            "e.name = ? AND "
            "r.cell_hash = ?");
        find.bind(1, experiment).bind(2, cell_hash);
        find.step();
        const int64_t target_id = find.column_int(0);
        find.reset();
        for (const RunTable& table : run_tables()) {
          db.prepare(fmt::format("DELETE FROM main.{} WHERE run_id = ?", table.name))
              .bind(1, target_id)
              .run();
          summary.rows_copied += copy_run_rows(db, table, "INSERT", target_id, source_id);
        }
        ++summary.runs_copied;
        RunRecord source_run, target_run;
        source_run.id = source_id;
        target_run.id = target_id;
        source_run.experiment = target_run.experiment = experiment;
        source_run.cell_hash = target_run.cell_hash = cell_hash;
        copied.emplace_back(source_run, target_run);
      }
      transaction.commit();
    } catch (...) {
      db.exec("DETACH DATABASE src");
      throw;
    }
    db.exec("DETACH DATABASE src");
    for (const auto& [source_run, target_run] : copied) {
      const fs::path from = run_directory(source_path, source_run),
                     to = run_directory(target_path, target_run);
      std::error_code ec;
      if (!fs::is_directory(from, ec)) continue;
      fs::create_directories(to);
      fs::copy(from, to, fs::copy_options::recursive | fs::copy_options::overwrite_existing, ec);
      if (ec)
        throw UserError(fmt::format("cannot copy checkpoints '{}' to '{}': {}", from.string(),
                                    to.string(), ec.message()));
    }
  }
  return summary;
}

}  // namespace lory
