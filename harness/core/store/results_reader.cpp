#include "core/store/results_reader.h"

namespace lory {

namespace {

double nullable(Statement& s, int column) {
  return s.column_type(column) == SQLITE_NULL ? NAN : s.column_double(column);
}

}  // namespace

std::vector<std::string> ordered_domains(const std::set<std::string>& domains) {
  std::vector<std::string> out;
  for (const auto& d : domains) {
    if (d != "all") out.push_back(d);
  }
  if (domains.count("all")) out.push_back("all");
  return out;
}

std::map<std::string, std::map<std::string, int64_t>> ResultsReader::status_counts() {
  Statement s = db_.prepare(
      "SELECT x.name, r.status, count(*) FROM experiments x LEFT JOIN runs r ON r.experiment_id = "
      "x.id GROUP BY "
      "x.name, r.status ORDER BY x.name");
  std::map<std::string, std::map<std::string, int64_t>> counts;
  while (s.step()) counts[s.column_text(0)][s.column_text(1)] = s.column_int(2);
  return counts;
}

std::vector<RunProgress> ResultsReader::run_progress(const std::string& experiment) {
  Statement s = db_.prepare(
      "SELECT r.id, r.label, r.status, r.last_step, r.total_steps, r.config, r.reason, "
      "(SELECT value FROM metrics WHERE run_id = r.id AND name = 'train/loss' ORDER BY step DESC "
      "LIMIT 1), "
      "(SELECT value FROM metrics WHERE run_id = r.id AND name = 'train/tokens_per_s' ORDER BY "
      "step DESC LIMIT 1), "
      "r.cell_hash, r.worker_pid, r.host, r.heartbeat_at, "
      "(SELECT value FROM run_attributes WHERE run_id = r.id AND name = 'worker_start') "
      "FROM runs r JOIN experiments x ON x.id = r.experiment_id WHERE x.name = ? ORDER BY r.id");
  s.bind(1, experiment);
  std::vector<RunProgress> runs;
  while (s.step()) {
    RunProgress p;
    p.id = s.column_int(0);
    p.label = s.column_text(1);
    p.status = s.column_text(2);
    p.last_step = s.column_int(3);
    p.total_steps = s.column_int(4);
    p.config_json = s.column_text(5);
    p.reason = s.column_text(6);
    if (s.column_type(7) != SQLITE_NULL) p.last_loss = s.column_double(7);
    if (s.column_type(8) != SQLITE_NULL) p.last_tokens_per_s = s.column_double(8);
    p.cell_hash = s.column_text(9);
    if (s.column_type(10) != SQLITE_NULL) p.worker_pid = s.column_int(10);
    if (s.column_type(11) != SQLITE_NULL) p.host = s.column_text(11);
    if (s.column_type(12) != SQLITE_NULL) p.heartbeat_at = s.column_text(12);
    if (s.column_type(13) != SQLITE_NULL) p.worker_start = s.column_text(13);
    runs.push_back(std::move(p));
  }
  return runs;
}

std::vector<FinalEval> ResultsReader::final_evals(const std::string& experiment) {
  Statement s = db_.prepare(
      "SELECT r.id, r.label, r.cell_hash, v.domain, v.ppl, v.step FROM runs r JOIN experiments x "
      "ON x.id = "
      "r.experiment_id JOIN evals v ON v.run_id = r.id AND v.mode = 'default' AND v.step = (SELECT "
      "max(step) "
      "FROM evals WHERE run_id = r.id AND mode = 'default') WHERE x.name = ? ORDER BY r.id, "
      "v.domain");
  s.bind(1, experiment);
  std::vector<FinalEval> rows;
  while (s.step()) {
    rows.push_back({s.column_int(0), s.column_int(5), s.column_text(1), s.column_text(2),
                    s.column_text(3), s.column_double(4)});
  }
  return rows;
}

std::vector<RunCell> ResultsReader::run_cells(const std::string& experiment) {
  Statement s = db_.prepare(
      "SELECT run_id, label, group_label, router, batcher, status, seed, is_dense_baseline FROM "
      "run_cells WHERE "
      "experiment = ? ORDER BY NOT is_dense_baseline, group_label, seed");
  s.bind(1, experiment);
  std::vector<RunCell> runs;
  while (s.step()) {
    runs.push_back({s.column_int(0), s.column_text(1), s.column_text(2), s.column_text(3),
                    s.column_text(4), s.column_text(5), s.column_int(6), s.column_int(7) != 0});
  }
  return runs;
}

std::optional<std::string> ResultsReader::experiment_of_file(const std::string& absolute_path) {
  Statement s = db_.prepare("SELECT name FROM experiments WHERE file = ?");
  s.bind(1, absolute_path);
  if (!s.step()) return std::nullopt;
  return s.column_text(0);
}

std::string ResultsReader::experiment_description(const std::string& experiment) {
  Statement s = db_.prepare("SELECT description FROM experiments WHERE name = ?");
  s.bind(1, experiment);
  return s.step() ? s.column_text(0) : "";
}

std::vector<OverSeeds> ResultsReader::over_seeds(const std::string& sql,
                                                 const std::string& experiment,
                                                 const std::string& mode) {
  Statement s = db_.prepare(sql);
  s.bind(1, experiment).bind(2, mode);
  std::vector<OverSeeds> rows;
  while (s.step())
    rows.push_back(
        {s.column_text(0), s.column_text(1), s.column_double(2), nullable(s, 3), s.column_int(4)});
  return rows;
}

std::vector<OverSeeds> ResultsReader::perplexity_over_seeds(const std::string& experiment,
                                                            const std::string& mode) {
  return over_seeds(
      "SELECT group_label, domain, ppl_mean, ppl_std, n FROM final_evals_over_seeds WHERE "
      "experiment = ? AND mode = ?",
      experiment, mode);
}

std::vector<OverSeeds> ResultsReader::improvement_over_seeds(const std::string& experiment,
                                                             const std::string& mode) {
  return over_seeds(
      "SELECT group_label, domain, improvement_mean, improvement_std, n FROM "
      "moe_vs_dense_over_seeds WHERE experiment "
      "= ? AND mode = ?",
      experiment, mode);
}

std::vector<TaskOverSeeds> ResultsReader::tasks_over_seeds(const std::string& experiment) {
  Statement s = db_.prepare(
      "SELECT group_label, task, routing, examples, chance, accuracy_mean, accuracy_std, "
      "accuracy_norm_mean, "
      "accuracy_norm_std, accuracy_stderr_mean, n FROM task_evals_over_seeds WHERE experiment = ? "
      "ORDER BY task, "
      "routing");
  s.bind(1, experiment);
  std::vector<TaskOverSeeds> rows;
  while (s.step()) {
    TaskOverSeeds row;
    row.group_label = s.column_text(0);
    row.task = s.column_text(1);
    row.routing = s.column_text(2);
    row.examples = s.column_int(3);
    row.chance = s.column_double(4);
    row.accuracy = s.column_double(5);
    row.accuracy_std = nullable(s, 6);
    row.accuracy_norm = s.column_double(7);
    row.accuracy_norm_std = nullable(s, 8);
    row.accuracy_stderr = nullable(s, 9);
    row.n = s.column_int(10);
    rows.push_back(std::move(row));
  }
  return rows;
}

std::map<int64_t, int64_t> ResultsReader::paired_baselines(const std::string& experiment) {
  Statement s = db_.prepare(
      "SELECT m.run_id, d.run_id FROM run_cells m JOIN run_cells d ON d.experiment = m.experiment "
      "AND "
      "d.is_dense_baseline AND d.baseline_key = m.baseline_key WHERE m.experiment = ?");
  s.bind(1, experiment);
  std::map<int64_t, int64_t> pairs;
  while (s.step()) pairs[s.column_int(0)] = s.column_int(1);
  return pairs;
}

Curve ResultsReader::metric_against_tokens(int64_t run, const std::string& metric) {
  Statement s = db_.prepare(
      "SELECT t.value, m.value FROM metrics m JOIN metrics t ON t.run_id = m.run_id AND t.step = "
      "m.step AND t.name = "
      "'train/tokens' WHERE m.run_id = ? AND m.name = ? ORDER BY m.step");
  s.bind(1, run).bind(2, metric);
  Curve points;
  while (s.step()) points.emplace_back(s.column_double(0), s.column_double(1));
  return points;
}

Curve ResultsReader::held_out_loss(int64_t run) {
  Statement s = db_.prepare(
      "SELECT step, loss FROM evals WHERE run_id = ? AND domain = 'all' AND mode = 'default' ORDER "
      "BY step");
  s.bind(1, run);
  Curve points;
  while (s.step()) points.emplace_back(s.column_double(0), s.column_double(1));
  return points;
}

Curve ResultsReader::held_out_loss_against_tokens(int64_t run) {
  Statement s = db_.prepare(
      "SELECT e.step * json_extract(r.config, '$.trainer.batch_size') * "
      "json_extract(r.config, '$.model.context_length'), e.loss FROM evals e JOIN runs r ON r.id = "
      "e.run_id WHERE e.run_id = ? AND e.domain = 'all' AND e.mode = 'default' ORDER BY e.step");
  s.bind(1, run);
  Curve points;
  while (s.step()) points.emplace_back(s.column_double(0), s.column_double(1));
  return points;
}

std::map<int64_t, std::string> ResultsReader::run_configs(const std::string& experiment) {
  Statement s = db_.prepare(
      "SELECT r.id, r.config FROM runs r JOIN experiments e ON e.id = r.experiment_id WHERE e.name "
      "= ? ORDER BY r.id");
  s.bind(1, experiment);
  std::map<int64_t, std::string> configs;
  while (s.step()) configs[s.column_int(0)] = s.column_text(1);
  return configs;
}

std::optional<double> ResultsReader::mean_tokens_per_s(int64_t run) {
  Statement s = db_.prepare(
      "SELECT avg(value) FROM metrics WHERE run_id = ? AND name = 'train/tokens_per_s' AND step > "
      "(SELECT min(step) "
      "FROM metrics WHERE run_id = ? AND name = 'train/tokens_per_s')");
  s.bind(1, run).bind(2, run);
  if (!s.step() || s.column_type(0) == SQLITE_NULL) return std::nullopt;
  return s.column_double(0);
}

std::vector<BaselinePair> ResultsReader::evaluated_pairs(const std::string& experiment) {
  Statement s = db_.prepare(
      "SELECT DISTINCT run_id, label, dense_run_id FROM moe_vs_dense WHERE experiment = ? ORDER BY "
      "run_id");
  s.bind(1, experiment);
  std::vector<BaselinePair> pairs;
  while (s.step()) pairs.push_back({s.column_int(0), s.column_int(2), s.column_text(1)});
  return pairs;
}

std::vector<LayerRouting> ResultsReader::layer_routing(int64_t run) {
  Statement s = db_.prepare(
      "SELECT layer, experts, entropy, specialisation, load_imbalance, unused_experts FROM "
      "routing_layer_stats WHERE "
      "run_id = ? AND mode = 'default' AND step = (SELECT max(step) FROM routing_layer_stats WHERE "
      "run_id = ?) ORDER "
      "BY layer");
  s.bind(1, run).bind(2, run);
  std::vector<LayerRouting> layers;
  while (s.step()) {
    LayerRouting l;
    l.layer = s.column_int(0);
    l.experts = s.column_int(1);
    l.entropy = s.column_double(2);
    l.specialisation = s.column_double(3);
    l.load_imbalance = s.column_double(4);
    l.unused_experts = s.column_int(5);
    layers.push_back(l);
  }
  return layers;
}

ExpertDomainMatrix ResultsReader::expert_domain_matrix(int64_t run, int64_t layer) {
  Statement s = db_.prepare(
      "SELECT domain, expert, weight_mean FROM expert_domain_matrix WHERE run_id = ? AND mode = "
      "'default' AND layer = ? "
      "ORDER BY domain, expert");
  s.bind(1, run).bind(2, layer);
  ExpertDomainMatrix matrix;
  while (s.step()) {
    if (matrix.domains.empty() || matrix.domains.back() != s.column_text(0)) {
      matrix.domains.push_back(s.column_text(0));
      matrix.weight_DE.emplace_back();
    }
    matrix.weight_DE.back().push_back(s.column_double(2));
  }
  return matrix;
}

int64_t ResultsReader::expert_count(int64_t run) {
  Statement s = db_.prepare("SELECT max(expert) + 1 FROM routing_stats WHERE run_id = ?");
  s.bind(1, run);
  return s.step() && s.column_type(0) != SQLITE_NULL ? s.column_int(0) : 0;
}

}  // namespace lory
