// The build's own plugins (build/plugins), loaded once per test process.
#pragma once

#include "lory/testkit/plugin_set.h"

namespace lory::testing {
const testkit::PluginSet& plugins();
}  // namespace lory::testing
