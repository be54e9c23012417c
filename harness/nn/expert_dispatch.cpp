#include "lory/nn/expert_dispatch.h"

#include "lory/nn/feed_forward.h"

namespace lory {

torch::Tensor dispatch_to_experts(const torch::Tensor& h_XD, const ExpertAssignments& assignments,
                                  const ExpertWeights& experts) {
  const int64_t E = experts.w_gate_EFD.size(0);
  torch::Tensor y_XD = torch::zeros_like(h_XD);
  if (assignments.token_A.numel() == 0) return y_XD;
  // Group by expert: one stable sort, then contiguous runs.
  const torch::Tensor order_A = torch::argsort(assignments.expert_A, /*stable=*/true);
  const torch::Tensor token_A = assignments.token_A.index_select(0, order_A);
  const torch::Tensor gate_A = assignments.gate_A.index_select(0, order_A);
  const torch::Tensor counts_E = torch::bincount(assignments.expert_A, {}, E).cpu();
  const auto counts = counts_E.accessor<int64_t, 1>();
  const torch::Tensor rows_AD = h_XD.index_select(0, token_A);
  // unbind, not [e]: the backward of E separate selects would build E full-size [E, ...] zero
  // gradients (E^2 work); unbind's backward stacks the E slices once.
  const std::vector<torch::Tensor> gate_FD = experts.w_gate_EFD.unbind(0),
                                   up_FD = experts.w_up_EFD.unbind(0),
                                   down_DF = experts.w_down_EDF.unbind(0);
  std::vector<torch::Tensor> outputs;
  int64_t start = 0;
  for (int64_t e = 0; e < E; ++e) {
    const int64_t n = counts[e];
    if (n == 0) continue;
    outputs.push_back(swiglu(rows_AD.slice(0, start, start + n), gate_FD[e], up_FD[e], down_DF[e]));
    start += n;
  }
  const torch::Tensor expert_out_AD = torch::cat(outputs) * gate_A.unsqueeze(-1);
  return y_XD.index_add(0, token_A, expert_out_AD);
}

torch::Tensor dispatch_to_experts_reference(const torch::Tensor& h_XD,
                                            const ExpertAssignments& assignments,
                                            const ExpertWeights& experts) {
  std::vector<torch::Tensor> rows(static_cast<size_t>(h_XD.size(0)));
  const auto tokens = assignments.token_A.accessor<int64_t, 1>();
  const auto expert_ids = assignments.expert_A.accessor<int64_t, 1>();
  for (int64_t a = 0; a < assignments.token_A.size(0); ++a) {
    const int64_t x = tokens[a], e = expert_ids[a];
    const torch::Tensor out_D =
        assignments.gate_A[a] *
        swiglu(h_XD[x], experts.w_gate_EFD[e], experts.w_up_EFD[e], experts.w_down_EDF[e]);
    rows[static_cast<size_t>(x)] =
        rows[static_cast<size_t>(x)].defined() ? rows[static_cast<size_t>(x)] + out_D : out_D;
  }
  for (int64_t x = 0; x < h_XD.size(0); ++x) {
    if (!rows[static_cast<size_t>(x)].defined())
      rows[static_cast<size_t>(x)] = torch::zeros_like(h_XD[x]);
  }
  return torch::stack(rows);
}

torch::Tensor tokens_per_expert(const ExpertAssignments& assignments, int64_t experts) {
  return torch::bincount(assignments.expert_A, {}, experts);
}

torch::Tensor assignment_weights(const ExpertAssignments& assignments, int64_t tokens,
                                 int64_t experts) {
  torch::NoGradGuard no_grad;
  return torch::zeros({tokens, experts}, assignments.gate_A.options().dtype(torch::kFloat32))
      .index_put_({assignments.token_A, assignments.expert_A},
                  assignments.gate_A.detach().to(torch::kFloat32),
                  /*accumulate=*/true);
}

ExpertAssignments apply_capacity(const ExpertAssignments& assignments,
                                 const torch::Tensor& priority_A, int64_t experts,
                                 int64_t capacity) {
  const int64_t A = assignments.expert_A.size(0);
  if (A == 0) return assignments;
  // Sort by (expert, priority); an assignment's rank within its expert decides whether it fits.
  const torch::Tensor by_priority = torch::argsort(priority_A, /*stable=*/true);
  const torch::Tensor by_expert = by_priority.index_select(
      0, torch::argsort(assignments.expert_A.index_select(0, by_priority), /*stable=*/true));
  const torch::Tensor sorted_expert = assignments.expert_A.index_select(0, by_expert);
  const torch::Tensor counts_E = torch::bincount(sorted_expert, {}, experts);
  const torch::Tensor starts_E = torch::cumsum(counts_E, 0) - counts_E;
  const torch::Tensor rank =
      torch::arange(A, torch::dtype(torch::kInt64).device(sorted_expert.device())) -
      starts_E.index_select(0, sorted_expert);
  const torch::Tensor kept = by_expert.masked_select(rank < capacity);
  const torch::Tensor kept_sorted = std::get<0>(torch::sort(kept));
  return {assignments.token_A.index_select(0, kept_sorted),
          assignments.expert_A.index_select(0, kept_sorted),
          assignments.gate_A.index_select(0, kept_sorted)};
}

}  // namespace lory
