// Valid metadata for a router, but no factory exported.
#include "lory/core/plugin.h"

LORY_PLUGIN_METADATA_NO_PARAMS(LORY_PLUGIN_ROUTER, "factoryless",
                               "Test: declares a router, exports no factory")
