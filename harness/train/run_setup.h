// Everything a worker builds from a run's resolved config: the corpus, the plugins, the model.
// Shared by training, scoring and export so that all three see the same network.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/experiment/cell_config.h"
#include "core/plugins/plugin_loader.h"
#include "core/store/results_store.h"
#include "lory/core/batcher_api.h"
#include "lory/core/corpus.h"
#include "lory/nn/model_api.h"
#include "lory/nn/precision.h"
#include "lory/nn/router_api.h"

namespace lory {

class RunSetup {
 public:
  // `base_directory`: the experiment file's folder, against which relative `path` parameters of
  // the plugins are resolved before the plugins see them.
  RunSetup(CellConfig config, const std::string& corpus_directory,
           const std::vector<std::string>& plugin_path, const std::string& base_directory);

  const CellConfig& config() const { return config_; }
  const Corpus& corpus() const { return *corpus_; }
  std::shared_ptr<const Corpus> corpus_handle() const { return corpus_; }
  std::shared_ptr<BatcherPlugin> batcher() const { return batcher_; }
  const ParamValues& batcher_params() const { return config_.section("batcher").plugin_params; }
  int64_t context_length() const {
    return config_.section("model").values.get_int("context_length");
  }
  const std::string& router_name() const { return config_.section("router").plugin(); }
  // The router's roles (lory/core/router_roles.h): a dense baseline never runs a dense warm-up.
  const std::vector<std::string>& router_roles() const { return router_roles_; }
  bool router_is_dense_baseline() const;

  // trainer.precision and trainer.device; fp32 and the CPU for runs stored before either existed.
  Precision precision() const { return precision_; }
  const torch::Device& device() const { return device_; }

  // The model with the configured router's FFNs, or with dense FFNs (for a dense warm-up), on
  // device().
  std::shared_ptr<LanguageModel> build_model(bool dense_feed_forwards) const;
  // A layer of the configured router, for upcycling a dense model's layer, on device().
  std::shared_ptr<FeedForward> build_router_layer(const FeedForwardSpec& spec) const;

 private:
  CellConfig config_;
  Precision precision_ = Precision::Fp32;
  torch::Device device_{torch::kCPU};
  std::vector<std::string> router_roles_;
  std::shared_ptr<const Corpus> corpus_;
  PluginRegistry registry_;
  std::shared_ptr<ModelPlugin> model_;
  std::shared_ptr<RouterPlugin> router_;
  std::shared_ptr<RouterPlugin> dense_router_;
  std::shared_ptr<BatcherPlugin> batcher_;
  std::shared_ptr<boost::dll::shared_library> router_library_, dense_library_;
};

int64_t count_parameters(const torch::nn::Module& module);
// Parameters a token passes through: the FFNs count what their router says is active.
int64_t count_active_parameters(const LanguageModel& model);

}  // namespace lory
