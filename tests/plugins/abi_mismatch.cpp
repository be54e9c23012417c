// A plugin built for a future plugin ABI: only its header may be read.
#include "lory/abi/plugin_abi.h"

extern "C" __attribute__((visibility("default"))) const LoryPluginInfo* lory_plugin_info(void) {
  static const LoryPluginInfo info = {
      {99u, 4096u}, LORY_PLUGIN_ROUTER, "future", "from the future", {}, nullptr, 0};
  return &info;
}
