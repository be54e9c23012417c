#include "core/experiment/experiment.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "core/experiment/cell_resolution.h"
#include "core/experiment/experiment_file.h"
#include "core/experiment/grid_expansion.h"
#include "core/support/paths.h"

namespace lory {

namespace fs = std::filesystem;

namespace {

const ParamSchema& experiment_table_schema() {
  static const ParamSchema schema({
      ParamSpec{"name",
                ParamType::String,
                std::nullopt,
                -HUGE_VAL,
                HUGE_VAL,
                {},
                "experiment name (letters, digits, . _ -)"},
      ParamSpec{"description",
                ParamType::String,
                ParamValue(std::string()),
                -HUGE_VAL,
                HUGE_VAL,
                {},
                "what it tests"},
  });
  return schema;
}

void record_locations(const ConfigNode& table, const std::string& prefix,
                      std::map<std::string, SourceLocation>& out) {
  for (const ConfigNode& member : table.children()) {
    const std::string path = prefix.empty() ? member.key() : prefix + "." + member.key();
    out[path] = member.is_table() ? member.where() : member.key_where();
    if (member.is_table()) record_locations(member, path, out);
  }
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

Experiment resolve_experiment(const ConfigNode& tree, const std::string& path,
                              const PluginCatalog& catalog, Diagnostics& diagnostics,
                              const std::vector<std::string>& included_files) {
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
  for (const std::string& file : included_files)
    experiment.included_files.emplace_back(file, text_of(file));
  const SourceLocation file_where = tree.where().known() ? tree.where() : file_location(path);
  const ConfigNode* experiment_table = tree.find("experiment");
  if (experiment_table && !experiment_table->is_table()) experiment_table = nullptr;
  const ParamValues header =
      validate_params(experiment_table, experiment_table_schema(), "experiment",
                      experiment_table ? experiment_table->where() : file_where, diagnostics);
  if (header.has("name")) {
    experiment.name = header.get_string("name");
    const bool valid =
        !experiment.name.empty() &&
        std::all_of(experiment.name.begin(), experiment.name.end(), [](char c) {
          return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
        });
    if (!valid) {
      const ConfigNode* node = experiment_table->find("name");
      diagnostics.error(
          node->where(),
          fmt::format("experiment.name \"{}\" may only hold letters, digits, '.', '_' "
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
      points = expand_grid(*grid, diagnostics);
    }
  }
  std::set<std::string> identities;
  for (const GridPoint& point : points) {
    ConfigNode cell_tree = base;
    for (const Override& o : point.overrides)
      set_config_path(cell_tree, o.path, o.value, o.key_where);
    CellConfig config = resolve_cell(cell_tree, file_where, catalog, diagnostics);
    ExperimentCell cell;
    record_locations(cell_tree, "", cell.written_at);
    cell.written_at[""] = file_where;
    cell.identity = config.identity();
    // A section whose `plugin` was not a valid name (a boolean, say) has no plugin: its error is
    // already in `diagnostics`, at the key.
    const SectionConfig& router_section = config.section("router");
    if (router_section.values.has("plugin")) {
      if (const PluginDescriptor* router = catalog.find(router_section.plugin()))
        cell.router_roles = router->roles;
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
  experiment_plugin_path(tree, path,
                         diagnostics);  // its entries are checked; the catalog is the caller's
  Experiment experiment;
  if (diagnostics.empty())
    experiment = resolve_experiment(tree, path, catalog, diagnostics, included_files);
  if (!diagnostics.empty()) {
    const std::string report = diagnostics.format();
    const auto count = std::count(report.begin(), report.end(), '\n');
    throw UserError(fmt::format("{} error{} in experiment {}:\n{}", count, count == 1 ? "" : "s",
                                path, report));
  }
  return experiment;
}

}  // namespace lory
