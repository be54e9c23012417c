#include "data_tool/task_tokenization.h"

#include <fmt/format.h>

#include "core/support/diagnostics.h"

namespace lory::data {

TokenizedTask tokenize_task(const TaskFile& task, const Tokenizer& tokenizer,
                            const std::string& source) {
  TokenizedTask out;
  out.name = task.name;
  out.sha256 = task.sha256;
  out.source = source;
  const int64_t eod = tokenizer.eod_id();
  for (const TaskExample& example : task.examples) {
    TokenizedExample tokenized;
    tokenized.line = example.line;
    tokenized.gold = example.gold;
    const std::vector<uint32_t> prompt_ids = tokenizer.encode(example.prompt_text);
    for (const std::string& choice : example.choices) {
      const std::vector<uint32_t> full_ids = tokenizer.encode(example.prompt_text + choice);
      size_t common = 0;
      while (common < prompt_ids.size() && common < full_ids.size() &&
             prompt_ids[common] == full_ids[common])
        ++common;
      if (common == full_ids.size()) {
        throw UserError(fmt::format(
            "task file '{}', line {}: the choice \"{}\" adds no token after the context", source,
            example.line, choice));
      }
      TokenizedChoice c;
      c.ids.reserve(full_ids.size() + 1);
      c.ids.push_back(eod);
      c.ids.insert(c.ids.end(), full_ids.begin(), full_ids.end());
      c.context = static_cast<int64_t>(common) + 1;
      c.bytes = static_cast<int64_t>(choice.size());
      tokenized.choices.push_back(std::move(c));
    }
    out.examples.push_back(std::move(tokenized));
  }
  return out;
}

}  // namespace lory::data
