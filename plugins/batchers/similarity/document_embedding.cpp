#include "document_embedding.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "lory/core/embedding_file.h"
#include "lory/core/seeded_random.h"

namespace lory_plugins::similarity {

namespace {

void normalise_rows(Embeddings& e) {
  const size_t rows = e.vectors.size() / static_cast<size_t>(e.dimension);
  for (size_t r = 0; r < rows; ++r) {
    float* v = e.vectors.data() + r * static_cast<size_t>(e.dimension);
    double norm = 0;
    for (int64_t d = 0; d < e.dimension; ++d) norm += static_cast<double>(v[d]) * v[d];
    const float scale = norm > 0 ? static_cast<float>(1.0 / std::sqrt(norm)) : 0.0f;
    for (int64_t d = 0; d < e.dimension; ++d) v[d] *= scale;
  }
}

}  // namespace

Embeddings tfidf_projection(const lory::Corpus& corpus, const std::vector<uint32_t>& documents,
                            int64_t dimension) {
  const uint32_t vocab = corpus.manifest().vocab_size;
  // Document frequencies over the embedded documents.
  std::vector<uint32_t> document_frequency(vocab, 0), last_seen(vocab, UINT32_MAX);
  std::vector<uint32_t> tokens;
  for (size_t i = 0; i < documents.size(); ++i) {
    const lory::DocumentRecord& record = corpus.document(documents[i]);
    tokens.resize(record.length);
    corpus.copy_tokens(record.offset, record.length, tokens.data());
    for (uint32_t t : tokens) {
      if (last_seen[t] != i) {
        last_seen[t] = static_cast<uint32_t>(i);
        ++document_frequency[t];
      }
    }
  }
  const double n = static_cast<double>(documents.size());
  std::vector<float> idf(vocab);
  for (uint32_t t = 0; t < vocab; ++t)
    idf[t] = static_cast<float>(std::log((n + 1) / (document_frequency[t] + 1)) + 1);
  // The projection is fixed (not the run's seed), so the plan and its cache do not depend on it.
  std::vector<float> projection(static_cast<size_t>(vocab) * static_cast<size_t>(dimension));
  lory::SeededRandom random(0x51A11A7);
  for (float& x : projection) {
    const double u1 = std::max(random.uniform(), 1e-300), u2 = random.uniform();
    x = static_cast<float>(std::sqrt(-2 * std::log(u1)) * std::cos(2 * M_PI * u2));
  }
  Embeddings out;
  out.dimension = dimension;
  out.vectors.assign(documents.size() * static_cast<size_t>(dimension), 0.0f);
  std::vector<uint32_t> count(vocab, 0), touched;
  for (size_t i = 0; i < documents.size(); ++i) {
    const lory::DocumentRecord& record = corpus.document(documents[i]);
    tokens.resize(record.length);
    corpus.copy_tokens(record.offset, record.length, tokens.data());
    touched.clear();
    for (uint32_t t : tokens) {
      if (count[t]++ == 0) touched.push_back(t);
    }
    float* row = out.vectors.data() + i * static_cast<size_t>(dimension);
    for (uint32_t t : touched) {
      const float weight = (1.0f + std::log(static_cast<float>(count[t]))) * idf[t];
      const float* r = projection.data() + static_cast<size_t>(t) * static_cast<size_t>(dimension);
      for (int64_t d = 0; d < dimension; ++d) row[d] += weight * r[d];
      count[t] = 0;
    }
  }
  normalise_rows(out);
  return out;
}

Embeddings embeddings_from_file(const std::string& path, const lory::Corpus& corpus,
                                const std::vector<uint32_t>& documents) {
  const lory::EmbeddingFile file = lory::read_embedding_file(path, corpus);
  const size_t dimension = static_cast<size_t>(file.dimension);
  Embeddings out;
  out.dimension = file.dimension;
  out.source_run = file.source_run;
  out.vectors.resize(documents.size() * dimension);
  for (size_t i = 0; i < documents.size(); ++i) {
    std::memcpy(out.vectors.data() + i * dimension, file.rows.data() + documents[i] * dimension,
                dimension * sizeof(float));
  }
  normalise_rows(out);
  return out;
}

Embeddings random_unit_vectors(size_t count, int64_t dimension, uint64_t seed) {
  Embeddings out;
  out.dimension = dimension;
  out.vectors.resize(count * static_cast<size_t>(dimension));
  lory::SeededRandom random(seed);
  for (size_t i = 0; i < count; ++i) {
    float* row = out.vectors.data() + i * static_cast<size_t>(dimension);
    double norm = 0;
    for (int64_t d = 0; d < dimension; ++d) {
      // Box-Muller: a Gaussian coordinate from two uniforms, so that the direction is uniform.
      const double u = std::max(random.uniform(), 1e-300), v = random.uniform();
      row[d] = static_cast<float>(std::sqrt(-2.0 * std::log(u)) * std::cos(2.0 * M_PI * v));
      norm += static_cast<double>(row[d]) * row[d];
    }
    const float scale = static_cast<float>(1.0 / std::sqrt(std::max(norm, 1e-30)));
    for (int64_t d = 0; d < dimension; ++d) row[d] *= scale;
  }
  return out;
}

float cosine(const Embeddings& e, size_t a, size_t b) {
  const float *x = e.row(a), *y = e.row(b);
  float dot = 0;
  for (int64_t d = 0; d < e.dimension; ++d) dot += x[d] * y[d];
  return dot;
}

}  // namespace lory_plugins::similarity
