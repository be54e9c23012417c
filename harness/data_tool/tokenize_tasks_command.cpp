// `lory-data tokenize-tasks`: check an in-context task file (JSONL) and tokenize it for
// `lory-worker eval-tasks`.
#include <fmt/format.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "core/support/diagnostics.h"
#include "core/tasks/task_file.h"
#include "data_tool/commands.h"
#include "data_tool/task_tokenization.h"
#include "data_tool/tokenizer_choice.h"

namespace lory::data {

void add_tokenize_tasks_command(CLI::App& app) {
  auto tokenizer = std::make_shared<TokenizerChoice>();
  auto tasks_file = std::make_shared<std::string>();
  auto out_file = std::make_shared<std::string>();
  CLI::App* tasks_cmd = app.add_subcommand(
      "tokenize-tasks",
      "Check an in-context task file (JSONL) and tokenize it for lory-worker eval-tasks");
  tokenizer->add_options(tasks_cmd);
  tasks_cmd
      ->add_option("--tasks", *tasks_file, "Task file (docs/inference.md, \"In-context tasks\")")
      ->required();
  tasks_cmd->add_option("--out", *out_file, "Output file (default: standard output)");
  tasks_cmd->callback([tokenizer, tasks_file, out_file] {
    const TokenizedTask tokenized =
        tokenize_task(read_task_file(*tasks_file), *tokenizer->load(), *tasks_file);
    if (out_file->empty()) {
      std::ostringstream text;
      write_tokenized_task(text, tokenized);
      std::fwrite(text.str().data(), 1, text.str().size(), stdout);
    } else {
      std::ofstream out(*out_file, std::ios::binary);
      write_tokenized_task(out, tokenized);
      if (!out.flush()) throw UserError(fmt::format("cannot write '{}'", *out_file));
    }
  });
}

}  // namespace lory::data
