// Tokenizing an in-context task file for one corpus's tokenizer (lory-data tokenize-tasks).
#pragma once

#include "core/tasks/task_file.h"
#include "core/tasks/tokenized_task.h"
#include "data_tool/tokenizer.h"

namespace lory::data {

// Each choice is scored as one sequence: the end-of-document token, then prompt text + choice
// encoded together (so the tokenizer sees the text as a reader would, with no artificial break
// before the choice). The choice's tokens are those after the longest common prefix of that
// encoding and the prompt text's own: where a token straddles the boundary it belongs to the
// choice. A choice that adds no token is an error naming its line.
TokenizedTask tokenize_task(const TaskFile& task, const Tokenizer& tokenizer,
                            const std::string& source);

}  // namespace lory::data
