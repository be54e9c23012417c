#include "core/store/run_tables.h"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

namespace lory {

const std::vector<RunTable>& run_tables() {
  static const std::vector<RunTable> tables = {
      {"metrics", "step, name, value", true},
      {"evals", "step, mode, domain, tokens, loss, ppl", true},
      {"routing_stats", "step, mode, layer, domain, expert, weight_mean, activated_frac, tokens",
       true},
      {"routing_layer_stats",
       "step, mode, layer, experts, entropy, load_imbalance, unused_experts, specialisation, "
       "tokens",
       true},
      {"run_attributes", "name, value", false},
      // Scored on a done run's final checkpoint (`step` names it): never an interrupted attempt's.
      {"task_evals",
       "task, routing, step, task_sha256, examples, chance, accuracy, accuracy_stderr, "
       "accuracy_norm, "
       "accuracy_norm_stderr, gold_loss_per_token, truncated, evaluated_at, code_version",
       false},
  };
  return tables;
}

const RunTable& run_table(const std::string& name) {
  const auto& tables = run_tables();
  const auto it =
      std::find_if(tables.begin(), tables.end(), [&](const RunTable& t) { return name == t.name; });
  if (it == tables.end()) throw std::logic_error("no run table named " + name);
  return *it;
}

std::string insert_or_replace_sql(const RunTable& table) {
  const std::string columns = table.columns;
  const size_t count = static_cast<size_t>(std::count(columns.begin(), columns.end(), ',')) + 1;
  std::string placeholders = "?";
  for (size_t i = 0; i < count; ++i) placeholders += ", ?";
  return fmt::format("INSERT OR REPLACE INTO {} (run_id, {}) VALUES ({})", table.name, columns,
                     placeholders);
}

}  // namespace lory
