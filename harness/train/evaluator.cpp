#include "evaluator.h"

#include <fmt/format.h>

#include <cmath>
#include <functional>
#include <map>

#include "core/support/diagnostics.h"
#include "device_placement.h"
#include "lory/core/routing_summary.h"

namespace lory {

Evaluator::Evaluator(const Corpus& corpus, int64_t context_length, int64_t batch_size,
                     int64_t tokens_per_domain, int64_t skip_first_tokens)
    : batch_size_(batch_size), skip_first_tokens_(skip_first_tokens) {
  const int64_t length = context_length + 1;
  std::vector<std::vector<uint32_t>> by_domain(corpus.domain_count());
  for (uint32_t doc : corpus.documents_of_split(Split::Heldout)) {
    const DocumentRecord& record = corpus.document(doc);
    auto& stream = by_domain[record.domain];
    if (tokens_per_domain > 0 && static_cast<int64_t>(stream.size()) >= tokens_per_domain + 1)
      continue;
    const size_t start = stream.size();
    stream.resize(start + record.length);
    corpus.copy_tokens(record.offset, record.length, stream.data() + start);
    stream.push_back(corpus.manifest().eod_id);
  }
  for (size_t d = 0; d < by_domain.size(); ++d) {
    auto& stream = by_domain[d];
    if (stream.size() < 2) continue;  // a domain without held-out text is not evaluated
    // Scored targets: stream[1..]; at most tokens_per_domain of them.
    int64_t targets = static_cast<int64_t>(stream.size()) - 1;
    if (tokens_per_domain > 0) targets = std::min(targets, tokens_per_domain);
    const int64_t sequences = (targets + context_length - 1) / context_length;
    DomainSequences out;
    out.name = corpus.domain_name(d);
    out.tokens_NL1 = torch::full({sequences, length},
                                 static_cast<int64_t>(corpus.manifest().eod_id), torch::kInt64);
    out.valid_NL = torch::zeros({sequences, context_length}, torch::kBool);
    auto tokens = out.tokens_NL1.accessor<int64_t, 2>();
    auto valid = out.valid_NL.accessor<bool, 2>();
    // Sequence i covers stream[i*L .. i*L + L]: consecutive windows share their boundary token,
    // which is the last target of one window and the first input of the next.
    for (int64_t i = 0; i < sequences; ++i) {
      for (int64_t t = 0; t < length; ++t) {
        const int64_t position = i * context_length + t;
        if (position > targets) break;
        tokens[i][t] = stream[static_cast<size_t>(position)];
        if (t > 0) valid[i][t - 1] = true;
      }
    }
    domains_.push_back(std::move(out));
  }
}

torch::Tensor Evaluator::probe_tokens(int64_t per_domain) const {
  std::vector<torch::Tensor> parts;
  for (const DomainSequences& domain : domains_) {
    const int64_t length = domain.tokens_NL1.size(1) - 1;
    parts.push_back(domain.tokens_NL1.slice(0, 0, per_domain).slice(1, 0, length));
  }
  return parts.empty() ? torch::zeros({0, 0}, torch::kInt64) : torch::cat(parts, 0);
}

namespace {

// Routing of one layer over the whole evaluation: expert mass per domain (for the per-domain
// rows and the specialisation score), activations, and the token-mean entropy.
struct LayerAccumulator {
  int64_t experts = 0;
  std::vector<std::vector<double>> mass_DE;    // per domain index, per expert
  std::vector<std::vector<double>> active_DE;  // tokens whose weight on e exceeds 2/E
  std::vector<double> tokens_D;
  double entropy_sum = 0;
  double tokens = 0;

