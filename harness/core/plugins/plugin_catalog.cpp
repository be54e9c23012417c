#include "core/plugins/plugin_catalog.h"

#include <algorithm>

namespace lory {

bool PluginDescriptor::has_role(const std::string& role) const {
  return std::find(roles.begin(), roles.end(), role) != roles.end();
}

const char* plugin_kind_name(PluginKind kind) {
  switch (kind) {
    case PluginKind::Router:
      return "router";
    case PluginKind::Batcher:
      return "batcher";
    case PluginKind::Model:
      return "model";
  }
  return "?";
}

std::vector<std::string> PluginCatalog::names_of_kind(PluginKind kind) const {
  std::vector<std::string> out;
  for (const PluginDescriptor* p : all()) {
    if (p->kind == kind) out.push_back(p->name);
  }
  return out;
}

const PluginDescriptor* StaticPluginCatalog::find(const std::string& name) const {
  for (const auto& p : plugins_) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

std::vector<const PluginDescriptor*> StaticPluginCatalog::all() const {
  std::vector<const PluginDescriptor*> out;
  for (const auto& p : plugins_) out.push_back(&p);
  return out;
}

}  // namespace lory
