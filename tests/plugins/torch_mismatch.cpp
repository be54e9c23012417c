// A plugin that claims to be built against another LibTorch: the loader must refuse it.
#include "lory/core/plugin.h"

extern "C" __attribute__((visibility("default"))) const LoryPluginInfo* lory_plugin_info(void) {
  static const LoryPluginInfo info = {{LORY_PLUGIN_ABI_VERSION, sizeof(LoryPluginInfo)},
                                      LORY_PLUGIN_ROUTER,
                                      "old_torch_router",
                                      "built against an old LibTorch",
                                      {"GCC 9.4.0", LORY_CXX11_ABI_VALUE, "0.4.1"},
                                      nullptr,
                                      0};
  return &info;
}
