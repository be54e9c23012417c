// `lory-data encode`: text to token ids (space-separated, one line).
#include <fmt/format.h>

#include <cstdio>

#include "data_tool/commands.h"
#include "data_tool/tokenizer_choice.h"

namespace lory::data {

void add_encode_command(CLI::App& app) {
  auto tokenizer = std::make_shared<TokenizerChoice>();
  auto text_file = std::make_shared<std::string>();
  CLI::App* encode_cmd =
      app.add_subcommand("encode", "Text -> token ids (space-separated, one line)");
  tokenizer->add_options(encode_cmd);
  encode_cmd->add_option("--text", *text_file, "Text file (default: standard input)");
  encode_cmd->callback([tokenizer, text_file] {
    const auto ids = tokenizer->load()->encode(read_input(*text_file));
    std::string line;
    for (size_t i = 0; i < ids.size(); ++i) line += (i ? " " : "") + std::to_string(ids[i]);
    std::printf("%s\n", line.c_str());
  });
}

}  // namespace lory::data
