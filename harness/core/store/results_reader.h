// The read side of the results store: typed queries on its views, for `lory report` and anything
// else that shows results, so that the SQL behind a number lives in one place
// (docs/results-schema.md has the views themselves).
#pragma once

#include <cmath>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/store/sqlite_db.h"

namespace lory {

// A run with the keys that group and pair it (view run_cells).
struct RunCell {
  int64_t id = 0;
  std::string label, group_label, router, batcher, status;
  int64_t seed = 0;
  bool dense_baseline = false;  // its router declares the dense_baseline role
};

// One cell group's value for one key (a domain), over its seeds.
struct OverSeeds {
  std::string group_label, key;
  double mean = 0, std = NAN;  // std: sample standard deviation, NAN below two seeds
  int64_t n = 0;
};

// One cell group's accuracy on one task file under one routing rule (view task_evals_over_seeds).
struct TaskOverSeeds {
  std::string group_label, task, routing;
  int64_t examples = 0, n = 0;
  double chance = 0;
  double accuracy = 0, accuracy_std = NAN, accuracy_norm = 0, accuracy_norm_std = NAN;
  double accuracy_stderr = NAN;  // mean over seeds of one run's binomial standard error
};

// One layer's routing summary at a run's last evaluation (view of routing_layer_stats).
struct LayerRouting {
  int64_t layer = 0, experts = 0, unused_experts = 0;
  double entropy = 0, specialisation = 0, load_imbalance = 0;
};

// Mean routing weight of every expert per domain, for one layer of a run's last evaluation.
struct ExpertDomainMatrix {
  std::vector<std::string> domains;
  std::vector<std::vector<double>> weight_DE;  // [domain][expert]
};

// A run paired with its dense-baseline run (view moe_vs_dense).
struct BaselinePair {
  int64_t run_id = 0, baseline_run_id = 0;
  std::string label;
};

// A run's progress as `lory status` shows it.
struct RunProgress {
  int64_t id = 0;
  std::string cell_hash, label, status, config_json, reason;
  int64_t last_step = 0, total_steps = 0;
  std::optional<double> last_loss, last_tokens_per_s;  // the last logged training metrics
  // Who trains it (status running): the recorded worker, for the liveness check of `lory status`.
  int64_t worker_pid = 0;
  std::string host, heartbeat_at, worker_start;
};

// The final evaluation of a run for one domain (default routing).
struct FinalEval {
  int64_t run_id = 0, step = 0;
  std::string label, cell_hash, domain;
  double ppl = 0;
};

using Curve = std::vector<std::pair<double, double>>;

// Domains in table order: sorted, with "all" last.
std::vector<std::string> ordered_domains(const std::set<std::string>& domains);

class ResultsReader {
 public:
  explicit ResultsReader(Database& db) : db_(db) {}

  // experiment -> status -> runs (an experiment without runs has one entry with status "").
  std::map<std::string, std::map<std::string, int64_t>> status_counts();
  std::vector<RunProgress> run_progress(const std::string& experiment);  // by run id
  std::vector<FinalEval> final_evals(const std::string& experiment);     // by run id and domain

  // Dense baselines first, then by group label and seed.
  std::vector<RunCell> run_cells(const std::string& experiment);
  // The experiment registered from this file (absolute path), if any.
  std::optional<std::string> experiment_of_file(const std::string& absolute_path);
  std::string experiment_description(const std::string& experiment);

  // Final held-out perplexity per domain, and the paired improvement over the dense baseline.
  std::vector<OverSeeds> perplexity_over_seeds(const std::string& experiment,
                                               const std::string& mode);
  std::vector<OverSeeds> improvement_over_seeds(const std::string& experiment,
                                                const std::string& mode);
  std::vector<TaskOverSeeds> tasks_over_seeds(const std::string& experiment);

  // Each run of the experiment and the dense-baseline run that shares everything else with it.
  std::map<int64_t, int64_t> paired_baselines(const std::string& experiment);
  // A metric against cumulative training tokens; held-out loss (all domains, default routing)
  // against steps; mean training tokens/s without the first logged interval (start-up).
  Curve metric_against_tokens(int64_t run, const std::string& metric);
  Curve held_out_loss(int64_t run);
  // Held-out loss (all domains, default routing) against training tokens: each evaluation's step
  // times the run's tokens per step (trainer.batch_size x model.context_length).
  Curve held_out_loss_against_tokens(int64_t run);
  // The stored config (canonical JSON) of every run of the experiment, by run id.
  std::map<int64_t, std::string> run_configs(const std::string& experiment);
  std::optional<double> mean_tokens_per_s(int64_t run);
  // Runs with evaluations paired with their baseline's (moe_vs_dense), by run id.
  std::vector<BaselinePair> evaluated_pairs(const std::string& experiment);

  // Routing at the run's last evaluation, default mode.
  std::vector<LayerRouting> layer_routing(int64_t run);
  ExpertDomainMatrix expert_domain_matrix(int64_t run, int64_t layer);
  // Experts of the run's routed layers (0 when it has no routing statistics).
  int64_t expert_count(int64_t run);

 private:
  std::vector<OverSeeds> over_seeds(const std::string& sql, const std::string& experiment,
                                    const std::string& mode);

  Database& db_;
};

}  // namespace lory
