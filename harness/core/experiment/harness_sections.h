// The sections of an experiment's base config that the harness itself owns, with their declared
// keys. Plugin sections (model, router, batcher) also hold one sub-table per plugin, validated
// against that plugin's own declared parameters.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/config/param_schema.h"
#include "core/plugins/plugin_catalog.h"

namespace lory {

struct HarnessSection {
  std::string name;    // "trainer"
  ParamSchema schema;  // keys the harness reads itself
  // model, router, batcher: the kind of plugin `plugin = "..."` selects, whose parameters go in
  // [section.<plugin>]; none for the sections the harness reads alone (data, trainer, eval).
  std::optional<PluginKind> plugin_kind;
};

// data, model, router, batcher, trainer, eval, in canonical order.
const std::vector<HarnessSection>& harness_sections();
const HarnessSection* find_harness_section(const std::string& name);

}  // namespace lory
