// A plugin whose own parameter declaration is broken (default outside its range).
#include "lory/core/plugin.h"

namespace {
const LoryParamSpec kParams[] = {
    {"depth", LORY_PARAM_INT, "100", 1, 10, nullptr, "default outside [1, 10]"},
};
}  // namespace

LORY_PLUGIN_METADATA(LORY_PLUGIN_BATCHER, "broken_parameter", "Test: broken parameter declaration",
                     kParams)
