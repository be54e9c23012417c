#include "core/config/param_schema.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "core/support/did_you_mean.h"

namespace lory {

const char* param_type_name(ParamType type) {
  switch (type) {
    case ParamType::Bool:
      return "boolean";
    case ParamType::Int:
      return "integer";
    case ParamType::Float:
      return "float";
    case ParamType::String:
      return "string";
    case ParamType::Path:
      return "path";
  }
  return "?";
}

std::string param_value_text(const ParamValue& value) {
  if (const bool* b = std::get_if<bool>(&value)) return *b ? "true" : "false";
  if (const int64_t* i = std::get_if<int64_t>(&value)) return std::to_string(*i);
  if (const double* f = std::get_if<double>(&value)) return fmt::format("{}", *f);
  return "\"" + std::get<std::string>(value) + "\"";
}

std::string ParamSpec::range_text() const {
  if (type == ParamType::String) {
    if (choices.empty()) return "";
    std::string out = "one of ";
    for (size_t i = 0; i < choices.size(); ++i) out += (i ? "|" : "") + choices[i];
    return out;
  }
  if (type == ParamType::Bool) return "";
  const bool open_low = std::isinf(min_value), open_high = std::isinf(max_value);
  if (open_low && open_high) return "";
  const auto bound = [&](double v) {
    return type == ParamType::Int ? std::to_string(static_cast<int64_t>(v)) : fmt::format("{}", v);
  };
  if (open_low) return "<= " + bound(max_value);
  if (open_high) return ">= " + bound(min_value);
  return "[" + bound(min_value) + ", " + bound(max_value) + "]";
}

std::string ParamSpec::default_text() const {
  return default_value ? param_value_text(*default_value) : "required";
}

const ParamSpec* ParamSchema::find(const std::string& name) const {
  for (const auto& p : params_) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

std::vector<std::string> ParamSchema::names() const {
  std::vector<std::string> out;
  for (const auto& p : params_) out.push_back(p.name);
  return out;
}

std::optional<ParamValue> parse_param_literal(ParamType type, const std::string& text) {
  switch (type) {
    case ParamType::Bool:
      if (text == "true") return ParamValue(true);
      if (text == "false") return ParamValue(false);
      return std::nullopt;
    case ParamType::Int: {
      errno = 0;
      char* end = nullptr;
      const long long v = std::strtoll(text.c_str(), &end, 10);
      if (text.empty() || *end || errno) return std::nullopt;
      return ParamValue(static_cast<int64_t>(v));
    }
    case ParamType::Float: {
      errno = 0;
      char* end = nullptr;
      const double v = std::strtod(text.c_str(), &end);
      if (text.empty() || *end || errno) return std::nullopt;
      return ParamValue(v);
    }
    case ParamType::String:
    case ParamType::Path:
      return ParamValue(text);
  }
  return std::nullopt;
}

namespace {

std::vector<std::string> split_choices(const char* text) {
  std::vector<std::string> out;
  if (!text) return out;
  std::string current;
  for (const char* c = text;; ++c) {
    if (*c == '|' || *c == '\0') {
      if (!current.empty()) out.push_back(current);
      current.clear();
      if (*c == '\0') break;
    } else {
      current += *c;
    }
  }
  return out;
}

// Range and choice checks shared by declarations (defaults) and by user values.
std::string check_value(const ParamSpec& spec, const ParamValue& value) {
  if (spec.type == ParamType::Int || spec.type == ParamType::Float) {
    const double v = spec.type == ParamType::Int ? static_cast<double>(std::get<int64_t>(value))
                                                 : std::get<double>(value);
    // inf and nan are never a setting (TOML can write both): a learning rate of inf passes any
    // open range and then fails inside the optimizer.
    if (!std::isfinite(v)) {
      return fmt::format("value {} is not a finite number: must be {}", param_value_text(value),
                         spec.range_text().empty() ? "a finite number" : spec.range_text());
    }
    if (v < spec.min_value || v > spec.max_value) {
      return fmt::format("value {} is out of range: must be {}", param_value_text(value),
                         spec.range_text());
    }
  }
  if (spec.type == ParamType::String && !spec.choices.empty()) {
    const auto& s = std::get<std::string>(value);
    if (std::find(spec.choices.begin(), spec.choices.end(), s) == spec.choices.end()) {
      return fmt::format("value \"{}\" is not allowed: must be {}{}", s, spec.range_text(),
                         did_you_mean_suffix(s, spec.choices));
    }
  }
  return "";
}

}  // namespace

ParamSchema schema_from_c(const LoryParamSpec* specs, uint32_t count) {
  std::vector<ParamSpec> params;
  for (uint32_t i = 0; i < count; ++i) {
    const LoryParamSpec& c = specs[i];
    if (!c.name || !*c.name)
      throw std::invalid_argument(fmt::format("parameter #{} has no name", i));
    ParamSpec spec;
    spec.name = c.name;
    if (c.type < LORY_PARAM_BOOL || c.type > LORY_PARAM_PATH) {
      throw std::invalid_argument(
          fmt::format("parameter '{}' has unknown type {}", spec.name, c.type));
    }
    spec.type = static_cast<ParamType>(c.type);
    spec.min_value = c.min_value;
    spec.max_value = c.max_value;
    spec.choices = split_choices(c.choices);
    spec.doc = c.doc ? c.doc : "";
    if (c.default_value) {
      spec.default_value = parse_param_literal(spec.type, c.default_value);
      if (!spec.default_value) {
        throw std::invalid_argument(
            fmt::format("parameter '{}' has default '{}' that is not of type {}", spec.name,
                        c.default_value, param_type_name(spec.type)));
      }
      const std::string problem = check_value(spec, *spec.default_value);
      if (!problem.empty()) {
        throw std::invalid_argument(fmt::format("parameter '{}' default: {}", spec.name, problem));
      }
    }
    params.push_back(std::move(spec));
  }
  return ParamSchema(std::move(params));
}

ParamValues validate_params(const ConfigNode* table, const ParamSchema& schema,
                            const std::string& path, const SourceLocation& where,
                            Diagnostics& diagnostics, const std::vector<std::string>& skip_keys) {
  ParamValues values;
  const auto key_path = [&](const std::string& key) {
    return path.empty() ? key : path + "." + key;
  };
  // Keys given with a bad value get no default either: checks built on them would only add
  // follow-on errors to the one already reported.
  std::vector<std::string> rejected;
  if (table) {
    for (const ConfigNode& member : table->children()) {
      if (std::find(skip_keys.begin(), skip_keys.end(), member.key()) != skip_keys.end()) continue;
      const ParamSpec* spec = schema.find(member.key());
      if (!spec) {
        std::vector<std::string> candidates = schema.names();
        candidates.insert(candidates.end(), skip_keys.begin(), skip_keys.end());
        const std::string hint = quoted_dotted_key_hint(member.key());
        diagnostics.error(
            member.key_where(),
            fmt::format("unknown key '{}'{}", key_path(member.key()),
                        hint.empty() ? did_you_mean_suffix(member.key(), candidates) : hint));
        continue;
      }
      std::optional<ParamValue> value;
      switch (spec->type) {
        case ParamType::Bool:
          if (member.kind() == ConfigNode::Kind::Bool) value = member.as_bool();
          break;
        case ParamType::Int:
          if (member.kind() == ConfigNode::Kind::Int) value = member.as_int();
          break;
        case ParamType::Float:
          // An integer literal is a fine float ("lr = 1"), and is stored as the same float so that
          // `1` and `1.0` give one canonical config.
          if (member.kind() == ConfigNode::Kind::Float) value = member.as_float();
          if (member.kind() == ConfigNode::Kind::Int) value = static_cast<double>(member.as_int());
          break;
        case ParamType::String:
        case ParamType::Path:
          if (member.kind() == ConfigNode::Kind::String) value = member.as_string();
          break;
      }
      if (!value) {
        rejected.push_back(spec->name);
        diagnostics.error(
            member.where(),
            fmt::format("'{}' must be {} {}, got {} {}", key_path(member.key()),
                        spec->type == ParamType::Int ? "an" : "a", param_type_name(spec->type),
                        ConfigNode::kind_name(member.kind()), member.to_toml_text()));
        continue;
      }
      const std::string problem = check_value(*spec, *value);
      if (!problem.empty()) {
        rejected.push_back(spec->name);
        diagnostics.error(member.where(), fmt::format("'{}': {}", key_path(member.key()), problem));
        continue;
      }
      values.set(spec->name, *value);
    }
  }
  for (const ParamSpec& spec : schema.params()) {
    if (values.has(spec.name) ||
        std::find(rejected.begin(), rejected.end(), spec.name) != rejected.end())
      continue;
    if (spec.default_value) {
      values.set(spec.name, *spec.default_value);
    } else if (!table || !table->find(spec.name)) {
      diagnostics.error(where,
                        fmt::format("missing required key '{}' ({}: {})", key_path(spec.name),
                                    param_type_name(spec.type), spec.doc));
    }
  }
  return values;
}

}  // namespace lory
