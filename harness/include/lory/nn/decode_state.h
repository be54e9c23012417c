// What an incremental decoder keeps between forwards (`lory generate`): the model's key/value
// cache and each router's routing state, per layer, plus the absolute position of the first
// token of the next forward. A forward that carries a DecodeState (RoutingContext::decode())
// receives only the tokens that are new since the previous one; the model and the routers read
// what earlier forwards left and add to it. See docs/inference.md.
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

namespace lory {

class DecodeState {
 public:
  explicit DecodeState(int64_t layers) : layers_(static_cast<size_t>(layers)) {}

  // Absolute position (0-based) of the first token of the forward being run.
  int64_t position() const { return position_; }
  // Called by the decoder after each forward, with the number of tokens it carried.
  void advance(int64_t tokens) { position_ += tokens; }

  // Named tensors one layer keeps ("attention/k_BHLK", "lory/w_BE", ...). Missing names read as
  // undefined tensors, which is how a layer knows it runs for the first time.
  torch::Tensor get(int64_t layer, const std::string& name) const {
    const auto& slots = layers_.at(static_cast<size_t>(layer));
    const auto it = slots.find(name);
    return it == slots.end() ? torch::Tensor() : it->second;
  }
  void set(int64_t layer, const std::string& name, torch::Tensor value) {
    layers_.at(static_cast<size_t>(layer))[name] = std::move(value);
  }

  // Event counters a decoder reports and tests pin (e.g. "lory/ffn_merges": merged FFNs built).
  void count(const std::string& name, int64_t by = 1) { counters_[name] += by; }
  int64_t counter(const std::string& name) const {
    const auto it = counters_.find(name);
    return it == counters_.end() ? 0 : it->second;
  }

 private:
  int64_t position_ = 0;
  std::vector<std::map<std::string, torch::Tensor>> layers_;
  std::map<std::string, int64_t> counters_;
};

}  // namespace lory
