// `lory-data prepare`: documents -> held-out split -> tokenizer -> corpus folder (see
// lory/core/corpus.h).
#pragma once

#include <string>
#include <vector>

#include "data_tool/text_document.h"
#include "data_tool/tokenizer.h"

namespace lory::data {

struct FolderSource {
  std::string domain;
  std::string directory;
};

struct PrepareOptions {
  std::string out;
  bool force = false;
  std::vector<std::string> jsonl_files;
  std::vector<FolderSource> folders;
  std::string tokenizer = "sentencepiece";  // or "byte"
  std::string tokenizer_model;              // reuse this SentencePiece model instead of training
  SentencePieceTraining training;
  double heldout_fraction = 0.05;
  uint64_t min_heldout_documents = 2;
  std::string split_salt = "lory-heldout-v1";
  BadLinePolicy bad_lines = BadLinePolicy::Stop;
  int threads = 2;
  double max_document_mb = 8;  // a longer document is refused (or skipped and counted)
};

// Adds the [[jsonl]] / [[folder]] entries of a sources TOML file to `options`.
void read_sources_file(const std::string& path, PrepareOptions& options);

// Builds the corpus folder; prints progress and a summary. Throws UserError on bad input.
void prepare_corpus(const PrepareOptions& options);

// Whether a document goes to the held-out split: a pure function of (salt, id, fraction), so the
// split never depends on input order and never changes when other documents are added.
double split_hash_fraction(const std::string& salt, const std::string& document_id);

}  // namespace lory::data