  // One batch's routing record of this layer, over the batch's scored tokens (mask_BL1).
  void add(const RoutingRecord& record, size_t d, const torch::Tensor& mask_BL1,
           double batch_tokens) {
    if (record.expert_count != experts) return;
    const torch::Tensor w_BLE = routing_distribution(record.weights_BLE.to(torch::kFloat64));
    const torch::Tensor active_BLE =
        experts == 1 ? torch::ones_like(w_BLE) : (w_BLE > 2.0 / experts).to(torch::kFloat64);
    const torch::Tensor mass_E = (w_BLE * mask_BL1).sum(torch::IntArrayRef{0, 1}).cpu();
    const torch::Tensor active_E = (active_BLE * mask_BL1).sum(torch::IntArrayRef{0, 1}).cpu();
    const torch::Tensor entropy_BL = -(w_BLE * torch::log(w_BLE.clamp_min(1e-30))).sum(-1);
    const auto mass = mass_E.accessor<double, 1>();
    const auto active = active_E.accessor<double, 1>();
    for (int64_t e = 0; e < experts; ++e) {
      mass_DE[d][static_cast<size_t>(e)] += mass[e];
      active_DE[d][static_cast<size_t>(e)] += active[e];
    }
    entropy_sum += (entropy_BL * mask_BL1.squeeze(-1)).sum().item<double>();
    tokens_D[d] += batch_tokens;
    tokens += batch_tokens;
  }

  // Every number in one flat list (for an all-reduce), and back.
  void visit(const std::function<void(double&)>& f) {
    for (auto& row : mass_DE)
      for (double& v : row) f(v);
    for (auto& row : active_DE)
      for (double& v : row) f(v);
    for (double& v : tokens_D) f(v);
    f(entropy_sum);
    f(tokens);
  }
};

// The sums of one evaluation: loss and tokens per domain, and each layer's routing.
struct EvalSums {
  std::vector<double> loss_sum, tokens;
  std::vector<LayerAccumulator> layers;

  // Laid out from the model, not from what this rank happens to see, so that the ranks' lists
  // agree.
  EvalSums(const LanguageModel& model, size_t domain_count, bool routing_stats)
      : loss_sum(domain_count, 0.0),
        tokens(domain_count, 0.0),
        layers(static_cast<size_t>(routing_stats ? model.layer_count() : 0)) {
    for (size_t l = 0; l < layers.size(); ++l) {
      layers[l].experts = model.feed_forward(static_cast<int64_t>(l))->expert_count();
      layers[l].mass_DE.assign(domain_count,
                               std::vector<double>(static_cast<size_t>(layers[l].experts), 0.0));
      layers[l].active_DE = layers[l].mass_DE;
      layers[l].tokens_D.assign(domain_count, 0.0);
    }
  }

  // Summed over the ranks of a data-parallel group, which each evaluated their share.
  void reduce(DataParallel* group) {
    if (!group || !group->distributed()) return;
    std::vector<double> flat = loss_sum;
    flat.insert(flat.end(), tokens.begin(), tokens.end());
    for (auto& layer : layers) layer.visit([&](double& v) { flat.push_back(v); });
    group->sum(flat);
    size_t at = 0;
    for (double& v : loss_sum) v = flat[at++];
    for (double& v : tokens) v = flat[at++];
    for (auto& layer : layers) layer.visit([&](double& v) { v = flat[at++]; });
  }

