// Multiple-choice accuracy of an in-context task from the log-likelihood of each choice, as
// common evaluation harnesses report it: `accuracy` picks the choice with the highest total
// log-likelihood, `accuracy_norm` the highest log-likelihood per UTF-8 byte of the choice text
// (so long choices are not penalised for their length). Ties go to the lower choice index. The
// standard errors are the sample standard deviation of the 0/1 outcomes over sqrt(examples).
#pragma once

#include <cstdint>
#include <vector>

namespace lory {

struct ChoiceScore {
  double log_likelihood = 0;  // sum over the choice's tokens, nats
  int64_t tokens = 0;
  int64_t bytes = 0;
};

struct TaskAccuracy {
  int64_t examples = 0;
  double accuracy = 0, accuracy_stderr = 0;
  double accuracy_norm = 0, accuracy_norm_stderr = 0;
  double chance = 0;  // mean of 1 / choices: what guessing scores
  double gold_loss_per_token =
      0;  // mean over examples of the gold choice's -log-likelihood per token
};

// scores[i] are example i's choices, gold[i] its correct one.
TaskAccuracy task_accuracy(const std::vector<std::vector<ChoiceScore>>& scores,
                           const std::vector<int64_t>& gold);

}  // namespace lory
