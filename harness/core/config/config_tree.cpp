#include "core/config/config_tree.h"

#include <fmt/format.h>

#include <toml++/toml.h>
#include <fstream>
#include <optional>
#include <sstream>
#include <string_view>
#include <utility>
#include <vector>

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
    case Kind::Bool:
      return "boolean";
    case Kind::Int:
      return "integer";
    case Kind::Float:
      return "float";
    case Kind::String:
      return "string";
    case Kind::Array:
      return "array";
    case Kind::Table:
      return "table";
  }
  return "?";
}

std::string ConfigNode::to_toml_text() const {
  switch (kind_) {
    case Kind::Bool:
      return as_bool() ? "true" : "false";
    case Kind::Int:
      return std::to_string(as_int());
    case Kind::Float:
      return fmt::format("{}", as_float());
    case Kind::String:
      return "\"" + as_string() + "\"";
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
    const std::string_view part =
        dotted_path.substr(start, dot == std::string_view::npos ? dot : dot - start);
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

// Deeper than any experiment needs (section.plugin.key is 3; grid cells add 2). Conversion
// recurses once per level, so a file nested thousands of levels deep (a generated or hostile
// file) must be refused before it is converted, not crash the reader with a stack overflow.
constexpr int kMaxNesting = 32;

std::string too_deep_message() {
  return fmt::format(
      "keys are nested more than {} levels deep here; lory's configuration needs at most a few "
      "(section.plugin.key), so this file is not read further",
      kMaxNesting);
}

// The first node nested deeper than kMaxNesting, found without recursion; nullptr if none.
const toml::node* first_too_deep(const toml::node& root) {
  std::vector<std::pair<const toml::node*, int>> stack = {{&root, 0}};
  while (!stack.empty()) {
    const auto [node, depth] = stack.back();
    stack.pop_back();
    if (depth > kMaxNesting) return node;
    if (const auto* table = node->as_table()) {
      for (const auto& [key, value] : *table) stack.push_back({&value, depth + 1});
    } else if (const auto* array = node->as_array()) {
      for (const auto& element : *array) stack.push_back({&element, depth + 1});
    }
  }
  return nullptr;
}

// toml++ itself recurses once per level of a dotted key or table header while it builds and frees
// its tree, so a single line nested ~100,000 levels deep overflows the stack inside the parser.
// Such a line is found in the text first: the 1-based line and column of the first key or header
// with more than kMaxNesting dotted parts (outside quotes and multi-line strings), if any.
std::optional<std::pair<int, int>> first_too_deep_line(const std::string& text) {
  bool in_multiline = false;
  int line_number = 0;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string_view line(text.data() + start, end - start);
    ++line_number;
    for (const char* fence : {"\"\"\"", "'''"}) {
      size_t count = 0;
      for (size_t at = line.find(fence); at != std::string_view::npos;
           at = line.find(fence, at + 3))
        ++count;
      if (count % 2 == 1) in_multiline = !in_multiline;
    }
    const size_t first = line.find_first_not_of(" \t");
    if (!in_multiline && first != std::string_view::npos && line[first] != '#') {
      // Count the dots of the key part only: a header "[a.b]" followed by nothing but a comment,
      // or what precedes the '=' of "a.b = ...". Other lines (continuations of a multi-line
      // array of numbers, say) hold no key.
      const bool header = line[first] == '[';
      int dots = 0;
      char quote = 0;
      bool is_key = false;
      size_t i = first;
      for (; i < line.size(); ++i) {
        const char c = line[i];
        if (quote) {
          if (c == quote) quote = 0;
        } else if (c == '"' || c == '\'') {
          quote = c;
        } else if (c == '.') {
          ++dots;
        } else if (header && c == ']') {
          const size_t after = line.find_first_not_of("] \t", i);
          is_key = after == std::string_view::npos || line[after] == '#';
          break;
        } else if (!header && c == '=') {
          is_key = true;
          break;
        }
      }
      if (is_key && dots >= kMaxNesting)
        return std::make_pair(line_number, static_cast<int>(first) + 1);
    }
    start = end + 1;
  }
  return std::nullopt;
}

// nullopt for values lory cannot hold (dates, times): reported once here, then left out so that
// they cause no second, misleading error. `path` names the value for messages ("trainer.seed").
std::optional<ConfigNode> convert(const toml::node& node, const std::string& path,
                                  const std::shared_ptr<const std::string>& file,
                                  Diagnostics& diagnostics) {
  const SourceLocation where = location_of(node.source(), file);
  if (const auto* table = node.as_table()) {
    ConfigNode out = ConfigNode::table(where);
    for (const auto& [key, value] : *table) {
      const std::string name(key.str());
      if (auto converted =
              convert(value, path.empty() ? name : path + "." + name, file, diagnostics)) {
        out.set(name, std::move(*converted), location_of(key.source(), file));
      }
    }
    return out;
  }
  if (const auto* array = node.as_array()) {
    ConfigNode out = ConfigNode::array(where);
    size_t index = 0;
    for (const auto& element : *array) {
      if (auto converted =
              convert(element, fmt::format("{}[{}]", path, index++), file, diagnostics)) {
        out.push_back(std::move(*converted));
      }
    }
    return out;
  }
  if (const auto* v = node.as_boolean()) return ConfigNode::scalar(v->get(), where);
  if (const auto* v = node.as_integer())
    return ConfigNode::scalar(static_cast<int64_t>(v->get()), where);
  if (const auto* v = node.as_floating_point()) return ConfigNode::scalar(v->get(), where);
  if (const auto* v = node.as_string()) return ConfigNode::scalar(v->get(), where);
  diagnostics.error(
      where,
      fmt::format("'{}' is a date or time, which is not a valid configuration value (quote it to "
                  "make it a string)",
                  path));
  return std::nullopt;
}

}  // namespace

ConfigNode parse_toml_text(const std::string& text, const std::string& source_name,
                           Diagnostics& diagnostics) {
  auto file = std::make_shared<const std::string>(source_name);
  if (const auto deep = first_too_deep_line(text)) {
    diagnostics.error(SourceLocation{file, deep->first, deep->second}, too_deep_message());
    return ConfigNode::table(SourceLocation{file, 0, 0});
  }
  try {
    const toml::table parsed = toml::parse(text, source_name);
    if (const toml::node* deep = first_too_deep(parsed)) {
      diagnostics.error(location_of(deep->source(), file), too_deep_message());
      return ConfigNode::table(SourceLocation{file, 0, 0});
    }
    return *convert(parsed, "", file, diagnostics);
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
    if (!next || !next->is_table())
      next = &node->set(path[i], ConfigNode::table(key_where), key_where);
    node = next;
  }
  node->set(path.back(), std::move(value), std::move(key_where));
}

}  // namespace lory
