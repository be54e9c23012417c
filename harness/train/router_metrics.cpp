#include "router_metrics.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <map>

#include "lory/core/routing_summary.h"

namespace lory {

namespace {

// The balance of one layer's load over its experts: MaxVio and the load of the least,
// 10th-percentile, median, 90th-percentile and most loaded expert relative to the mean. The
// worst layer is what balance is about, so MaxVio and the largest load combine over layers by
// their maximum, the percentiles by their mean.
std::vector<RoutingStat> load_statistics(const torch::Tensor& load_E) {
  const torch::Tensor contiguous_E = load_E.to(torch::kFloat64).contiguous();
  const std::vector<double> load(contiguous_E.data_ptr<double>(),
                                 contiguous_E.data_ptr<double>() + contiguous_E.numel());
  return {
      {"max_violation", max_violation(load), Reduce::Max},
      {"load_p0", relative_load_percentile(load, 0), Reduce::Mean},
      {"load_p10", relative_load_percentile(load, 10), Reduce::Mean},
      {"load_p50", relative_load_percentile(load, 50), Reduce::Mean},
      {"load_p90", relative_load_percentile(load, 90), Reduce::Mean},
      {"load_p100", relative_load_percentile(load, 100), Reduce::Max},
  };
}

// Every record's load summed over the ranks (one all-reduce for all layers).
std::vector<torch::Tensor> loads_over_ranks(const RoutingContext& context, DataParallel& group) {
  std::vector<torch::Tensor> loads;
  for (const RoutingRecord& record : context.records()) {
    loads.push_back(record.load_E.defined() ? record.load_E.to(torch::kFloat64).cpu().reshape({-1})
                                            : torch::zeros({0}, torch::kFloat64));
  }
  if (!group.distributed() || loads.empty()) return loads;
  torch::Tensor all = torch::cat(loads);
  group.sum(all);
  std::vector<torch::Tensor> out;
  int64_t offset = 0;
  for (const torch::Tensor& load : loads) {
    out.push_back(all.slice(0, offset, offset + load.numel()));
    offset += load.numel();
  }
  return out;
}

}  // namespace

// How values of one statistic combine under its rule (over layers, or over ranks' shards).
double combine(const std::vector<double>& values, Reduce rule) {
  double out = rule == Reduce::Max ? -std::numeric_limits<double>::infinity() : 0.0;
  for (double v : values) out = rule == Reduce::Max ? std::max(out, v) : out + v;
  if (rule == Reduce::Mean && !values.empty()) out /= static_cast<double>(values.size());
  return values.empty() ? 0.0 : out;
}

// The training metrics of one logged step: the routers' statistics per layer
// ("router/layer<i>/<name>") and over layers ("router/<name>"), and the aux losses summed over
// layers ("aux/<name>", the loss that was added). One rule for every statistic, its declared
// Reduce, over layers and over data-parallel ranks alike: Mean averages (a rank's statistic is a
// mean over its equal shard), Sum adds (counts), Max takes the largest (the worst layer or
// shard). Aux losses are the exception the loss itself sets: summed over layers, averaged over
// ranks, because each rank's is a mean over its shard and the trained loss is their mean.
void add_router_metrics(const RoutingContext& context, int64_t step, DataParallel& group,
                        std::vector<MetricRow>& rows) {
  std::vector<std::pair<MetricRow, Reduce>> local;
  std::map<std::string, std::pair<std::vector<double>, Reduce>> by_name;
  for (const RoutingRecord& record : context.records()) {
    for (const RoutingStat& stat : record.stats) {
      local.push_back(
          {{step, fmt::format("router/layer{}/{}", record.layer, stat.name), stat.value},
           stat.reduce});
      auto& [values, reduce] = by_name[stat.name];
      values.push_back(stat.value);
      reduce = stat.reduce;
    }
  }
  for (const auto& [name, entry] : by_name) {
    local.push_back({{step, "router/" + name, combine(entry.first, entry.second)}, entry.second});
  }
  std::map<std::string, std::vector<double>> aux_by_name;
  for (const auto& [layer, stat] : context.aux_stats())
    aux_by_name[stat.name].push_back(stat.value);
  for (const auto& [name, values] : aux_by_name)
    local.push_back({{step, name, combine(values, Reduce::Sum)}, Reduce::Mean});

  // Every rank holds the same rows in the same order (the same model, each on its own equal
  // shard), so they are combined entry by entry.
  if (group.distributed()) {
    std::vector<double> summed(local.size(), 0.0), maximised(local.size(), 0.0);
    for (size_t i = 0; i < local.size(); ++i) {
      (local[i].second == Reduce::Max ? maximised : summed)[i] = local[i].first.value;
    }
    group.sum(summed);
    group.max(maximised);
    for (size_t i = 0; i < local.size(); ++i) {
      const Reduce rule = local[i].second;
      local[i].first.value = rule == Reduce::Max ? maximised[i]
                             : rule == Reduce::Sum
                                 ? summed[i]
                                 : summed[i] / static_cast<double>(group.world_size());
    }
  }
  for (auto& [row, reduce] : local) rows.push_back(std::move(row));

  // Balance metrics from the loads summed over ranks: every rank computes the same values, which
  // describe the whole batch (not a combination of per-shard values).
  const std::vector<torch::Tensor> loads = loads_over_ranks(context, group);
  std::map<std::string, std::pair<std::vector<double>, Reduce>> balance_by_name;
  for (size_t i = 0; i < loads.size(); ++i) {
    if (loads[i].numel() == 0) continue;
    for (const RoutingStat& stat : load_statistics(loads[i])) {
      rows.push_back({step, fmt::format("router/layer{}/{}", context.records()[i].layer, stat.name),
                      stat.value});
      auto& [values, reduce] = balance_by_name[stat.name];
      values.push_back(stat.value);
      reduce = stat.reduce;
    }
  }
  for (const auto& [name, entry] : balance_by_name)
    rows.push_back({step, "router/" + name, combine(entry.first, entry.second)});
}

}  // namespace lory
