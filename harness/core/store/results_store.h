// The results store: experiments, runs, metrics, evaluations and routing statistics in one SQLite
// file, in long format so that any comparison is one SQL query away. The schema is versioned and
// migrated forward when a newer lory opens an older file. See docs/results-schema.md.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/store/sqlite_db.h"

namespace lory {

// Status values of runs.status.
namespace run_status {
inline constexpr const char* kQueued = "queued";
inline constexpr const char* kRunning = "running";
inline constexpr const char* kDone = "done";
inline constexpr const char* kFailed = "failed";
inline constexpr const char* kDiverged = "diverged";
inline constexpr const char* kInterrupted = "interrupted";
}  // namespace run_status

struct RunRecord {
  int64_t id = 0;
  int64_t experiment_id = 0;
  std::string experiment;
  std::string cell_hash;
  std::string label;
  std::string config_json;
  std::string status;
  int64_t seed = 0;
  std::string started_at, ended_at;
  std::string code_version, host;
  int64_t last_step = 0, total_steps = 0;
  std::string reason;
  std::string corpus_checksum;
  int64_t worker_pid = 0;    // the process training it (status running)
  std::string heartbeat_at;  // last time that process wrote
};

struct MetricRow {
  int64_t step;
  std::string name;
  double value;
};

struct EvalRow {
  int64_t step;
  std::string domain;  // a corpus domain, or "all"
  std::string mode;  // "default" (causal routing as in training) or "prompt" (prompt-only routing)
  int64_t tokens;
  double loss;
  double ppl;
};

struct RoutingStatRow {
  int64_t step;
  std::string mode;
  int64_t layer;
  std::string domain;
  int64_t expert;
  double weight_mean;     // mean routing weight of the expert over the domain's tokens
  double activated_frac;  // fraction of tokens whose weight on the expert exceeds 2/E
  int64_t tokens;         // tokens of the domain in this evaluation
};

// One layer's routing at one evaluation, over all domains (see core/routing_summary.h).
struct RoutingLayerRow {
  int64_t step;
  std::string mode;
  int64_t layer;
  int64_t experts;
  double entropy;          // mean per-token routing entropy, nats
  double load_imbalance;   // max / mean expert mass
  int64_t unused_experts;  // experts no token activated (weight > 2/E)
  double specialisation;   // I(domain; expert) / H(expert), 0..1
  int64_t tokens;
};

// One in-context task scored on a run's final checkpoint (`lory eval-tasks`; core/task_metrics.h).
struct TaskEvalRow {
  std::string task;         // the task file's name without .jsonl
  std::string routing;      // prompt | train | inference
  int64_t step = 0;         // the checkpoint's step
  std::string task_sha256;  // of the task file
  int64_t examples = 0;
  double chance = 0;
  double accuracy = 0, accuracy_stderr = 0;
  double accuracy_norm = 0,
         accuracy_norm_stderr = 0;  // stderr NaN (stored NULL) below two examples
  double gold_loss_per_token = 0;
  int64_t truncated = 0;  // choices whose context was cut to fit the model's context
};

class ResultsStore {
 public:
  static constexpr const char* kDefaultPath = "results/lory.sqlite";

  enum class Open { CreateIfMissing, MustExist };

  // A database path that passed the checks made before a store is opened for writing.
  class CheckedPath {
   public:
    const std::string& path() const { return path_; }

   private:
    friend class ResultsStore;
    explicit CheckedPath(std::string path) : path_(std::move(path)) {}
    std::string path_;
  };

  // What is at `path` checked read-only (see check_results_file), and whether this user can write
  // it: a folder, an empty file (under MustExist), another program's database or a newer lory's is
  // refused and left byte for byte as it was. For callers that must check before they do
  // something else first (the supervisor takes its lock between the check and the opening).
  static CheckedPath check(const std::string& path, Open open = Open::CreateIfMissing);

