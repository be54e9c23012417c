// Reading an experiment file: its TOML tree with the files it includes merged underneath (includes
// first, the file itself on top; an included file lends its base config, never its grid), and its
// `[plugins] path`.
#pragma once

#include <string>
#include <vector>

#include "core/config/config_tree.h"
#include "core/support/diagnostics.h"

namespace lory {

// A location that names a whole file (line 0): where errors about the file as a whole point.
SourceLocation file_location(const std::string& path);

// Reads the file and its includes into one tree (includes first, the file itself on top).
// `included_files`, when given, receives the absolute path of every included file, once each.
ConfigNode read_experiment_tree(const std::string& path, Diagnostics& diagnostics,
                                std::vector<std::string>* included_files = nullptr);

// `[plugins] path = [...]` of the tree, resolved against the file's folder.
std::vector<std::string> experiment_plugin_path(const ConfigNode& tree, const std::string& path,
                                                Diagnostics& diagnostics);

}  // namespace lory
