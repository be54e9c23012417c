#include "in_tree_plugins.h"

#include "test_support.h"

namespace lory::testing {

const testkit::PluginSet& plugins() {
  static const testkit::PluginSet set({build_dir() + "/plugins"});
  return set;
}

}  // namespace lory::testing
