// The experiment file as a tree of values that remember where they were written (file, line,
// column), so that every later validation error points at the offending text. Built from TOML,
// with `include = [...]` merged in, and edited by grid expansion.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/support/diagnostics.h"

namespace lory {

class ConfigNode {
 public:
  enum class Kind { Bool, Int, Float, String, Array, Table };

  static ConfigNode table(SourceLocation where = {});
  static ConfigNode array(SourceLocation where = {});
  static ConfigNode scalar(bool value, SourceLocation where = {});
  static ConfigNode scalar(int64_t value, SourceLocation where = {});
  static ConfigNode scalar(double value, SourceLocation where = {});
  static ConfigNode scalar(std::string value, SourceLocation where = {});

  Kind kind() const { return kind_; }
  bool is_table() const { return kind_ == Kind::Table; }
  bool is_array() const { return kind_ == Kind::Array; }
  static const char* kind_name(Kind kind);  // "boolean", "integer", ... for messages

  bool as_bool() const { return std::get<bool>(scalar_); }
  int64_t as_int() const { return std::get<int64_t>(scalar_); }
  double as_float() const { return std::get<double>(scalar_); }
  const std::string& as_string() const { return std::get<std::string>(scalar_); }
  // The value as it would be written in TOML ("256", "0.1", "true", "\"paper\"", "[1, 2]").
  std::string to_toml_text() const;

  // Arrays: elements. Tables: members in the order they were written.
  const std::vector<ConfigNode>& children() const { return children_; }
  std::vector<ConfigNode>& children() { return children_; }

  // Table members only.
  const std::string& key() const { return key_; }
  const SourceLocation& key_where() const { return key_where_; }
  const ConfigNode* find(std::string_view key) const;
  ConfigNode* find(std::string_view key);
  // Adds or replaces a member; replacing keeps the new value's locations.
  ConfigNode& set(const std::string& key, ConfigNode value, SourceLocation key_where = {});
  bool erase(std::string_view key);
  // Follows a dotted path of table members ("router.lory.segment_length"); nullptr if absent.
  const ConfigNode* find_path(std::string_view dotted_path) const;

  void push_back(ConfigNode element) { children_.push_back(std::move(element)); }

  const SourceLocation& where() const { return where_; }

 private:
  Kind kind_ = Kind::Table;
  std::variant<bool, int64_t, double, std::string> scalar_;
  std::vector<ConfigNode> children_;
  std::string key_;
  SourceLocation key_where_;
  SourceLocation where_;
};

// Reads a TOML file; syntax errors and unsupported values (dates, times) go to `diagnostics`.
// Returns an empty table when the file cannot be read or parsed.
ConfigNode load_toml_file(const std::string& path, Diagnostics& diagnostics);
ConfigNode parse_toml_text(const std::string& text, const std::string& source_name,
                           Diagnostics& diagnostics);

// Deep merge: tables merge member by member, anything else in `overlay` replaces `base`.
void merge_config(ConfigNode& base, const ConfigNode& overlay);

// Sets `value` at a dotted path, creating intermediate tables.
void set_config_path(ConfigNode& root, const std::vector<std::string>& path, ConfigNode value,
                     SourceLocation key_where);

}  // namespace lory
