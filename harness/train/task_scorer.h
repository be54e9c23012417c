// Scores an in-context task with a trained model (`lory eval-tasks`): the log-likelihood of every
// choice's tokens after its context, one forward per choice.
#pragma once

#include <functional>

#include <torch/torch.h>

#include "core/tasks/task_metrics.h"
#include "core/tasks/tokenized_task.h"
#include "lory/nn/model_api.h"

namespace lory {

struct ScoredTask {
  std::vector<std::vector<ChoiceScore>> scores;  // [example][choice]
  std::vector<int64_t> gold;
  int64_t truncated = 0;  // choices whose context lost its first tokens to fit the model's context
};

// `routing.rule` applies to every choice with the choice's context as the prompt (under Prompt,
// Lory merges each layer's experts once from the context and scores the choice with that FFN;
// routing.prompt_length is ignored). A sequence longer than context_length + 1 tokens loses
// tokens from the start of its context; a choice too long to keep one context token is a
// UserError naming the task file line.
// `progress`, when given, is called with the number of examples scored so far after each one.
ScoredTask score_task(LanguageModel& model, const TokenizedTask& task, int64_t context_length,
                      EvalRouting::Rule rule, const std::function<void(int64_t)>& progress = {});

}  // namespace lory
