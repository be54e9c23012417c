#include "adamw.h"

#include <cmath>
#include <set>

namespace lory {

void AdamW::step(const std::vector<std::pair<std::string, torch::Tensor>>& parameters, double lr) {
  RECORD_FUNCTION("lory::adamw", std::vector<c10::IValue>());
  torch::NoGradGuard no_grad;
  for (const auto& [name, p] : parameters) {
    const torch::Tensor& grad = p.grad();
    if (!grad.defined()) continue;
    State& s = state_[name];
    if (!s.exp_avg.defined()) {
      s.exp_avg = torch::zeros_like(p);
      s.exp_avg_sq = torch::zeros_like(p);
    }
    ++s.steps;
    if (p.dim() >= 2 && options_.weight_decay > 0) p.mul_(1.0 - lr * options_.weight_decay);
    s.exp_avg.mul_(options_.beta1).add_(grad, 1.0 - options_.beta1);
    s.exp_avg_sq.mul_(options_.beta2).addcmul_(grad, grad, 1.0 - options_.beta2);
    const double bias1 = 1.0 - std::pow(options_.beta1, static_cast<double>(s.steps));
    const double bias2 = 1.0 - std::pow(options_.beta2, static_cast<double>(s.steps));
    const torch::Tensor denominator = (s.exp_avg_sq / bias2).sqrt_().add_(options_.eps);
    p.addcdiv_(s.exp_avg, denominator, -lr / bias1);
  }
}

void AdamW::retain_only(const std::vector<std::pair<std::string, torch::Tensor>>& parameters) {
  std::set<std::string> names;
  for (const auto& [name, p] : parameters) names.insert(name);
  for (auto it = state_.begin(); it != state_.end();) {
    it = names.count(it->first) ? std::next(it) : state_.erase(it);
  }
}

std::optional<AdamW::Moments> AdamW::moments(const std::string& name) const {
  auto it = state_.find(name);
  if (it == state_.end() || !it->second.exp_avg.defined()) return std::nullopt;
  return it->second;
}

void AdamW::set_moments(const std::string& name, Moments moments) {
  state_[name] = std::move(moments);
}

void AdamW::to(const torch::Device& device) {
  for (auto& [name, s] : state_) {
    if (s.exp_avg.defined()) s.exp_avg = s.exp_avg.to(device);
    if (s.exp_avg_sq.defined()) s.exp_avg_sq = s.exp_avg_sq.to(device);
  }
}

void AdamW::save(torch::serialize::OutputArchive& archive) const {
  torch::serialize::OutputArchive states;
  std::vector<std::string> names;
  for (const auto& [name, s] : state_) {
    torch::serialize::OutputArchive entry;
    entry.write("exp_avg", s.exp_avg);
    entry.write("exp_avg_sq", s.exp_avg_sq);
    entry.write("steps", torch::tensor(s.steps));
    states.write(std::to_string(names.size()), entry);
    names.push_back(name);
  }
  archive.write("states", states);
  // Parameter names contain dots, which archive keys treat as paths: store them as a list.
  std::string joined;
  for (const auto& n : names) joined += n + "\n";
  archive.write(
      "names", torch::from_blob(joined.data(), {static_cast<int64_t>(joined.size())}, torch::kUInt8)
                   .clone());
}

void AdamW::load(torch::serialize::InputArchive& archive) {
  state_.clear();
  torch::Tensor names_tensor;
  archive.read("names", names_tensor);
  const std::string joined(reinterpret_cast<const char*>(names_tensor.data_ptr<uint8_t>()),
                           static_cast<size_t>(names_tensor.numel()));
  torch::serialize::InputArchive states;
  archive.read("states", states);
  size_t start = 0, index = 0;
  while (start < joined.size()) {
    const size_t end = joined.find('\n', start);
    const std::string name = joined.substr(start, end - start);
    start = end + 1;
    torch::serialize::InputArchive entry;
    states.read(std::to_string(index++), entry);
    State s;
    torch::Tensor steps;
    entry.read("exp_avg", s.exp_avg);
    entry.read("exp_avg_sq", s.exp_avg_sq);
    entry.read("steps", steps);
    s.steps = steps.item<int64_t>();
    state_[name] = std::move(s);
  }
}

}  // namespace lory
