// A plugin built for an older plugin ABI (version 0, whose metadata was a smaller struct): the
// loader must read only the header and refuse it with both versions, never touch the rest.
#include "lory/abi/plugin_abi.h"

namespace {
struct VersionZeroInfo {  // the layout version 0 had: header, kind, name; nothing more
  LoryPluginInfoHeader header;
  uint32_t kind;
  const char* name;
};
}  // namespace

extern "C" __attribute__((visibility("default"))) const LoryPluginInfo* lory_plugin_info(void) {
  static const VersionZeroInfo info = {{0u, sizeof(VersionZeroInfo)}, LORY_PLUGIN_ROUTER, "old"};
  return reinterpret_cast<const LoryPluginInfo*>(&info);
}
