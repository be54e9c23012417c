// A prepared corpus folder (written by `lory-data prepare`), memory-mapped read-only:
//   manifest.json    format version, tokenizer, counts per domain and split, sha256 of the files
//   tokens.bin       all documents' tokens back to back, little-endian uint16 or uint32
//   documents.bin    one DocumentRecord per document (offset, length, domain, split)
//   document_ids.txt one document id per line, in document order
//   domains.tsv      domain id <TAB> name
//   tokenizer.model  the SentencePiece model (absent for the byte tokenizer)
// Opening verifies the checksums, so a truncated or corrupted file is reported, not trained on.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lory {

enum class Split : uint8_t { Train = 0, Heldout = 1 };

#pragma pack(push, 1)
struct DocumentRecord {
  uint64_t offset;  // in tokens, into tokens.bin
  uint32_t length;  // in tokens, without an end-of-document token
  uint16_t domain;
  uint8_t split;  // a Split
  uint8_t reserved;
};
#pragma pack(pop)
static_assert(sizeof(DocumentRecord) == 16, "documents.bin records are 16 bytes");

struct DomainCounts {
  std::string name;
  uint64_t train_documents = 0, heldout_documents = 0;
  uint64_t train_tokens = 0, heldout_tokens = 0;
};

struct CorpusManifest {
  static constexpr int kFormatVersion = 1;
  int format_version = kFormatVersion;
  std::string tokenizer;  // "sentencepiece" or "byte"
  uint32_t vocab_size = 0;
  uint32_t eod_id = 0;  // end-of-document token joining documents in a training stream
  uint32_t token_bytes = 2;
  uint64_t total_tokens = 0;
  uint64_t total_documents = 0;
  std::string tokens_sha256;
  std::string documents_sha256;
  std::vector<DomainCounts> domains;  // index = domain id
};

class Corpus {
 public:
  // Throws UserError naming the folder and what is wrong (missing file, bad manifest, size or
  // checksum mismatch) with a hint to re-run `lory-data prepare`. Without `verify_checksums`,
  // only the structure and sizes are checked (cheap at any corpus size: what `lory run` does at
  // validation; the worker that trains verifies the checksums).
  static std::shared_ptr<const Corpus> open(const std::string& directory,
                                            bool verify_checksums = true);
  ~Corpus();
  Corpus(const Corpus&) = delete;
  Corpus& operator=(const Corpus&) = delete;

  const std::string& directory() const { return directory_; }
  const CorpusManifest& manifest() const { return manifest_; }
  // sha256 over the tokens and documents files: what a run records to detect a changed corpus.
  std::string checksum() const;
  // The same value from manifest.json alone (no verification, no mapping): cheap for a supervisor.
  static std::string checksum_from_manifest(const std::string& directory);

  size_t document_count() const { return document_count_; }
  const DocumentRecord& document(size_t i) const { return documents_[i]; }
  const std::string& document_id(size_t i) const { return document_ids_[i]; }
  const std::string& domain_name(size_t domain) const { return manifest_.domains.at(domain).name; }
  size_t domain_count() const { return manifest_.domains.size(); }

  uint32_t token(uint64_t position) const {
    return manifest_.token_bytes == 2 ? tokens16_[position] : tokens32_[position];
  }
  void copy_tokens(uint64_t position, uint64_t count, uint32_t* out) const;

  // Documents of one split, in document order.
  std::vector<uint32_t> documents_of_split(Split split) const;

 private:
  Corpus() = default;

  std::string directory_;
  CorpusManifest manifest_;
  void* tokens_map_ = nullptr;
  size_t tokens_map_bytes_ = 0;
  const uint16_t* tokens16_ = nullptr;
  const uint32_t* tokens32_ = nullptr;
  std::vector<DocumentRecord> documents_;
  size_t document_count_ = 0;
  std::vector<std::string> document_ids_;
};

// Reading and writing manifest.json (shared with lory-data, which writes it).
CorpusManifest parse_corpus_manifest(const std::string& json_text, const std::string& source);
std::string corpus_manifest_json(const CorpusManifest& manifest,
                                 const std::string& extra_json_object);

}  // namespace lory
