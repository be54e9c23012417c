// `lory-data info`: verify a corpus folder (checksums) and print its counts per domain and split.
#include <fmt/format.h>

#include <cstdio>

#include "core/support/text_table.h"
#include "data_tool/commands.h"
#include "lory/core/corpus.h"

namespace lory::data {

namespace {

void print_info(const std::string& directory) {
  const auto corpus = lory::Corpus::open(directory);  // verifies checksums
  const auto& m = corpus->manifest();
  std::printf(
      "corpus %s: %s tokenizer, vocab %u, eod id %u, %llu documents, %llu tokens (uint%u), "
      "checksums ok\n",
      directory.c_str(), m.tokenizer.c_str(), m.vocab_size, m.eod_id,
      static_cast<unsigned long long>(m.total_documents),
      static_cast<unsigned long long>(m.total_tokens), m.token_bytes * 8);
  lory::TextTable table({"domain", "train docs", "train tokens", "heldout docs", "heldout tokens"});
  for (const auto& c : m.domains) {
    table.add_row({c.name, std::to_string(c.train_documents), std::to_string(c.train_tokens),
                   std::to_string(c.heldout_documents), std::to_string(c.heldout_tokens)});
  }
  std::printf("%s", table.render("  ").c_str());
}

}  // namespace

void add_info_command(CLI::App& app) {
  auto corpus = std::make_shared<std::string>();
  CLI::App* info_cmd = app.add_subcommand("info", "Verify a corpus folder and print its counts");
  info_cmd->add_option("corpus", *corpus, "Corpus folder")->required();
  info_cmd->callback([corpus] { print_info(*corpus); });
}

}  // namespace lory::data
