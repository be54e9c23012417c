#include "training_data.h"

#include <fmt/format.h>

#include "core/support/diagnostics.h"
#include "lory/core/seeded_random.h"

namespace lory {

TrainingData::TrainingData(std::shared_ptr<const Corpus> corpus,
                           std::shared_ptr<BatcherPlugin> batcher, ParamValues params,
                           int64_t context_length, uint64_t seed, std::string cache_dir)
    : corpus_(std::move(corpus)),
      batcher_(std::move(batcher)),
      params_(std::move(params)),
      context_length_(context_length),
      seed_(seed),
      cache_dir_(std::move(cache_dir)) {}

void TrainingData::load_epoch(int64_t epoch) {
  if (stream_epoch_ == epoch) return;
  BatcherContext context{*corpus_, context_length_, mix_seed(seed_, static_cast<uint64_t>(epoch)),
                         cache_dir_};
  stream_.reset();
  stream_.emplace(*corpus_, batcher_->plan(context, params_), context_length_);
  stream_epoch_ = epoch;
  if (stream_->instance_count() == 0) {
    throw UserError(fmt::format(
        "the batcher's plan yields no training instance of {} tokens from corpus '{}': use a "
        "shorter model.context_length or a larger corpus",
        context_length_ + 1, corpus_->directory()));
  }
}

const InstanceStream& TrainingData::stream() {
  load_epoch(position_.epoch);
  return *stream_;
}

void TrainingData::seek(DataPosition position) { position_ = position; }

TokenBatch TrainingData::next(int64_t batch_size) {
  const int64_t length = context_length_ + 1;
  std::vector<uint32_t> tokens(static_cast<size_t>(length));
  std::vector<uint16_t> domains(static_cast<size_t>(length));
  std::vector<uint32_t> documents(static_cast<size_t>(length));
  TokenBatch batch{torch::empty({batch_size, length}, torch::kInt64),
                   torch::empty({batch_size, length}, torch::kInt64)};
  auto tokens_out = batch.tokens_BL1.accessor<int64_t, 2>();
  auto domains_out = batch.domains_BL1.accessor<int64_t, 2>();
  for (int64_t row = 0; row < batch_size; ++row) {
    load_epoch(position_.epoch);
    if (position_.instance >= static_cast<int64_t>(stream_->instance_count())) {
      position_ = {position_.epoch + 1, 0};
      load_epoch(position_.epoch);
    }
    stream_->fill(static_cast<size_t>(position_.instance), tokens.data(), domains.data(),
                  documents.data());
    ++position_.instance;
    for (int64_t t = 0; t < length; ++t) {
      tokens_out[row][t] = tokens[static_cast<size_t>(t)];
      domains_out[row][t] = domains[static_cast<size_t>(t)];
    }
  }
  return batch;
}

TokenBatch TrainingData::next_shard(int64_t per_rank, int rank, int world_size) {
  if (world_size == 1) return next(per_rank);
  const TokenBatch all = next(per_rank * world_size);
  const torch::Tensor rows = torch::arange(rank, per_rank * world_size, world_size, torch::kInt64);
  return {all.tokens_BL1.index_select(0, rows), all.domains_BL1.index_select(0, rows)};
}

}  // namespace lory
