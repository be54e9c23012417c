#include "core/tasks/task_metrics.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace lory {

namespace {

size_t best_choice(const std::vector<ChoiceScore>& choices, bool per_byte) {
  size_t best = 0;
  double best_value = -INFINITY;
  for (size_t c = 0; c < choices.size(); ++c) {
    const double value = per_byte ? choices[c].log_likelihood /
                                        static_cast<double>(std::max<int64_t>(1, choices[c].bytes))
                                  : choices[c].log_likelihood;
    if (value > best_value) best = c, best_value = value;  // strict: a tie keeps the lower index
  }
  return best;
}

// Sample standard deviation of n 0/1 outcomes with mean p, over sqrt(n).
double standard_error(double p, int64_t n) {
  if (n < 2) return NAN;
  const double nd = static_cast<double>(n);
  return std::sqrt(p * (1 - p) * nd / (nd - 1) / nd);
}

}  // namespace

TaskAccuracy task_accuracy(const std::vector<std::vector<ChoiceScore>>& scores,
                           const std::vector<int64_t>& gold) {
  if (scores.size() != gold.size())
    throw std::invalid_argument("task_accuracy: one gold index per example");
  TaskAccuracy result;
  result.examples = static_cast<int64_t>(scores.size());
  if (scores.empty()) return result;
  double correct = 0, correct_norm = 0, chance = 0, gold_loss = 0;
  for (size_t i = 0; i < scores.size(); ++i) {
    const auto g = static_cast<size_t>(gold[i]);
    if (g >= scores[i].size())
      throw std::invalid_argument("task_accuracy: gold index out of range");
    correct += best_choice(scores[i], false) == g;
    correct_norm += best_choice(scores[i], true) == g;
    chance += 1.0 / static_cast<double>(scores[i].size());
    gold_loss += -scores[i][g].log_likelihood /
                 static_cast<double>(std::max<int64_t>(1, scores[i][g].tokens));
  }
  const double n = static_cast<double>(scores.size());
  result.accuracy = correct / n;
  result.accuracy_norm = correct_norm / n;
  result.accuracy_stderr = standard_error(result.accuracy, result.examples);
  result.accuracy_norm_stderr = standard_error(result.accuracy_norm, result.examples);
  result.chance = chance / n;
  result.gold_loss_per_token = gold_loss / n;
  return result;
}

}  // namespace lory
