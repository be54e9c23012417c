#include "core/corpus/instance_stream.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "core/support/diagnostics.h"

namespace lory {

InstanceStream::InstanceStream(const Corpus& corpus, InstancePlan plan, int64_t context_length)
    : corpus_(corpus), plan_(std::move(plan)), instance_length_(context_length + 1) {
  uint64_t position = 0;
  stream_starts_.reserve(plan_.document_order.size());
  for (uint32_t doc : plan_.document_order) {
    if (doc >= corpus_.document_count()) {
      throw UserError(fmt::format("batcher planned document {} but the corpus has {} documents",
                                  doc, corpus_.document_count()));
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

void InstanceStream::fill(size_t index, uint32_t* tokens, uint16_t* domains,
                          uint32_t* documents) const {
  const uint64_t instance = plan_.instance_order.empty() ? index : plan_.instance_order[index];
  uint64_t position = instance * static_cast<uint64_t>(instance_length_);
  const uint64_t end = position + static_cast<uint64_t>(instance_length_);
  // The planned document containing `position`.
  size_t slot =
      static_cast<size_t>(std::upper_bound(stream_starts_.begin(), stream_starts_.end(), position) -
                          stream_starts_.begin()) -
      1;
  int64_t out = 0;
  while (position < end) {
    const uint32_t doc = plan_.document_order[slot];
    const DocumentRecord& record = corpus_.document(doc);
    const uint64_t within = position - stream_starts_[slot];
    const uint64_t take = std::min<uint64_t>(
        record.length - std::min<uint64_t>(within, record.length), end - position);
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

namespace {

double entropy_of(const std::vector<double>& counts) {
  double total = 0, entropy = 0;
  for (double c : counts) total += c;
  for (double c : counts) {
    if (c > 0) entropy -= c / total * std::log(c / total);
  }
  return entropy;
}

// The position (in [begin, end)) of a token of the document that holds most of those tokens;
// the earliest such document on a tie.
size_t main_document_position(const std::vector<uint32_t>& documents, size_t begin, size_t end) {
  size_t best = begin, best_count = 0;
  for (size_t i = begin; i < end; ++i) {
    if (i > begin && documents[i] == documents[i - 1]) continue;  // counted with its run
    size_t count = 0;
    for (size_t j = begin; j < end; ++j) count += documents[j] == documents[i];
    if (count > best_count) best = i, best_count = count;
  }
  return best;
}

}  // namespace

InstanceStream::Coverage InstanceStream::coverage(int64_t instances_used, int64_t batch_size,
                                                  int64_t segment_length) const {
  Coverage c;
  if (instance_count_ == 0 || instances_used <= 0 || batch_size <= 0) return c;
  const int64_t count = static_cast<int64_t>(instance_count_);
  c.epochs = static_cast<double>(instances_used) / static_cast<double>(count);
  c.distinct_instances = std::min(instances_used, count);
  c.repeated_instances = std::max<int64_t>(0, instances_used - count);
  c.distinct_tokens = c.distinct_instances * (instance_length_ - 1);
  std::vector<uint32_t> tokens(static_cast<size_t>(instance_length_)), documents(tokens.size());
  std::vector<uint16_t> domains(tokens.size());
  std::vector<double> all_domains(corpus_.domain_count(), 0.0),
      batch_domains(corpus_.domain_count(), 0.0);
  std::set<uint32_t> batch_documents;
  double documents_in_instances = 0, documents_in_batches = 0, domains_in_batches = 0,
         batch_entropy = 0;
  int64_t batches = 0, later_segments = 0, cross_document = 0, cross_same_domain = 0;
  // The model sees the first context_length tokens of an instance (the last is only a target).
  const int64_t context = instance_length_ - 1;
  for (int64_t i = 0; i < c.distinct_instances; ++i) {
    fill(static_cast<size_t>(i), tokens.data(), domains.data(), documents.data());
    size_t previous_main = 0;
    for (int64_t start = 0; segment_length > 0 && start < context; start += segment_length) {
      const size_t main =
          main_document_position(documents, static_cast<size_t>(start),
                                 static_cast<size_t>(std::min(start + segment_length, context)));
      if (start > 0) {
        ++later_segments;
        if (documents[main] != documents[previous_main]) {
          ++cross_document;
          cross_same_domain += domains[main] == domains[previous_main];
        }
      }
      previous_main = main;
    }
    documents_in_instances +=
        static_cast<double>(std::set<uint32_t>(documents.begin(), documents.end()).size());
    batch_documents.insert(documents.begin(), documents.end());
    for (uint16_t d : domains) {
      all_domains[d] += 1;
      batch_domains[d] += 1;
    }
    if ((i + 1) % batch_size == 0 || i + 1 == c.distinct_instances) {
      documents_in_batches += static_cast<double>(batch_documents.size());
      domains_in_batches += static_cast<double>(std::count_if(
          batch_domains.begin(), batch_domains.end(), [](double n) { return n > 0; }));
      batch_entropy += entropy_of(batch_domains);
      ++batches;
      batch_documents.clear();
      std::fill(batch_domains.begin(), batch_domains.end(), 0.0);
    }
  }
  c.documents_per_instance = documents_in_instances / static_cast<double>(c.distinct_instances);
  c.documents_per_batch = documents_in_batches / static_cast<double>(batches);
  c.domains_per_batch = domains_in_batches / static_cast<double>(batches);
  c.batch_domain_entropy = batch_entropy / static_cast<double>(batches);
  c.corpus_domain_entropy = entropy_of(all_domains);
  if (segment_length > 0) {
    c.cross_document_segments = later_segments > 0 ? static_cast<double>(cross_document) /
                                                         static_cast<double>(later_segments)
                                                   : 0.0;
    c.cross_document_same_domain = cross_document > 0 ? static_cast<double>(cross_same_domain) /
                                                            static_cast<double>(cross_document)
                                                      : 0.0;
  }
  return c;
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
