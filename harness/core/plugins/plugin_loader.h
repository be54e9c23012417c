// Finds plugin shared libraries, checks their C metadata (ABI version, kind, build fingerprint,
// parameter declarations) before any C++ object crosses, and creates plugin objects through the
// Boost.DLL factory alias of their kind. Objects a plugin made keep its library loaded.
#pragma once

#include <boost/dll/shared_library.hpp>
#include <memory>
#include <string>
#include <vector>

#include "core/plugins/plugin_catalog.h"
#include "core/support/diagnostics.h"

namespace lory {

class PluginError : public UserError {
 public:
  using UserError::UserError;
};

struct LoadedPlugin {
  PluginDescriptor descriptor;
  std::shared_ptr<boost::dll::shared_library> library;
};

// What this harness build expects of a plugin's fingerprint.
LoryBuildFingerprint harness_fingerprint();

// Opens one file and checks it. Throws PluginError with a one-line, actionable message.
LoadedPlugin load_plugin_file(const std::string& path);

// The build tree's plugin folder and the install tree's, next to the running executable.
std::vector<std::string> default_plugin_dirs();
// Entries of LORY_PLUGIN_PATH (':'-separated folders or plugin files).
std::vector<std::string> plugin_path_from_environment();

class PluginRegistry : public PluginCatalog {
 public:
  // Loads every plugin in `search_path` (folders are scanned for *.so; files are loaded as given).
  // Broken files and two plugins with one name are collected in problems(), not thrown.
  static PluginRegistry discover(const std::vector<std::string>& search_path);
  // discover() over extra entries, then LORY_PLUGIN_PATH, then the default folders.
  static PluginRegistry discover_default(const std::vector<std::string>& extra_entries = {});

  const PluginDescriptor* find(const std::string& name) const override;
  std::vector<const PluginDescriptor*> all() const override;
  // Everything discovery found wrong: files that could not be loaded, then conflicts (two plugins
  // with one name, path entries that do not exist).
  const std::vector<std::string>& problems() const { return problems_; }
  // The subset of problems() that are files that could not be loaded (each names its file).
  const std::vector<std::string>& unloadable_files() const { return unloadable_; }
  // Throws PluginError (with the problem list) when discovery found any. With `skip_unloadable`,
  // files that could not be loaded are only reported on stderr and left out, so that a truncated
  // or foreign file in a plugin folder stops no grid that does not use it (a grid that names it
  // then fails on "unknown plugin", just below the report); conflicts still throw.
  void throw_if_problems(bool skip_unloadable = false) const;

  // The plugin called `name`, which must be of `kind`; `wanted_by` names the config key for
  // messages ("router.plugin"). Throws PluginError when unknown or of another kind.
  const LoadedPlugin& require(const std::string& name, PluginKind kind,
                              const std::string& wanted_by) const;
  // The one router declaring the dense_baseline role (lory/core/router_roles.h); `wanted_by` names
  // what needs it. Throws PluginError when none or several do.
  const LoadedPlugin& require_dense_baseline(const std::string& wanted_by) const;

 private:
  std::vector<LoadedPlugin> plugins_;
  std::vector<std::string> problems_;
  std::vector<std::string> unloadable_;
};

namespace detail {
template <typename Interface>
struct KeepAlive {
  std::shared_ptr<boost::dll::shared_library> library;  // declared first: destroyed last
  std::shared_ptr<Interface> object;
};
}  // namespace detail

// Wraps an object whose code lives in a plugin so that the plugin stays loaded while any copy of
// the returned pointer is alive.
template <typename Interface>
std::shared_ptr<Interface> keep_library_alive(std::shared_ptr<Interface> object,
                                              std::shared_ptr<boost::dll::shared_library> library) {
  Interface* raw = object.get();
  auto holder = std::make_shared<detail::KeepAlive<Interface>>(
      detail::KeepAlive<Interface>{std::move(library), std::move(object)});
  return std::shared_ptr<Interface>(holder, raw);
}

// Calls the plugin's factory of Interface's kind (Interface::kFactoryAlias, Interface::kKind).
template <typename Interface>
std::shared_ptr<Interface> create_plugin_object(const LoadedPlugin& plugin) {
  const PluginDescriptor& d = plugin.descriptor;
  const auto wanted = static_cast<PluginKind>(Interface::kKind);
  if (d.kind != wanted) {
    throw PluginError("plugin '" + d.name + "' (" + d.file + ") is a " + plugin_kind_name(d.kind) +
                      ", not a " + plugin_kind_name(wanted));
  }
  using Factory = std::unique_ptr<Interface>();
  if (!plugin.library->has(Interface::kFactoryAlias)) {
    throw PluginError("plugin '" + d.name + "' (" + d.file + ") exports no '" +
                      Interface::kFactoryAlias + "' factory: declare it with LORY_" +
                      (d.kind == PluginKind::Router    ? "ROUTER"
                       : d.kind == PluginKind::Batcher ? "BATCHER"
                                                       : "MODEL") +
                      "_FACTORY(...)");
  }
  std::unique_ptr<Interface> object;
  try {
    object = plugin.library->get_alias<Factory>(Interface::kFactoryAlias)();
  } catch (const std::exception& e) {
    throw PluginError("plugin '" + d.name + "' (" + d.file +
                      ") failed in its factory: " + e.what());
  } catch (...) {
    throw PluginError("plugin '" + d.name + "' (" + d.file +
                      ") failed in its factory with a non-standard exception");
  }
  if (!object)
    throw PluginError("plugin '" + d.name + "' (" + d.file + ") factory returned no object");
  return keep_library_alive(std::shared_ptr<Interface>(std::move(object)), plugin.library);
}

}  // namespace lory
