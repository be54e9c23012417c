// Dense document embeddings without a neural encoder: TF-IDF over the corpus's own tokens
// (sublinear term frequency, smoothed IDF over the embedded documents), reduced to `dimension`
// dimensions by a fixed Gaussian random projection (Johnson-Lindenstrauss: cosine similarities
// survive), then L2-normalised. Or vectors read from a file written earlier, or random ones.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lory/core/corpus.h"

namespace lory_plugins::similarity {

struct Embeddings {
  int64_t dimension = 0;
  std::vector<float> vectors;  // documents.size() x dimension, row-major, unit length
  int64_t source_run = 0;      // the trained run a file's embeddings came from (0: unknown or none)
  const float* row(size_t i) const { return vectors.data() + i * static_cast<size_t>(dimension); }
};

Embeddings tfidf_projection(const lory::Corpus& corpus, const std::vector<uint32_t>& documents,
                            int64_t dimension);

// The rows of `documents` from a file written by `lory embed` (lory/core/embedding_file.h: refused
// when made from another corpus), normalised.
Embeddings embeddings_from_file(const std::string& path, const lory::Corpus& corpus,
                                const std::vector<uint32_t>& documents);

// The control of a similarity plan: independent random unit vectors (Gaussian directions from
// `seed`), one per document, which carry no information about the text. A plan built from them
// goes through the same neighbour graph, chaining and instance shuffle as a real one, so any
// difference between it and the random batcher comes from those mechanics, not from similarity.
Embeddings random_unit_vectors(size_t count, int64_t dimension, uint64_t seed);

float cosine(const Embeddings& e, size_t a, size_t b);

}  // namespace lory_plugins::similarity
