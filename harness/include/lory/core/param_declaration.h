// A plugin's parameters declared once, as typed fields of its options struct. From the one
// declaration come the C parameter table of the plugin's metadata (names, types, defaults, ranges,
// choices, docs: what `lory plugins --describe` shows and the harness validates against), the
// reading of validated values into the struct, the cross-parameter rules checked at validation,
// and the parameter part of the layer's export layout as JSON.
//
//   struct Options { int64_t experts = 0, k = 0; Gate gate = Gate::Softmax; double jitter = 0; };
//
//   const lory::ParamDeclaration<Options>& params() {
//     static const auto declaration = lory::ParamDeclaration<Options>("router.topk")
//         .integer("experts", &Options::experts, 8, 1, 1024, "E: experts per FFN layer")
//         .integer("k", &Options::k, 2, 1, 1024, "experts per token (k <= E)")
//         .choice("gate", &Options::gate, {{"softmax", Gate::Softmax}, {"sigmoid", Gate::Sigmoid}},
//                 Gate::Softmax, "router nonlinearity")
//         .real("jitter", &Options::jitter, 0, 0, 1, "multiplicative noise on the router input")
//         .rule([](const Options& o) -> std::vector<lory::ParamProblem> {
//           if (o.k > o.experts) return {{"k", "k exceeds experts"}};
//           return {};
//         });
//     return declaration;
//   }
//   ...
//   LORY_DECLARED_PLUGIN(LORY_PLUGIN_ROUTER, "topk", "Token choice ...", my_plugin::params)
//
// and the layer reads `params().read(values)` and exports `params().to_json(options)`.
#pragma once

#include <nlohmann/json.hpp>

#include <charconv>
#include <cmath>
#include <deque>
#include <functional>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "lory/abi/plugin_abi.h"
#include "lory/core/param_check.h"
#include "lory/core/param_values.h"

namespace lory {

template <typename Options>
class ParamDeclaration {
 public:
  using Rule = std::function<std::vector<ParamProblem>(const Options&)>;

  // `table` names the TOML table in messages: "router.topk".
  explicit ParamDeclaration(std::string table) : table_(std::move(table)) {}

  // The declaration's C strings point into its own storage: keep it where it lives (a function's
  // static) and do not copy it after the table is taken.
  ParamDeclaration(const ParamDeclaration&) = delete;
  ParamDeclaration& operator=(const ParamDeclaration&) = delete;
  ParamDeclaration(ParamDeclaration&&) = default;

  ParamDeclaration&& integer(const char* name, int64_t Options::*field, int64_t default_value,
                             int64_t min_value, int64_t max_value, const char* doc) && {
    add(
        name, LORY_PARAM_INT, std::to_string(default_value), static_cast<double>(min_value),
        static_cast<double>(max_value), nullptr, doc,
        [field, key = std::string(name)](Options& o, const ParamValues& p) {
          o.*field = p.get_int(key);
        },
        [field](const Options& o) { return nlohmann::json(o.*field); });
    return std::move(*this);
  }

  ParamDeclaration&& real(const char* name, double Options::*field, double default_value,
                          double min_value, double max_value, const char* doc) && {
    add(
        name, LORY_PARAM_FLOAT, shortest(default_value), min_value, max_value, nullptr, doc,
        [field, key = std::string(name)](Options& o, const ParamValues& p) {
          o.*field = p.get_float(key);
        },
        [field](const Options& o) { return nlohmann::json(o.*field); });
    return std::move(*this);
  }

  ParamDeclaration&& flag(const char* name, bool Options::*field, bool default_value,
                          const char* doc) && {
    add(
        name, LORY_PARAM_BOOL, default_value ? "true" : "false", -HUGE_VAL, HUGE_VAL, nullptr, doc,
        [field, key = std::string(name)](Options& o, const ParamValues& p) {
          o.*field = p.get_bool(key);
        },
        [field](const Options& o) { return nlohmann::json(o.*field); });
    return std::move(*this);
  }

  // Any string (choices empty), or one of `choices` separated by '|'.
  ParamDeclaration&& text(const char* name, std::string Options::*field,
                          const std::string& default_value, const char* choices,
                          const char* doc) && {
    add(
        name, LORY_PARAM_STRING, default_value, -HUGE_VAL, HUGE_VAL, choices, doc,
        [field, key = std::string(name)](Options& o, const ParamValues& p) {
          o.*field = p.get_string(key);
        },
        [field](const Options& o) { return nlohmann::json(o.*field); });
    return std::move(*this);
  }

  // A file or folder: the plugin receives it resolved against the experiment file's folder when
  // relative (empty stays empty).
  ParamDeclaration&& path(const char* name, std::string Options::*field,
                          const std::string& default_value, const char* doc) && {
    add(
        name, LORY_PARAM_PATH, default_value, -HUGE_VAL, HUGE_VAL, nullptr, doc,
        [field, key = std::string(name)](Options& o, const ParamValues& p) {
          o.*field = p.get_string(key);
        },
        [field](const Options& o) { return nlohmann::json(o.*field); });
    return std::move(*this);
  }

