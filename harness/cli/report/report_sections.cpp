#include "cli/report/report_sections.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>

#include "cli/report/gnuplot_figures.h"
#include "cli/report/seed_summary.h"

namespace lory::cli {

namespace fs = std::filesystem;

namespace {

struct MeanStd {
  double mean = 0, std = NAN;
  int64_t n = 0;
};

std::string format_mean_std(const MeanStd& m, const char* format) {
  const std::string mean = fmt::format(fmt::runtime(format), m.mean);
  return m.n >= 2 && std::isfinite(m.std) ? mean + " ± " + fmt::format(fmt::runtime(format), m.std)
                                          : mean;
}

// Moving average over `window` logged points: training loss is noisy from batch to batch.
std::vector<std::pair<double, double>> smoothed(
    const std::vector<std::pair<double, double>>& points, size_t window) {
  std::vector<std::pair<double, double>> out;
  for (size_t i = 0; i < points.size(); ++i) {
    const size_t from = i + 1 >= window ? i + 1 - window : 0;
    double sum = 0;
    for (size_t j = from; j <= i; ++j) sum += points[j].second;
    out.emplace_back(points[i].first, sum / static_cast<double>(i - from + 1));
  }
  return out;
}

// The step at which a held-out curve first reaches target, linear between evaluations; NAN when it
// never does, and the first evaluation's step when that one is already below (an upper bound).
double step_reaching(const std::vector<std::pair<double, double>>& curve, double target) {
  for (size_t i = 0; i < curve.size(); ++i) {
    if (curve[i].second > target) continue;
    if (i == 0) return curve[0].first;
    const auto [s0, l0] = curve[i - 1];
    const auto [s1, l1] = curve[i];
    return s0 + (s1 - s0) * (l0 - target) / (l0 - l1);
  }
  return NAN;
}

}  // namespace

std::vector<std::string> group_order(const std::vector<RunCell>& runs) {
  std::vector<std::string> groups;
  for (const RunCell& r : runs) {
    if (std::find(groups.begin(), groups.end(), r.group_label) == groups.end())
      groups.push_back(r.group_label);
  }
  return groups;
}

void add_perplexity_section(ReportDocument& doc, Database& db, const std::string& experiment,
                            const std::vector<std::string>& groups) {
  ResultsReader reader(db);
  std::map<std::string, std::map<std::string, MeanStd>> ppl;
  std::set<std::string> domains;
  for (const OverSeeds& row : reader.perplexity_over_seeds(experiment, "default")) {
    ppl[row.group_label][row.key] = {row.mean, row.std, row.n};
    domains.insert(row.key);
  }
  const auto columns = ordered_domains(domains);
  doc.heading(2, "Held-out perplexity per domain");
  std::vector<std::string> header = {"cell", "seeds"};
  header.insert(header.end(), columns.begin(), columns.end());
  std::vector<std::vector<std::string>> rows;
  for (const auto& group : groups) {
    if (!ppl.count(group)) continue;
    std::vector<std::string> row = {group, std::to_string(ppl[group].begin()->second.n)};
    for (const auto& d : columns)
      row.push_back(ppl[group].count(d) ? format_mean_std(ppl[group][d], "{:.2f}") : "-");
    rows.push_back(std::move(row));
  }
  doc.paragraph(
      "Final evaluation of every cell (routing as in training, causal), mean ± sample standard "
      "deviation "
      "over seeds when there are at least two.");
  doc.table(header, rows);

  std::map<std::string, std::map<std::string, MeanStd>> change;
  for (const OverSeeds& row : reader.improvement_over_seeds(experiment, "default")) {
    change[row.group_label][row.key] = {row.mean, row.std, row.n};
  }
  doc.heading(2, "Change relative to the dense baseline");
  if (change.empty()) {
    doc.paragraph(
        "No MoE cell has a dense cell that shares everything but the router, so there is no paired "
        "comparison.");
    return;
  }
  rows.clear();
  bool any_within_spread = false, any_single_seed = false;
  for (const auto& group : groups) {
    if (!change.count(group)) continue;
    std::vector<std::string> row = {group, std::to_string(change[group].begin()->second.n)};
    for (const auto& d : columns) {
      if (!change[group].count(d)) {
        row.push_back("-");
        continue;
      }
      const MeanStd& m = change[group][d];
      std::string cell = fmt::format("{:+.1f}%", 100 * m.mean);
      if (m.n >= 2 && std::isfinite(m.std)) {
        cell += fmt::format(" ± {:.1f}", 100 * m.std);
        if (std::abs(m.mean) < m.std) {
          cell += " ~";
          any_within_spread = true;
        }
      } else {
        any_single_seed = true;
      }
      row.push_back(cell);
    }
    rows.push_back(std::move(row));
  }
  doc.paragraph(
      "Perplexity improvement over the dense run that shares everything but the router, (dense - "
      "MoE) / "
      "dense, paired seed by seed (the paper's +13.9% on Books is this number).");
  doc.table(header, rows);
  if (any_within_spread) {
    doc.paragraph(
        "~ marks a difference smaller than its spread over seeds: not distinguishable from noise.");
  }
  if (any_single_seed) {
    doc.paragraph(
        "Cells with one seed have no spread estimate: run more seeds (grid.seeds) before trusting "
        "small "
        "differences.");
  }
}

void add_loss_section(ReportDocument& doc, Database& db, const std::string& experiment,
                      const std::vector<RunCell>& runs, const std::vector<std::string>& groups,
                      const std::string& out) {
  doc.heading(2, "Training loss");
  // One line per cell: the mean over its seeds of the smoothed training loss (a batch's loss is
  // noisy; 22 runs as 22 lines were unreadable), with the seeds' spread as a band.
  std::vector<BandSeries> series;
  for (const std::string& group : groups) {
    SeedSummary summary;
    for (const RunCell& r : runs) {
      if (r.group_label != group) continue;
      for (const auto& [tokens, loss] :
           smoothed(ResultsReader(db).metric_against_tokens(r.id, "train/loss"), 3)) {
        summary.add(tokens, loss);
      }
    }
    const BandSeries line{fmt::format("{} (n={})", group, summary.seeds()), summary.points()};
    if (!line.points.empty()) series.push_back(line);
  }
  if (series.empty()) {
    doc.paragraph("No training metrics yet.");
    return;
  }
  band_plot(out + "/loss_curves.png",
            "Training loss (moving average of 3 logged steps): mean over seeds, band +- 1 std",
            "training tokens", "loss (nats per token)", series);
  doc.figure("loss_curves.png", "Training loss of every cell against training tokens");

  // Tokens each MoE run needs to reach its paired dense run's final (smoothed) training loss.
  std::vector<std::vector<std::string>> rows;
  for (const BaselinePair& pair : ResultsReader(db).evaluated_pairs(experiment)) {
    const auto moe =
        smoothed(ResultsReader(db).metric_against_tokens(pair.run_id, "train/loss"), 3);
    const auto dense =
        smoothed(ResultsReader(db).metric_against_tokens(pair.baseline_run_id, "train/loss"), 3);
    if (moe.empty() || dense.empty()) continue;
    const double target = dense.back().second, dense_tokens = dense.back().first;
    std::string reached = "not reached", fraction = "-";
    for (const auto& [tokens, loss] : moe) {
      if (loss <= target) {
        reached = fmt::format("{:.0f}", tokens);
        fraction = fmt::format("{:.2f}", tokens / dense_tokens);
        break;
      }
    }
    // The same question on held-out text, which every evaluation measures on the same tokens: the
    // training loss of one batch depends on its content far more than on the model, so a run can
    // cross dense's final training loss on an easy stretch of batches without having caught up.
    const auto moe_held_out = ResultsReader(db).held_out_loss(pair.run_id);
    const auto dense_held_out = ResultsReader(db).held_out_loss(pair.baseline_run_id);
    std::string held_out_fraction = "-";
    if (!moe_held_out.empty() && !dense_held_out.empty()) {
      const double step = step_reaching(moe_held_out, dense_held_out.back().second);
      held_out_fraction =
          std::isnan(step)
              ? "not reached"
              : fmt::format("{}{:.2f}", step == moe_held_out.front().first ? "<= " : "",
                            step / dense_held_out.back().first);
    }
    rows.push_back({pair.label, fmt::format("{:.4f}", target), fmt::format("{:.0f}", dense_tokens),
                    reached, fraction, held_out_fraction});
  }
  if (!rows.empty()) {
    doc.heading(3, "Tokens to reach the dense model's final loss");
    doc.paragraph(
        "Training loss: first training-token count at which the MoE run's smoothed training loss "
        "is at or "
        "below the final smoothed training loss of its paired dense run (the paper: fewer than "
        "half the "
        "tokens with 32 experts); a batch's loss depends on its content, so this crosses early on "
        "an easy "
        "stretch of batches. Held-out: the fraction of dense's steps at which the MoE run's "
        "held-out loss "
        "(all domains) reaches dense's final held-out loss, linear between evaluations (coarse "
        "with few "
        "evaluations; \"<=\" when the first evaluation is already there).");
    doc.table({"MoE run", "dense final loss", "dense tokens", "MoE tokens to reach it", "fraction",
               "held-out fraction"},
              rows);
  }
}

void add_routing_sections(ReportDocument& doc, Database& db, const std::vector<RunCell>& runs,
                          const std::string& out) {
  // One run per MoE cell group (its lowest seed).
  std::vector<RunCell> representatives;
  std::set<std::string> seen;
  for (const RunCell& r : runs) {
    if (!r.dense_baseline && seen.insert(r.group_label).second) representatives.push_back(r);
  }
  doc.heading(2, "Expert specialisation");
  if (representatives.empty()) {
    doc.paragraph("No MoE cells.");
    return;
  }
  // One colour scale for every heatmap of the report, so that two runs or two layers compare by
  // eye: 0 to the largest mean routing weight any of them shows.
  double colour_max = 0;
  for (const RunCell& r : representatives) {
    for (const LayerRouting& l : ResultsReader(db).layer_routing(r.id)) {
      for (const auto& row : ResultsReader(db).expert_domain_matrix(r.id, l.layer).weight_DE) {
        for (double v : row) colour_max = std::max(colour_max, v);
      }
    }
  }
  doc.paragraph(
      "Per layer at the last evaluation: mean routing entropy per token (nats), specialisation = "
      "I(domain; expert) / H(expert) of the routing mass (0 = routing ignores the domain, 1 = the "
      "domain "
      "determines it), load imbalance (max / mean expert mass) and experts no token activated "
      "(weight > "
      "2/E). The heatmaps show the mean routing weight of every expert per domain for a lower, a "
      "middle and "
      "an upper layer, all on one colour scale (0 to " +
      fmt::format("{:.2f}", colour_max) + ").");
  for (const RunCell& r : representatives) {
    doc.heading(3, r.label);
    std::vector<std::vector<std::string>> rows;
    std::vector<int64_t> layer_ids;
    for (const LayerRouting& l : ResultsReader(db).layer_routing(r.id)) {
      layer_ids.push_back(l.layer);
      rows.push_back({std::to_string(l.layer), std::to_string(l.experts),
                      fmt::format("{:.3f}", l.entropy), fmt::format("{:.3f}", l.specialisation),
                      fmt::format("{:.2f}", l.load_imbalance), std::to_string(l.unused_experts)});
    }
    if (rows.empty()) {
      // A cell of the grid that has not been evaluated yet is not a cell without statistics.
      doc.paragraph(r.status == "done"
                        ? std::string("No routing statistics (eval.routing_stats = false?).")
                        : fmt::format("Not evaluated yet (status {}).", r.status));
      continue;
    }
    doc.table({"layer", "experts", "entropy", "specialisation", "load imbalance", "unused experts"},
              rows);
    std::vector<int64_t> shown = {layer_ids.front(), layer_ids[layer_ids.size() / 2],
                                  layer_ids.back()};
    shown.erase(std::unique(shown.begin(), shown.end()), shown.end());
    for (int64_t layer : shown) {
      const ExpertDomainMatrix matrix = ResultsReader(db).expert_domain_matrix(r.id, layer);
      const std::vector<std::string>& domains = matrix.domains;
      const std::vector<std::vector<double>>& values = matrix.weight_DE;
      std::vector<std::string> experts;
      if (values.empty()) continue;
      for (size_t e = 0; e < values.front().size(); ++e) experts.push_back(std::to_string(e));
      const std::string file = fmt::format("heatmap_run{}_layer{}.png", r.id, layer);
      heatmap(out + "/" + file, fmt::format("{}: layer {}", r.label, layer), domains, experts,
              values, "mean routing weight", colour_max);
      doc.figure(file,
                 fmt::format("Expert x domain routing weights, {}, layer {}", r.label, layer));
    }
  }
  doc.heading(2, "Expert utilisation over training");
  std::vector<Series> used_series, entropy_series;
  double most_experts = 0;
  for (const RunCell& r : runs) {
    if (r.dense_baseline) continue;
    const auto unused = ResultsReader(db).metric_against_tokens(r.id, "router/unused_experts");
    const double count = static_cast<double>(ResultsReader(db).expert_count(r.id));
    if (unused.empty() || count <= 0) continue;
    most_experts = std::max(most_experts, count);
    std::vector<std::pair<double, double>> used;
    for (const auto& [tokens, value] : unused) used.emplace_back(tokens, count - value);
    used_series.push_back({r.label, used});
    entropy_series.push_back(
        {r.label, ResultsReader(db).metric_against_tokens(r.id, "router/entropy")});
  }
  if (used_series.empty()) {
    doc.paragraph("No routing metrics logged during training.");
    return;
  }
  doc.paragraph(
      "An expert counts as activated for a token when its routing weight exceeds 2/E (the paper's "
      "rule); "
      "the first figure counts the experts some token of the logged batch activated, the second "
      "shows how "
      "peaked routing is (mean routing entropy per token; ln E = uniform).");
  line_plot(out + "/utilisation.png",
            "Experts activated (weight > 2/E) by some token of the logged batch", "training tokens",
            "experts in use (mean over layers)", used_series, most_experts);
  doc.figure("utilisation.png",
             "Expert utilisation over training (the paper's activated-experts count)");
  line_plot(out + "/routing_entropy.png", "Routing entropy per token", "training tokens",
            "entropy (nats, mean over layers)", entropy_series);
  doc.figure("routing_entropy.png", "Routing entropy over training");
}

// Load balance during training, per MoE run, from the balance metrics every router logs
// (router/max_violation etc.; absent in runs trained before they existed, and then the section is
// left out). MaxVio is shown at the last logged batch, as its mean over the logged batches, and
// its maximum; the load percentiles at the last logged batch.
void add_balance_section(ReportDocument& doc, Database& db, const std::vector<RunCell>& runs) {
  std::vector<std::vector<std::string>> rows;
  for (const RunCell& r : runs) {
    if (r.dense_baseline) continue;
    ResultsReader reader(db);
    const Curve max_violation = reader.metric_against_tokens(r.id, "router/max_violation");
    if (max_violation.empty()) continue;
    double sum = 0, largest = 0;
    for (const auto& [tokens, value] : max_violation) {
      sum += value;
      largest = std::max(largest, value);
    }
    const auto last = [&](const std::string& name) {
      const Curve curve = reader.metric_against_tokens(r.id, name);
      return curve.empty() ? std::string("-") : fmt::format("{:.2f}", curve.back().second);
    };
    rows.push_back({r.label, fmt::format("{:.2f}", max_violation.back().second),
                    fmt::format("{:.2f}", sum / static_cast<double>(max_violation.size())),
                    fmt::format("{:.2f}", largest), last("router/load_p0"), last("router/load_p10"),
                    last("router/load_p50"), last("router/load_p90"), last("router/load_p100"),
                    last("router/unused_experts")});
  }
  if (rows.empty()) return;
  doc.heading(2, "Load balance during training");
  doc.paragraph(
      "MaxVio = the most loaded expert's load over the mean load, minus 1 (0 = balanced; Wang et "
      "al., 2024), "
      "in the worst layer of each logged training batch: at the last one, averaged over the logged "
      "ones, and "
      "at its largest. Load percentiles: the experts' loads (tokens for token routers, weight mass "
      "for Lory) "
      "relative to the mean, at the last logged batch, averaged over layers (p100 in the worst "
      "layer). "
      "Unused: experts no token reached (mean over layers).");
  doc.table({"run", "MaxVio last", "MaxVio mean", "MaxVio max", "load p0", "p10", "p50", "p90",
             "p100", "unused"},
            rows);

  std::vector<std::vector<std::string>> stability_rows;
  for (const RunCell& r : runs) {
    if (r.dense_baseline) continue;
    ResultsReader reader(db);
    const Curve agreement = reader.metric_against_tokens(r.id, "routing_stability/top1_agreement");
    const Curve distance = reader.metric_against_tokens(r.id, "routing_stability/tv_distance");
    if (agreement.empty() || distance.size() != agreement.size()) continue;
    std::string cells;
    for (size_t i = 0; i < agreement.size(); ++i) {
      cells += fmt::format("{}{:.2f}M: {:.2f} / {:.2f}", cells.empty() ? "" : "; ",
                           agreement[i].first / 1e6, agreement[i].second, distance[i].second);
    }
    stability_rows.push_back({r.label, cells});
  }
  if (stability_rows.empty()) return;
  doc.paragraph(
      "Routing stability (OLMoE's measure): at each evaluation, the routing of a fixed probe of "
      "held-out "
      "sequences against the final model's, as the share of probe tokens whose top-1 expert is "
      "already the "
      "final one / the mean total variation distance between the two routing distributions (0 = "
      "the same), "
      "mean over layers, by training tokens.");
  doc.table({"run", "training tokens: top-1 agreement / distance"}, stability_rows);
}

void add_throughput_section(ReportDocument& doc, Database& db, const std::string& experiment,
                            const std::vector<RunCell>& runs,
                            const std::vector<std::string>& groups) {
  doc.heading(2, "Throughput");
  std::map<int64_t, double> tokens_per_s;
  for (const RunCell& r : runs) {
    // The first logged interval includes start-up work: the reader leaves it out.
    if (const auto speed = ResultsReader(db).mean_tokens_per_s(r.id)) tokens_per_s[r.id] = *speed;
  }
  // Each run against the dense run that shares everything but the router (same seed and batcher):
  // a grid that grows over sessions may train them on machines of different speed, and the ratio
  // of runs trained side by side is the one that means something.
  const std::map<int64_t, int64_t> paired_dense = ResultsReader(db).paired_baselines(experiment);

  std::map<std::string, std::vector<double>> speed_by_group, ratio_by_group;
  for (const RunCell& r : runs) {
    if (!tokens_per_s.count(r.id)) continue;
    speed_by_group[r.group_label].push_back(tokens_per_s[r.id]);
    const auto dense = paired_dense.find(r.id);
    if (dense != paired_dense.end() && tokens_per_s.count(dense->second)) {
      ratio_by_group[r.group_label].push_back(tokens_per_s[r.id] / tokens_per_s[dense->second]);
    }
  }
  auto mean_of = [](const std::vector<double>& v) {
    double mean = 0;
    for (double x : v) mean += x / static_cast<double>(v.size());
    return mean;
  };
  std::vector<std::vector<std::string>> rows;
  for (const auto& group : groups) {
    if (!speed_by_group.count(group)) continue;
    const auto& ratios = ratio_by_group[group];
    rows.push_back({group, fmt::format("{:.0f}", mean_of(speed_by_group[group])),
                    ratios.empty() ? "-" : fmt::format("{:.3f}", mean_of(ratios)),
                    std::to_string(ratios.size())});
  }
  doc.paragraph(
      "Training tokens per second (mean over logged intervals and seeds), and each run's tokens/s "
      "over "
      "those of its paired dense run (same seed and batcher), averaged over the pairs. 2-vCPU "
      "machines are "
      "noisy and a grid that grows over sessions may run on machines of different speed: trust the "
      "ratio "
      "of runs trained one after the other on one machine.");
  doc.table({"cell", "tokens/s", "relative to paired dense", "pairs"}, rows);
}

// `lory eval-tasks` results, when there are any: accuracy per cell, task and routing rule, over
// seeds.
void add_task_section(ReportDocument& doc, Database& db, const std::string& experiment,
                      const std::vector<std::string>& groups) {
  std::map<std::string, std::vector<std::vector<std::string>>> rows_by_group;
  for (const TaskOverSeeds& t : ResultsReader(db).tasks_over_seeds(experiment)) {
    rows_by_group[t.group_label].push_back(
        {t.group_label, t.task, t.routing, std::to_string(t.n), std::to_string(t.examples),
         fmt::format("{:.3f}", t.chance),
         format_mean_std({t.accuracy, t.accuracy_std, t.n}, "{:.3f}"),
         format_mean_std({t.accuracy_norm, t.accuracy_norm_std, t.n}, "{:.3f}"),
         std::isfinite(t.accuracy_stderr) ? fmt::format("{:.3f}", t.accuracy_stderr) : "-"});
  }
  if (rows_by_group.empty()) return;
  std::vector<std::vector<std::string>> rows;
  for (const auto& group : groups) {
    for (auto& row : rows_by_group[group]) rows.push_back(std::move(row));
  }
  doc.heading(2, "In-context tasks");
  doc.paragraph(
      "Multiple-choice accuracy on the task files given to `lory eval-tasks` (docs/inference.md), "
      "final "
      "checkpoints: the choice with the highest log-likelihood after the context, and with the "
      "highest "
      "log-likelihood per byte of its text. Mean ± sample standard deviation over seeds when there "
      "are at "
      "least two; `stderr` is the binomial standard error of one run's accuracy (mean over seeds), "
      "the "
      "noise of the task file's size alone.");
  doc.table({"cell", "task", "routing", "seeds", "examples", "chance", "accuracy",
             "accuracy per byte", "stderr"},
            rows);
}

}  // namespace lory::cli
