// Tokenizers of lory-data: SentencePiece BPE (trained here or reused) and a byte-level tokenizer
// that needs no training (tests, tiny runs). Only lory-data links SentencePiece: its bundled
// protobuf cannot share a process with LibTorch.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lory::data {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::vector<uint32_t> encode(const std::string& text) const = 0;
  virtual std::string decode(const std::vector<uint32_t>& ids) const = 0;
  virtual uint32_t vocab_size() const = 0;
  virtual uint32_t eod_id() const = 0;
  virtual std::string kind() const = 0;  // "byte" or "sentencepiece"
};

// Bytes 0-255 are their own ids; 256 is the end-of-document token.
std::unique_ptr<Tokenizer> make_byte_tokenizer();

struct SentencePieceTraining {
  uint32_t vocab_size = 8192;
  uint64_t sample_bytes =
      20ull << 20;  // text the model is trained on, drawn evenly from the domains
  int threads = 2;
};

// Trains a BPE model (byte fallback on, whitespace kept as written so code survives) on `sample`
// lines and writes it to `model_path`.
void train_sentencepiece(const std::vector<std::string>& sample,
                         const SentencePieceTraining& options, const std::string& model_path);

std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& model_path);

// The tokenizer of a prepared corpus folder, from its manifest.
std::unique_ptr<Tokenizer> load_corpus_tokenizer(const std::string& corpus_directory);

}  // namespace lory::data
