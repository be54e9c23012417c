// Token dispatch for routers that send tokens (or whole segments' tokens) to experts: the
// assignments are grouped by expert (one stable sort), each expert runs ONE SwiGLU GEMM chain on
// the rows assigned to it, and the outputs are scaled by their gates and added back to their
// tokens. No loop over tokens; autograd differentiates it.
#pragma once

#include <torch/torch.h>

#include "lory/nn/expert_merge.h"

namespace lory {

// Assignment a sends token token_A[a] to expert expert_A[a] with weight gate_A[a].
struct ExpertAssignments {
  torch::Tensor token_A;   // int64 row of h_XD
  torch::Tensor expert_A;  // int64 expert id
  torch::Tensor gate_A;    // gate (differentiable)
};

// y_XD[x] = sum over assignments a of x: gate_A[a] * FFN_{expert_A[a]}(h_XD[x]); rows without an
// assignment stay 0.
torch::Tensor dispatch_to_experts(const torch::Tensor& h_XD, const ExpertAssignments& assignments,
                                  const ExpertWeights& experts);

// The same, one assignment at a time with explicit per-token SwiGLUs: the reference for tests.
torch::Tensor dispatch_to_experts_reference(const torch::Tensor& h_XD,
                                            const ExpertAssignments& assignments,
                                            const ExpertWeights& experts);

// Tokens per expert of a set of assignments (int64 [E]).
torch::Tensor tokens_per_expert(const ExpertAssignments& assignments, int64_t experts);

// Each token's gates as a [tokens, E] float32 matrix (zeros for experts it did not go to, summed
// when a token reaches an expert twice), detached: the per-token weights of a routing record.
torch::Tensor assignment_weights(const ExpertAssignments& assignments, int64_t tokens,
                                 int64_t experts);

// Capacity: keeps, for every expert, its first `capacity` assignments in the order given by
// `priority_A` (smaller first; ties by assignment index) and returns the kept subset.
ExpertAssignments apply_capacity(const ExpertAssignments& assignments,
                                 const torch::Tensor& priority_A, int64_t experts,
                                 int64_t capacity);

}  // namespace lory
