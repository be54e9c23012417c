#include "lory/core/routing_summary.h"

#include <algorithm>
#include <cmath>

namespace lory {

namespace {

std::vector<double> expert_totals(const std::vector<std::vector<double>>& mass_DE) {
  std::vector<double> totals;
  for (const auto& row : mass_DE) {
    if (totals.size() < row.size()) totals.resize(row.size(), 0.0);
    for (size_t e = 0; e < row.size(); ++e) totals[e] += row[e];
  }
  return totals;
}

}  // namespace

double specialisation_score(const std::vector<std::vector<double>>& mass_DE) {
  double total = 0;
  for (const auto& row : mass_DE) {
    for (double m : row) total += m;
  }
  if (total <= 0) return 0;
  const std::vector<double> p_E = expert_totals(mass_DE);
  double entropy_E = 0;
  for (double m : p_E) {
    const double p = m / total;
    if (p > 0) entropy_E -= p * std::log(p);
  }
  if (entropy_E <= 1e-12) return 0;
  double mutual_information = 0;
  for (const auto& row : mass_DE) {
    double p_d = 0;
    for (double m : row) p_d += m / total;
    for (size_t e = 0; e < row.size(); ++e) {
      const double p_de = row[e] / total;
      if (p_de > 0) mutual_information += p_de * std::log(p_de / (p_d * (p_E[e] / total)));
    }
  }
  return std::clamp(mutual_information / entropy_E, 0.0, 1.0);
}

double load_imbalance(const std::vector<std::vector<double>>& mass_DE) {
  return load_imbalance(expert_totals(mass_DE));
}

double load_imbalance(const std::vector<double>& load_E) {
  if (load_E.empty()) return 0;
  double sum = 0, largest = 0;
  for (double m : load_E) {
    sum += m;
    largest = std::max(largest, m);
  }
  return sum > 0 ? largest / (sum / static_cast<double>(load_E.size())) : 0;
}

}  // namespace lory

namespace lory {

double max_violation(const std::vector<double>& load_E) {
  const double imbalance = load_imbalance(load_E);
  return imbalance > 0 ? imbalance - 1 : 0;
}

double relative_load_percentile(const std::vector<double>& load_E, double percent) {
  if (load_E.empty()) return 0;
  double sum = 0;
  for (double m : load_E) sum += m;
  if (sum <= 0) return 0;
  std::vector<double> sorted = load_E;
  std::sort(sorted.begin(), sorted.end());
  // Linear interpolation between closest ranks (numpy's default).
  const double rank =
      std::clamp(percent, 0.0, 100.0) / 100.0 * static_cast<double>(sorted.size() - 1);
  const size_t below = static_cast<size_t>(std::floor(rank));
  const size_t above = std::min(below + 1, sorted.size() - 1);
  const double value =
      sorted[below] + (rank - static_cast<double>(below)) * (sorted[above] - sorted[below]);
  return value / (sum / static_cast<double>(sorted.size()));
}

}  // namespace lory
