// One cell's config resolved: every section of the harness validated against its schema, each
// plugin section against the selected plugin's declared parameters and rules, defaults filled, and
// the rules between sections checked (trainer budget, eval lengths). Every error goes to
// `diagnostics` at the key that caused it.
#pragma once

#include "core/config/config_tree.h"
#include "core/experiment/cell_config.h"
#include "core/plugins/plugin_catalog.h"
#include "core/support/diagnostics.h"

namespace lory {

// `tree` is the base config with one grid point's overrides applied; `file_where` stands for the
// experiment file where a section is not written at all.
CellConfig resolve_cell(const ConfigNode& tree, const SourceLocation& file_where,
                        const PluginCatalog& catalog, Diagnostics& diagnostics);

}  // namespace lory
