// What the lory-data commands that read or write token ids share: which tokenizer (a corpus's, a
// SentencePiece model, or bytes), and reading text or ids from a file or standard input.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data_tool/tokenizer.h"

namespace lory::data {

struct TokenizerChoice {
  std::string corpus;
  std::string model;
  bool byte = false;

  std::unique_ptr<Tokenizer> load() const;
  void add_options(CLI::App* cmd);
};

// The text of `path`, or of standard input when it is empty or "-".
std::string read_input(const std::string& path);

// Whitespace-separated token ids.
std::vector<uint32_t> parse_ids(const std::string& text);

}  // namespace lory::data
