// Declared parameters (of a plugin or of a harness section) and the validation of a config
// table against them: unknown keys (with "did you mean"), wrong types, out-of-range values and
// missing required keys all become diagnostics at the offending location.
#pragma once

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "core/config/config_tree.h"
#include "lory/abi/plugin_abi.h"
#include "lory/core/param_values.h"

namespace lory {

enum class ParamType {
  Bool = LORY_PARAM_BOOL,
  Int = LORY_PARAM_INT,
  Float = LORY_PARAM_FLOAT,
  String = LORY_PARAM_STRING,
  Path = LORY_PARAM_PATH  // held as a string
};

const char* param_type_name(ParamType type);

struct ParamSpec {
  std::string name;
  ParamType type = ParamType::Int;
  std::optional<ParamValue> default_value;  // nullopt = required
  double min_value = -HUGE_VAL;
  double max_value = HUGE_VAL;
  std::vector<std::string> choices;  // strings only; empty = any
  std::string doc;

  std::string range_text() const;    // "[1, 64]", "one of paper|uniform", "" when open
  std::string default_text() const;  // "256", "\"paper\"", "required"
};

class ParamSchema {
 public:
  ParamSchema() = default;
  explicit ParamSchema(std::vector<ParamSpec> params) : params_(std::move(params)) {}

  const std::vector<ParamSpec>& params() const { return params_; }
  const ParamSpec* find(const std::string& name) const;
  std::vector<std::string> names() const;

 private:
  std::vector<ParamSpec> params_;
};

// Converts a plugin's C declarations; throws std::invalid_argument naming the parameter when a
// declaration is itself broken (unknown type, default outside its own range, ...).
ParamSchema schema_from_c(const LoryParamSpec* specs, uint32_t count);

// Parses a default/literal text of a declared type ("256", "0.1", "true", "paper").
std::optional<ParamValue> parse_param_literal(ParamType type, const std::string& text);

std::string param_value_text(const ParamValue& value);  // as written in TOML

// Validates `table` (may be null: all defaults) against `schema`. `path` is the dotted key path
// of the table for messages ("router.lory"); `where` locates the table for errors about missing
// keys. Members named in `skip_keys` are left for the caller. Returns the values with defaults.
ParamValues validate_params(const ConfigNode* table, const ParamSchema& schema,
                            const std::string& path, const SourceLocation& where,
                            Diagnostics& diagnostics,
                            const std::vector<std::string>& skip_keys = {});

}  // namespace lory
