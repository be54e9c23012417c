// A task file tokenized by lory-data for one corpus's tokenizer, as lory-worker reads it: the only
// hand-over between the two processes (SentencePiece and LibTorch never share one). JSONL: a
// header line {"task", "sha256", "source", "examples"}, then one line per example
// {"line", "gold", "choices": [{"ids", "context", "bytes"}]}.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

namespace lory {

struct TokenizedChoice {
  // The whole scored sequence: the end-of-document token (an example starts as a document does
  // in training), the prompt text and the choice. ids[0, context) condition, ids[context, end)
  // are the choice's tokens, whose log-likelihood is its score.
  std::vector<int64_t> ids;
  int64_t context = 0;
  int64_t bytes = 0;  // UTF-8 bytes of the choice text: the length normalisation
};

struct TokenizedExample {
  int64_t line = 0;  // in the task file
  int64_t gold = 0;
  std::vector<TokenizedChoice> choices;
};

struct TokenizedTask {
  std::string name, sha256, source;
  std::vector<TokenizedExample> examples;
};

void write_tokenized_task(std::ostream& out, const TokenizedTask& task);
// Checks every id against `vocab_size` (a task tokenized for another corpus is refused).
TokenizedTask read_tokenized_task(const std::string& path, int64_t vocab_size);

}  // namespace lory
