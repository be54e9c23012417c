#include "lory/nn/precision.h"

namespace lory {

std::optional<Precision> parse_precision(const std::string& name) {
  if (name == "fp32") return Precision::Fp32;
  if (name == "bf16") return Precision::Bf16;
  return std::nullopt;
}

const char* precision_name(Precision precision) {
  return precision == Precision::Bf16 ? "bf16" : "fp32";
}

MatmulPrecisionScope::MatmulPrecisionScope(Precision precision, const torch::Device& device) {
  if (precision == Precision::Fp32) return;
  active_ = true;
  cuda_ = device.is_cuda();
  if (cuda_) {
    was_enabled_ = at::autocast::is_enabled();
    previous_dtype_ = at::autocast::get_autocast_gpu_dtype();
    at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
    at::autocast::set_enabled(true);
  } else {
    was_enabled_ = at::autocast::is_cpu_enabled();
    previous_dtype_ = at::autocast::get_autocast_cpu_dtype();
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
    at::autocast::set_cpu_enabled(true);
  }
  at::autocast::increment_nesting();
}

MatmulPrecisionScope::~MatmulPrecisionScope() {
  if (!active_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  if (cuda_) {
    at::autocast::set_enabled(was_enabled_);
    at::autocast::set_autocast_gpu_dtype(previous_dtype_);
  } else {
    at::autocast::set_cpu_enabled(was_enabled_);
    at::autocast::set_autocast_cpu_dtype(previous_dtype_);
  }
}

torch::ScalarType matmul_dtype(const torch::Tensor& like) {
  if (!like.is_floating_point()) return like.scalar_type();
  const bool on = like.is_cuda() ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
  if (!on) return like.scalar_type();
  return like.is_cuda() ? at::autocast::get_autocast_gpu_dtype()
                        : at::autocast::get_autocast_cpu_dtype();
}

NoAutocast::NoAutocast()
    : cpu_was_(at::autocast::is_cpu_enabled()), cuda_was_(at::autocast::is_enabled()) {
  at::autocast::set_cpu_enabled(false);
  at::autocast::set_enabled(false);
}

NoAutocast::~NoAutocast() {
  at::autocast::set_cpu_enabled(cpu_was_);
  at::autocast::set_enabled(cuda_was_);
}

}  // namespace lory
