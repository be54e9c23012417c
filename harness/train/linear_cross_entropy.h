// The language-model loss straight from the final hidden states: mean over rows of
// cross_entropy(h_ND @ weight_VD.T, targets_N), computed over chunks of rows so that the
// [N, V] logits (and their gradient) never exist in full. The approach of Liger-Kernel's fused
// linear cross-entropy: when a gradient will be needed, each chunk's logits are turned into their
// gradient in place (softmax - one_hot) right after the chunk's loss is read, and dh and dW are
// accumulated in the forward pass; the backward pass only scales them by the incoming gradient.
// Equal to the unfused loss and gradients up to fp32 summation order (tested: 1e-6 relative).
#pragma once

#include <torch/torch.h>

#include "lory/nn/model_api.h"

namespace lory {

// Rows per chunk when none is given: about 2 MB of fp32 logits per chunk, so that the chunk's
// logits, turned into their gradient in place, are still in cache when the two gradient GEMMs
// read them (64 rows at V = 8,192; measured best of 32-1,024 rows on these machines).
int64_t default_loss_chunk_rows(int64_t vocab);

// h_ND: [N, D] hidden states (floating), weight_VD: [V, D], targets_N: int64 in [0, V).
// Returns the mean loss, a scalar of h's dtype. Gradients flow to h and weight.
torch::Tensor linear_cross_entropy(const torch::Tensor& h_ND, const torch::Tensor& weight_VD,
                                   const torch::Tensor& targets_N, int64_t chunk_rows = 0);

// How the trainer forms its loss: Chunked when the model exposes its LM head
// (LanguageModel::output_projection_VD), else from forward()'s logits; FullLogits always from the
// logits (what every step did before; kept for the benchmark's before/after and the tests).
enum class LmLossPath { Chunked, FullLogits };

// The mean next-token cross-entropy of the model on inputs_BL against targets_BL (the
// training loss, without the routers' aux losses).
torch::Tensor language_model_loss(LanguageModel& model, const torch::Tensor& inputs_BL,
                                  const torch::Tensor& targets_BL, RoutingContext& context,
                                  LmLossPath path = LmLossPath::Chunked);

}  // namespace lory
