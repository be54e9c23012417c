// Validated parameter values handed to a plugin: every declared parameter is present (defaults
// filled in by the harness) and has its declared type, so plugins read them without checks.
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <variant>

namespace lory {

using ParamValue = std::variant<bool, int64_t, double, std::string>;

class ParamValues {
 public:
  void set(const std::string& name, ParamValue value) { values_[name] = std::move(value); }
  bool has(const std::string& name) const { return values_.count(name) != 0; }

  bool get_bool(const std::string& name) const { return get<bool>(name); }
  int64_t get_int(const std::string& name) const { return get<int64_t>(name); }
  double get_float(const std::string& name) const { return get<double>(name); }
  const std::string& get_string(const std::string& name) const { return get<std::string>(name); }

  const std::map<std::string, ParamValue>& all() const { return values_; }

 private:
  template <typename T>
  const T& get(const std::string& name) const {
    auto it = values_.find(name);
    if (it == values_.end()) {
      throw std::out_of_range("parameter '" + name + "' was not declared by this plugin");
    }
    if (const T* value = std::get_if<T>(&it->second)) return *value;
    throw std::logic_error("parameter '" + name +
                           "' is read with a type other than it was declared with");
  }

  std::map<std::string, ParamValue> values_;
};

}  // namespace lory
