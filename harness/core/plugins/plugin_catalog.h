// What the harness knows about each plugin once its metadata has been read and checked: enough to
// validate configs and print `lory plugins`, without creating any C++ object of the plugin.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "lory/core/param_check.h"

#include "core/config/param_schema.h"
#include "lory/abi/plugin_abi.h"

namespace lory {

enum class PluginKind {
  Router = LORY_PLUGIN_ROUTER,
  Batcher = LORY_PLUGIN_BATCHER,
  Model = LORY_PLUGIN_MODEL
};

const char* plugin_kind_name(PluginKind kind);  // "router", "batcher", "model"

struct PluginDescriptor {
  PluginKind kind = PluginKind::Router;
  std::string name;
  std::string description;
  std::string file;
  uint32_t abi_version = 0;
  std::string compiler;
  int cxx11_abi = -1;
  std::string torch_version;
  ParamSchema schema;
  // The plugin's cross-parameter rules (LORY_PARAM_CHECK); empty when it declares none.
  std::function<std::vector<ParamProblem>(const ParamValues&)> check;
  // A router's roles (LORY_ROUTER_ROLES, lory/core/router_roles.h), e.g. "dense_baseline".
  std::vector<std::string> roles;

  bool has_role(const std::string& role) const;
};

class PluginCatalog {
 public:
  virtual ~PluginCatalog() = default;
  virtual const PluginDescriptor* find(const std::string& name) const = 0;
  virtual std::vector<const PluginDescriptor*> all() const = 0;

  std::vector<std::string> names_of_kind(PluginKind kind) const;
};

// A catalog assembled in memory (tests, and the registry's base).
class StaticPluginCatalog : public PluginCatalog {
 public:
  void add(PluginDescriptor descriptor) { plugins_.push_back(std::move(descriptor)); }
  const PluginDescriptor* find(const std::string& name) const override;
  std::vector<const PluginDescriptor*> all() const override;

 private:
  std::vector<PluginDescriptor> plugins_;
};

}  // namespace lory
