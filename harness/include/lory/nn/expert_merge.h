// Soft merging of experts in parameter space (SMEAR, Lory): each segment of tokens goes through
// ONE SwiGLU FFN whose three matrices are the routing-weighted sums of the experts' matrices,
//   W̄_s = sum_e w[s, e] W_e.
// The fast path merges all segments with GEMMs (w_SE @ W_E(FD)), works through the segments in
// chunks so that only one chunk's merged weights are alive at a time, and does not keep merged
// weights for backward: a custom autograd function recomputes them, and its backward is GEMMs too
// (dW_E = wᵀ dW̄, dw = dW̄ Wᵀ).
#pragma once

#include <torch/torch.h>

#include "lory/nn/feed_forward.h"

namespace lory {

// x_STD: S segments of T tokens (zero-padded where a segment is shorter); w_SE: the segments'
// expert weights. Returns y_STD. `chunk_segments` bounds how many merged weight triples exist at
// once (forward and backward).
torch::Tensor merged_expert_ffn(const torch::Tensor& x_STD, const torch::Tensor& w_SE,
                                const ExpertWeights& experts, int64_t chunk_segments);

// The reference: an explicit loop over segments, each merging the experts with explicit sums and
// running a plain SwiGLU, differentiated by autograd. Slow; for tests and benchmarks.
torch::Tensor merged_expert_ffn_reference(const torch::Tensor& x_STD, const torch::Tensor& w_SE,
                                          const ExpertWeights& experts);

}  // namespace lory
