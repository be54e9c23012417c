#include "lory/instance_stream.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/diagnostics.h"

namespace lory {

InstanceStream::InstanceStream(const Corpus& corpus, InstancePlan plan, int64_t context_length)
    : corpus_(corpus), plan_(std::move(plan)), instance_length_(context_length + 1) {
  uint64_t position = 0;
  stream_starts_.reserve(plan_.document_order.size());
  for (uint32_t doc : plan_.document_order) {
    if (doc >= corpus_.document_count()) {
      throw UserError(fmt::format("batcher planned document {} but the corpus has {} documents", doc,
                                  corpus_.document_count()));
    }
    stream_starts_.push_back(position);
    position += corpus_.document(doc).length + 1;
  }
  instance_count_ = static_cast<size_t>(position / static_cast<uint64_t>(instance_length_));
  if (!plan_.instance_order.empty()) {
    if (plan_.instance_order.size() != instance_count_) {
      throw UserError(fmt::format("batcher's instance order has {} entries for {} instances",
                                  plan_.instance_order.size(), instance_count_));
    }
    std::vector<uint64_t> sorted = plan_.instance_order;
    std::sort(sorted.begin(), sorted.end());
    for (size_t i = 0; i < sorted.size(); ++i) {
      if (sorted[i] != i) throw UserError("batcher's instance order is not a permutation");
    }
  }
}

void InstanceStream::fill(size_t index, uint32_t* tokens, uint16_t* domains, uint32_t* documents) const {
  const uint64_t instance = plan_.instance_order.empty() ? index : plan_.instance_order[index];
  uint64_t position = instance * static_cast<uint64_t>(instance_length_);
  const uint64_t end = position + static_cast<uint64_t>(instance_length_);
  // The planned document containing `position`.
  size_t slot = static_cast<size_t>(std::upper_bound(stream_starts_.begin(), stream_starts_.end(), position) -
                                    stream_starts_.begin()) - 1;
  int64_t out = 0;
  while (position < end) {
    const uint32_t doc = plan_.document_order[slot];
    const DocumentRecord& record = corpus_.document(doc);
    const uint64_t within = position - stream_starts_[slot];
    const uint64_t take = std::min<uint64_t>(record.length - std::min<uint64_t>(within, record.length), end - position);
    if (within < record.length && take > 0) {
      corpus_.copy_tokens(record.offset + within, take, tokens + out);
      std::fill(domains + out, domains + out + take, record.domain);
      std::fill(documents + out, documents + out + take, doc);
      out += static_cast<int64_t>(take);
      position += take;
    }
    if (position < end && position - stream_starts_[slot] == record.length) {
      tokens[out] = corpus_.manifest().eod_id;
      domains[out] = record.domain;
      documents[out] = doc;
      ++out;
      ++position;
      ++slot;
    }
  }
}

double InstanceStream::adjacent_same_domain_rate() const {
  const auto& order = plan_.document_order;
  if (order.size() < 2) return 0.0;
  size_t same = 0;
  for (size_t i = 1; i < order.size(); ++i) {
    same += corpus_.document(order[i]).domain == corpus_.document(order[i - 1]).domain;
  }
  return static_cast<double>(same) / static_cast<double>(order.size() - 1);
}

double InstanceStream::random_order_same_domain_rate() const {
  const double n = static_cast<double>(plan_.document_order.size());
  if (n < 2) return 0.0;
  std::vector<double> per_domain(corpus_.domain_count(), 0.0);
  for (uint32_t doc : plan_.document_order) per_domain[corpus_.document(doc).domain] += 1;
  double rate = 0;
  for (double count : per_domain) rate += count * (count - 1) / (n * (n - 1));
  return rate;
}

}  // namespace lory