  // Opens for reading and writing, migrating an older lory schema forward.
  explicit ResultsStore(const CheckedPath& checked);
  // check(path, open), then the constructor above.
  explicit ResultsStore(const std::string& path, Open open = Open::CreateIfMissing);

  Database& database() { return db_; }

  // `included_files`: (absolute path, text) of every file the experiment file includes; they
  // replace the ones recorded before (experiment_files).
  int64_t upsert_experiment(
      const std::string& name, const std::string& file, const std::string& description,
      const std::string& source_text,
      const std::vector<std::pair<std::string, std::string>>& included_files = {});
  // The run of this cell in this experiment, registered as queued when new.
  int64_t ensure_run(int64_t experiment_id, const std::string& cell_hash, const std::string& label,
                     const std::string& config_json, int64_t seed);
  std::optional<RunRecord> find_run(int64_t run_id);
  std::vector<RunRecord> runs_of_experiment(const std::string& experiment_name);
  // A run by id, or by a unique prefix of its cell hash.
  RunRecord resolve_run(const std::string& id_or_hash_prefix);
  // The experiment file (absolute path) a run was registered from; relative paths of its config
  // are resolved against its folder.
  std::string experiment_file(const RunRecord& run);

  void mark_running(int64_t run_id, const std::string& code_version, const std::string& host,
                    int64_t total_steps, const std::string& corpus_checksum);
  void mark_finished(int64_t run_id, const std::string& status, const std::string& reason,
                     int64_t last_step);
  void set_run_attribute(int64_t run_id, const std::string& name, const std::string& value);
  std::optional<std::string> run_attribute(int64_t run_id, const std::string& name);

  void write_metrics(int64_t run_id, const std::vector<MetricRow>& rows);
  void write_evals(int64_t run_id, const std::vector<EvalRow>& rows);
  void write_routing_stats(int64_t run_id, const std::vector<RoutingStatRow>& rows);
  void write_routing_layer_stats(int64_t run_id, const std::vector<RoutingLayerRow>& rows);
  // All rows in one transaction; a row of the same run, task and routing is replaced.
  void write_task_evals(int64_t run_id, const std::vector<TaskEvalRow>& rows);
  // Rows written after `step` (by an interrupted attempt) are removed before a resumed run
  // writes them again, so no step is ever counted twice.
  void delete_rows_after(int64_t run_id, int64_t step);

 private:
  void migrate();

  Database db_;
};

// What is at a --db path, found without writing a byte: nothing yet, an empty file or an SQLite
// database without tables (nothing to lose: a store may be created in it), a lory results
// database of this schema version or an older one (migrated when opened for writing), or
// something that is not ours, which is a UserError saying what it is (a folder, not an SQLite
// file, another program's tables, a schema version newer than this lory's).
enum class ResultsFileState { Missing, Empty, Lory };
ResultsFileState check_results_file(const std::string& path);

// A read-only connection to an existing lory results database (status, query, report tables):
// the same checks as above, and "does not exist" when there is no file.
Database open_results_read_only(const std::string& path);

// Whether this user can write the database at `path` and its folder (writers need the journal
// files beside it).
bool results_file_writable(const std::string& path);

// Whether a database opened read-only already has this lory's schema (tables and views): an older
// one needs a migration, which needs write access.
bool results_schema_is_current(Database& db);

// Where a run keeps its checkpoints and worker logs, next to its database:
// <folder>/<database name>.runs/<experiment>/<run id>-<first 12 hex of the cell hash>.
std::string run_directory(const std::string& db_path, const RunRecord& run);
// The same layout under another runs folder (`--runs-dir`): <runs_dir>/<experiment>/<run>-<hash>.
std::string run_directory_under(const std::string& runs_dir, const RunRecord& run);
// The folder of reusable caches next to a database (batcher plans).
std::string cache_directory(const std::string& db_path);

// Host name and `git describe` of the source tree this binary was built from ("unknown" when
// not available).
std::string current_host();
std::string current_code_version();
std::string utc_now_iso8601();

}  // namespace lory
