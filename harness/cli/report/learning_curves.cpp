// The report's figures against training tokens, each summarised over seeds (mean and spread) and
// each answering one question: how held-out loss falls per cell; how much an MoE gains over its
// paired dense model as training goes on; how the final gain grows with the number of experts; how
// much similarity batching gains over random batching. Only done runs count: a run still training
// would pull a cell's mean at its last points.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "cli/report/gnuplot_figures.h"
#include "cli/report/report_sections.h"
#include "cli/report/seed_summary.h"

namespace lory::cli {

namespace {

// Perplexity gain of `loss` over `reference` in percent, (ppl_ref - ppl) / ppl_ref: the paper's
// improvement, positive when `loss` is lower.
double gain_percent(double loss, double reference) {
  return 100.0 * (1.0 - std::exp(loss - reference));
}

// At every x both curves have, the gain of `curve` over `reference`, added to `summary`.
void add_paired_gains(const Curve& curve, const Curve& reference, SeedSummary& summary) {
  std::map<double, double> at;
  for (const auto& [x, y] : reference) at[x] = y;
  for (const auto& [x, y] : curve) {
    if (auto it = at.find(x); it != at.end()) summary.add(x, gain_percent(y, it->second));
  }
}

// A run's config without the keys that `erase` names (dotted paths), as a comparable text.
std::string config_key_without(const std::string& config_json,
                               const std::vector<std::vector<std::string>>& erase) {
  nlohmann::json config = nlohmann::json::parse(config_json, nullptr, false);
  if (config.is_discarded()) return config_json;
  for (const auto& path : erase) {
    nlohmann::json* node = &config;
    for (size_t i = 0; i + 1 < path.size() && node; ++i) {
      node = node->contains(path[i]) ? &(*node)[path[i]] : nullptr;
    }
    if (node && node->is_object()) node->erase(path.back());
  }
  return config.dump();
}

std::string format_std(double std, const char* format) {
  return std::isfinite(std) ? fmt::format(fmt::runtime(format), std) : "-";
}

void add_held_out_figure(ReportDocument& doc, ResultsReader& reader,
                         const std::vector<RunCell>& done, const std::vector<std::string>& groups,
                         const std::string& out) {
  std::vector<BandSeries> series;
  for (const std::string& group : groups) {
    SeedSummary summary;
    for (const RunCell& r : done) {
      if (r.group_label != group) continue;
      for (const auto& [tokens, loss] : reader.held_out_loss_against_tokens(r.id)) {
        summary.add(tokens, loss);
      }
    }
    if (!summary.empty()) {
      series.push_back({fmt::format("{} (n={})", group, summary.seeds()), summary.points()});
    }
  }
  if (series.empty()) return;
  band_plot(out + "/heldout_loss.png",
            "Held-out loss (all domains) against training tokens: mean over seeds, band +- 1 std",
            "training tokens", "held-out loss (nats per token)", series);
  doc.figure("heldout_loss.png", "Held-out loss of each cell against training tokens");
}

void add_gain_figures(ReportDocument& doc, ResultsReader& reader, const std::string& experiment,
                      const std::vector<RunCell>& done, const std::vector<std::string>& groups,
                      const std::string& out) {
  std::map<int64_t, const RunCell*> by_id;
  for (const RunCell& r : done) by_id[r.id] = &r;
  const std::map<int64_t, int64_t> baselines = reader.paired_baselines(experiment);
  const std::map<int64_t, std::string> configs = reader.run_configs(experiment);
  std::map<std::string, SeedSummary> gain_by_group;
  for (const auto& [run, dense] : baselines) {
    if (run == dense || !by_id.count(run) || !by_id.count(dense) || by_id[run]->dense_baseline) {
      continue;
    }
    add_paired_gains(reader.held_out_loss_against_tokens(run),
                     reader.held_out_loss_against_tokens(dense),
                     gain_by_group[by_id[run]->group_label]);
  }
  std::vector<BandSeries> series;
  for (const std::string& group : groups) {
    auto it = gain_by_group.find(group);
    if (it == gain_by_group.end() || it->second.empty()) continue;
    series.push_back({fmt::format("{} (n={})", group, it->second.seeds()), it->second.points()});
  }
  if (series.empty()) return;
  doc.heading(3, "Gain over dense against training tokens");
  band_plot(out + "/gain_over_dense.png",
            "Held-out perplexity gain over the paired dense run: mean over seeds, band +- 1 std",
            "training tokens", "gain over dense (%)", series, {BandStyle::Band, false, true});
  doc.figure("gain_over_dense.png",
             "(dense ppl - MoE ppl) / dense ppl at each evaluation, paired seed by seed");

  // The final gain against the number of experts, for cells that differ only in it.
  std::map<std::string, std::map<int64_t, SeedSummary>> family_by_experts;  // key -> E -> gains
  // key -> E -> the cells (labels) of that E: a series is named by its cells in order of E.
  std::map<std::string, std::map<int64_t, std::set<std::string>>> family_groups;
  for (const auto& [run, dense] : baselines) {
    if (run == dense || !by_id.count(run) || !by_id.count(dense) || !configs.count(run) ||
        by_id[run]->dense_baseline) {
      continue;
    }
    const nlohmann::json config = nlohmann::json::parse(configs.at(run), nullptr, false);
    const std::string router = by_id[run]->router;
    if (!config.is_object() || !config.contains("router") || !config["router"].contains(router)) {
      continue;
    }
    const nlohmann::json& section = config["router"][router];
    if (!section.is_object() || !section.contains("experts") || !section["experts"].is_number()) {
      continue;
    }
    const int64_t experts = section["experts"].get<int64_t>();
    const std::string family =
        config_key_without(configs.at(run), {{"router", router, "experts"}, {"trainer", "seed"}});
    const Curve moe = reader.held_out_loss_against_tokens(run);
    const Curve reference = reader.held_out_loss_against_tokens(dense);
    if (moe.empty() || reference.empty() || moe.back().first != reference.back().first) continue;
    family_by_experts[family][experts].add(
        static_cast<double>(experts), gain_percent(moe.back().second, reference.back().second));
    family_groups[family][experts].insert(by_id[run]->group_label);
  }
  std::vector<BandSeries> by_experts;
  std::vector<std::vector<std::string>> rows;
  for (const auto& [family, points] : family_by_experts) {
    if (points.size() < 2) continue;
    BandSeries line;
    for (const auto& [experts, labels] : family_groups[family]) {
      for (const std::string& label : labels) line.name += (line.name.empty() ? "" : " / ") + label;
    }
    for (const auto& [experts, summary] : points) {
      for (const BandPoint& p : summary.points()) {
        line.points.push_back(p);
        rows.push_back({line.name, std::to_string(experts), fmt::format("{:+.2f}", p.mean),
                        format_std(p.std, "{:.2f}"), std::to_string(summary.seeds())});
      }
    }
    by_experts.push_back(line);
  }
  if (by_experts.empty()) return;
  doc.heading(3, "Gain over dense against the number of experts");
  band_plot(out + "/gain_by_experts.png",
            "Final held-out perplexity gain over dense against experts: mean over seeds, +- 1 std",
            "experts (E)", "gain over dense (%)", by_experts, {BandStyle::ErrorBars, true, true});
  doc.figure("gain_by_experts.png", "Final gain over the paired dense run against E");
  doc.table({"cells", "experts", "gain (%)", "std", "seeds"}, rows);
}

void add_similarity_figure(ReportDocument& doc, ResultsReader& reader,
                           const std::string& experiment, const std::vector<RunCell>& done,
                           const std::vector<std::string>& groups, const std::string& out) {
  const std::map<int64_t, std::string> configs = reader.run_configs(experiment);
  // Random-batched runs by their config without the batcher (the seed included: pairs share it).
  std::map<std::string, const RunCell*> random_by_key;
  for (const RunCell& r : done) {
    if (r.batcher == "random" && configs.count(r.id)) {
      random_by_key[config_key_without(configs.at(r.id), {{"batcher"}})] = &r;
    }
  }
  std::map<std::string, SeedSummary> gap_by_group;
  for (const RunCell& r : done) {
    if (r.batcher != "similarity" || !configs.count(r.id)) continue;
    auto it = random_by_key.find(config_key_without(configs.at(r.id), {{"batcher"}}));
    if (it == random_by_key.end()) continue;
    add_paired_gains(reader.held_out_loss_against_tokens(r.id),
                     reader.held_out_loss_against_tokens(it->second->id),
                     gap_by_group[r.group_label]);
  }
  std::vector<BandSeries> series;
  for (const std::string& group : groups) {
    auto it = gap_by_group.find(group);
    if (it == gap_by_group.end() || it->second.empty()) continue;
    series.push_back(
        {fmt::format("{} over random (n={})", group, it->second.seeds()), it->second.points()});
  }
  if (series.empty()) return;
  doc.heading(3, "Similarity batching against random batching");
  band_plot(
      out + "/similarity_gain.png",
      "Held-out perplexity gain of similarity over random batching: mean over seeds, +- 1 std",
      "training tokens", "gain over random batching (%)", series, {BandStyle::Band, false, true});
  doc.figure(
      "similarity_gain.png",
      "(random ppl - similarity ppl) / random ppl for cells that differ only in the batcher, "
      "paired seed by seed");
}

}  // namespace

void add_learning_curve_sections(ReportDocument& doc, Database& db, const std::string& experiment,
                                 const std::vector<RunCell>& runs,
                                 const std::vector<std::string>& groups, const std::string& out) {
  std::vector<RunCell> done;
  for (const RunCell& r : runs) {
    if (r.status == "done") done.push_back(r);
  }
  ResultsReader reader(db);
  bool any = false;
  for (const RunCell& r : done) any = any || !reader.held_out_loss(r.id).empty();
  if (!any) return;
  doc.heading(2, "Held-out loss against training tokens");
  doc.paragraph(
      "Done runs only, summarised over seeds: the line is the mean, the band or bar one sample "
      "standard deviation (none with one seed).");
  add_held_out_figure(doc, reader, done, groups, out);
  add_gain_figures(doc, reader, experiment, done, groups, out);
  add_similarity_figure(doc, reader, experiment, done, groups, out);
}

}  // namespace lory::cli
