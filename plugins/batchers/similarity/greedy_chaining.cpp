#include "greedy_chaining.h"

#include <algorithm>
#include <numeric>

namespace lory_plugins::similarity {

namespace {

void attach_orphan_documents(const NeighbourGraph& graph, int64_t max_length, Chains& out) {
  const int64_t k = graph.k;
  std::vector<int64_t> chain_of(
      graph.neighbours.size() / static_cast<size_t>(std::max<int64_t>(1, k)), -1);
  for (size_t c = 0; c < out.chains.size(); ++c) {
    for (int64_t document : out.chains[c])
      chain_of[static_cast<size_t>(document)] = static_cast<int64_t>(c);
  }
  // after[d]: orphans to place right after document d.
  std::vector<std::vector<int64_t>> after(chain_of.size());
  std::vector<int64_t> grown(out.chains.size(), 0);
  std::vector<uint8_t> moved(out.chains.size(), 0);
  for (size_t c = 0; c < out.chains.size(); ++c) {
    if (out.chains[c].size() != 1) continue;
    const int64_t orphan = out.chains[c][0];
    for (int64_t j = 0; j < k; ++j) {
      const int64_t host = graph.neighbours[static_cast<size_t>(orphan * k + j)];
      if (host < 0) continue;
      const int64_t host_chain = chain_of[static_cast<size_t>(host)];
      if (host_chain < 0 || out.chains[static_cast<size_t>(host_chain)].size() < 2) continue;
      const int64_t length =
          static_cast<int64_t>(out.chains[static_cast<size_t>(host_chain)].size()) +
          grown[static_cast<size_t>(host_chain)];
      if (max_length > 0 && length >= max_length) continue;
      after[static_cast<size_t>(host)].push_back(orphan);
      ++grown[static_cast<size_t>(host_chain)];
      moved[c] = 1;
      break;
    }
  }
  std::vector<std::vector<int64_t>> chains;
  for (size_t c = 0; c < out.chains.size(); ++c) {
    if (moved[c]) continue;
    std::vector<int64_t> chain;
    for (int64_t document : out.chains[c]) {
      chain.push_back(document);
      for (int64_t orphan : after[static_cast<size_t>(document)]) chain.push_back(orphan);
    }
    chains.push_back(std::move(chain));
  }
  out.chains = std::move(chains);
}

}  // namespace

Chains greedy_chains(const NeighbourGraph& graph, int64_t rows, double dedup_threshold,
                     int64_t max_length, int64_t backtrack, bool attach_orphans) {
  const int64_t k = graph.k;
  std::vector<uint8_t> used(static_cast<size_t>(rows), 0);
  Chains out;
  // Near-duplicates: a later document very similar to a kept earlier one is dropped.
  if (dedup_threshold < 1.0) {
    for (int64_t i = 0; i < rows; ++i) {
      if (used[static_cast<size_t>(i)]) continue;
      for (int64_t j = 0; j < k; ++j) {
        const int64_t other = graph.neighbours[static_cast<size_t>(i * k + j)];
        if (other > i && !used[static_cast<size_t>(other)] &&
            graph.similarity[static_cast<size_t>(i * k + j)] >= dedup_threshold) {
          used[static_cast<size_t>(other)] = 1;
          out.dropped.push_back(other);
        }
      }
    }
    std::sort(out.dropped.begin(), out.dropped.end());
  }
  std::vector<int64_t> in_degree(static_cast<size_t>(rows), 0);
  for (int64_t neighbour : graph.neighbours) {
    if (neighbour >= 0) ++in_degree[static_cast<size_t>(neighbour)];
  }
  std::vector<int64_t> starts(static_cast<size_t>(rows));
  std::iota(starts.begin(), starts.end(), 0);
  std::stable_sort(starts.begin(), starts.end(), [&](int64_t a, int64_t b) {
    return in_degree[static_cast<size_t>(a)] < in_degree[static_cast<size_t>(b)];
  });
  for (int64_t start : starts) {
    if (used[static_cast<size_t>(start)]) continue;
    std::vector<int64_t> chain = {start};
    used[static_cast<size_t>(start)] = 1;
    const auto first_unused_neighbour = [&](int64_t document) {
      for (int64_t j = 0; j < k; ++j) {  // neighbours are sorted, most similar first
        const int64_t candidate = graph.neighbours[static_cast<size_t>(document * k + j)];
        if (candidate >= 0 && !used[static_cast<size_t>(candidate)]) return candidate;
      }
      return int64_t{-1};
    };
    while (max_length == 0 || static_cast<int64_t>(chain.size()) < max_length) {
      int64_t next = -1;
      const int64_t lookback = std::min<int64_t>(static_cast<int64_t>(chain.size()), 1 + backtrack);
      for (int64_t back = 0; back < lookback && next < 0; ++back) {
        next = first_unused_neighbour(chain[chain.size() - 1 - static_cast<size_t>(back)]);
      }
      if (next < 0) break;
      used[static_cast<size_t>(next)] = 1;
      chain.push_back(next);
    }
    out.chains.push_back(std::move(chain));
  }
  if (attach_orphans) attach_orphan_documents(graph, max_length, out);
  return out;
}

}  // namespace lory_plugins::similarity