  // The stored rows: per-domain and "all" evaluations, per layer x domain x expert routing, and
  // per-layer summaries.
  EvalResult rows(int64_t step, const std::string& mode,
                  const std::vector<std::string>& domain_names) const {
    const size_t domain_count = domain_names.size();
    EvalResult result;
    double all_loss = 0, all_tokens = 0;
    for (size_t d = 0; d < domain_count; ++d) {
      if (tokens[d] == 0) continue;
      const double mean_loss = loss_sum[d] / tokens[d];
      result.evals.push_back({step, domain_names[d], mode, static_cast<int64_t>(tokens[d]),
                              mean_loss, std::exp(mean_loss)});
      all_loss += loss_sum[d];
      all_tokens += tokens[d];
    }
    for (size_t l = 0; l < layers.size(); ++l) {
      const LayerAccumulator& layer = layers[l];
      if (layer.tokens == 0) continue;
      int64_t unused = 0;
      for (int64_t e = 0; e < layer.experts; ++e) {
        double active = 0;
        for (size_t d = 0; d < domain_count; ++d)
          active += layer.active_DE[d][static_cast<size_t>(e)];
        unused += active == 0;
      }
      for (size_t d = 0; d < domain_count; ++d) {
        const double routed = layer.tokens_D[d];
        if (routed == 0) continue;
        for (int64_t e = 0; e < layer.experts; ++e) {
          result.routing.push_back({step, mode, static_cast<int64_t>(l), domain_names[d], e,
                                    layer.mass_DE[d][static_cast<size_t>(e)] / routed,
                                    layer.active_DE[d][static_cast<size_t>(e)] / routed,
                                    static_cast<int64_t>(routed)});
        }
      }
      result.layers.push_back({step, mode, static_cast<int64_t>(l), layer.experts,
                               layer.entropy_sum / layer.tokens, load_imbalance(layer.mass_DE),
                               unused, specialisation_score(layer.mass_DE),
                               static_cast<int64_t>(layer.tokens)});
    }
    if (all_tokens > 0) {
      const double mean = all_loss / all_tokens;
      result.evals.push_back(
          {step, "all", mode, static_cast<int64_t>(all_tokens), mean, std::exp(mean)});
    }
    return result;
  }
};

}  // namespace

EvalResult Evaluator::evaluate(LanguageModel& model, int64_t step, const std::string& mode,
                               const EvalRouting& routing, bool routing_stats,
                               DataParallel* group) const {
  torch::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  const int rank = group ? group->rank() : 0, world = group ? group->world_size() : 1;
  EvalSums sums(model, domains_.size(), routing_stats);
  const torch::Device device = module_device(model);
  // Targets never scored: the first skip_first_tokens, and under the prompt rule the prompt's.
  const int64_t unscored =
      std::max(skip_first_tokens_,
               routing.rule == EvalRouting::Rule::Prompt ? routing.prompt_length : int64_t{0});
  for (size_t d = 0; d < domains_.size(); ++d) {
    const DomainSequences& domain = domains_[d];
    const int64_t n = domain.tokens_NL1.size(0);
    for (int64_t batch = 0, start = 0; start < n; ++batch, start += batch_size_) {
      if (batch % world != rank) continue;
      const int64_t end = std::min(n, start + batch_size_);
      const torch::Tensor batch_BL1 = domain.tokens_NL1.slice(0, start, end).to(device);
      torch::Tensor valid_BL = domain.valid_NL.slice(0, start, end).to(device);
      if (unscored > 0) {
        valid_BL = valid_BL.clone();
        valid_BL.slice(1, 0, std::min(unscored, valid_BL.size(1))).fill_(false);
      }
      RoutingContext context(ForwardMode::Eval, routing_stats);
      context.set_eval_routing(routing);
      const torch::Tensor inputs_BL = batch_BL1.slice(1, 0, -1);
      const torch::Tensor targets_BL = batch_BL1.slice(1, 1);
      const torch::Tensor logits_BLV = model.forward(inputs_BL, context);
      const torch::Tensor loss_BL =
          torch::nn::functional::cross_entropy(
              logits_BLV.reshape({-1, logits_BLV.size(-1)}).to(torch::kFloat32),
              targets_BL.reshape({-1}),
              torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone))
              .view_as(targets_BL);
      sums.loss_sum[d] += loss_BL.masked_select(valid_BL).to(torch::kFloat64).sum().item<double>();
      const double batch_tokens = static_cast<double>(valid_BL.sum().item<int64_t>());
      sums.tokens[d] += batch_tokens;
      if (!routing_stats) continue;
      const torch::Tensor mask_BL1 = valid_BL.unsqueeze(-1).to(torch::kFloat64);
      for (const RoutingRecord& record : context.records()) {
        if (record.layer < 0 || record.layer >= static_cast<int64_t>(sums.layers.size())) continue;
        sums.layers[static_cast<size_t>(record.layer)].add(record, d, mask_BL1, batch_tokens);
      }
    }
  }
  sums.reduce(group);
  std::vector<std::string> names;
  for (const DomainSequences& domain : domains_) names.push_back(domain.name);
  if (was_training) model.train();
  return sums.rows(step, mode, names);
}

