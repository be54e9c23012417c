// Routing stability over training (OLMoE's measure): how much of the final model's routing was
// already decided at each earlier evaluation. At every evaluation the routing of a fixed probe (the
// first held-out sequences of each domain) is saved beside the run's checkpoints; at the final
// evaluation each saved routing is compared with the final one, per MoE layer:
//   top1_agreement  share of probe tokens whose largest-weight expert is the final model's
//                   (token routers: the share of tokens whose top-1 expert is unchanged; Lory: the
//                   expert its merge weighs most)
//   tv_distance     mean over tokens of the total variation distance between the two routing
//                   distributions, 0.5 * sum_e |w_e - w'_e| (0 = identical, 1 = disjoint)
// written as metrics "routing_stability/layer<i>/<name>" and their mean over layers
// "routing_stability/<name>" at the earlier evaluation's step.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "core/store/results_store.h"
#include "lory/nn/model_api.h"

namespace lory {

class RoutingStability {
 public:
  // `directory`: where the probe routings are kept (the run's folder); `probe_BL`: the probe's
  // token ids, the same at every evaluation.
  RoutingStability(std::string directory, torch::Tensor probe_BL);

  // Routes the probe with the model as it is (evaluation routing as in training) and saves the
  // routing of its MoE layers for `step`. A model whose layers are all dense saves nothing.
  void save(LanguageModel& model, int64_t step) const;

  // Compares every saved routing before `final_step` with the one saved at `final_step`.
  std::vector<MetricRow> compare_with(int64_t final_step) const;

 private:
  std::string file(int64_t step) const;
  std::string directory_;
  torch::Tensor probe_BL_;
};

// The per-layer measures of two routings of the same tokens (distributions [X, E], rows sum to 1
// or are all zero): {top1_agreement, tv_distance}.
std::pair<double, double> routing_agreement(const torch::Tensor& earlier_XE,
                                            const torch::Tensor& final_XE);

}  // namespace lory
