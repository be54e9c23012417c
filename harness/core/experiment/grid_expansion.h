// The [grid] table of an experiment expanded into grid points: each point is a list of overrides of
// the base config and a label. The axes ([[grid.cells]], [grid.product] keys, [[grid.zip]] entries,
// grid.seeds) are taken in that fixed order and the grid is their cartesian product.
#pragma once

#include <string>
#include <vector>

#include "core/config/config_tree.h"
#include "core/support/diagnostics.h"

namespace lory {

struct Override {
  std::vector<std::string> path;
  ConfigNode value;
  SourceLocation key_where;
};

// A piece of a cell's label; `path` names the swept key, so that the piece can be left out of
// cells whose resolved config does not have that key (a lory parameter in a dense cell).
struct LabelPart {
  std::string text;
  std::string path;  // empty for explicit labels
};

struct GridPoint {
  std::vector<LabelPart> label_parts;
  std::vector<Override> overrides;
};

// The grid's points; one point without overrides when the grid has no axis. Errors in the grid
// table go to `diagnostics`.
std::vector<GridPoint> expand_grid(const ConfigNode& grid, Diagnostics& diagnostics);

}  // namespace lory
