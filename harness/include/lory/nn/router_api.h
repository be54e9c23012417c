// The router plugin interface: a router builds the FFN sub-layer of every transformer block.
// It owns its expert parameters ([E, ...] tensors), its routing, its auxiliary losses and its
// routing records. See docs/writing-a-router.md.
#pragma once

#include <memory>

#include "lory/abi/plugin_abi.h"
#include "lory/core/param_values.h"
#include "lory/nn/feed_forward.h"

namespace lory {

class RouterPlugin {
 public:
  static constexpr LoryPluginKind kKind = LORY_PLUGIN_ROUTER;
  static constexpr const char* kFactoryAlias = "lory_create_router";

  virtual ~RouterPlugin() = default;
  virtual std::shared_ptr<FeedForward> build(const FeedForwardSpec& spec,
                                             const ParamValues& params) = 0;
};

// The router plugin most routers need: every layer is `Layer(spec, read_options(params, spec))`.
//   std::unique_ptr<lory::RouterPlugin> create() {
//     return std::make_unique<lory::RouterPluginOf<MyFeedForward, read_options>>();
//   }
template <typename Layer, auto read_options>
class RouterPluginOf final : public RouterPlugin {
 public:
  std::shared_ptr<FeedForward> build(const FeedForwardSpec& spec,
                                     const ParamValues& params) override {
    return std::make_shared<Layer>(spec, read_options(params, spec));
  }
};

}  // namespace lory
