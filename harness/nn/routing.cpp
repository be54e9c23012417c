#include "lory/nn/routing.h"

#include "lory/core/routing_summary.h"
#include "lory/nn/decode_state.h"

namespace lory {

namespace {

std::vector<double> to_vector(const torch::Tensor& values_E) {
  const torch::Tensor contiguous_E = values_E.to(torch::kFloat64).contiguous();
  return {contiguous_E.data_ptr<double>(), contiguous_E.data_ptr<double>() + contiguous_E.numel()};
}

}  // namespace

int64_t RoutingContext::first_position() const { return decode_ ? decode_->position() : 0; }

void record_routing(RoutingContext& context, int64_t layer, const torch::Tensor& weights_BLE,
                    std::vector<RoutingStat> stats, const torch::Tensor& load_E) {
  if (!context.recording()) return;
  torch::NoGradGuard no_grad;
  RoutingRecord record;
  record.layer = layer;
  record.expert_count = weights_BLE.size(-1);
  record.weights_BLE = weights_BLE.detach().to(torch::kFloat32).contiguous();
  record.stats = stats.empty() ? weight_statistics(record.weights_BLE) : std::move(stats);
  record.load_E = (load_E.defined() ? load_E.detach()
                                    : record.weights_BLE.reshape({-1, record.expert_count}).sum(0))
                      .to(torch::kFloat64)
                      .cpu()
                      .contiguous();
  context.add_record(std::move(record));
}

void RoutingContext::add_aux_loss(int64_t layer, const std::string& name, torch::Tensor scaled_loss,
                                  double unscaled) {
  aux_stats_.push_back(
      {layer, RoutingStat{"aux/" + name, scaled_loss.item<double>(), Reduce::Sum}});
  aux_stats_.push_back({layer, RoutingStat{"aux/" + name + "_unscaled", unscaled, Reduce::Sum}});
  aux_losses_.push_back(std::move(scaled_loss));
}

torch::Tensor RoutingContext::total_aux_loss() const {
  if (aux_losses_.empty()) return torch::zeros({});
  torch::Tensor total = aux_losses_.front();
  for (size_t i = 1; i < aux_losses_.size(); ++i) total = total + aux_losses_[i];
  return total;
}

torch::Tensor routing_distribution(const torch::Tensor& weights_BLE) {
  torch::NoGradGuard no_grad;
  return weights_BLE / weights_BLE.sum(-1, true).clamp_min(1e-30);
}

std::vector<RoutingStat> weight_statistics(const torch::Tensor& weights_BLE) {
  torch::NoGradGuard no_grad;
  const int64_t experts = weights_BLE.size(-1);
  const torch::Tensor w_XE = weights_BLE.reshape({-1, experts}).to(torch::kFloat64);
  if (w_XE.size(0) == 0) return {};
  const torch::Tensor entropy_X = -(w_XE * torch::log(w_XE.clamp_min(1e-30))).sum(-1);
  const torch::Tensor mass_E = w_XE.sum(0);
  // An expert is "activated" for a token when its weight exceeds 2/E (the Lory paper's rule); a
  // single expert is always active.
  const torch::Tensor active_XE =
      experts == 1 ? torch::ones_like(w_XE) : (w_XE > 2.0 / experts).to(torch::kFloat64);
  const torch::Tensor used_E = active_XE.amax(0);
  return {
      {"entropy", entropy_X.mean().item<double>(), Reduce::Mean},
      {"max_weight", w_XE.amax(-1).mean().item<double>(), Reduce::Mean},
      {"active_experts", active_XE.sum(-1).mean().item<double>(), Reduce::Mean},
      {"load_imbalance", load_imbalance(to_vector(mass_E)), Reduce::Mean},
      {"unused_experts", (experts - used_E.sum()).item<double>(), Reduce::Mean},
  };
}

std::vector<RoutingStat> dispatch_statistics(const torch::Tensor& probs_XE,
                                             const torch::Tensor& tokens_per_expert_E,
                                             int64_t assignments_made,
                                             int64_t assignments_dropped) {
  torch::NoGradGuard no_grad;
  const torch::Tensor p_XE = probs_XE.to(torch::kFloat64);
  const torch::Tensor distribution_XE = p_XE / p_XE.sum(-1, true).clamp_min(1e-30);
  const torch::Tensor entropy_X =
      -(distribution_XE * torch::log(distribution_XE.clamp_min(1e-30))).sum(-1);
  const torch::Tensor load_E = tokens_per_expert_E.to(torch::kFloat64);
  const double mean_load = std::max(1e-30, load_E.mean().item<double>());
  const int64_t total = assignments_made + assignments_dropped;
  return {
      {"entropy", entropy_X.mean().item<double>(), Reduce::Mean},
      {"max_weight", distribution_XE.amax(-1).mean().item<double>(), Reduce::Mean},
      {"load_imbalance", load_imbalance(to_vector(load_E)), Reduce::Mean},
      {"min_load", load_E.min().item<double>() / mean_load, Reduce::Mean},
      {"unused_experts", (load_E == 0).sum().item<double>(), Reduce::Mean},
      {"dropped_fraction",
       total > 0 ? static_cast<double>(assignments_dropped) / static_cast<double>(total) : 0.0,
       Reduce::Mean},
  };
}

}  // namespace lory
