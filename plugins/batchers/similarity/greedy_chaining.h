// In-Context Pretraining's traversal of the kNN graph: optional near-duplicate removal, then
// chains that start at an unused document of minimum in-degree and repeatedly step to the most
// similar unused neighbour, jumping to a new start when stuck (or at the maximum chain length).
// Every document ends up in exactly one chain or in the dropped list.
//
// `backtrack` > 0 softens "stuck": before jumping, the last `backtrack` documents of the chain
// (most recent first) are searched for an unused neighbour, which continues the chain in the same
// neighbourhood. With k = 10 a chain through a tight cluster otherwise stops after a few
// documents and the jump lands in another cluster (measured on 8 planted clusters: 0.73 of
// adjacent pairs in one cluster with backtrack = 0 and no orphan attachment, 0.91 with both on;
// tests/core/similarity_test.cpp, InContextPretrainingTraversalWithoutRefinements...).
// backtrack = 0 is In-Context Pretraining's rule exactly.
//
// `attach_orphans` handles what backtracking cannot: a start document whose neighbours are all
// used already becomes a chain of one, and sits between two unrelated chains. (Starts are the
// documents of lowest in-degree, whose neighbours are popular and so used early: on planted
// clusters a quarter of all chains were such orphans.) Each orphan is moved to just after its
// most similar neighbour inside a longer chain, when that keeps the chain within max_length.
#pragma once

#include <cstdint>
#include <vector>

#include "neighbour_graph.h"

namespace lory_plugins::similarity {

struct Chains {
  std::vector<std::vector<int64_t>> chains;  // rows of the graph
  std::vector<int64_t> dropped;              // near-duplicates left out
};

// dedup_threshold >= 1 disables near-duplicate removal; max_length 0 = unlimited.
Chains greedy_chains(const NeighbourGraph& graph, int64_t rows, double dedup_threshold,
                     int64_t max_length, int64_t backtrack, bool attach_orphans);

}  // namespace lory_plugins::similarity
