// SentencePiece lives in this translation unit alone: its header makes absl::string_view
// ambiguous next to Abseil's, and its protobuf must never meet LibTorch's.
#include <fmt/format.h>
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>

#include "core/support/diagnostics.h"
#include "data_tool/tokenizer.h"

namespace lory::data {

namespace {

class VectorSentenceIterator final : public sentencepiece::SentenceIterator {
 public:
  explicit VectorSentenceIterator(const std::vector<std::string>& lines) : lines_(lines) {}
  bool done() const override { return index_ >= lines_.size(); }
  void Next() override { ++index_; }
  const std::string& value() const override { return lines_[index_]; }
  sentencepiece::util::Status status() const override { return sentencepiece::util::Status(); }

 private:
  const std::vector<std::string>& lines_;
  size_t index_ = 0;
};

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& model_path) {
    const auto status = processor_.Load(model_path);
    if (!status.ok()) {
      throw UserError(
          fmt::format("cannot load SentencePiece model '{}': {}", model_path, status.ToString()));
    }
  }
  std::vector<uint32_t> encode(const std::string& text) const override {
    std::vector<int> ids;
    const auto status = processor_.Encode(text, &ids);
    if (!status.ok()) throw UserError("SentencePiece encode failed: " + status.ToString());
    return std::vector<uint32_t>(ids.begin(), ids.end());
  }
  std::string decode(const std::vector<uint32_t>& ids) const override {
    std::vector<int> as_int;
    for (uint32_t id : ids) {
      if (id == eod_id()) continue;
      if (id >= vocab_size())
        throw UserError(
            fmt::format("token id {} is outside the vocabulary ({})", id, vocab_size()));
      as_int.push_back(static_cast<int>(id));
    }
    std::string text;
    const auto status = processor_.Decode(as_int, &text);
    if (!status.ok()) throw UserError("SentencePiece decode failed: " + status.ToString());
    return text;
  }
  uint32_t vocab_size() const override { return static_cast<uint32_t>(processor_.GetPieceSize()); }
  uint32_t eod_id() const override { return static_cast<uint32_t>(processor_.eos_id()); }
  std::string kind() const override { return "sentencepiece"; }

 private:
  sentencepiece::SentencePieceProcessor processor_;
};

}  // namespace

void train_sentencepiece(const std::vector<std::string>& sample,
                         const SentencePieceTraining& options, const std::string& model_path) {
  const std::filesystem::path prefix = std::filesystem::path(model_path).replace_extension("");
  const std::unordered_map<std::string, std::string> arguments = {
      {"model_prefix", prefix.string()},
      {"model_type", "bpe"},
      {"vocab_size", std::to_string(options.vocab_size)},
      {"byte_fallback", "true"},
      // Keep text exactly as written (code indentation, runs of spaces): decode(encode(x)) == x.
      {"normalization_rule_name", "identity"},
      {"remove_extra_whitespaces", "false"},
      {"allow_whitespace_only_pieces", "true"},
      {"split_digits", "true"},
      {"character_coverage", "0.9995"},
      {"max_sentence_length", "16384"},
      {"shuffle_input_sentence", "false"},
      {"num_threads", std::to_string(options.threads)},
      {"unk_id", "0"},
      {"bos_id", "1"},
      {"eos_id", "2"},
      {"pad_id", "-1"},
      {"minloglevel", "1"},
  };
  VectorSentenceIterator iterator(sample);
  const auto status = sentencepiece::SentencePieceTrainer::Train(arguments, &iterator);
  if (!status.ok()) {
    throw UserError(
        fmt::format("SentencePiece training failed: {} (a smaller --vocab-size may help on a small "
                    "corpus)",
                    status.ToString()));
  }
  std::filesystem::remove(prefix.string() + ".vocab");
}

std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& model_path) {
  return std::make_unique<SentencePieceTokenizer>(model_path);
}

std::unique_ptr<Tokenizer> load_corpus_tokenizer(const std::string& corpus_directory) {
  const std::filesystem::path manifest_path =
      std::filesystem::path(corpus_directory) / "manifest.json";
  std::ifstream in(manifest_path);
  if (!in)
    throw UserError(
        fmt::format("'{}' is not a prepared corpus (no manifest.json)", corpus_directory));
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string kind;
  try {
    kind = nlohmann::json::parse(buffer.str()).at("tokenizer").at("kind").get<std::string>();
  } catch (const nlohmann::json::exception& e) {
    throw UserError(fmt::format("{}: malformed manifest: {}", manifest_path.string(), e.what()));
  }
  if (kind == "byte") return make_byte_tokenizer();
  if (kind == "sentencepiece") {
    return load_sentencepiece(
        (std::filesystem::path(corpus_directory) / "tokenizer.model").string());
  }
  throw UserError(fmt::format("{}: unknown tokenizer kind '{}'", manifest_path.string(), kind));
}

}  // namespace lory::data