ScoredText score_text(LanguageModel& model, const torch::Tensor& tokens_N, int64_t context_length,
                      const EvalRouting& routing, const ScoringWindows& windows) {
  const int64_t n = tokens_N.size(0), P = windows.prompt_length, stride = windows.stride;
  if (P >= context_length) {
    throw UserError(fmt::format(
        "a prompt of {} tokens does not fit the model's context of {} tokens with a token to "
        "score after it: choose --prompt-length below {}",
        P, context_length, context_length));
  }
  if (stride < 1 || stride > context_length - P) {
    throw UserError(fmt::format(
        "--stride {} must be between 1 and the context minus the prompt ({} - {} = {}): a "
        "longer stride would route later windows from tokens they score",
        stride, context_length, P, context_length - P));
  }
  if (n < std::max<int64_t>(2, P + 1)) {
    throw UserError(
        fmt::format("the text has {} tokens: nothing to score after a {}-token prompt", n, P));
  }
  torch::NoGradGuard no_grad;
  model.eval();
  ScoredText scored;
  std::vector<torch::Tensor> pieces;
  int64_t next_target = std::max<int64_t>(1, P);
  for (int64_t start = 0; next_target < n; start += stride) {
    const int64_t end = std::min(
        n, start + context_length + 1);  // inputs start .. end - 2, targets start + 1 .. end - 1
    const torch::Tensor window_1L1 =
        tokens_N.slice(0, start, end).unsqueeze(0).to(module_device(model));
    RoutingContext context(ForwardMode::Eval, false);
    context.set_eval_routing(routing);
    const torch::Tensor logits_1LV = model.forward(window_1L1.slice(1, 0, -1), context);
    const torch::Tensor log_probs_L = torch::log_softmax(logits_1LV[0].to(torch::kFloat64), -1)
                                          .gather(-1, window_1L1[0].slice(0, 1).unsqueeze(-1))
                                          .view({-1});
    // Target t sits at index t - start - 1 of this window.
    pieces.push_back(log_probs_L.slice(0, next_target - start - 1).cpu());
    for (int64_t t = next_target; t < end; ++t) scored.positions.push_back(t);
    next_target = end;
    ++scored.windows;
  }
  scored.log_probs = torch::cat(pieces);
  return scored;
}

torch::Tensor score_tokens(LanguageModel& model, const torch::Tensor& tokens_N,
                           int64_t context_length, const EvalRouting& routing) {
  torch::NoGradGuard no_grad;
  model.eval();
  const int64_t n = tokens_N.size(0);
  std::vector<torch::Tensor> pieces;
  // Non-overlapping windows: each target is scored once, with the context of its own window.
  for (int64_t start = 0; start + 1 < n; start += context_length) {
    const int64_t end = std::min(n, start + context_length + 1);
    const torch::Tensor window_1L1 =
        tokens_N.slice(0, start, end).unsqueeze(0).to(module_device(model));
    RoutingContext context(ForwardMode::Eval, false);
    context.set_eval_routing(routing);
    const torch::Tensor logits_1LV = model.forward(window_1L1.slice(1, 0, -1), context);
    const torch::Tensor log_probs_1LV = torch::log_softmax(logits_1LV.to(torch::kFloat32), -1);
    pieces.push_back(
        log_probs_1LV.gather(-1, window_1L1.slice(1, 1).unsqueeze(-1)).view({-1}).cpu());
  }
  return pieces.empty() ? torch::zeros({0}) : torch::cat(pieces);
}

}  // namespace lory
