// The k-nearest-neighbour graph of the document embeddings (cosine = inner product of unit
// vectors), with FAISS: exact search (IndexFlatIP) for small corpora, HNSW or IVF for large ones.
#pragma once

#include <string>
#include <vector>

#include "document_embedding.h"

namespace lory_plugins::similarity {

struct NeighbourGraph {
  int64_t k = 0;
  std::vector<int64_t> neighbours;  // rows x k, most similar first, -1 where fewer were found
  std::vector<float> similarity;    // rows x k
  std::string method;               // "exact", "hnsw(M=..)", "ivf(lists=..)"
  double build_seconds = 0, search_seconds = 0;
};

// index: "exact", "hnsw", "ivf", or "auto" (exact below `exact_below` documents, HNSW above).
NeighbourGraph nearest_neighbours(const Embeddings& embeddings, int64_t k, const std::string& index,
                                  int64_t exact_below, int threads);

}  // namespace lory_plugins::similarity
