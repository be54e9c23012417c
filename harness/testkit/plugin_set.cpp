#include "lory/testkit/plugin_set.h"

#include "core/plugin_loader.h"

#include <stdexcept>

namespace lory::testkit {

struct PluginSet::Loaded {
  PluginRegistry registry;
  std::map<std::string, std::shared_ptr<RouterPlugin>> routers;
  std::shared_ptr<ModelPlugin> transformer;
};

PluginSet::PluginSet(const std::vector<std::string>& search_path)
    : loaded_(std::make_unique<Loaded>(Loaded{PluginRegistry::discover(search_path), {}, nullptr})) {
  loaded_->registry.throw_if_problems();
  loaded_->transformer =
      create_plugin_object<ModelPlugin>(loaded_->registry.require("transformer", PluginKind::Model, "testkit"));
}

PluginSet::~PluginSet() = default;

ParamValues PluginSet::params(const std::string& plugin, const std::map<std::string, ParamValue>& overrides) const {
  const PluginDescriptor* descriptor = loaded_->registry.find(plugin);
  if (!descriptor) throw std::invalid_argument("no plugin named " + plugin);
  Diagnostics diagnostics;
  ParamValues values = validate_params(nullptr, descriptor->schema, plugin, {}, diagnostics);
  if (!diagnostics.empty()) throw std::invalid_argument(diagnostics.format());
  for (const auto& [name, value] : overrides) {
    if (!descriptor->schema.find(name)) throw std::invalid_argument(plugin + " has no parameter " + name);
    values.set(name, value);
  }
  return values;
}

std::shared_ptr<FeedForward> PluginSet::build_layer(const std::string& router, const FeedForwardSpec& spec,
                                                    const ParamValues& params) const {
  auto& plugin = loaded_->routers[router];
  if (!plugin) {
    plugin = create_plugin_object<RouterPlugin>(loaded_->registry.require(router, PluginKind::Router, "testkit"));
  }
  return plugin->build(spec, params);
}

std::shared_ptr<LanguageModel> PluginSet::build_model(const std::string& router, const ParamValues& router_params,
                                                      const ParamValues& model_params, int64_t vocab_size,
                                                      int64_t context_length) const {
  return loaded_->transformer->build({vocab_size, context_length}, model_params, [&](const FeedForwardSpec& spec) {
    return build_layer(router, spec, router_params);
  });
}

ParamValues PluginSet::transformer_params(int64_t d_model, int64_t layers, int64_t heads,
                                          const std::map<std::string, ParamValue>& more) const {
  std::map<std::string, ParamValue> overrides = more;
  overrides["d_model"] = d_model;
  overrides["n_layers"] = layers;
  overrides["n_heads"] = heads;
  return params("transformer", overrides);
}

}  // namespace lory::testkit
