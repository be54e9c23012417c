#include "core/experiment/cell_config.h"

#include <nlohmann/json.hpp>
#include <stdexcept>

#include "core/config/param_schema.h"
#include "lory/core/sha256.h"

namespace lory {

namespace {

nlohmann::json to_json_value(const ParamValue& value) {
  if (const bool* b = std::get_if<bool>(&value)) return *b;
  if (const int64_t* i = std::get_if<int64_t>(&value)) return *i;
  if (const double* f = std::get_if<double>(&value)) return *f;
  return std::get<std::string>(value);
}

ParamValue from_json_value(const nlohmann::json& value, const std::string& where) {
  if (value.is_boolean()) return value.get<bool>();
  if (value.is_number_integer()) return value.get<int64_t>();
  if (value.is_number_float()) return value.get<double>();
  if (value.is_string()) return value.get<std::string>();
  throw std::runtime_error("config JSON: '" + where + "' is not a scalar");
}

nlohmann::json to_json_object(const ParamValues& values) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [name, value] : values.all()) out[name] = to_json_value(value);
  return out;
}

void flatten_into(const nlohmann::json& node, const std::string& prefix,
                  std::map<std::string, std::string>& out) {
  if (node.is_object()) {
    for (auto it = node.begin(); it != node.end(); ++it) {
      flatten_into(it.value(), prefix.empty() ? it.key() : prefix + "." + it.key(), out);
    }
  } else if (node.is_string()) {
    out[prefix] = node.get<std::string>();
  } else {
    out[prefix] = node.dump();
  }
}

nlohmann::json to_json(const CellConfig& config) {
  nlohmann::json root = nlohmann::json::object();
  for (const auto& [name, section] : config.sections) {
    nlohmann::json object = to_json_object(section.values);
    if (section.values.has("plugin"))
      object[section.plugin()] = to_json_object(section.plugin_params);
    root[name] = object;
  }
  return root;
}

// Parameters of in-tree plugins added after cells were first trained with them, with the value
// those cells ran with: hashed only when a cell sets another value, so earlier cells keep their
// identities (and their databases find their runs).
struct LaterPluginParam {
  const char* plugin;
  const char* name;
  nlohmann::json earlier;
};
const LaterPluginParam kLaterPluginParams[] = {
    {"topk", "shared_experts", 0},
    {"topk", "shared_d_ff", 0},
    {"topk", "granularity", 1},
    {"topk", "bias_update_rate", 0.0},
};

}  // namespace

const SectionConfig& CellConfig::section(const std::string& name) const {
  auto it = sections.find(name);
  if (it == sections.end()) throw std::out_of_range("config has no section '" + name + "'");
  return it->second;
}

std::string CellConfig::canonical_json() const { return to_json(*this).dump(); }

std::string CellConfig::identity() const {
  // Identities were first computed when the trainer section had two test-only keys, which have
  // left the config since (they are the LORY_TEST_FAULT variable now, core/kill_points.h). Their
  // only value in any real cell, 0, stays in what is hashed, so that a cell keeps its identity and
  // existing databases still find their runs.
  nlohmann::json hashed = to_json(*this);
  if (hashed.contains("trainer") && hashed["trainer"].is_object()) {
    hashed["trainer"]["inject_nan_at_step"] = 0;
    hashed["trainer"]["inject_nan_grad_at_step"] = 0;
    // Options added after cells were first trained are hashed only when they differ from what
    // those cells ran with, so that the earlier cells keep their identities.
    for (const auto& [key, earlier] :
         {std::pair<const char*, const char*>{"precision", "fp32"}, {"device", "cpu"}}) {
      const auto it = hashed["trainer"].find(key);
      if (it != hashed["trainer"].end() && it->is_string() && it->get<std::string>() == earlier) {
        hashed["trainer"].erase(it);
      }
    }
  }
  for (auto& [section_name, section] : hashed.items()) {
    for (const LaterPluginParam& later : kLaterPluginParams) {
      if (!section.is_object() || !section.contains(later.plugin) ||
          !section[later.plugin].is_object())
        continue;
      nlohmann::json& params = section[later.plugin];
      const auto it = params.find(later.name);
      if (it != params.end() && *it == later.earlier) params.erase(it);
    }
  }
  return sha256_hex(hashed.dump());
}

std::map<std::string, std::string> CellConfig::flatten() const {
  std::map<std::string, std::string> out;
  flatten_into(to_json(*this), "", out);
  return out;
}

CellConfig CellConfig::from_json(const std::string& json_text) {
  nlohmann::json root;
  try {
    root = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(std::string("config JSON does not parse: ") + e.what());
  }
  if (!root.is_object()) throw std::runtime_error("config JSON is not an object");
  CellConfig config;
  for (auto section_it = root.begin(); section_it != root.end(); ++section_it) {
    const std::string& section_name = section_it.key();
    if (!section_it.value().is_object())
      throw std::runtime_error("config JSON: '" + section_name + "' is not an object");
    SectionConfig section;
    std::string plugin;
    if (auto p = section_it.value().find("plugin");
        p != section_it.value().end() && p->is_string()) {
      plugin = p->get<std::string>();
    }
    for (auto it = section_it.value().begin(); it != section_it.value().end(); ++it) {
      const std::string where = section_name + "." + it.key();
      if (!plugin.empty() && it.key() == plugin && it.value().is_object()) {
        for (auto p = it.value().begin(); p != it.value().end(); ++p) {
          section.plugin_params.set(p.key(), from_json_value(p.value(), where + "." + p.key()));
        }
      } else {
        section.values.set(it.key(), from_json_value(it.value(), where));
      }
    }
    config.sections[section_name] = std::move(section);
  }
  return config;
}

}  // namespace lory
