#include "core/experiment/experiment_file.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>

#include "core/support/did_you_mean.h"
#include "core/support/paths.h"

namespace lory {

namespace fs = std::filesystem;

namespace {

void read_with_includes(const std::string& path, Diagnostics& diagnostics,
                        std::vector<std::string>& stack, ConfigNode& out,
                        std::vector<std::string>* included_files) {
  ConfigNode file_tree = load_toml_file(path, diagnostics);
  ConfigNode merged = ConfigNode::table(file_tree.where());
  if (const ConfigNode* include = file_tree.find("include")) {
    std::vector<const ConfigNode*> entries;
    if (include->kind() == ConfigNode::Kind::String) {
      entries.push_back(include);
    } else if (include->is_array()) {
      for (const auto& e : include->children()) entries.push_back(&e);
    } else {
      diagnostics.error(include->where(),
                        "'include' must be a file name or an array of file names");
    }
    for (const ConfigNode* entry : entries) {
      if (entry->kind() != ConfigNode::Kind::String) {
        diagnostics.error(entry->where(),
                          "'include' entries must be strings (paths relative to this file)");
        continue;
      }
      const fs::path included = fs::path(path).parent_path() / entry->as_string();
      std::error_code ec;
      if (fs::is_directory(included, ec)) {
        diagnostics.error(entry->where(),
                          fmt::format("included path '{}' is a folder; include names TOML files",
                                      included.string()));
        continue;
      }
      if (!fs::is_regular_file(included, ec)) {
        diagnostics.error(entry->where(),
                          fmt::format("included file '{}' does not exist", included.string()));
        continue;
      }
      const std::string canonical = fs::weakly_canonical(included).string();
      if (std::find(stack.begin(), stack.end(), canonical) != stack.end()) {
        diagnostics.error(entry->where(),
                          fmt::format("'{}' is included in a cycle", included.string()));
        continue;
      }
      stack.push_back(canonical);
      if (included_files && std::find(included_files->begin(), included_files->end(), canonical) ==
                                included_files->end()) {
        included_files->push_back(canonical);
      }
      ConfigNode part = ConfigNode::table();
      read_with_includes(included.lexically_normal().string(), diagnostics, stack, part,
                         included_files);
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

}  // namespace

SourceLocation file_location(const std::string& path) {
  return SourceLocation{std::make_shared<const std::string>(path), 0, 0};
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
      diagnostics.error(member.key_where(),
                        fmt::format("unknown key 'plugins.{}'{}", member.key(),
                                    did_you_mean_suffix(member.key(), {"path"})));
      continue;
    }
    if (!member.is_array()) {
      diagnostics.error(member.where(),
                        "'plugins.path' must be an array of folders or plugin files");
      continue;
    }
    for (const ConfigNode& entry : member.children()) {
      if (entry.kind() != ConfigNode::Kind::String) {
        diagnostics.error(entry.where(), "'plugins.path' entries must be strings");
        continue;
      }
      const fs::path p = entry.as_string();
      const std::string resolved =
          resolve_against(fs::path(path).parent_path().string(), p.string());
      std::error_code ec;
      if (!fs::exists(resolved, ec)) {
        diagnostics.error(
            entry.where(),
            fmt::format("plugin path entry '{}' does not exist{}", resolved,
                        p.is_absolute() ? "" : " (relative paths start at this file's folder)"));
        continue;
      }
      out.push_back(resolved);
    }
  }
  return out;
}

}  // namespace lory
