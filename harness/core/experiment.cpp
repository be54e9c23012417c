#include "experiment.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "core/paths.h"
#include "did_you_mean.h"
#include "harness_sections.h"
#include "training_device.h"

namespace lory {

namespace fs = std::filesystem;

namespace {

const std::vector<std::string> kTopLevelKeys = {"include", "experiment", "plugins", "data",  "model",
                                                "router",  "batcher",    "trainer", "eval", "grid"};

const ParamSchema& experiment_table_schema() {
  static const ParamSchema schema({
      ParamSpec{"name", ParamType::String, std::nullopt, -HUGE_VAL, HUGE_VAL, {}, "experiment name (letters, digits, . _ -)"},
      ParamSpec{"description", ParamType::String, ParamValue(std::string()), -HUGE_VAL, HUGE_VAL, {}, "what it tests"},
  });
  return schema;
}

SourceLocation file_location(const std::string& path) {
  return SourceLocation{std::make_shared<const std::string>(path), 0, 0};
}

void read_with_includes(const std::string& path, Diagnostics& diagnostics, std::vector<std::string>& stack,
                        ConfigNode& out, std::vector<std::string>* included_files) {
  ConfigNode file_tree = load_toml_file(path, diagnostics);
  ConfigNode merged = ConfigNode::table(file_tree.where());
  if (const ConfigNode* include = file_tree.find("include")) {
    std::vector<const ConfigNode*> entries;
    if (include->kind() == ConfigNode::Kind::String) {
      entries.push_back(include);
    } else if (include->is_array()) {
      for (const auto& e : include->children()) entries.push_back(&e);
    } else {
      diagnostics.error(include->where(), "'include' must be a file name or an array of file names");
    }
    for (const ConfigNode* entry : entries) {
      if (entry->kind() != ConfigNode::Kind::String) {
        diagnostics.error(entry->where(), "'include' entries must be strings (paths relative to this file)");
        continue;
      }
      const fs::path included = fs::path(path).parent_path() / entry->as_string();
      std::error_code ec;
      if (fs::is_directory(included, ec)) {
        diagnostics.error(entry->where(), fmt::format("included path '{}' is a folder; include names TOML files",
                                                      included.string()));
        continue;
      }
      if (!fs::is_regular_file(included, ec)) {
        diagnostics.error(entry->where(), fmt::format("included file '{}' does not exist", included.string()));
        continue;
      }
      const std::string canonical = fs::weakly_canonical(included).string();
      if (std::find(stack.begin(), stack.end(), canonical) != stack.end()) {
        diagnostics.error(entry->where(), fmt::format("'{}' is included in a cycle", included.string()));
        continue;
      }
      stack.push_back(canonical);
      if (included_files && std::find(included_files->begin(), included_files->end(), canonical) == included_files->end()) {
        included_files->push_back(canonical);
      }
      ConfigNode part = ConfigNode::table();
      read_with_includes(included.lexically_normal().string(), diagnostics, stack, part, included_files);
      stack.pop_back();
      // An included file lends its base config, not its grid: each experiment states its own cells.
      part.erase("grid");
      merge_config(merged, part);
    }
    file_tree.erase("include");
  }
  merge_config(merged, file_tree);
  out = std::move(merged);
}

// ---- grid expansion ------------------------------------------------------------------------

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

struct Leaf {
  std::vector<std::string> path;
  const ConfigNode* node;
};

void collect_leaves(const ConfigNode& table, std::vector<std::string>& prefix, std::vector<Leaf>& out) {
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
        point.label_parts.push_back({label_key(leaf.path) + "=" + value_label(*leaf.node), join_path(leaf.path)});
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
    diagnostics.error(leaf.node->where(),
                      fmt::format("'{}.{}' must be an array of values to sweep, got {} {}", where_name,
                                  join_path(leaf.path), ConfigNode::kind_name(leaf.node->kind()),
                                  leaf.node->to_toml_text()));
    return axis;
  }
  if (leaf.node->children().empty()) {
    diagnostics.error(leaf.node->where(), fmt::format("'{}.{}' sweeps no values", where_name, join_path(leaf.path)));
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
        diagnostics.error(leaves[i].node->where(),
                          fmt::format("zipped values must have equal lengths: 'grid.zip.{}' has {}, "
                                      "'grid.zip.{}' has {}",
                                      join_path(leaves[i].path), columns[i].size(), join_path(leaves[0].path), length));
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
      diagnostics.error(seed.where(), fmt::format("seeds must be non-negative integers, got {}", seed.to_toml_text()));
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
      diagnostics.error(member.key_where(), fmt::format("unknown key 'grid.{}'{}; the grid has cells, product, zip "
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

void record_locations(const ConfigNode& table, const std::string& prefix,
                      std::map<std::string, SourceLocation>& out) {
  for (const ConfigNode& member : table.children()) {
    const std::string path = prefix.empty() ? member.key() : prefix + "." + member.key();
    out[path] = member.is_table() ? member.where() : member.key_where();
    if (member.is_table()) record_locations(member, path, out);
  }
}

std::vector<GridPoint> cartesian(const std::vector<Axis>& axes) {
  std::vector<GridPoint> points(1);
  for (const Axis& axis : axes) {
    std::vector<GridPoint> next;
    for (const GridPoint& point : points) {
      for (const GridPoint& choice : axis) {
        GridPoint combined = point;
        combined.label_parts.insert(combined.label_parts.end(), choice.label_parts.begin(), choice.label_parts.end());
        combined.overrides.insert(combined.overrides.end(), choice.overrides.begin(), choice.overrides.end());
        next.push_back(std::move(combined));
      }
    }
    points = std::move(next);
  }
  return points;
}

// ---- resolution of one cell ------------------------------------------------------------------

void check_top_level_keys(const ConfigNode& tree, Diagnostics& diagnostics) {
  for (const ConfigNode& member : tree.children()) {
    if (std::find(kTopLevelKeys.begin(), kTopLevelKeys.end(), member.key()) == kTopLevelKeys.end()) {
      const std::string hint = quoted_dotted_key_hint(member.key());
      diagnostics.error(member.key_where(), fmt::format("unknown key '{}'{}", member.key(),
                                                        hint.empty() ? did_you_mean_suffix(member.key(), kTopLevelKeys)
                                                                     : hint));
    } else if (member.key() != "include" && !member.is_table()) {
      diagnostics.error(member.where(), fmt::format("'{}' must be a table ([{}])", member.key(), member.key()));
    }
  }
}

std::vector<std::string> params_declaring(const PluginCatalog& catalog, PluginKind kind, const std::string& key) {
  std::vector<std::string> out;
  for (const PluginDescriptor* p : catalog.all()) {
    if (p->kind == kind && p->schema.find(key)) out.push_back(p->name);
  }
  return out;
}

// Where `key` of `table` was written (its key), or `fallback` when the table does not hold it.
SourceLocation key_location(const ConfigNode* table, const std::string& key, const SourceLocation& fallback) {
  if (table && table->is_table()) {
    if (const ConfigNode* node = table->find(key)) return node->key_where().known() ? node->key_where() : node->where();
  }
  return fallback;
}

// The plugin a section selects, as written ("lory"), or its default; "" when not a string.
std::string selected_plugin_name(const HarnessSection& section, const ConfigNode* table) {
  if (table) {
    if (const ConfigNode* plugin = table->find("plugin")) {
      return plugin->kind() == ConfigNode::Kind::String ? plugin->as_string() : "";
    }
  }
  const ParamSpec* spec = section.schema.find("plugin");
  return spec && spec->default_value ? std::get<std::string>(*spec->default_value) : "";
}

// The plugin's own cross-parameter rules (LORY_PARAM_CHECK), each reported at the parameter it
// names, so that a grid of such cells fails here, all at once, not one worker at a time.
void check_plugin_rules(const PluginDescriptor& plugin, const ParamValues& values, const std::string& section,
                        const ConfigNode* plugin_table, const SourceLocation& where, Diagnostics& diagnostics) {
  if (!plugin.check) return;
  for (const ParamProblem& problem : plugin.check(values)) {
    diagnostics.error(problem.key.empty() ? where : key_location(plugin_table, problem.key, where),
                      fmt::format("{}.{}: {}", section, plugin.name, problem.message));
  }
}

SectionConfig resolve_plugin_section(const HarnessSection& section, const ConfigNode* table,
                                     const SourceLocation& where, const PluginCatalog& catalog,
                                     Diagnostics& diagnostics) {
  const std::string kind_name = plugin_kind_name(section.plugin_kind);
  const std::string selected_name = selected_plugin_name(section, table);
  ConfigNode harness_keys = ConfigNode::table(where);
  std::vector<const ConfigNode*> plugin_tables;
  if (table) {
    for (const ConfigNode& member : table->children()) {
      if (member.is_table()) {
        plugin_tables.push_back(&member);
      } else if (section.schema.find(member.key())) {
        harness_keys.set(member.key(), member, member.key_where());
      } else {
        auto owners = params_declaring(catalog, section.plugin_kind, member.key());
        // The plugin this section selects first: `router.experts` with the lory router means
        // router.lory.experts, whichever other router also has an `experts`.
        const auto selected_owner = std::find(owners.begin(), owners.end(), selected_name);
        if (selected_owner != owners.end()) std::rotate(owners.begin(), selected_owner, selected_owner + 1);
        if (!owners.empty()) {
          diagnostics.error(member.key_where(),
                            fmt::format("'{}.{}' is a parameter of the {} plugin '{}': write it under [{}.{}] (or as "
                                        "{}.{}.{})",
                                        section.name, member.key(), kind_name, owners.front(), section.name,
                                        owners.front(), section.name, owners.front(), member.key()));
        } else {
          std::vector<std::string> candidates = section.schema.names();
          for (const auto& n : catalog.names_of_kind(section.plugin_kind)) candidates.push_back(n);
          diagnostics.error(member.key_where(), fmt::format("unknown key '{}.{}'{}", section.name, member.key(),
                                                            did_you_mean_suffix(member.key(), candidates)));
        }
      }
    }
  }
  SectionConfig out;
  out.values = validate_params(&harness_keys, section.schema, section.name, where, diagnostics);
  const std::string plugin = out.values.has("plugin") ? out.values.get_string("plugin") : "";
  const PluginDescriptor* selected = nullptr;
  if (!plugin.empty()) {
    const ConfigNode* plugin_node = harness_keys.find("plugin");
    const SourceLocation plugin_where = plugin_node ? plugin_node->where() : where;
    const PluginDescriptor* found = catalog.find(plugin);
    const auto available = catalog.names_of_kind(section.plugin_kind);
    if (!found) {
      diagnostics.error(plugin_where, fmt::format("unknown {} plugin '{}'{} (available: {})", kind_name, plugin,
                                                  did_you_mean_suffix(plugin, available), fmt::join(available, ", ")));
    } else if (found->kind != section.plugin_kind) {
      diagnostics.error(plugin_where, fmt::format("'{}' is a {} plugin ({}), but {}.plugin needs a {} (available: {})",
                                                  plugin, plugin_kind_name(found->kind), found->file, section.name,
                                                  kind_name, fmt::join(available, ", ")));
    } else {
      selected = found;
    }
  }
  bool selected_has_table = false;
  for (const ConfigNode* plugin_table : plugin_tables) {
    const std::string& name = plugin_table->key();
    const PluginDescriptor* descriptor = catalog.find(name);
    const auto available = catalog.names_of_kind(section.plugin_kind);
    if (!descriptor) {
      diagnostics.error(plugin_table->key_where(),
                        fmt::format("[{}.{}]: no {} plugin is named '{}'{} (available: {})", section.name, name,
                                    kind_name, name, did_you_mean_suffix(name, available), fmt::join(available, ", ")));
      continue;
    }
    if (descriptor->kind != section.plugin_kind) {
      diagnostics.error(plugin_table->key_where(),
                        fmt::format("[{}.{}]: '{}' is a {} plugin, not a {}", section.name, name, name,
                                    plugin_kind_name(descriptor->kind), kind_name));
      continue;
    }
    const size_t errors_before = diagnostics.size();
    ParamValues params = validate_params(plugin_table, descriptor->schema, section.name + "." + name,
                                         plugin_table->where(), diagnostics);
    if (descriptor == selected) {
      out.plugin_params = std::move(params);
      selected_has_table = true;
      if (diagnostics.size() == errors_before) {
        check_plugin_rules(*selected, out.plugin_params, section.name, plugin_table, plugin_table->where(),
                           diagnostics);
      }
    }
  }
  if (selected && !selected_has_table) {
    const size_t errors_before = diagnostics.size();
    out.plugin_params = validate_params(nullptr, selected->schema, section.name + "." + plugin, where, diagnostics);
    if (diagnostics.size() == errors_before) {
      check_plugin_rules(*selected, out.plugin_params, section.name, nullptr, where, diagnostics);
    }
  }
  return out;
}

// More tokens than any model has been trained on (~15T): a value this large is a typo, and
// step, token and progress counters would overflow long before it trained.
constexpr double kMaxTrainingTokens = 1e15;

void check_trainer_consistency(const SectionConfig& trainer, const ConfigNode* table, const SourceLocation& where,
                               Diagnostics& diagnostics) {
  if (trainer.values.has("device")) {
    if (const auto problem = training_device_problem(trainer.values.get_string("device"))) {
      diagnostics.error(key_location(table, "device", where), "trainer.device = " + *problem);
    }
  }
  if (!trainer.values.has("steps") || !trainer.values.has("tokens")) return;
  const int64_t steps = trainer.values.get_int("steps"), tokens = trainer.values.get_int("tokens");
  if ((steps > 0) == (tokens > 0)) {
    // Both set: at trainer.tokens (the message names both); neither: at the section.
    const SourceLocation at = steps > 0 ? key_location(table, "tokens", key_location(table, "steps", where)) : where;
    diagnostics.error(at, fmt::format("set exactly one of trainer.steps and trainer.tokens (got steps = {}, "
                                      "tokens = {})",
                                      steps, tokens));
  }
  if (!trainer.values.has("batch_size") || !trainer.values.has("micro_batch_size")) return;
  const int64_t batch = trainer.values.get_int("batch_size"), micro = trainer.values.get_int("micro_batch_size");
  if (micro > 0 && batch % micro != 0) {
    diagnostics.error(key_location(table, "micro_batch_size", where),
                      fmt::format("trainer.micro_batch_size = {} must divide trainer.batch_size = {}", micro, batch));
  }
}

// Rules between the trainer and the model's context length: what one step holds, and a budget
// that is at least one step and not absurd. lr = 0 is legal (a frozen-model control) but almost
// never meant, so it is a warning.
void check_training_budget(const CellConfig& config, const ConfigNode* trainer_table, const SourceLocation& where,
                           Diagnostics& diagnostics) {
  const ParamValues& trainer = config.section("trainer").values;
  const ParamValues& model = config.section("model").values;
  if (!model.has("context_length") || !trainer.has("batch_size") || !trainer.has("steps") || !trainer.has("tokens")) {
    return;
  }
  const int64_t context = model.get_int("context_length"), batch = trainer.get_int("batch_size");
  const int64_t steps = trainer.get_int("steps"), tokens = trainer.get_int("tokens");
  const double tokens_per_step = static_cast<double>(batch) * static_cast<double>(context);
  if (tokens > 0 && steps == 0 && static_cast<double>(tokens) < tokens_per_step) {
    diagnostics.error(key_location(trainer_table, "tokens", where),
                      fmt::format("trainer.tokens = {} is less than one step (trainer.batch_size x "
                                  "model.context_length = {} x {} = {:.0f} tokens); ask for at least that many",
                                  tokens, batch, context, tokens_per_step));
  }
  const double total = steps > 0 ? static_cast<double>(steps) * tokens_per_step : static_cast<double>(tokens);
  if (total > kMaxTrainingTokens) {
    const std::string key = steps > 0 ? "steps" : "tokens";
    diagnostics.error(key_location(trainer_table, key, where),
                      fmt::format("trainer.{} = {} asks for {:.3g} training tokens, more than the {:.0e} lory accepts "
                                  "(more than any language model has been trained on); a typo?",
                                  key, steps > 0 ? steps : tokens, total, kMaxTrainingTokens));
  }
  if (trainer.has("lr") && trainer.get_float("lr") == 0.0) {
    diagnostics.warning(key_location(trainer_table, "lr", where),
                        "trainer.lr = 0: the optimizer will not change the model (weight decay included); the run "
                        "measures an untrained model");
  }
}

void check_eval_consistency(const CellConfig& config, const ConfigNode* table, const SourceLocation& where,
                            Diagnostics& diagnostics) {
  const ParamValues& eval = config.section("eval").values;
  const ParamValues& model = config.section("model").values;
  if (!model.has("context_length")) return;
  const int64_t context = model.get_int("context_length");
  if (eval.has("skip_first_tokens") && eval.get_int("skip_first_tokens") >= context) {
    diagnostics.error(key_location(table, "skip_first_tokens", where),
                      fmt::format("eval.skip_first_tokens = {} leaves nothing to score in sequences of "
                                  "model.context_length = {}",
                                  eval.get_int("skip_first_tokens"), context));
  }
  if (eval.has("prompt_routing") && eval.get_bool("prompt_routing") && eval.has("prompt_length") &&
      eval.get_int("prompt_length") >= context) {
    diagnostics.error(key_location(table, "prompt_length", where),
                      fmt::format("eval.prompt_length = {} must be shorter than model.context_length = {}",
                                  eval.get_int("prompt_length"), context));
  }
}

CellConfig resolve_cell(const ConfigNode& tree, const SourceLocation& file_where, const PluginCatalog& catalog,
                        Diagnostics& diagnostics) {
  check_top_level_keys(tree, diagnostics);
  CellConfig config;
  for (const HarnessSection& section : harness_sections()) {
    const ConfigNode* table = tree.find(section.name);
    if (table && !table->is_table()) table = nullptr;  // reported by check_top_level_keys
    const SourceLocation where = table ? table->where() : file_where;
    if (section.has_plugin) {
      config.sections[section.name] = resolve_plugin_section(section, table, where, catalog, diagnostics);
    } else {
      config.sections[section.name].values = validate_params(table, section.schema, section.name, where, diagnostics);
    }
    if (section.name == "trainer") check_trainer_consistency(config.sections["trainer"], table, where, diagnostics);
    if (section.name == "eval") check_eval_consistency(config, table, where, diagnostics);
  }
  const ConfigNode* trainer_table = tree.find("trainer");
  check_training_budget(config, trainer_table && trainer_table->is_table() ? trainer_table : nullptr,
                        trainer_table ? trainer_table->where() : file_where, diagnostics);
  return config;
}

}  // namespace

SourceLocation ExperimentCell::where(const std::string& dotted_key) const {
  std::string key = dotted_key;
  while (!key.empty()) {
    auto it = written_at.find(key);
    if (it != written_at.end() && it->second.known()) return it->second;
    const size_t dot = key.rfind('.');
    key = dot == std::string::npos ? "" : key.substr(0, dot);
  }
  auto file = written_at.find("");
  return file == written_at.end() ? SourceLocation{} : file->second;
}

std::vector<std::string> Experiment::varying_keys() const {
  std::map<std::string, std::set<std::string>> values;
  std::vector<std::map<std::string, std::string>> flat;
  for (const auto& cell : cells) flat.push_back(cell.config.flatten());
  for (const auto& f : flat) {
    for (const auto& [key, value] : f) values[key].insert(value);
  }
  // A key that only some cells have (a plugin's parameter) varies with the plugin column; it is
  // listed only when its value differs between the cells that have it.
  std::vector<std::string> out;
  for (const auto& [key, distinct] : values) {
    if (distinct.size() > 1) out.push_back(key);
  }
  return out;
}

std::string Experiment::corpus_path(const CellConfig& config) const {
  return resolve_against(directory, config.section("data").values.get_string("corpus"));
}

ConfigNode read_experiment_tree(const std::string& path, Diagnostics& diagnostics,
                                std::vector<std::string>* included_files) {
  std::vector<std::string> stack;
  std::error_code ec;
  stack.push_back(fs::weakly_canonical(path, ec).string());
  ConfigNode tree = ConfigNode::table(file_location(path));
  read_with_includes(path, diagnostics, stack, tree, included_files);
  return tree;
}

std::vector<std::string> experiment_plugin_path(const ConfigNode& tree, const std::string& path,
                                                Diagnostics& diagnostics) {
  std::vector<std::string> out;
  const ConfigNode* plugins = tree.find("plugins");
  if (!plugins || !plugins->is_table()) return out;
  for (const ConfigNode& member : plugins->children()) {
    if (member.key() != "path") {
      diagnostics.error(member.key_where(), fmt::format("unknown key 'plugins.{}'{}", member.key(),
                                                        did_you_mean_suffix(member.key(), {"path"})));
      continue;
    }
    if (!member.is_array()) {
      diagnostics.error(member.where(), "'plugins.path' must be an array of folders or plugin files");
      continue;
    }
    for (const ConfigNode& entry : member.children()) {
      if (entry.kind() != ConfigNode::Kind::String) {
        diagnostics.error(entry.where(), "'plugins.path' entries must be strings");
        continue;
      }
      const fs::path p = entry.as_string();
      const std::string resolved = resolve_against(fs::path(path).parent_path().string(), p.string());
      std::error_code ec;
      if (!fs::exists(resolved, ec)) {
        diagnostics.error(entry.where(), fmt::format("plugin path entry '{}' does not exist{}", resolved,
                                                     p.is_absolute() ? "" : " (relative paths start at this file's folder)"));
        continue;
      }
      out.push_back(resolved);
    }
  }
  return out;
}

Experiment resolve_experiment(const ConfigNode& tree, const std::string& path, const PluginCatalog& catalog,
                              Diagnostics& diagnostics, const std::vector<std::string>& included_files) {
  Experiment experiment;
  experiment.file = path;
  experiment.directory = fs::path(path).parent_path().string();
  if (experiment.directory.empty()) experiment.directory = ".";
  const auto text_of = [](const std::string& file) {
    std::ifstream in(file, std::ios::binary);
    std::stringstream buffer;
    buffer << in.rdbuf();
    return buffer.str();
  };
  experiment.source_text = text_of(path);
  for (const std::string& file : included_files) experiment.included_files.emplace_back(file, text_of(file));
  const SourceLocation file_where = tree.where().known() ? tree.where() : file_location(path);
  const ConfigNode* experiment_table = tree.find("experiment");
  if (experiment_table && !experiment_table->is_table()) experiment_table = nullptr;
  const ParamValues header =
      validate_params(experiment_table, experiment_table_schema(), "experiment",
                      experiment_table ? experiment_table->where() : file_where, diagnostics);
  if (header.has("name")) {
    experiment.name = header.get_string("name");
    const bool valid = !experiment.name.empty() && std::all_of(experiment.name.begin(), experiment.name.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
    });
    if (!valid) {
      const ConfigNode* node = experiment_table->find("name");
      diagnostics.error(node->where(), fmt::format("experiment.name \"{}\" may only hold letters, digits, '.', '_' "
                                                   "and '-'",
                                                   experiment.name));
    }
  }
  if (header.has("description")) experiment.description = header.get_string("description");

  ConfigNode base = tree;
  base.erase("grid");
  base.erase("experiment");
  base.erase("plugins");
  std::vector<GridPoint> points(1);
  if (const ConfigNode* grid = tree.find("grid")) {
    if (grid->is_table()) {
      points = cartesian(parse_grid(*grid, diagnostics));
    }
  }
  std::set<std::string> identities;
  for (const GridPoint& point : points) {
    ConfigNode cell_tree = base;
    for (const Override& o : point.overrides) set_config_path(cell_tree, o.path, o.value, o.key_where);
    CellConfig config = resolve_cell(cell_tree, file_where, catalog, diagnostics);
    ExperimentCell cell;
    record_locations(cell_tree, "", cell.written_at);
    cell.written_at[""] = file_where;
    cell.identity = config.identity();
    // A section whose `plugin` was not a valid name (a boolean, say) has no plugin: its error is
    // already in `diagnostics`, at the key.
    const SectionConfig& router_section = config.section("router");
    if (router_section.values.has("plugin")) {
      if (const PluginDescriptor* router = catalog.find(router_section.plugin())) cell.router_roles = router->roles;
    }
    const auto flat = config.flatten();
    cell.config = std::move(config);
    for (const LabelPart& part : point.label_parts) {
      if (!part.path.empty() && !flat.count(part.path)) continue;
      cell.label += (cell.label.empty() ? "" : " ") + part.text;
    }
    if (cell.label.empty()) cell.label = "base";
    if (!identities.insert(cell.identity).second) {
      ++experiment.merged_duplicates;
      continue;
    }
    experiment.cells.push_back(std::move(cell));
  }
  return experiment;
}

Experiment load_experiment(const std::string& path, const PluginCatalog& catalog) {
  Diagnostics diagnostics;
  std::vector<std::string> included_files;
  const ConfigNode tree = read_experiment_tree(path, diagnostics, &included_files);
  experiment_plugin_path(tree, path, diagnostics);  // its entries are checked; the catalog is the caller's
  Experiment experiment;
  if (diagnostics.empty()) experiment = resolve_experiment(tree, path, catalog, diagnostics, included_files);
  if (!diagnostics.empty()) {
    const std::string report = diagnostics.format();
    const auto count = std::count(report.begin(), report.end(), '\n');
    throw UserError(fmt::format("{} error{} in experiment {}:\n{}", count, count == 1 ? "" : "s", path, report));
  }
  return experiment;
}

}  // namespace lory
