// Turns a batcher's plan into training instances: the planned documents are concatenated, each
// followed by the end-of-document token, and the stream is cut into consecutive, non-overlapping
// instances of context_length + 1 tokens (the last partial piece is dropped), so every training
// token is used at most once per epoch.
#pragma once

#include <cstdint>
#include <vector>

#include "lory/core/batcher_api.h"

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

  // What a training budget of `instances_used` instances in batches of `batch_size` sees of this
  // plan, computed from the instances themselves (the first ones of the instance order, as
  // training takes them): what could make two batchers' runs differ besides the order of text.
  struct Coverage {
    double epochs = 0;                  // instances used / instances in one epoch
    int64_t distinct_instances = 0;     // each instance is used once per epoch
    int64_t repeated_instances = 0;     // used a second time or more (past the first epoch)
    int64_t distinct_tokens = 0;        // training tokens of the distinct instances
    double documents_per_instance = 0;  // mean distinct documents in one instance
    double documents_per_batch = 0;     // mean distinct documents in one batch
    double domains_per_batch = 0;       // mean distinct domains in one batch
    double batch_domain_entropy = 0;    // mean entropy (nats) of a batch's tokens over domains
    double corpus_domain_entropy =
        0;  // the same over all instances of the plan: the most a batch can mix
    // With segments of `segment_length` tokens (a segment router's routing unit; not computed
    // when 0, and then -1): of the segments after an instance's first, the fraction whose main
    // document (the one holding most of its tokens) is not the main document of the segment
    // before it, i.e. the segments a router that routes from the previous segment routes mostly
    // from another document's text; and, of those, the fraction whose two main documents share
    // a domain (what similarity batching raises).
    double cross_document_segments = -1;
    double cross_document_same_domain = -1;
  };
  Coverage coverage(int64_t instances_used, int64_t batch_size, int64_t segment_length = 0) const;

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
