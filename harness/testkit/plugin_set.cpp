#include "lory/testkit/plugin_set.h"

#include "core/plugins/plugin_loader.h"

#include <boost/dll/runtime_symbol_info.hpp>
#include <filesystem>
#include <stdexcept>

namespace lory::testkit {

namespace {

namespace fs = std::filesystem;

// `search_path` and the in-tree plugins of the lory this test kit belongs to: installed,
// <libdir>/lory/plugins beside liblory_testkit.so; in a build tree, plugins/ beside lib/. So an
// author's build folder alone finds the transformer model (and the in-tree routers to compare
// with).
std::vector<std::string> with_own_plugins(std::vector<std::string> search_path) {
  const fs::path library_dir = boost::dll::this_line_location().parent_path();
  for (const fs::path& candidate :
       {library_dir / "lory" / "plugins", library_dir.parent_path() / "plugins"}) {
    std::error_code ec;
    if (!fs::is_directory(candidate, ec)) continue;
    bool listed = false;
    for (const std::string& entry : search_path)
      listed = listed || fs::equivalent(entry, candidate, ec);
    if (!listed) search_path.push_back(candidate.string());
    break;
  }
  return search_path;
}

}  // namespace

struct PluginSet::Loaded {
  PluginRegistry registry;
  std::map<std::string, std::shared_ptr<RouterPlugin>> routers;
  std::shared_ptr<ModelPlugin> transformer;
};

PluginSet::PluginSet(const std::vector<std::string>& search_path)
    : loaded_(std::make_unique<Loaded>(
          Loaded{PluginRegistry::discover(with_own_plugins(search_path)), {}, nullptr})) {
  loaded_->registry.throw_if_problems();
  loaded_->transformer = create_plugin_object<ModelPlugin>(
      loaded_->registry.require("transformer", PluginKind::Model, "testkit"));
}

PluginSet::~PluginSet() = default;

ParamValues PluginSet::params(const std::string& plugin,
                              const std::map<std::string, ParamValue>& overrides) const {
  const PluginDescriptor* descriptor = loaded_->registry.find(plugin);
  if (!descriptor) throw std::invalid_argument("no plugin named " + plugin);
  Diagnostics diagnostics;
  ParamValues values = validate_params(nullptr, descriptor->schema, plugin, {}, diagnostics);
  if (!diagnostics.empty()) throw std::invalid_argument(diagnostics.format());
  for (const auto& [name, value] : overrides) {
    if (!descriptor->schema.find(name))
      throw std::invalid_argument(plugin + " has no parameter " + name);
    values.set(name, value);
  }
  return values;
}

std::shared_ptr<FeedForward> PluginSet::build_layer(const std::string& router,
                                                    const FeedForwardSpec& spec,
                                                    const ParamValues& params) const {
  auto& plugin = loaded_->routers[router];
  if (!plugin) {
    plugin = create_plugin_object<RouterPlugin>(
        loaded_->registry.require(router, PluginKind::Router, "testkit"));
  }
  return plugin->build(spec, params);
}

std::shared_ptr<LanguageModel> PluginSet::build_model(const std::string& router,
                                                      const ParamValues& router_params,
                                                      const ParamValues& model_params,
                                                      int64_t vocab_size,
                                                      int64_t context_length) const {
  return loaded_->transformer->build(
      {vocab_size, context_length}, model_params,
      [&](const FeedForwardSpec& spec) { return build_layer(router, spec, router_params); });
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
