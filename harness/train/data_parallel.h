// Data parallelism across processes on LibTorch's own c10d: a Gloo process group configured by
// torchrun's environment convention (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT).
// Gradients are averaged with bucketed all-reduces; small statistics are summed; parameters are
// broadcast from rank 0. Every collective has a timeout (LORY_COLLECTIVE_TIMEOUT seconds,
// default 120), so a dead rank makes the others fail instead of hanging.
// Without WORLD_SIZE (or with 1) it is a single process and every call is a no-op.
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <memory>
#include <vector>

namespace c10d {
class ProcessGroupGloo;
}

namespace lory {

class DataParallel {
 public:
  // Reads the environment; connects to the group's TCP store (rank 0 hosts it).
  static std::unique_ptr<DataParallel> from_environment();
  ~DataParallel();

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  bool is_main() const { return rank_ == 0; }
  bool distributed() const { return world_size_ > 1; }

  // Rank 0's values of every parameter and buffer, to all ranks.
  void broadcast_module(torch::nn::Module& module);
  // Averages the gradients over ranks, in flattened buckets of about `bucket_bytes`.
  void average_gradients(const std::vector<torch::Tensor>& gradients,
                         size_t bucket_bytes = 32 << 20);
  // Sums a float64 tensor over ranks, in place.
  void sum(torch::Tensor& values);
  void sum(std::vector<double>& values);
  // The largest value of each entry over ranks, in place.
  void max(std::vector<double>& values);
  void barrier();

  // Seconds spent in gradient all-reduces since the last call (for the metrics).
  double take_allreduce_seconds();

 private:
  DataParallel(int rank, int world_size) : rank_(rank), world_size_(world_size) {}

  int rank_, world_size_;
  std::shared_ptr<c10d::ProcessGroupGloo> group_;
  double allreduce_seconds_ = 0;
};

}  // namespace lory
