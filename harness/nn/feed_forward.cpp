#include "lory/feed_forward.h"

#include <stdexcept>

namespace lory {

torch::Tensor swiglu(const torch::Tensor& h_XD, const torch::Tensor& w_gate_FD, const torch::Tensor& w_up_FD,
                     const torch::Tensor& w_down_DF) {
  const torch::Tensor hidden_XF = torch::silu(torch::matmul(h_XD, w_gate_FD.t())) * torch::matmul(h_XD, w_up_FD.t());
  return torch::matmul(hidden_XF, w_down_DF.t());
}

int64_t FeedForward::active_parameter_count() const {
  int64_t count = 0;
  for (const auto& p : parameters()) count += p.numel();
  return count;
}

void FeedForward::upcycle_from(const DenseFFNWeights&) {
  throw std::runtime_error(name() + " cannot be upcycled from a dense FFN; set trainer.dense_warmup_fraction = 0");
}

}  // namespace lory
