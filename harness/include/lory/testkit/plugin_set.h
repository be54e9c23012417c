// Plugins loaded the way the worker loads them, for tests and benchmarks of routers and models:
// build one layer or a whole model with a plugin's declared defaults and a few overrides.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "lory/nn/model_api.h"
#include "lory/nn/router_api.h"

namespace lory::testkit {

class PluginSet {
 public:
  // Loads every plugin found on `search_path` (folders or files) and lory's own in-tree plugins
  // (the installed plugin folder of this SDK, or the build tree's); throws std::runtime_error with
  // the loader's messages on problems.
  explicit PluginSet(const std::vector<std::string>& search_path);
  ~PluginSet();
  PluginSet(const PluginSet&) = delete;
  PluginSet& operator=(const PluginSet&) = delete;

  // The plugin's declared defaults with `overrides` applied; throws on an unknown name.
  ParamValues params(const std::string& plugin,
                     const std::map<std::string, ParamValue>& overrides = {}) const;

  std::shared_ptr<FeedForward> build_layer(const std::string& router, const FeedForwardSpec& spec,
                                           const ParamValues& params) const;
  std::shared_ptr<LanguageModel> build_model(const std::string& router,
                                             const ParamValues& router_params,
                                             const ParamValues& model_params, int64_t vocab_size,
                                             int64_t context_length) const;
  // Transformer parameters for a small model.
  ParamValues transformer_params(int64_t d_model, int64_t layers, int64_t heads,
                                 const std::map<std::string, ParamValue>& more = {}) const;

 private:
  struct Loaded;  // the plugin registry: harness internals stay out of this header
  std::unique_ptr<Loaded> loaded_;
};

}  // namespace lory::testkit
