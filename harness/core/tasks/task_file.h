// In-context task files (`lory eval-tasks`, docs/inference.md "In-context tasks"): JSONL, one
// multiple-choice example per line, scored by the log-likelihood of each choice after the context.
//
//   {"context": "...", "choices": [" a", " b", ...], "gold": 1,
//    "few_shot": [{"context": "...", "answer": "..."}, ...]}      (few_shot optional)
//
// The text before a choice is every few-shot example's context + answer followed by a blank line
// ("\n\n"), then the context; the choice is appended as written (give it its leading space).
// Blank lines are skipped; anything else that is not such an object is an error naming the line.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lory {

struct TaskExample {
  int64_t line = 0;         // 1-based line in the file, for messages
  std::string prompt_text;  // few-shot examples and the context, as scored
  std::vector<std::string> choices;
  int64_t gold = 0;
  int64_t few_shot = 0;  // number of few-shot examples in prompt_text
};

struct TaskFile {
  std::string name;    // the file name without .jsonl
  std::string sha256;  // of the file's bytes: a changed file is a different task
  std::vector<TaskExample> examples;
};

// A task's name: its file's name without .jsonl (rows in task_evals are keyed by it).
std::string task_name_of(const std::string& path);

// Reads and checks a whole task file; a UserError names the file, the line and what to fix (an
// empty file, a line that is not JSON, a missing or mistyped field, fewer than two choices, an
// empty choice, a gold index out of range).
TaskFile read_task_file(const std::string& path);

// What follows each few-shot example's answer in the prompt text.
inline constexpr const char* kFewShotSeparator = "\n\n";

}  // namespace lory
