#include "lory/nn/feed_forward.h"

#include <stdexcept>

#include "lory/nn/precision.h"

namespace lory {

torch::Tensor swiglu(const torch::Tensor& h_XD, const torch::Tensor& w_gate_FD,
                     const torch::Tensor& w_up_FD, const torch::Tensor& w_down_DF) {
  // Cast once for both matmuls (under bf16 matmuls autocast would cast h for each).
  const torch::Tensor hc_XD = h_XD.to(matmul_dtype(h_XD));
  const torch::Tensor hidden_XF =
      torch::silu(torch::matmul(hc_XD, w_gate_FD.t())) * torch::matmul(hc_XD, w_up_FD.t());
  return torch::matmul(hidden_XF, w_down_DF.t());
}

torch::Tensor router_logits(const torch::Tensor& h_XD, const torch::Tensor& router_ED) {
  NoAutocast router_precision;
  return torch::matmul(h_XD.to(router_ED.scalar_type()), router_ED.t());
}

int64_t FeedForward::active_parameter_count() const {
  int64_t count = 0;
  for (const auto& p : parameters()) count += p.numel();
  return count;
}

ExpertWeights register_experts(torch::nn::Module& module, const FeedForwardSpec& spec,
                               int64_t experts, int64_t d_ff) {
  const int64_t E = experts, D = spec.d_model, F = d_ff;
  return {module.register_parameter("w_gate_EFD", torch::randn({E, F, D}) * spec.init_std),
          module.register_parameter("w_up_EFD", torch::randn({E, F, D}) * spec.init_std),
          module.register_parameter("w_down_EDF", torch::randn({E, D, F}) * spec.output_init_std)};
}

torch::Tensor register_router(torch::nn::Module& module, const FeedForwardSpec& spec,
                              int64_t experts, double init_std) {
  return module.register_parameter("router_ED", torch::randn({experts, spec.d_model}) * init_std);
}

void copy_dense_into_experts(const ExpertWeights& experts, const DenseFFNWeights& dense) {
  if (dense.w_gate_FD.sizes() != experts.w_gate_EFD.sizes().slice(1)) {
    throw std::runtime_error("experts of width " + std::to_string(experts.w_gate_EFD.size(1)) +
                             " cannot be upcycled from a dense FFN of width " +
                             std::to_string(dense.w_gate_FD.size(0)));
  }
  torch::NoGradGuard no_grad;
  experts.w_gate_EFD.copy_(dense.w_gate_FD.unsqueeze(0).expand_as(experts.w_gate_EFD));
  experts.w_up_EFD.copy_(dense.w_up_FD.unsqueeze(0).expand_as(experts.w_up_EFD));
  experts.w_down_EDF.copy_(dense.w_down_DF.unsqueeze(0).expand_as(experts.w_down_EDF));
}

void FeedForward::upcycle_from(const DenseFFNWeights&) {
  throw std::runtime_error(
      name() + " cannot be upcycled from a dense FFN; set trainer.dense_warmup_fraction = 0");
}

}  // namespace lory
