#include "routing_stability.h"

#include <fmt/format.h>

#include <cinttypes>
#include <cstdio>
#include <filesystem>

namespace lory {

namespace fs = std::filesystem;

RoutingStability::RoutingStability(std::string directory, torch::Tensor probe_BL)
    : directory_(std::move(directory)), probe_BL_(std::move(probe_BL)) {}

std::string RoutingStability::file(int64_t step) const {
  return (fs::path(directory_) / "routing_probe" / fmt::format("step{:09d}.pt", step)).string();
}

void RoutingStability::save(LanguageModel& model, int64_t step) const {
  if (probe_BL_.numel() == 0) return;
  // A dense model (a dense run, or before upcycling) has no routing to keep: no probe forward.
  bool routed = false;
  for (int64_t layer = 0; layer < model.layer_count(); ++layer)
    routed = routed || model.feed_forward(layer)->expert_count() > 1;
  if (!routed) return;
  torch::NoGradGuard no_grad;
  RoutingContext context(ForwardMode::Eval, /*record=*/true);
  model.forward(probe_BL_.to(model.parameters().front().device()), context);
  std::vector<torch::Tensor> layers;
  for (const RoutingRecord& record : context.records()) {
    if (record.expert_count < 2) continue;
    // Half precision on disk: the measures compare distributions to far better than 1e-3.
    layers.push_back(routing_distribution(record.weights_BLE)
                         .reshape({-1, record.expert_count})
                         .to(torch::kHalf)
                         .cpu());
  }
  if (layers.empty()) return;
  fs::create_directories(fs::path(file(step)).parent_path());
  // Written aside and renamed: a kill leaves the previous files whole and no half-written one.
  const std::string temporary = file(step) + ".tmp";
  torch::save(layers, temporary);
  fs::rename(temporary, file(step));
}

std::pair<double, double> routing_agreement(const torch::Tensor& earlier_XE,
                                            const torch::Tensor& final_XE) {
  const torch::Tensor a_XE = earlier_XE.to(torch::kFloat64), b_XE = final_XE.to(torch::kFloat64);
  const double agreement =
      (a_XE.argmax(-1) == b_XE.argmax(-1)).to(torch::kFloat64).mean().item<double>();
  const double distance = (0.5 * (a_XE - b_XE).abs().sum(-1)).mean().item<double>();
  return {agreement, distance};
}

std::vector<MetricRow> RoutingStability::compare_with(int64_t final_step) const {
  std::vector<MetricRow> rows;
  std::error_code ec;
  if (!fs::exists(file(final_step), ec)) return rows;
  std::vector<torch::Tensor> final_layers;
  torch::load(final_layers, file(final_step));
  for (const auto& entry : fs::directory_iterator(fs::path(file(final_step)).parent_path(), ec)) {
    const std::string name = entry.path().filename().string();
    int64_t step = 0;
    if (std::sscanf(name.c_str(), "step%" SCNd64 ".pt", &step) != 1 ||
        entry.path().extension() != ".pt" || step >= final_step) {
      continue;
    }
    std::vector<torch::Tensor> layers;
    try {
      torch::load(layers, entry.path().string());
    } catch (const std::exception&) {
      continue;  // a damaged probe file costs its step's row, nothing else
    }
    if (layers.size() != final_layers.size()) continue;  // e.g. saved before upcycling
    double agreement_sum = 0, distance_sum = 0;
    int64_t compared = 0;
    for (size_t i = 0; i < layers.size(); ++i) {
      if (layers[i].sizes() != final_layers[i].sizes()) continue;
      ++compared;
      const auto [agreement, distance] = routing_agreement(layers[i], final_layers[i]);
      rows.push_back({step, fmt::format("routing_stability/layer{}/top1_agreement", i), agreement});
      rows.push_back({step, fmt::format("routing_stability/layer{}/tv_distance", i), distance});
      agreement_sum += agreement;
      distance_sum += distance;
    }
    if (compared == 0) continue;
    rows.push_back(
        {step, "routing_stability/top1_agreement", agreement_sum / static_cast<double>(compared)});
    rows.push_back(
        {step, "routing_stability/tv_distance", distance_sum / static_cast<double>(compared)});
  }
  return rows;
}

}  // namespace lory
