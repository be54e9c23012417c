// The precision the model's matrix multiplications run in (trainer.precision). Under "bf16" the
// harness runs each forward pass inside a MatmulPrecisionScope: LibTorch's autocast then runs
// matmul, mm, bmm, baddbmm and linear in bfloat16 (with fp32 accumulation inside oneDNN) and
// everything else in the inputs' dtype. Parameters, gradients, optimizer state, the residual
// stream, norms, softmax and the loss stay fp32: a plugin written with ordinary torch ops gets
// bf16 matmuls without a line of its own.
//
// Code that casts for itself (a custom autograd function, an *_out kernel, which autocast does not
// see) asks matmul_dtype() what to cast to, and runs under NoAutocast so that its own casts are
// the only ones.
#pragma once

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include <optional>
#include <string>

namespace lory {

enum class Precision { Fp32, Bf16 };

// "fp32" | "bf16"; std::nullopt for anything else.
std::optional<Precision> parse_precision(const std::string& name);
const char* precision_name(Precision precision);

// While alive, forward passes on `device` run their matmuls in `precision`; restores the previous
// state on exit and drops autocast's per-scope cache of bf16 weight copies (so that a weight is
// cast once per scope, i.e. once per step, and never used stale after an optimizer update). Fp32 is
// a no-op. Not copyable; nest freely.
class MatmulPrecisionScope {
 public:
  MatmulPrecisionScope(Precision precision, const torch::Device& device);
  ~MatmulPrecisionScope();
  MatmulPrecisionScope(const MatmulPrecisionScope&) = delete;
  MatmulPrecisionScope& operator=(const MatmulPrecisionScope&) = delete;

 private:
  bool active_ = false;
  bool cuda_ = false;
  bool was_enabled_ = false;
  at::ScalarType previous_dtype_ = at::kFloat;
};

// The dtype a matmul on `like`'s device should take now: bf16 inside an active bf16 scope for
// that device (and `like` is floating point), `like`'s own dtype otherwise.
torch::ScalarType matmul_dtype(const torch::Tensor& like);

// Excludes autocast for its lifetime (both CPU and CUDA), for code that casts explicitly.
class NoAutocast {
 public:
  NoAutocast();
  ~NoAutocast();
  NoAutocast(const NoAutocast&) = delete;
  NoAutocast& operator=(const NoAutocast&) = delete;

 private:
  bool cpu_was_, cuda_was_;
};

}  // namespace lory
