#include "core/experiment/grid_expansion.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "core/support/did_you_mean.h"

namespace lory {

namespace {

struct Leaf {
  std::vector<std::string> path;
  const ConfigNode* node;
};

void collect_leaves(const ConfigNode& table, std::vector<std::string>& prefix,
                    std::vector<Leaf>& out) {
  for (const ConfigNode& member : table.children()) {
    prefix.push_back(member.key());
    if (member.is_table()) {
      collect_leaves(member, prefix, out);
    } else {
      out.push_back({prefix, &member});
    }
    prefix.pop_back();
  }
}

// Every value under a table, with its dotted path from the table.
std::vector<Leaf> leaves_of(const ConfigNode& table) {
  std::vector<Leaf> leaves;
  std::vector<std::string> prefix;
  collect_leaves(table, prefix, leaves);
  return leaves;
}

std::string join_path(const std::vector<std::string>& path) {
  std::string out;
  for (size_t i = 0; i < path.size(); ++i) out += (i ? "." : "") + path[i];
  return out;
}

// The name a swept key gets in a cell label: its last component, or the section for a plugin
// choice ("batcher=similarity" rather than "plugin=similarity").
std::string label_key(const std::vector<std::string>& path) {
  if (path.size() >= 2 && path.back() == "plugin") return path[path.size() - 2];
  return path.back();
}

std::string value_label(const ConfigNode& value) {
  return value.kind() == ConfigNode::Kind::String ? value.as_string() : value.to_toml_text();
}

// One sweep dimension: its alternatives, each a list of overrides with a label part.
using Axis = std::vector<GridPoint>;

// [[grid.cells]]: one axis whose points are the listed override tables, each labelled by its
// `label` or by its overrides.
Axis cells_axis(const ConfigNode& cells, Diagnostics& diagnostics) {
  Axis axis;
  if (!cells.is_array()) {
    diagnostics.error(cells.where(), "'grid.cells' must be an array of tables ([[grid.cells]])");
    return axis;
  }
  for (const ConfigNode& cell : cells.children()) {
    if (!cell.is_table()) {
      diagnostics.error(cell.where(), "each entry of 'grid.cells' must be a table of overrides");
      continue;
    }
    GridPoint point;
    std::vector<Leaf> leaves;
    std::vector<std::string> prefix;
    for (const ConfigNode& member : cell.children()) {
      if (member.key() == "label") {
        if (member.kind() != ConfigNode::Kind::String) {
          diagnostics.error(member.where(), "'label' of a grid cell must be a string");
        } else {
          point.label_parts.push_back({member.as_string(), ""});
        }
        continue;
      }
      prefix = {member.key()};
      if (member.is_table()) {
        collect_leaves(member, prefix, leaves);
      } else {
        leaves.push_back({prefix, &member});
      }
    }
    bool labelled = !point.label_parts.empty();
    for (const Leaf& leaf : leaves) {
      point.overrides.push_back({leaf.path, *leaf.node, leaf.node->key_where()});
      if (!labelled) {
        point.label_parts.push_back(
            {label_key(leaf.path) + "=" + value_label(*leaf.node), join_path(leaf.path)});
      }
    }
    axis.push_back(std::move(point));
  }
  return axis;
}

// One swept key (`key = [values]` under grid.product or a [[grid.zip]]): an axis of its values.
Axis sweep_axis(const Leaf& leaf, const std::string& where_name, Diagnostics& diagnostics) {
  Axis axis;
  for (const std::string& part : leaf.path) {
    if (part.find('.') == std::string::npos) continue;
    diagnostics.error(leaf.node->key_where(),
                      fmt::format("'{}.\"{}\"' sweeps a key named \"{}\"{}", where_name, part, part,
                                  quoted_dotted_key_hint(part)));
    return axis;
  }
  if (!leaf.node->is_array()) {
    diagnostics.error(
        leaf.node->where(),
        fmt::format("'{}.{}' must be an array of values to sweep, got {} {}", where_name,
                    join_path(leaf.path), ConfigNode::kind_name(leaf.node->kind()),
                    leaf.node->to_toml_text()));
    return axis;
  }
  if (leaf.node->children().empty()) {
    diagnostics.error(leaf.node->where(),
                      fmt::format("'{}.{}' sweeps no values", where_name, join_path(leaf.path)));
  }
  for (const ConfigNode& value : leaf.node->children()) {
    axis.push_back({{{label_key(leaf.path) + "=" + value_label(value), join_path(leaf.path)}},
                    {{leaf.path, value, leaf.node->key_where()}}});
  }
  return axis;
}

// [grid.product]: one axis per swept key (their cartesian product is taken with the others).
std::vector<Axis> product_axes(const ConfigNode& product, Diagnostics& diagnostics) {
  std::vector<Axis> axes;
  if (!product.is_table()) {
    diagnostics.error(product.where(), "'grid.product' must be a table of key = [values]");
    return axes;
  }
  for (const Leaf& leaf : leaves_of(product)) {
    Axis axis = sweep_axis(leaf, "grid.product", diagnostics);
    if (!axis.empty()) axes.push_back(std::move(axis));
  }
  return axes;
}

// [[grid.zip]]: each entry is one axis whose i-th point sets the i-th value of every key in it.
std::vector<Axis> zip_axes(const ConfigNode& zips, Diagnostics& diagnostics) {
  std::vector<Axis> axes;
  if (!zips.is_array()) {
    diagnostics.error(zips.where(), "'grid.zip' must be an array of tables ([[grid.zip]])");
    return axes;
  }
  for (const ConfigNode& group : zips.children()) {
    if (!group.is_table()) {
      diagnostics.error(group.where(), "each [[grid.zip]] entry must be a table of key = [values]");
      continue;
    }
    const std::vector<Leaf> leaves = leaves_of(group);
    std::vector<Axis> columns;
    for (const Leaf& leaf : leaves) columns.push_back(sweep_axis(leaf, "grid.zip", diagnostics));
    if (columns.empty()) continue;
    const size_t length = columns.front().size();
    bool same_length = true;
    for (size_t i = 1; i < columns.size(); ++i) {
      if (columns[i].size() != length) {
        same_length = false;
        diagnostics.error(
            leaves[i].node->where(),
            fmt::format("zipped values must have equal lengths: 'grid.zip.{}' has {}, "
                        "'grid.zip.{}' has {}",
                        join_path(leaves[i].path), columns[i].size(), join_path(leaves[0].path),
                        length));
      }
    }
    if (!same_length || length == 0) continue;
    Axis axis(length);
    for (const Axis& column : columns) {
      for (size_t i = 0; i < length; ++i) {
        for (const auto& part : column[i].label_parts) axis[i].label_parts.push_back(part);
        for (const auto& o : column[i].overrides) axis[i].overrides.push_back(o);
      }
    }
    axes.push_back(std::move(axis));
  }
  return axes;
}

// grid.seeds: one axis of trainer.seed values.
Axis seeds_axis(const ConfigNode& seeds, Diagnostics& diagnostics) {
  Axis axis;
  if (!seeds.is_array() || seeds.children().empty()) {
    diagnostics.error(seeds.where(), "'grid.seeds' must be a non-empty array of integers");
    return axis;
  }
  std::set<int64_t> seen;
  for (const ConfigNode& seed : seeds.children()) {
    if (seed.kind() != ConfigNode::Kind::Int || seed.as_int() < 0) {
      diagnostics.error(seed.where(), fmt::format("seeds must be non-negative integers, got {}",
                                                  seed.to_toml_text()));
      continue;
    }
    if (!seen.insert(seed.as_int()).second) {
      diagnostics.error(seed.where(), fmt::format("seed {} is listed twice", seed.as_int()));
      continue;
    }
    axis.push_back({{{"seed=" + std::to_string(seed.as_int()), "trainer.seed"}},
                    {{{"trainer", "seed"}, seed, seeds.key_where()}}});
  }
  return axis;
}

// The [grid] table's axes, in a fixed order (cells, product keys, zips, seeds): the grid is their
// cartesian product.
std::vector<Axis> parse_grid(const ConfigNode& grid, Diagnostics& diagnostics) {
  const std::vector<std::string> grid_keys = {"cells", "product", "zip", "seeds"};
  for (const ConfigNode& member : grid.children()) {
    if (std::find(grid_keys.begin(), grid_keys.end(), member.key()) == grid_keys.end()) {
      diagnostics.error(member.key_where(),
                        fmt::format("unknown key 'grid.{}'{}; the grid has cells, product, zip "
                                    "and seeds",
                                    member.key(), did_you_mean_suffix(member.key(), grid_keys)));
    }
  }
  std::vector<Axis> axes;
  const auto add = [&axes](Axis axis) {
    if (!axis.empty()) axes.push_back(std::move(axis));
  };
  if (const ConfigNode* cells = grid.find("cells")) add(cells_axis(*cells, diagnostics));
  if (const ConfigNode* product = grid.find("product")) {
    for (Axis& axis : product_axes(*product, diagnostics)) add(std::move(axis));
  }
  if (const ConfigNode* zips = grid.find("zip")) {
    for (Axis& axis : zip_axes(*zips, diagnostics)) add(std::move(axis));
  }
  if (const ConfigNode* seeds = grid.find("seeds")) add(seeds_axis(*seeds, diagnostics));
  return axes;
}

std::vector<GridPoint> cartesian(const std::vector<Axis>& axes) {
  std::vector<GridPoint> points(1);
  for (const Axis& axis : axes) {
    std::vector<GridPoint> next;
    for (const GridPoint& point : points) {
      for (const GridPoint& choice : axis) {
        GridPoint combined = point;
        combined.label_parts.insert(combined.label_parts.end(), choice.label_parts.begin(),
                                    choice.label_parts.end());
        combined.overrides.insert(combined.overrides.end(), choice.overrides.begin(),
                                  choice.overrides.end());
        next.push_back(std::move(combined));
      }
    }
    points = std::move(next);
  }
  return points;
}

}  // namespace

std::vector<GridPoint> expand_grid(const ConfigNode& grid, Diagnostics& diagnostics) {
  return cartesian(parse_grid(grid, diagnostics));
}

}  // namespace lory