  // A string parameter with a fixed set of values, read into an enum (or any comparable type).
  template <typename Value>
  ParamDeclaration&& choice(const char* name, Value Options::*field,
                            std::initializer_list<std::pair<const char*, Value>> choices,
                            Value default_value, const char* doc) && {
    std::vector<std::pair<std::string, Value>> table(choices.begin(), choices.end());
    std::string joined;
    std::string default_name;
    for (const auto& [choice_name, value] : table) {
      joined += (joined.empty() ? "" : "|") + choice_name;
      if (value == default_value) default_name = choice_name;
    }
    if (default_name.empty())
      throw std::logic_error(table_ + "." + name + ": the default is not one of the choices");
    const char* stored_choices = store(joined);
    add(
        name, LORY_PARAM_STRING, default_name, -HUGE_VAL, HUGE_VAL, stored_choices, doc,
        [field, table, key = std::string(name)](Options& o, const ParamValues& p) {
          const std::string& given = p.get_string(key);
          for (const auto& [choice_name, value] : table) {
            if (choice_name == given) {
              o.*field = value;
              return;
            }
          }
          throw std::invalid_argument("parameter '" + key + "' has no choice '" + given + "'");
        },
        [field, table](const Options& o) {
          for (const auto& [choice_name, value] : table) {
            if (value == o.*field) return nlohmann::json(choice_name);
          }
          return nlohmann::json(nullptr);
        });
    return std::move(*this);
  }

  // A rule between parameters that ranges cannot state, checked at validation and on reading.
  ParamDeclaration&& rule(Rule check) && {
    rules_.push_back(std::move(check));
    return std::move(*this);
  }

  // The C table of the plugin's metadata.
  const LoryParamSpec* specs() const { return specs_.empty() ? nullptr : specs_.data(); }
  uint32_t spec_count() const { return static_cast<uint32_t>(specs_.size()); }

  // Validated values (every declared parameter present, as the harness hands them over) into an
  // options struct, default-constructed first. Throws std::invalid_argument naming every broken
  // rule.
  Options read(const ParamValues& values) const {
    Options options{};
    for (const Field& field : fields_) field.read(options, values);
    throw_param_problems(table_, problems_of(options));
    return options;
  }

  // What the plugin's LORY_PARAM_CHECK entry point returns: the rules' problems for these values.
  std::vector<ParamProblem> problems(const ParamValues& values) const {
    Options options{};
    for (const Field& field : fields_) field.read(options, values);
    return problems_of(options);
  }

  // Every declared parameter's value in `options`, by name (enums by their choice name).
  nlohmann::json to_json(const Options& options) const {
    nlohmann::json object = nlohmann::json::object();
    for (const Field& field : fields_) object[field.name] = field.write(options);
    return object;
  }

  // The declaration's defaults as validated values (what the harness fills in for an empty table).
  ParamValues defaults() const {
    ParamValues values;
    for (const LoryParamSpec& spec : specs_) {
      const std::string literal = spec.default_value;
      switch (spec.type) {
        case LORY_PARAM_BOOL:
          values.set(spec.name, literal == "true");
          break;
        case LORY_PARAM_INT:
          values.set(spec.name, static_cast<int64_t>(std::stoll(literal)));
          break;
        case LORY_PARAM_FLOAT:
          values.set(spec.name, std::stod(literal));
          break;
        default:
          values.set(spec.name, literal);
          break;
      }
    }
    return values;
  }

 private:
  struct Field {
    std::string name;
    std::function<void(Options&, const ParamValues&)> read;
    std::function<nlohmann::json(const Options&)> write;
  };

  // Shortest text that reads back as the same double ("0.02", not "0.0200000000000000004").
  static std::string shortest(double value) {
    char buffer[64];
    const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
    return std::string(buffer, result.ptr);
  }

  const char* store(const std::string& text) { return strings_.emplace_back(text).c_str(); }

  void add(const char* name, LoryParamType type, const std::string& default_literal,
           double min_value, double max_value, const char* choices, const char* doc,
           std::function<void(Options&, const ParamValues&)> read,
           std::function<nlohmann::json(const Options&)> write) {
    for (const Field& field : fields_) {
      if (field.name == name)
        throw std::logic_error(table_ + ": parameter '" + name + "' is declared twice");
    }
    specs_.push_back(LoryParamSpec{store(name), static_cast<uint32_t>(type), store(default_literal),
                                   min_value, max_value, choices, store(doc)});
    fields_.push_back(Field{name, std::move(read), std::move(write)});
  }

  std::vector<ParamProblem> problems_of(const Options& options) const {
    std::vector<ParamProblem> all;
    for (const Rule& check : rules_) {
      for (ParamProblem& problem : check(options)) all.push_back(std::move(problem));
    }
    return all;
  }

  std::string table_;
  std::deque<std::string>
      strings_;  // a deque: growing it never moves the strings specs_ points into
  std::vector<LoryParamSpec> specs_;
  std::vector<Field> fields_;
  std::vector<Rule> rules_;
};

}  // namespace lory

// The metadata of a plugin whose parameters are declared with lory::ParamDeclaration, and its
// LORY_PARAM_CHECK entry point (the declaration's rules). `declaration` is a namespace-qualified
// function returning the declaration: `my_plugin::params`.
#define LORY_DECLARED_PLUGIN(kind, name, description, declaration)          \
  LORY_PLUGIN_METADATA_WITH(kind, name, description, declaration().specs(), \
                            declaration().spec_count())                     \
  namespace lory_declared_plugin {                                          \
  inline std::vector<::lory::ParamProblem> check_declared_params(           \
      const ::lory::ParamValues& values) {                                  \
    return declaration().problems(values);                                  \
  }                                                                         \
  }                                                                         \
  LORY_PARAM_CHECK(lory_declared_plugin::check_declared_params)
