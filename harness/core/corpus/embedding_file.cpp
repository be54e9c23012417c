#include "lory/core/embedding_file.h"

#include <fmt/format.h>

#include <cstring>
#include <stdexcept>

namespace lory {

namespace {

constexpr size_t kChecksumBytes = 64;

template <typename T>
void write_value(std::ofstream& out, const T& value) {
  out.write(reinterpret_cast<const char*>(&value), sizeof(T));
}

template <typename T>
bool read_value(std::ifstream& in, T& value) {
  return static_cast<bool>(in.read(reinterpret_cast<char*>(&value), sizeof(T)));
}

}  // namespace

EmbeddingFileWriter::EmbeddingFileWriter(const std::string& path, const Corpus& corpus,
                                         int64_t source_run)
    : path_(path), out_(path, std::ios::binary), rows_(corpus.document_count()) {
  if (!out_) throw std::runtime_error(fmt::format("cannot write '{}'", path));
  out_.write("LORYEMB2", 8);
  write_value(out_, rows_);
  dimension_at_ = out_.tellp();
  write_value(out_, uint64_t{0});  // rewritten by finish(), once the first row has told it
  // Provenance: the corpus it belongs to (the batcher refuses it for another) and the run.
  std::string checksum = corpus.checksum();
  checksum.resize(kChecksumBytes, ' ');
  out_.write(checksum.data(), kChecksumBytes);
  write_value(out_, source_run);
}

void EmbeddingFileWriter::append(const float* row, int64_t dimension) {
  if (appended_ == 0) dimension_ = dimension;
  if (dimension != dimension_) {
    throw std::runtime_error(fmt::format("'{}': row {} has {} dimensions, the first row {}", path_,
                                         appended_, dimension, dimension_));
  }
  out_.write(reinterpret_cast<const char*>(row),
             static_cast<std::streamsize>(dimension * sizeof(float)));
  ++appended_;
}

void EmbeddingFileWriter::finish() {
  if (appended_ != rows_) {
    throw std::runtime_error(
        fmt::format("'{}' holds {} rows of the corpus's {}", path_, appended_, rows_));
  }
  out_.seekp(dimension_at_);
  write_value(out_, static_cast<uint64_t>(dimension_));
  out_.flush();
  if (!out_) throw std::runtime_error(fmt::format("cannot write '{}' (disk full?)", path_));
}

EmbeddingFile read_embedding_file(const std::string& path, const Corpus& corpus) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("embedding file '{}' cannot be read", path));
  char magic[8];
  uint64_t rows = 0, dimension = 0;
  in.read(magic, 8);
  read_value(in, rows);
  read_value(in, dimension);
  const bool version_2 = in && std::memcmp(magic, "LORYEMB2", 8) == 0;
  if (!in || (!version_2 && std::memcmp(magic, "LORYEMB1", 8) != 0)) {
    throw std::runtime_error(
        fmt::format("'{}' is not a lory embedding file (LORYEMB2 or LORYEMB1 header)", path));
  }
  EmbeddingFile file;
  if (version_2) {
    char checksum[kChecksumBytes];
    in.read(checksum, kChecksumBytes);
    read_value(in, file.source_run);
    if (!in) throw std::runtime_error(fmt::format("'{}' is truncated", path));
    const std::string made_from(checksum, kChecksumBytes), expected = corpus.checksum();
    if (made_from != expected.substr(0, kChecksumBytes)) {
      throw std::runtime_error(
          fmt::format("'{}' was made from another corpus (checksum {}..., this corpus {}...): run "
                      "`lory embed` again on this "
                      "corpus",
                      path, made_from.substr(0, 12), expected.substr(0, 12)));
    }
  }
  if (rows != corpus.document_count()) {
    throw std::runtime_error(
        fmt::format("'{}' has {} rows but the corpus has {} documents: it was made for another "
                    "corpus",
                    path, rows, corpus.document_count()));
  }
  file.dimension = static_cast<int64_t>(dimension);
  file.rows.resize(rows * dimension);
  in.read(reinterpret_cast<char*>(file.rows.data()),
          static_cast<std::streamsize>(file.rows.size() * sizeof(float)));
  if (!in) throw std::runtime_error(fmt::format("'{}' is truncated", path));
  return file;
}

}  // namespace lory
