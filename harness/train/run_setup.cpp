#include "run_setup.h"

#include "core/support/paths.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>

#include "device_placement.h"
#include "lory/core/router_roles.h"

namespace lory {

namespace {

void resolve_path_parameters(const PluginDescriptor& plugin, ParamValues& params,
                             const std::string& base_directory) {
  for (const ParamSpec& spec : plugin.schema.params()) {
    if (spec.type != ParamType::Path || !params.has(spec.name)) continue;
    params.set(spec.name, resolve_against(base_directory, params.get_string(spec.name)));
  }
}

}  // namespace

RunSetup::RunSetup(CellConfig config, const std::string& corpus_directory,
                   const std::vector<std::string>& plugin_path, const std::string& base_directory)
    : config_(std::move(config)), registry_(PluginRegistry::discover_default(plugin_path)) {
  const ParamValues& trainer = config_.section("trainer").values;
  if (trainer.has("precision")) {
    const auto precision = parse_precision(trainer.get_string("precision"));
    if (!precision) {
      throw UserError(fmt::format("trainer.precision = '{}': use \"fp32\" or \"bf16\"",
                                  trainer.get_string("precision")));
    }
    precision_ = *precision;
  }
  if (trainer.has("device")) device_ = resolve_training_device(trainer.get_string("device"));
  registry_.throw_if_problems(/*skip_unloadable=*/true);
  // Each section's plugin, looked up once: its path parameters resolved, then its object created.
  const auto selected = [&](const char* section, PluginKind kind) -> const LoadedPlugin& {
    SectionConfig& s = config_.section(section);
    const LoadedPlugin& plugin =
        registry_.require(s.plugin(), kind, std::string(section) + ".plugin");
    resolve_path_parameters(plugin.descriptor, s.plugin_params, base_directory);
    return plugin;
  };
  const LoadedPlugin& model = selected("model", PluginKind::Model);
  const LoadedPlugin& router = selected("router", PluginKind::Router);
  const LoadedPlugin& batcher = selected("batcher", PluginKind::Batcher);
  corpus_ = Corpus::open(corpus_directory);
  model_ = create_plugin_object<ModelPlugin>(model);
  router_ = create_plugin_object<RouterPlugin>(router);
  router_library_ = router.library;
  router_roles_ = router.descriptor.roles;
  batcher_ = create_plugin_object<BatcherPlugin>(batcher);
  if (config_.section("trainer").values.get_float("dense_warmup_fraction") > 0) {
    const LoadedPlugin& dense =
        registry_.require_dense_baseline("trainer.dense_warmup_fraction (the dense warm-up)");
    dense_router_ = create_plugin_object<RouterPlugin>(dense);
    dense_library_ = dense.library;
  }
}

bool RunSetup::router_is_dense_baseline() const {
  return std::find(router_roles_.begin(), router_roles_.end(), kDenseBaselineRole) !=
         router_roles_.end();
}

std::shared_ptr<FeedForward> RunSetup::build_router_layer(const FeedForwardSpec& spec) const {
  auto layer = keep_library_alive(router_->build(spec, config_.section("router").plugin_params),
                                  router_library_);
  if (!device_.is_cpu()) layer->to(device_);
  return layer;
}

std::shared_ptr<LanguageModel> RunSetup::build_model(bool dense_feed_forwards) const {
  ModelSpec spec{static_cast<int64_t>(corpus_->manifest().vocab_size), context_length()};
  const FeedForwardFactory factory = [&](const FeedForwardSpec& ffn_spec) {
    if (dense_feed_forwards)
      return keep_library_alive(dense_router_->build(ffn_spec, ParamValues()), dense_library_);
    return build_router_layer(ffn_spec);
  };
  try {
    // Built on the host (the plugins' initialisers draw from the CPU generator, so a seed gives
    // the same weights on every device), then moved.
    auto model = model_->build(spec, config_.section("model").plugin_params, factory);
    if (!device_.is_cpu()) model->to(device_);
    return model;
  } catch (const UserError&) {
    throw;
  } catch (const std::exception& e) {
    throw UserError(fmt::format("building the model failed: {}", e.what()));
  }
}

int64_t count_parameters(const torch::nn::Module& module) {
  int64_t count = 0;
  for (const auto& p : module.parameters()) count += p.numel();
  return count;
}

int64_t count_active_parameters(const LanguageModel& model) {
  int64_t count = count_parameters(model);
  for (int64_t layer = 0; layer < model.layer_count(); ++layer) {
    const auto ffn = model.feed_forward(layer);
    count += ffn->active_parameter_count() - count_parameters(*ffn);
  }
  return count;
}

}  // namespace lory
