// One grid cell's fully resolved configuration: every harness key and every parameter of the
// selected plugins, defaults filled in. Its canonical JSON (sorted keys, typed numbers, only the
// selected plugins' parameters) is what the cell's identity hash covers.
#pragma once

#include <map>
#include <string>

#include "lory/core/param_values.h"

namespace lory {

struct SectionConfig {
  ParamValues values;         // harness keys of the section (for plugin sections: `plugin` too)
  ParamValues plugin_params;  // plugin sections only: the selected plugin's parameters
  const std::string& plugin() const { return values.get_string("plugin"); }
};

class CellConfig {
 public:
  std::map<std::string, SectionConfig> sections;

  const SectionConfig& section(const std::string& name) const;
  SectionConfig& section(const std::string& name) { return sections[name]; }

  // {"batcher": {"plugin": "random", "random": {...}}, "data": {...}, ...}, keys sorted.
  std::string canonical_json() const;
  // sha256 of canonical_json(), hex.
  std::string identity() const;
  // "router.lory.experts" -> "8", for every leaf: what dry-run tables and labels are made of.
  std::map<std::string, std::string> flatten() const;

  // Inverse of canonical_json(); throws std::runtime_error on malformed input.
  static CellConfig from_json(const std::string& json_text);
};

}  // namespace lory
