#include "config_tree.h"

#include <fmt/format.h>

#include <fstream>
#include <optional>
#include <sstream>
#include <toml++/toml.h>

namespace lory {

ConfigNode ConfigNode::table(SourceLocation where) {
  ConfigNode node;
  node.kind_ = Kind::Table;
  node.where_ = std::move(where);
  return node;
}

ConfigNode ConfigNode::array(SourceLocation where) {
  ConfigNode node;
  node.kind_ = Kind::Array;
  node.where_ = std::move(where);
  return node;
}

ConfigNode ConfigNode::scalar(bool value, SourceLocation where) {
  ConfigNode node;
  node.kind_ = Kind::Bool;
  node.scalar_ = value;
  node.where_ = std::move(where);
  return node;
}

ConfigNode ConfigNode::scalar(int64_t value, SourceLocation where) {
  ConfigNode node;
  node.kind_ = Kind::Int;
  node.scalar_ = value;
  node.where_ = std::move(where);
  return node;
}

ConfigNode ConfigNode::scalar(double value, SourceLocation where) {
  ConfigNode node;
  node.kind_ = Kind::Float;
  node.scalar_ = value;
  node.where_ = std::move(where);
  return node;
}

ConfigNode ConfigNode::scalar(std::string value, SourceLocation where) {
  ConfigNode node;
  node.kind_ = Kind::String;
  node.scalar_ = std::move(value);
  node.where_ = std::move(where);
  return node;
}

const char* ConfigNode::kind_name(Kind kind) {
  switch (kind) {
    case Kind::Bool: return "boolean";
    case Kind::Int: return "integer";
    case Kind::Float: return "float";
    case Kind::String: return "string";
    case Kind::Array: return "array";
    case Kind::Table: return "table";
  }
  return "?";
}

std::string ConfigNode::to_toml_text() const {
  switch (kind_) {
    case Kind::Bool: return as_bool() ? "true" : "false";
    case Kind::Int: return std::to_string(as_int());
    case Kind::Float: return fmt::format("{}", as_float());
    case Kind::String: return "\"" + as_string() + "\"";
    case Kind::Array: {
      std::string out = "[";
      for (size_t i = 0; i < children_.size(); ++i) {
        out += (i ? ", " : "") + children_[i].to_toml_text();
      }
      return out + "]";
    }
    case Kind::Table: {
      std::string out = "{";
      for (size_t i = 0; i < children_.size(); ++i) {
        out += (i ? ", " : " ") + children_[i].key_ + " = " + children_[i].to_toml_text();
      }
      return out + (children_.empty() ? "}" : " }");
    }
  }
  return "";
}

const ConfigNode* ConfigNode::find(std::string_view key) const {
  for (const auto& child : children_) {
    if (child.key_ == key) return &child;
  }
  return nullptr;
}

ConfigNode* ConfigNode::find(std::string_view key) {
  for (auto& child : children_) {
    if (child.key_ == key) return &child;
  }
  return nullptr;
}

ConfigNode& ConfigNode::set(const std::string& key, ConfigNode value, SourceLocation key_where) {
  value.key_ = key;
  value.key_where_ = key_where.known() ? std::move(key_where) : value.where_;
  if (ConfigNode* existing = find(key)) {
    *existing = std::move(value);
    return *existing;
  }
  children_.push_back(std::move(value));
  return children_.back();
}

bool ConfigNode::erase(std::string_view key) {
  for (auto it = children_.begin(); it != children_.end(); ++it) {
    if (it->key_ == key) {
      children_.erase(it);
      return true;
    }
  }
  return false;
}

const ConfigNode* ConfigNode::find_path(std::string_view dotted_path) const {
  const ConfigNode* node = this;
  size_t start = 0;
  while (node) {
    const size_t dot = dotted_path.find('.', start);
    const std::string_view part = dotted_path.substr(start, dot == std::string_view::npos ? dot : dot - start);
    if (!node->is_table()) return nullptr;
    node = node->find(part);
    if (dot == std::string_view::npos) return node;
    start = dot + 1;
  }
  return nullptr;
}

namespace {

SourceLocation location_of(const toml::source_region& region,
                           const std::shared_ptr<const std::string>& file) {
  SourceLocation where;
  where.file = file;
  where.line = static_cast<int>(region.begin.line);
  where.column = static_cast<int>(region.begin.column);
  return where;
}

// nullopt for values lory cannot hold (dates, times): reported once here, then left out so that
// they cause no second, misleading error.
std::optional<ConfigNode> convert(const toml::node& node, const std::shared_ptr<const std::string>& file,
                                  Diagnostics& diagnostics) {
  const SourceLocation where = location_of(node.source(), file);
  if (const auto* table = node.as_table()) {
    ConfigNode out = ConfigNode::table(where);
    for (const auto& [key, value] : *table) {
      if (auto converted = convert(value, file, diagnostics)) {
        out.set(std::string(key.str()), std::move(*converted), location_of(key.source(), file));
      }
    }
    return out;
  }
  if (const auto* array = node.as_array()) {
    ConfigNode out = ConfigNode::array(where);
    for (const auto& element : *array) {
      if (auto converted = convert(element, file, diagnostics)) out.push_back(std::move(*converted));
    }
    return out;
  }
  if (const auto* v = node.as_boolean()) return ConfigNode::scalar(v->get(), where);
  if (const auto* v = node.as_integer()) return ConfigNode::scalar(static_cast<int64_t>(v->get()), where);
  if (const auto* v = node.as_floating_point()) return ConfigNode::scalar(v->get(), where);
  if (const auto* v = node.as_string()) return ConfigNode::scalar(v->get(), where);
  diagnostics.error(where, "dates and times are not valid configuration values");
  return std::nullopt;
}

}  // namespace

ConfigNode parse_toml_text(const std::string& text, const std::string& source_name,
                           Diagnostics& diagnostics) {
  auto file = std::make_shared<const std::string>(source_name);
  try {
    const toml::table parsed = toml::parse(text, source_name);
    return *convert(parsed, file, diagnostics);
  } catch (const toml::parse_error& error) {
    diagnostics.error(location_of(error.source(), file),
                      "invalid TOML: " + std::string(error.description()));
    return ConfigNode::table(SourceLocation{file, 0, 0});
  }
}

ConfigNode load_toml_file(const std::string& path, Diagnostics& diagnostics) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    diagnostics.error(SourceLocation{std::make_shared<const std::string>(path), 0, 0},
                      "cannot read file (does it exist?)");
    return ConfigNode::table();
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  return parse_toml_text(buffer.str(), path, diagnostics);
}

void merge_config(ConfigNode& base, const ConfigNode& overlay) {
  for (const auto& member : overlay.children()) {
    ConfigNode* existing = base.find(member.key());
    if (existing && existing->is_table() && member.is_table()) {
      merge_config(*existing, member);
    } else {
      base.set(member.key(), member, member.key_where());
    }
  }
}

void set_config_path(ConfigNode& root, const std::vector<std::string>& path, ConfigNode value,
                     SourceLocation key_where) {
  ConfigNode* node = &root;
  for (size_t i = 0; i + 1 < path.size(); ++i) {
    ConfigNode* next = node->find(path[i]);
    if (!next || !next->is_table()) next = &node->set(path[i], ConfigNode::table(key_where), key_where);
    node = next;
  }
  node->set(path.back(), std::move(value), std::move(key_where));
}

}  // namespace lory
