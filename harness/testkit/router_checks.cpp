#include "lory/testkit/router_checks.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace lory::testkit {

namespace {

torch::Tensor layer_output(FeedForward& layer, const torch::Tensor& h_BLD, ForwardMode mode) {
  torch::NoGradGuard no_grad;
  RoutingContext context = checking_context(mode, h_BLD);
  return layer.forward(h_BLD, context);
}

std::vector<int64_t> changed_before(const torch::Tensor& base_BLX, const torch::Tensor& changed_BLX,
                                    int64_t position, double tolerance) {
  std::vector<int64_t> out;
  for (int64_t t = 0; t < position; ++t) {
    const torch::Tensor a = base_BLX.select(1, t), b = changed_BLX.select(1, t);
    const bool same =
        tolerance == 0 ? torch::equal(a, b) : torch::allclose(a, b, tolerance, tolerance);
    if (!same) out.push_back(t);
  }
  return out;
}

double max_abs_difference(const torch::Tensor& a, const torch::Tensor& b) {
  if (!a.defined() && !b.defined()) return 0;
  if (!a.defined() || !b.defined()) return INFINITY;
  return (a - b).abs().max().item<double>();
}

}  // namespace

RoutingContext checking_context(ForwardMode mode, const torch::Tensor& h_BLD) {
  RoutingContext context(mode, false);
  const int64_t B = h_BLD.size(0), L = h_BLD.size(1);
  context.set_token_ids(
      (torch::arange(B * L, torch::dtype(torch::kInt64).device(h_BLD.device())) * 7919 + 13)
          .remainder(32000)
          .view({B, L}));
  return context;
}

std::vector<int64_t> earlier_outputs_changed(FeedForward& layer, const torch::Tensor& h_BLD,
                                             int64_t position, ForwardMode mode, double tolerance) {
  const torch::Tensor base = layer_output(layer, h_BLD, mode);
  torch::Tensor perturbed = h_BLD.clone();
  perturbed.select(1, position).add_(torch::randn_like(perturbed.select(1, position)));
  return changed_before(base, layer_output(layer, perturbed, mode), position, tolerance);
}

std::vector<int64_t> earlier_logits_changed(LanguageModel& model, const torch::Tensor& tokens_BL,
                                            int64_t position, int64_t vocab_size) {
  torch::NoGradGuard no_grad;
  RoutingContext context(ForwardMode::Eval, false);
  const torch::Tensor base = model.forward(tokens_BL, context);
  torch::Tensor perturbed = tokens_BL.clone();
  perturbed.select(1, position).add_(1).remainder_(vocab_size);
  RoutingContext again(ForwardMode::Eval, false);
  return changed_before(base, model.forward(perturbed, again), position, 0);
}

double LayerComparison::worst() const {
  double worst_value = std::max(output, input_gradient);
  for (const auto& [name, value] : parameters) worst_value = std::max(worst_value, value);
  return worst_value;
}

LayerComparison compare_layers(FeedForward& a, FeedForward& b, const torch::Tensor& h_BLD) {
  {
    torch::NoGradGuard no_grad;
    auto source = a.named_parameters();
    for (auto& item : b.named_parameters()) {
      if (!source.contains(item.key()))
        throw std::invalid_argument("layers differ: no parameter " + item.key());
      item.value().copy_(source[item.key()]);
    }
  }
  const torch::Tensor probe = torch::randn_like(h_BLD);
  LayerComparison result;
  torch::Tensor outputs[2], input_grads[2];
  FeedForward* layers[2] = {&a, &b};
  for (int i = 0; i < 2; ++i) {
    for (auto& p : layers[i]->parameters()) p.mutable_grad() = torch::Tensor();
    const torch::Tensor h = h_BLD.detach().clone().requires_grad_();
    RoutingContext context = checking_context(ForwardMode::Train, h);
    outputs[i] = layers[i]->forward(h, context);
    (outputs[i] * probe).sum().backward();
    input_grads[i] = h.grad();
  }
  result.output = max_abs_difference(outputs[0], outputs[1]);
  result.input_gradient = max_abs_difference(input_grads[0], input_grads[1]);
  auto grads_b = b.named_parameters();
  for (const auto& item : a.named_parameters()) {
    result.parameters[item.key()] =
        max_abs_difference(item.value().grad(), grads_b[item.key()].grad());
  }
  return result;
}

double gradient_check(FeedForward& layer, const torch::Tensor& h_BLD, int samples, double epsilon) {
  const torch::Tensor probe = torch::randn_like(h_BLD);
  const auto loss_of = [&](const torch::Tensor& h) {
    RoutingContext context = checking_context(ForwardMode::Train, h);
    return (layer.forward(h, context) * probe).sum();
  };
  for (auto& p : layer.parameters()) p.mutable_grad() = torch::Tensor();
  const torch::Tensor h = h_BLD.detach().clone().requires_grad_();
  loss_of(h).backward();
  std::vector<std::pair<torch::Tensor, torch::Tensor>> checked = {{h, h.grad()}};
  for (auto& p : layer.parameters())
    checked.push_back({p, p.grad().defined() ? p.grad() : torch::zeros_like(p)});
  double worst = 0;
  torch::NoGradGuard no_grad;
  for (auto& [tensor, analytic] : checked) {
    const torch::Tensor flat = tensor.view({-1});
    const torch::Tensor analytic_flat = analytic.reshape({-1});
    for (int s = 0; s < samples; ++s) {
      const int64_t i = torch::randint(flat.size(0), {1}).item<int64_t>();
      const double original = flat[i].item<double>();
      flat[i] = original + epsilon;
      const double plus = loss_of(h).item<double>();
      flat[i] = original - epsilon;
      const double minus = loss_of(h).item<double>();
      flat[i] = original;
      const double numeric = (plus - minus) / (2 * epsilon);
      const double exact = analytic_flat[i].item<double>();
      worst = std::max(
          worst, std::abs(numeric - exact) / std::max(1e-6, std::abs(numeric) + std::abs(exact)));
    }
  }
  return worst;
}

}  // namespace lory::testkit
