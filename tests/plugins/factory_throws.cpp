// A plugin whose factory throws: creating it must fail with the plugin's own message.
#include <stdexcept>

#include "lory/core/batcher_api.h"
#include "lory/core/plugin.h"

namespace lory_test_plugins::throwing {
std::unique_ptr<lory::BatcherPlugin> create() { throw std::runtime_error("out of coffee"); }
}  // namespace lory_test_plugins::throwing

LORY_PLUGIN_METADATA_NO_PARAMS(LORY_PLUGIN_BATCHER, "throwing_batcher", "Test: its factory throws")
LORY_BATCHER_FACTORY(lory_test_plugins::throwing::create)
