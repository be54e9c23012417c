// AdamW with decoupled weight decay, keyed by parameter name: the state survives a module swap
// (dense warm-up -> upcycled experts keep the attention's moments; new experts start fresh), and
// it is saved and restored exactly in checkpoints.
#pragma once

#include <torch/torch.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace lory {

class AdamW {
 public:
  struct Options {
    double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1;
  };
  explicit AdamW(Options options) : options_(options) {}

  // One update of every parameter that has a gradient. Weight decay applies to matrices only
  // (dim >= 2), not to norm gains.
  void step(const std::vector<std::pair<std::string, torch::Tensor>>& parameters, double lr);
  // Drops the state of parameters no longer in the model.
  void retain_only(const std::vector<std::pair<std::string, torch::Tensor>>& parameters);

  // One parameter's state: first and second moments and the number of updates it has had (its
  // own bias-correction clock). Read and set by upcycling with trainer.upcycling_optimizer = copy.
  struct Moments {
    torch::Tensor exp_avg, exp_avg_sq;
    int64_t steps = 0;
  };
  std::optional<Moments> moments(const std::string& name) const;
  void set_moments(const std::string& name, Moments moments);

  void save(torch::serialize::OutputArchive& archive) const;
  // Moves the moments to `device` (after a load: archives are read on the host).
  void to(const torch::Device& device);
  void load(torch::serialize::InputArchive& archive);

 private:
  using State = Moments;
  Options options_;
  std::map<std::string, State> state_;
};

}  // namespace lory
