// The document-embedding file: written by `lory embed` (lory-worker), read by the similarity
// batcher (batcher.similarity.embedding_file). One definition of the format for both:
//   "LORYEMB2", uint64 rows, uint64 dimension, the corpus checksum it was made from (64 bytes,
//   hex sha256), int64 source run id, then rows x dimension float32, one row per corpus document
//   in document order (little-endian, as the machine that wrote it).
// Version-1 files ("LORYEMB1": no checksum nor run) are still read, checked by row count only.
// Errors are std::runtime_error naming the file.
#pragma once

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "lory/core/corpus.h"

namespace lory {

class EmbeddingFileWriter {
 public:
  // Opens `path` for `rows` rows (the corpus's documents) made by run `source_run` from `corpus`.
  EmbeddingFileWriter(const std::string& path, const Corpus& corpus, int64_t source_run);
  // The next document's row; the first row fixes the dimension, and every row must have it.
  void append(const float* row, int64_t dimension);
  // Writes the dimension into the header and checks that every row was written and reached the
  // disk.
  void finish();

 private:
  std::string path_;
  std::ofstream out_;
  uint64_t rows_ = 0;
  uint64_t appended_ = 0;
  int64_t dimension_ = 0;
  std::streampos dimension_at_;
};

struct EmbeddingFile {
  int64_t dimension = 0;
  int64_t source_run = 0;   // the run the vectors came from (0 in version-1 files)
  std::vector<float> rows;  // corpus.document_count() x dimension, row-major, as written
};

// Reads `path`, refusing a file made from another corpus than `corpus`.
EmbeddingFile read_embedding_file(const std::string& path, const Corpus& corpus);

}  // namespace lory
