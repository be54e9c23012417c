#include "data_tool/tokenizer_choice.h"

#include <fmt/format.h>

#include <fstream>
#include <iostream>
#include <sstream>

#include "core/support/diagnostics.h"

namespace lory::data {

std::unique_ptr<Tokenizer> TokenizerChoice::load() const {
  if (!corpus.empty()) return load_corpus_tokenizer(corpus);
  if (!model.empty()) return load_sentencepiece(model);
  if (byte) return make_byte_tokenizer();
  throw UserError("choose a tokenizer: --corpus DIR, --tokenizer-model FILE or --byte");
}

void TokenizerChoice::add_options(CLI::App* cmd) {
  auto* c = cmd->add_option("--corpus", corpus, "Use the tokenizer of this prepared corpus");
  auto* m =
      cmd->add_option("--tokenizer-model", model, "Use this SentencePiece model")->excludes(c);
  cmd->add_flag("--byte", byte, "Use the byte-level tokenizer")->excludes(c)->excludes(m);
}

std::string read_input(const std::string& path) {
  std::stringstream buffer;
  if (path.empty() || path == "-") {
    buffer << std::cin.rdbuf();
  } else {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw UserError(fmt::format("cannot read '{}'", path));
    buffer << in.rdbuf();
  }
  return buffer.str();
}

std::vector<uint32_t> parse_ids(const std::string& text) {
  std::istringstream in(text);
  std::vector<uint32_t> ids;
  std::string word;
  while (in >> word) {
    try {
      ids.push_back(static_cast<uint32_t>(std::stoul(word)));
    } catch (const std::exception&) {
      throw UserError(fmt::format("'{}' is not a token id", word));
    }
  }
  return ids;
}

}  // namespace lory::data
