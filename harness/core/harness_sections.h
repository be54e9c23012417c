// The sections of an experiment's base config that the harness itself owns, with their declared
// keys. Plugin sections (model, router, batcher) also hold one sub-table per plugin, validated
// against that plugin's own declared parameters.
#pragma once

#include <string>
#include <vector>

#include "param_schema.h"
#include "plugin_catalog.h"

namespace lory {

struct HarnessSection {
  std::string name;             // "trainer"
  ParamSchema schema;           // keys the harness reads itself
  bool has_plugin = false;      // model, router, batcher: `plugin = "..."` + [section.<plugin>]
  PluginKind plugin_kind = PluginKind::Router;
};

// data, model, router, batcher, trainer, eval, in canonical order.
const std::vector<HarnessSection>& harness_sections();
const HarnessSection* find_harness_section(const std::string& name);

}  // namespace lory
