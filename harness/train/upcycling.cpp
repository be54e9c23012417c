#include "upcycling.h"

#include <fmt/format.h>

#include <mutex>

#include "core/support/diagnostics.h"

namespace lory {

namespace {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

NamedTensors named_parameters_of(const torch::nn::Module& module) {
  NamedTensors out;
  for (const auto& item : module.named_parameters()) out.emplace_back(item.key(), item.value());
  return out;
}

// The name under which `tensor` (the same storage) is registered in `all`.
std::string name_of(const NamedTensors& all, const torch::Tensor& tensor) {
  for (const auto& [name, p] : all) {
    if (p.data_ptr() == tensor.data_ptr() && p.sizes() == tensor.sizes()) return name;
  }
  throw UserError("upcycling: a dense FFN weight is not a parameter of the model");
}

DenseFFNWeights filled_like(const DenseFFNWeights& like, double value) {
  return {torch::full_like(like.w_gate_FD, value), torch::full_like(like.w_up_FD, value),
          torch::full_like(like.w_down_DF, value)};
}

// Probe layers are built only to read where upcycling puts things: they must not advance the
// random stream that initialises the real layers and orders the data.
class RandomStreamGuard {
 public:
  RandomStreamGuard() : generator_(at::detail::getDefaultCPUGenerator()) {
    std::lock_guard<std::mutex> lock(generator_.mutex());
    state_ = generator_.get_state();
  }
  ~RandomStreamGuard() {
    std::lock_guard<std::mutex> lock(generator_.mutex());
    generator_.set_state(state_);
  }

 private:
  at::Generator generator_;
  torch::Tensor state_;
};

std::map<std::string, torch::Tensor> upcycled_probe(const FeedForwardBuilder& build_layer,
                                                    const FeedForwardSpec& spec,
                                                    const DenseFFNWeights& weights) {
  auto layer = build_layer(spec);
  layer->upcycle_from(weights);
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, p] : named_parameters_of(*layer)) out[name] = p.detach();
  return out;
}

}  // namespace

UpcyclingOutcome upcycle_feed_forwards(LanguageModel& model, const FeedForwardBuilder& build_layer,
                                       AdamW* inherit_into) {
  torch::NoGradGuard no_grad;
  UpcyclingOutcome outcome;
  for (int64_t layer = 0; layer < model.layer_count(); ++layer) {
    const auto dense = model.feed_forward(layer)->dense_weights();
    if (!dense)
      throw UserError(
          "dense warm-up: the warm-up model's FFN exposes no dense weights to upcycle from");
    // The dense FFN's optimizer state, read before its parameters leave the model.
    DenseFFNWeights exp_avg = filled_like(*dense, 0.0), exp_avg_sq = filled_like(*dense, 0.0);
    int64_t steps = 0;
    if (inherit_into) {
      const NamedTensors before = named_parameters_of(model);
      const std::pair<const torch::Tensor*, std::pair<torch::Tensor*, torch::Tensor*>> parts[] = {
          {&dense->w_gate_FD, {&exp_avg.w_gate_FD, &exp_avg_sq.w_gate_FD}},
          {&dense->w_up_FD, {&exp_avg.w_up_FD, &exp_avg_sq.w_up_FD}},
          {&dense->w_down_DF, {&exp_avg.w_down_DF, &exp_avg_sq.w_down_DF}}};
      for (const auto& [weight, moments] : parts) {
        if (const auto state = inherit_into->moments(name_of(before, *weight))) {
          *moments.first = state->exp_avg;
          *moments.second = state->exp_avg_sq;
          steps = std::max(steps, state->steps);
        }
      }
    }
    auto replacement = build_layer(model.feed_forward_spec(layer));
    replacement->upcycle_from(*dense);
    model.replace_feed_forward(layer, replacement);
    if (!inherit_into) continue;
    std::map<std::string, torch::Tensor> zeros, ones, first, second;
    {
      const RandomStreamGuard keep_stream;
      const FeedForwardSpec spec = model.feed_forward_spec(layer);
      zeros = upcycled_probe(build_layer, spec, filled_like(*dense, 0.0));
      ones = upcycled_probe(build_layer, spec, filled_like(*dense, 1.0));
      first = upcycled_probe(build_layer, spec, exp_avg);
      second = upcycled_probe(build_layer, spec, exp_avg_sq);
    }
    const NamedTensors after = named_parameters_of(model);
    for (const auto& [local, p] : named_parameters_of(*replacement)) {
      const bool copied =
          zeros.at(local).eq(0).all().item<bool>() && ones.at(local).eq(1).all().item<bool>();
      if (!copied) {
        ++outcome.fresh_tensors;
        continue;
      }
      inherit_into->set_moments(name_of(after, p),
                                {first.at(local).clone(), second.at(local).clone(), steps});
      ++outcome.inherited_tensors;
    }
  }
  return outcome;
}

}  // namespace lory
