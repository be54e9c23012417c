#include "supervisor.h"

#include <fmt/format.h>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>

#include "core/results_store.h"
#include "core/text_table.h"
#include "trained_run.h"

namespace lory::cli {

void run_grid(const Experiment& experiment, const SupervisorOptions& options) {
  ResultsStore store(options.db_path);
  const int64_t experiment_id =
      store.upsert_experiment(experiment.name, std::filesystem::weakly_canonical(experiment.file).string(),
                             experiment.description, experiment.source_text);
  size_t done = 0, failed = 0, skipped = 0;
  for (size_t i = 0; i < experiment.cells.size(); ++i) {
    const ExperimentCell& cell = experiment.cells[i];
    const int64_t seed = cell.config.section("trainer").values.get_int("seed");
    const int64_t run_id = store.ensure_run(experiment_id, cell.identity, cell.label, cell.config.canonical_json(), seed);
    const RunRecord before = *store.find_run(run_id);
    if (before.status == run_status::kDone) {
      std::printf("[%zu/%zu] %s (run %lld): done already, skipped\n", i + 1, experiment.cells.size(),
                  cell.label.c_str(), static_cast<long long>(run_id));
      ++skipped;
      continue;
    }
    std::printf("[%zu/%zu] %s (run %lld, cell %s)\n", i + 1, experiment.cells.size(), cell.label.c_str(),
                static_cast<long long>(run_id), cell.identity.substr(0, 12).c_str());
    std::fflush(stdout);
    std::vector<std::string> arguments = {executable_dir() + "/lory-worker", "train",    "--db",
                                          options.db_path,     "--run-id", std::to_string(run_id),
                                          "--corpus",          experiment.corpus_path(cell.config)};
    for (const auto& p : options.plugin_path) {
      arguments.push_back("--plugin-path");
      arguments.push_back(p);
    }
    const std::string ending = run_program(arguments);
    const RunRecord after = *store.find_run(run_id);
    if (!ending.empty() && (after.status == run_status::kRunning || after.status == run_status::kQueued)) {
      // The worker died without recording why (crash, kill, out of memory): record it for it.
      store.mark_finished(run_id, run_status::kFailed, ending, after.last_step);
    }
    const RunRecord final_record = *store.find_run(run_id);
    if (final_record.status == run_status::kDone) {
      ++done;
    } else {
      ++failed;
      std::fprintf(stderr, "  run %lld %s at step %lld: %s\n", static_cast<long long>(run_id),
                   final_record.status.c_str(), static_cast<long long>(final_record.last_step),
                   final_record.reason.c_str());
    }
  }
  std::printf("\n%zu trained, %zu skipped (done before), %zu not done\n\n", done, skipped, failed);
  std::printf("%s", perplexity_table(options.db_path, experiment.name).c_str());
  if (failed > 0) throw UserError(fmt::format("{} cell{} of '{}' did not finish; see `lory query \"SELECT id, label, "
                                              "status, reason FROM runs\" --db {}`",
                                              failed, failed == 1 ? "" : "s", experiment.name, options.db_path));
}

std::string perplexity_table(const std::string& db_path, const std::string& experiment_name) {
  Database db(db_path, Database::Mode::ReadOnly);
  Statement s = db.prepare(
      "SELECT r.id, r.label, r.status, v.domain, v.ppl, v.step FROM runs r JOIN experiments x ON x.id = "
      "r.experiment_id JOIN evals v ON v.run_id = r.id AND v.mode = 'default' AND v.step = (SELECT max(step) "
      "FROM evals WHERE run_id = r.id AND mode = 'default') WHERE x.name = ? ORDER BY r.id, v.domain");
  s.bind(1, experiment_name);
  std::map<int64_t, std::map<std::string, double>> ppl;
  std::map<int64_t, std::pair<std::string, int64_t>> label_step;
  std::set<std::string> domains;
  while (s.step()) {
    const int64_t run = s.column_int(0);
    label_step[run] = {s.column_text(1), s.column_int(5)};
    domains.insert(s.column_text(3));
    ppl[run][s.column_text(3)] = s.column_double(4);
  }
  if (ppl.empty()) return "no evaluations recorded yet\n";
  std::vector<std::string> header = {"run", "label", "step"};
  std::vector<std::string> ordered;
  for (const auto& d : domains) {
    if (d != "all") ordered.push_back(d);
  }
  if (domains.count("all")) ordered.push_back("all");
  header.insert(header.end(), ordered.begin(), ordered.end());
  TextTable table(header);
  for (const auto& [run, by_domain] : ppl) {
    std::vector<std::string> row = {std::to_string(run), label_step[run].first, std::to_string(label_step[run].second)};
    for (const auto& d : ordered) {
      auto it = by_domain.find(d);
      row.push_back(it == by_domain.end() ? "-" : fmt::format("{:.2f}", it->second));
    }
    table.add_row(std::move(row));
  }
  return "held-out perplexity per domain (final evaluation):\n" + table.render("  ");
}

}  // namespace lory::cli
