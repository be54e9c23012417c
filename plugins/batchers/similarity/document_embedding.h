// Dense document embeddings without a neural encoder: TF-IDF over the corpus's own tokens
// (sublinear term frequency, smoothed IDF over the embedded documents), reduced to `dimension`
// dimensions by a fixed Gaussian random projection (Johnson-Lindenstrauss: cosine similarities
// survive), then L2-normalised. Or vectors read from a file written earlier.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lory/corpus.h"

namespace lory_plugins::similarity {

struct Embeddings {
  int64_t dimension = 0;
  std::vector<float> vectors;  // documents.size() x dimension, row-major, unit length
  const float* row(size_t i) const { return vectors.data() + i * static_cast<size_t>(dimension); }
};

Embeddings tfidf_projection(const lory::Corpus& corpus, const std::vector<uint32_t>& documents, int64_t dimension);

// A float32 file: "LORYEMB1", uint64 rows, uint64 dimension, then rows x dimension floats, one row
// per document of the corpus in document order; the rows of `documents` are taken and normalised.
Embeddings embeddings_from_file(const std::string& path, const lory::Corpus& corpus,
                                const std::vector<uint32_t>& documents);

float cosine(const Embeddings& e, size_t a, size_t b);

}  // namespace lory_plugins::similarity
