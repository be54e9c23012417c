#include "core/corpus/corpus_writer.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <filesystem>

#include "core/support/diagnostics.h"
#include "lory/core/sha256.h"

namespace lory {

namespace fs = std::filesystem;

namespace {

void write_file(const fs::path& path, const void* data, size_t size) {
  std::ofstream out(path, std::ios::binary);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(size));
  if (!out) throw UserError(fmt::format("cannot write '{}' (disk full?)", path.string()));
}

}  // namespace

void check_corpus_output(const std::string& directory, bool force) {
  std::error_code ec;
  const fs::file_status status = fs::symlink_status(directory, ec);
  if (ec || !fs::exists(status)) return;
  if (!force)
    throw UserError(
        fmt::format("output folder '{}' exists; pass --force to replace it", directory));
  if (!fs::is_directory(status)) {
    throw UserError(fmt::format(
        "--out '{}' is not a folder but a file: --force replaces only a prepared corpus "
        "folder; choose another --out or remove the file yourself",
        directory));
  }
  if (fs::exists(fs::path(directory) / "manifest.json", ec)) return;
  std::vector<std::string> found;
  size_t entries = 0;
  for (const auto& entry : fs::directory_iterator(directory, ec)) {
    if (++entries <= 3) found.push_back("'" + entry.path().filename().string() + "'");
  }
  if (entries == 0) return;
  throw UserError(fmt::format(
      "--out '{}' is not a prepared corpus (no manifest.json; it holds {} entr{}: {}{}): "
      "--force replaces only a corpus folder; choose another --out or empty it yourself",
      directory, entries, entries == 1 ? "y" : "ies", fmt::join(found, ", "),
      entries > found.size() ? ", ..." : ""));
}

CorpusWriter::CorpusWriter(std::string directory, bool force, uint32_t vocab_size)
    : directory_(std::move(directory)),
      force_(force),
      vocab_size_(vocab_size),
      token_bytes_(vocab_size <= 65536 ? 2 : 4),
      tokens_hash_(std::make_unique<Sha256>()) {
  std::error_code ec;
  check_corpus_output(directory_, force_);
  staging_ = directory_ + ".partial-" + std::to_string(::getpid());
  fs::remove_all(staging_, ec);
  fs::create_directories(staging_);
  tokens_out_.open(fs::path(staging_) / "tokens.bin", std::ios::binary);
  if (!tokens_out_) throw UserError(fmt::format("cannot create '{}'", staging_));
}

CorpusWriter::~CorpusWriter() {
  if (finished_) return;
  tokens_out_.close();
  std::error_code ec;
  fs::remove_all(staging_, ec);
}

void CorpusWriter::add_document(const std::string& id, uint16_t domain, Split split,
                                const uint32_t* tokens, size_t count) {
  if (id.find('\n') != std::string::npos)
    throw UserError(fmt::format("document id '{}' contains a newline", id));
  DocumentRecord record{};
  record.offset = total_tokens_;
  record.length = static_cast<uint32_t>(count);
  record.domain = domain;
  record.split = static_cast<uint8_t>(split);
  records_.push_back(record);
  ids_ += id;
  ids_ += '\n';
  if (token_bytes_ == 2) {
    std::vector<uint16_t> narrow(tokens, tokens + count);
    tokens_out_.write(reinterpret_cast<const char*>(narrow.data()),
                      static_cast<std::streamsize>(count * 2));
    tokens_hash_->update(narrow.data(), count * 2);
  } else {
    tokens_out_.write(reinterpret_cast<const char*>(tokens),
                      static_cast<std::streamsize>(count * 4));
    tokens_hash_->update(tokens, count * 4);
  }
  total_tokens_ += count;
}

CorpusManifest CorpusWriter::finish(const std::string& tokenizer_kind, uint32_t eod_id,
                                    const std::vector<std::string>& domain_names,
                                    const std::string& extra_json) {
  tokens_out_.close();
  if (!tokens_out_)
    throw UserError(fmt::format("cannot write '{}/tokens.bin' (disk full?)", staging_));
  CorpusManifest manifest;
  manifest.tokenizer = tokenizer_kind;
  manifest.vocab_size = vocab_size_;
  manifest.eod_id = eod_id;
  manifest.token_bytes = token_bytes_;
  manifest.total_tokens = total_tokens_;
  manifest.total_documents = records_.size();
  manifest.tokens_sha256 = tokens_hash_->hex_digest();
  manifest.domains.resize(domain_names.size());
  for (size_t i = 0; i < domain_names.size(); ++i) manifest.domains[i].name = domain_names[i];
  for (const DocumentRecord& r : records_) {
    if (r.domain >= domain_names.size())
      throw UserError(fmt::format("document of unknown domain id {}", r.domain));
    DomainCounts& c = manifest.domains[r.domain];
    if (r.split == static_cast<uint8_t>(Split::Train)) {
      ++c.train_documents;
      c.train_tokens += r.length;
    } else {
      ++c.heldout_documents;
      c.heldout_tokens += r.length;
    }
  }
  const fs::path staging(staging_);
  write_file(staging / "documents.bin", records_.data(), records_.size() * sizeof(DocumentRecord));
  manifest.documents_sha256 = sha256_hex(std::string_view(
      reinterpret_cast<const char*>(records_.data()), records_.size() * sizeof(DocumentRecord)));
  write_file(staging / "document_ids.txt", ids_.data(), ids_.size());
  std::string domains_tsv;
  for (size_t i = 0; i < domain_names.size(); ++i)
    domains_tsv += std::to_string(i) + "\t" + domain_names[i] + "\n";
  write_file(staging / "domains.tsv", domains_tsv.data(), domains_tsv.size());
  const std::string manifest_text = corpus_manifest_json(manifest, extra_json);
  write_file(staging / "manifest.json", manifest_text.data(), manifest_text.size());
  std::error_code ec;
  if (fs::exists(directory_, ec)) fs::remove_all(directory_);
  fs::rename(staging, directory_);
  finished_ = true;
  return manifest;
}

}  // namespace lory
