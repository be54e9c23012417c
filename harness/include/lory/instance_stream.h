// Turns a batcher's plan into training instances: the planned documents are concatenated, each
// followed by the end-of-document token, and the stream is cut into consecutive, non-overlapping
// instances of context_length + 1 tokens (the last partial piece is dropped), so every training
// token is used at most once per epoch.
#pragma once

#include <cstdint>
#include <vector>

#include "lory/batcher_api.h"

namespace lory {

class InstanceStream {
 public:
  InstanceStream(const Corpus& corpus, InstancePlan plan, int64_t context_length);

  size_t instance_count() const { return instance_count_; }
  int64_t instance_length() const { return instance_length_; }  // context_length + 1
  const InstancePlan& plan() const { return plan_; }

  // Fills instance `index` (after the plan's instance_order) into the three arrays of
  // instance_length() entries. The end-of-document token counts as part of the document before it.
  void fill(size_t index, uint32_t* tokens, uint16_t* domains, uint32_t* documents) const;

  // Fraction of adjacent document pairs in the stream that share a domain, and what a random
  // order of the same documents would give on average.
  double adjacent_same_domain_rate() const;
  double random_order_same_domain_rate() const;

 private:
  const Corpus& corpus_;
  InstancePlan plan_;
  int64_t instance_length_;
  size_t instance_count_ = 0;
  std::vector<uint64_t> stream_starts_;  // stream offset of each planned document
};

}  // namespace lory
