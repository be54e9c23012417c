// Training batches from the batcher's plans: epoch e uses the plan made with seed
// mix(run seed, e), cut into instances by InstanceStream; the position (epoch, instance) is what a
// checkpoint stores so that a resumed run sees exactly the batches it would have seen.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <optional>

#include "core/corpus/instance_stream.h"
#include "lory/core/batcher_api.h"

namespace lory {

struct TokenBatch {
  torch::Tensor
      tokens_BL1;  // int64, context_length + 1 tokens per row (inputs and shifted targets)
  torch::Tensor domains_BL1;  // int64 domain id of every token
};

struct DataPosition {
  int64_t epoch = 0;
  int64_t instance = 0;  // next instance of that epoch
};

class TrainingData {
 public:
  TrainingData(std::shared_ptr<const Corpus> corpus, std::shared_ptr<BatcherPlugin> batcher,
               ParamValues params, int64_t context_length, uint64_t seed, std::string cache_dir);

  TokenBatch next(int64_t batch_size);
  // Data parallelism: reads per_rank * world_size instances and returns this rank's share (rows
  // rank, rank + world_size, ...). Together the ranks see what next(per_rank * world_size) gives.
  TokenBatch next_shard(int64_t per_rank, int rank, int world_size);
  DataPosition position() const { return position_; }
  void seek(DataPosition position);
  // The plan of the current epoch (its description and quality statistics).
  const InstanceStream& stream();

 private:
  void load_epoch(int64_t epoch);

  std::shared_ptr<const Corpus> corpus_;
  std::shared_ptr<BatcherPlugin> batcher_;
  ParamValues params_;
  int64_t context_length_;
  uint64_t seed_;
  std::string cache_dir_;
  DataPosition position_;
  std::optional<InstanceStream> stream_;
  int64_t stream_epoch_ = -1;
};

}  // namespace lory
