#include "lory/core/corpus.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/support/diagnostics.h"
#include "lory/core/sha256.h"

namespace lory {

namespace fs = std::filesystem;

namespace {

[[noreturn]] void corrupt(const std::string& directory, const std::string& what) {
  throw UserError(
      fmt::format("corpus '{}': {}; prepare it again with `lory-data prepare --out {} --force ...`",
                  directory, what, directory));
}

std::string read_text(const fs::path& path, const std::string& directory) {
  std::ifstream in(path, std::ios::binary);
  if (!in) corrupt(directory, fmt::format("cannot read {}", path.filename().string()));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

}  // namespace

CorpusManifest parse_corpus_manifest(const std::string& json_text, const std::string& source) {
  CorpusManifest m;
  try {
    const nlohmann::json j = nlohmann::json::parse(json_text);
    m.format_version = j.at("format_version").get<int>();
    if (m.format_version != CorpusManifest::kFormatVersion) {
      throw UserError(
          fmt::format("{}: corpus format version {} is not supported (this lory reads version {})",
                      source, m.format_version, CorpusManifest::kFormatVersion));
    }
    m.tokenizer = j.at("tokenizer").at("kind").get<std::string>();
    m.vocab_size = j.at("tokenizer").at("vocab_size").get<uint32_t>();
    m.eod_id = j.at("tokenizer").at("eod_id").get<uint32_t>();
    m.token_bytes = j.at("token_bytes").get<uint32_t>();
    m.total_tokens = j.at("total_tokens").get<uint64_t>();
    m.total_documents = j.at("total_documents").get<uint64_t>();
    m.tokens_sha256 = j.at("tokens_sha256").get<std::string>();
    m.documents_sha256 = j.at("documents_sha256").get<std::string>();
    for (const auto& d : j.at("domains")) {
      DomainCounts c;
      c.name = d.at("name").get<std::string>();
      c.train_documents = d.at("train_documents").get<uint64_t>();
      c.heldout_documents = d.at("heldout_documents").get<uint64_t>();
      c.train_tokens = d.at("train_tokens").get<uint64_t>();
      c.heldout_tokens = d.at("heldout_tokens").get<uint64_t>();
      m.domains.push_back(std::move(c));
    }
  } catch (const nlohmann::json::exception& e) {
    throw UserError(fmt::format("{}: malformed corpus manifest: {}", source, e.what()));
  }
  if (m.token_bytes != 2 && m.token_bytes != 4) {
    throw UserError(fmt::format("{}: token_bytes must be 2 or 4, got {}", source, m.token_bytes));
  }
  return m;
}

std::string corpus_manifest_json(const CorpusManifest& m, const std::string& extra_json_object) {
  nlohmann::json j = extra_json_object.empty() ? nlohmann::json::object()
                                               : nlohmann::json::parse(extra_json_object);
  j["format_version"] = m.format_version;
  j["tokenizer"]["kind"] = m.tokenizer;
  j["tokenizer"]["vocab_size"] = m.vocab_size;
  j["tokenizer"]["eod_id"] = m.eod_id;
  j["token_bytes"] = m.token_bytes;
  j["total_tokens"] = m.total_tokens;
  j["total_documents"] = m.total_documents;
  j["tokens_sha256"] = m.tokens_sha256;
  j["documents_sha256"] = m.documents_sha256;
  nlohmann::json domains = nlohmann::json::array();
  for (size_t i = 0; i < m.domains.size(); ++i) {
    const DomainCounts& c = m.domains[i];
    domains.push_back({{"id", i},
                       {"name", c.name},
                       {"train_documents", c.train_documents},
                       {"heldout_documents", c.heldout_documents},
                       {"train_tokens", c.train_tokens},
                       {"heldout_tokens", c.heldout_tokens}});
  }
  j["domains"] = domains;
  return j.dump(2) + "\n";
}

// What is at a corpus path before any file of it is read: a folder holding a manifest, or a
// message saying what it is instead.
static void check_corpus_folder(const std::string& directory) {
  const fs::path dir(directory);
  std::error_code ec;
  if (fs::is_regular_file(dir, ec)) {
    throw UserError(fmt::format(
        "'{}' is a file, not a corpus folder: name the folder that `lory-data prepare --out "
        "FOLDER` wrote",
        directory));
  }
  if (!fs::is_directory(dir, ec)) {
    throw UserError(fmt::format(
        "corpus folder '{}' does not exist; prepare one with `lory-data prepare --out {} "
        "...` (see README)",
        directory, directory));
  }
  if (fs::is_empty(dir, ec)) {
    throw UserError(fmt::format(
        "corpus folder '{}' is empty; prepare it with `lory-data prepare --out {} ...` (see "
        "README)",
        directory, directory));
  }
  if (!fs::exists(dir / "manifest.json", ec)) {
    throw UserError(fmt::format(
        "'{}' has no manifest.json, so it is not a prepared corpus: `lory-data prepare --out "
        "FOLDER` writes one (raw text goes in with --jsonl or --folder)",
        directory));
  }
}

std::shared_ptr<const Corpus> Corpus::open(const std::string& directory, bool verify_checksums) {
  const fs::path dir(directory);
  std::error_code ec;
  check_corpus_folder(directory);
  std::shared_ptr<Corpus> corpus(new Corpus());
  corpus->directory_ = directory;
  corpus->manifest_ = parse_corpus_manifest(read_text(dir / "manifest.json", directory),
                                            (dir / "manifest.json").string());
  const CorpusManifest& m = corpus->manifest_;

  const fs::path tokens_path = dir / "tokens.bin";
  const uint64_t expected_token_bytes = m.total_tokens * m.token_bytes;
  const auto tokens_size = fs::file_size(tokens_path, ec);
  if (ec) corrupt(directory, "tokens.bin is missing");
  if (tokens_size != expected_token_bytes) {
    corrupt(directory,
            fmt::format(
                "tokens.bin has {} bytes but the manifest announces {} tokens ({} bytes): the file "
                "is truncated or from another corpus",
                tokens_size, m.total_tokens, expected_token_bytes));
  }
  if (verify_checksums && sha256_file_hex(tokens_path.string()) != m.tokens_sha256) {
    corrupt(directory,
            "tokens.bin does not match its sha256 in manifest.json (corrupted or modified)");
  }
  const fs::path documents_path = dir / "documents.bin";
  const std::string documents_bytes = read_text(documents_path, directory);
  if (documents_bytes.size() != m.total_documents * sizeof(DocumentRecord)) {
    corrupt(directory,
            fmt::format("documents.bin has {} bytes, expected {} records of {} bytes",
                        documents_bytes.size(), m.total_documents, sizeof(DocumentRecord)));
  }
  if (verify_checksums && sha256_hex(documents_bytes) != m.documents_sha256) {
    corrupt(directory,
            "documents.bin does not match its sha256 in manifest.json (corrupted or modified)");
  }
  corpus->document_count_ = m.total_documents;
  corpus->documents_.resize(m.total_documents);
  std::memcpy(corpus->documents_.data(), documents_bytes.data(), documents_bytes.size());
  for (size_t i = 0; i < corpus->document_count_; ++i) {
    const DocumentRecord& d = corpus->documents_[i];
    if (d.offset + d.length > m.total_tokens || d.domain >= m.domains.size() || d.split > 1) {
      corrupt(directory, fmt::format("document record {} is out of bounds", i));
    }
  }
  {
    std::istringstream ids(read_text(dir / "document_ids.txt", directory));
    std::string line;
    while (std::getline(ids, line)) corpus->document_ids_.push_back(line);
    if (corpus->document_ids_.size() != corpus->document_count_) {
      corrupt(directory, fmt::format("document_ids.txt has {} lines for {} documents",
                                     corpus->document_ids_.size(), corpus->document_count_));
    }
  }
  if (expected_token_bytes > 0) {
    const int fd = ::open(tokens_path.c_str(), O_RDONLY);
    if (fd < 0) corrupt(directory, "tokens.bin cannot be opened");
    void* map = mmap(nullptr, expected_token_bytes, PROT_READ, MAP_SHARED, fd, 0);
    ::close(fd);
    if (map == MAP_FAILED) corrupt(directory, "tokens.bin cannot be memory-mapped");
    corpus->tokens_map_ = map;
    corpus->tokens_map_bytes_ = expected_token_bytes;
    if (m.token_bytes == 2) {
      corpus->tokens16_ = static_cast<const uint16_t*>(map);
    } else {
      corpus->tokens32_ = static_cast<const uint32_t*>(map);
    }
  }
  return corpus;
}

Corpus::~Corpus() {
  if (tokens_map_) munmap(tokens_map_, tokens_map_bytes_);
}

std::string Corpus::checksum() const {
  return sha256_hex(manifest_.tokens_sha256 + manifest_.documents_sha256);
}

std::string Corpus::checksum_from_manifest(const std::string& directory) {
  check_corpus_folder(directory);
  const fs::path path = fs::path(directory) / "manifest.json";
  const CorpusManifest m = parse_corpus_manifest(read_text(path, directory), path.string());
  return sha256_hex(m.tokens_sha256 + m.documents_sha256);
}

void Corpus::copy_tokens(uint64_t position, uint64_t count, uint32_t* out) const {
  if (manifest_.token_bytes == 2) {
    for (uint64_t i = 0; i < count; ++i) out[i] = tokens16_[position + i];
  } else {
    std::memcpy(out, tokens32_ + position, count * sizeof(uint32_t));
  }
}

std::vector<uint32_t> Corpus::documents_of_split(Split split) const {
  std::vector<uint32_t> out;
  for (size_t i = 0; i < document_count_; ++i) {
    if (documents_[i].split == static_cast<uint8_t>(split)) out.push_back(static_cast<uint32_t>(i));
  }
  return out;
}

}  // namespace lory
