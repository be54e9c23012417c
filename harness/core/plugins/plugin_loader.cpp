#include "core/plugins/plugin_loader.h"

#include <fmt/format.h>

#include <torch/version.h>  // the version string only: the core never links LibTorch
#include <algorithm>
#include <boost/dll/runtime_symbol_info.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/plugins/elf_check.h"
#include "lory/core/plugin.h"
#include "lory/core/router_roles.h"

namespace lory {

namespace fs = std::filesystem;

LoryBuildFingerprint harness_fingerprint() {
  return {LORY_COMPILER_STRING, LORY_CXX11_ABI_VALUE, TORCH_VERSION};
}

namespace {

bool valid_plugin_name(const std::string& name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

}  // namespace

LoadedPlugin load_plugin_file(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    // A symbolic link loop (ELOOP) or an unreadable folder is not "missing": say what it is.
    if (ec)
      throw PluginError(fmt::format("plugin file '{}' cannot be resolved: {}", path, ec.message()));
    throw PluginError(fmt::format("plugin file '{}' does not exist", path));
  }
  if (!fs::is_regular_file(path, ec))
    throw PluginError(fmt::format("plugin file '{}' is not a regular file", path));
  if (const std::string problem = shared_library_problem(path); !problem.empty()) {
    throw PluginError(
        fmt::format("'{}' {}: remove it from the plugin path or replace it", path, problem));
  }
  auto library = std::make_shared<boost::dll::shared_library>();
  try {
    library->load(path, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
  } catch (const std::exception& e) {
    throw PluginError(
        fmt::format("'{}' could not be loaded as a shared library: {} (an \"undefined symbol\" "
                    "means it was built against "
                    "another lory SDK or LibTorch: rebuild it against this harness's SDK, plugin "
                    "ABI version {})",
                    path, e.what(), LORY_PLUGIN_ABI_VERSION));
  }
  if (!library->has(LORY_PLUGIN_INFO_SYMBOL)) {
    throw PluginError(
        fmt::format("'{}' has no '{}' symbol, so it is not a lory plugin (declare it with "
                    "LORY_PLUGIN_METADATA)",
                    path, LORY_PLUGIN_INFO_SYMBOL));
  }
  const LoryPluginInfo* info = library->get<const LoryPluginInfo*()>(LORY_PLUGIN_INFO_SYMBOL)();
  if (!info)
    throw PluginError(fmt::format("'{}': {}() returned null", path, LORY_PLUGIN_INFO_SYMBOL));
  // Only the header is known to have this layout in every ABI version: check it before the rest.
  if (info->header.abi_version != LORY_PLUGIN_ABI_VERSION) {
    throw PluginError(
        fmt::format("'{}' was built for plugin ABI version {}, but this harness uses version {}: "
                    "rebuild the plugin "
                    "against this harness's SDK",
                    path, info->header.abi_version, LORY_PLUGIN_ABI_VERSION));
  }
  if (info->header.struct_size != sizeof(LoryPluginInfo)) {
    throw PluginError(
        fmt::format("'{}': plugin metadata has size {} bytes, expected {} for ABI version {}", path,
                    info->header.struct_size, sizeof(LoryPluginInfo), LORY_PLUGIN_ABI_VERSION));
  }
  PluginDescriptor d;
  d.file = fs::weakly_canonical(path, ec).string();
  if (ec) d.file = path;
  d.abi_version = info->header.abi_version;
  d.name = info->name ? info->name : "";
  d.description = info->description ? info->description : "";
  if (!valid_plugin_name(d.name)) {
    throw PluginError(fmt::format(
        "'{}': plugin name '{}' is invalid (use lowercase letters, digits and '_')", path, d.name));
  }
  if (info->kind < LORY_PLUGIN_ROUTER || info->kind > LORY_PLUGIN_MODEL) {
    throw PluginError(
        fmt::format("'{}': plugin '{}' declares unknown kind {} (router=1, batcher=2, model=3)",
                    path, d.name, info->kind));
  }
  d.kind = static_cast<PluginKind>(info->kind);
  d.compiler = info->fingerprint.compiler ? info->fingerprint.compiler : "";
  d.cxx11_abi = info->fingerprint.cxx11_abi;
  d.torch_version = info->fingerprint.torch_version ? info->fingerprint.torch_version : "";
  const LoryBuildFingerprint mine = harness_fingerprint();
  if (d.cxx11_abi != mine.cxx11_abi) {
    throw PluginError(
        fmt::format("'{}': plugin '{}' was built with _GLIBCXX_USE_CXX11_ABI={}, the harness with "
                    "{}: rebuild it with the "
                    "harness's flags",
                    path, d.name, d.cxx11_abi, mine.cxx11_abi));
  }
  if (d.torch_version != "none" && d.torch_version != mine.torch_version) {
    throw PluginError(
        fmt::format("'{}': plugin '{}' was built against LibTorch {} ({}), the harness against "
                    "LibTorch {} ({}): rebuild the "
                    "plugin against the harness's LibTorch",
                    path, d.name, d.torch_version, d.compiler, mine.torch_version, mine.compiler));
  }
  try {
    d.schema = schema_from_c(info->params, info->param_count);
  } catch (const std::invalid_argument& e) {
    throw PluginError(
        fmt::format("'{}': plugin '{}' declares a broken parameter: {}", path, d.name, e.what()));
  }
  if (library->has(kParamCheckAlias)) {
    // The function lives in the library: the closure keeps it loaded as long as the descriptor.
    ParamCheckFunction* function = &library->get_alias<ParamCheckFunction>(kParamCheckAlias);
    d.check = [function, library, name = d.name](const ParamValues& params) {
      try {
        return function(params);
      } catch (const std::exception& e) {
        return std::vector<ParamProblem>{
            {"", fmt::format("the check of plugin '{}' failed: {}", name, e.what())}};
      }
    };
  }
  if (d.kind == PluginKind::Router && library->has(kRouterRolesSymbol)) {
    const char* roles = library->get<const char*()>(kRouterRolesSymbol)();
    std::string text = roles ? roles : "";
    for (size_t start = 0; start <= text.size();) {
      const size_t comma = std::min(text.find(',', start), text.size());
      std::string role = text.substr(start, comma - start);
      role.erase(0, role.find_first_not_of(' '));
      role.erase(role.find_last_not_of(' ') + 1);
      if (role == kDenseBaselineRole) {
        d.roles.push_back(role);
      } else if (!role.empty()) {
        throw PluginError(fmt::format("'{}': router '{}' declares an unknown role '{}' (known: {})",
                                      path, d.name, role, kDenseBaselineRole));
      }
      start = comma + 1;
    }
  }
  return LoadedPlugin{std::move(d), std::move(library)};
}

std::vector<std::string> default_plugin_dirs() {
  const fs::path exe_dir = boost::dll::program_location().parent_path();
  std::vector<std::string> dirs;
  for (const fs::path& candidate :
       {exe_dir / "plugins", exe_dir / ".." / "lib" / "lory" / "plugins"}) {
    std::error_code ec;
    if (fs::is_directory(candidate, ec)) dirs.push_back(fs::weakly_canonical(candidate).string());
  }
  return dirs;
}

std::vector<std::string> plugin_path_from_environment() {
  std::vector<std::string> entries;
  const char* value = std::getenv("LORY_PLUGIN_PATH");
  if (!value) return entries;
  std::string current;
  for (const char* c = value;; ++c) {
    if (*c == ':' || *c == '\0') {
      if (!current.empty()) entries.push_back(current);
      current.clear();
      if (*c == '\0') break;
    } else {
      current += *c;
    }
  }
  return entries;
}

PluginRegistry PluginRegistry::discover(const std::vector<std::string>& search_path) {
  PluginRegistry registry;
  std::vector<std::string> files;
  for (const std::string& entry : search_path) {
    std::error_code ec;
    if (fs::is_directory(entry, ec)) {
      std::vector<std::string> in_dir;
      for (const auto& item : fs::directory_iterator(entry, ec)) {
        if (item.path().extension() == ".so") in_dir.push_back(item.path().string());
      }
      std::sort(in_dir.begin(), in_dir.end());
      files.insert(files.end(), in_dir.begin(), in_dir.end());
    } else if (fs::exists(entry, ec)) {
      files.push_back(entry);
    } else {
      registry.problems_.push_back(fmt::format("plugin path entry '{}' does not exist", entry));
    }
  }
  std::vector<std::string> seen_files;
  for (const std::string& file : files) {
    // A file that cannot be resolved (a symbolic link loop) is skipped with its problem, like any
    // other bad file: it must not stop the discovery of the others.
    std::error_code resolve_error;
    const std::string canonical = fs::weakly_canonical(file, resolve_error).string();
    if (resolve_error) {
      const std::string problem =
          fmt::format("plugin file '{}' cannot be resolved: {}", file, resolve_error.message());
      registry.problems_.push_back(problem);
      registry.unloadable_.push_back(problem);
      continue;
    }
    if (std::find(seen_files.begin(), seen_files.end(), canonical) != seen_files.end()) continue;
    seen_files.push_back(canonical);
    try {
      LoadedPlugin plugin = load_plugin_file(file);
      if (const PluginDescriptor* other = registry.find(plugin.descriptor.name)) {
        registry.problems_.push_back(
            fmt::format("two plugins are named '{}': '{}' and '{}'; remove one from the "
                        "plugin path",
                        plugin.descriptor.name, other->file, plugin.descriptor.file));
        continue;
      }
      registry.plugins_.push_back(std::move(plugin));
    } catch (const PluginError& e) {
      registry.problems_.push_back(e.what());
      registry.unloadable_.push_back(e.what());
    }
  }
  return registry;
}

PluginRegistry PluginRegistry::discover_default(const std::vector<std::string>& extra_entries) {
  std::vector<std::string> path = extra_entries;
  for (const auto& e : plugin_path_from_environment()) path.push_back(e);
  for (const auto& d : default_plugin_dirs()) path.push_back(d);
  return discover(path);
}

const PluginDescriptor* PluginRegistry::find(const std::string& name) const {
  for (const auto& p : plugins_) {
    if (p.descriptor.name == name) return &p.descriptor;
  }
  return nullptr;
}

std::vector<const PluginDescriptor*> PluginRegistry::all() const {
  std::vector<const PluginDescriptor*> out;
  for (const auto& p : plugins_) out.push_back(&p.descriptor);
  return out;
}

void PluginRegistry::throw_if_problems(bool skip_unloadable) const {
  std::vector<std::string> fatal;
  for (const auto& p : problems_) {
    const bool unloadable =
        std::find(unloadable_.begin(), unloadable_.end(), p) != unloadable_.end();
    if (skip_unloadable && unloadable) {
      std::fprintf(stderr, "warning: plugin file skipped: %s\n", p.c_str());
    } else {
      fatal.push_back(p);
    }
  }
  if (fatal.empty()) return;
  std::string message = "plugin discovery failed:";
  for (const auto& p : fatal) message += "\n  " + p;
  throw PluginError(message);
}

const LoadedPlugin& PluginRegistry::require_dense_baseline(const std::string& wanted_by) const {
  std::vector<const LoadedPlugin*> found;
  for (const auto& p : plugins_) {
    if (p.descriptor.kind == PluginKind::Router && p.descriptor.has_role(kDenseBaselineRole))
      found.push_back(&p);
  }
  if (found.size() == 1) return *found.front();
  std::vector<std::string> names;
  for (const LoadedPlugin* p : found)
    names.push_back(fmt::format("{} ({})", p->descriptor.name, p->descriptor.file));
  throw PluginError(
      found.empty()
          ? fmt::format(
                "{} needs a router declaring the dense_baseline role (the in-tree 'dense'), and "
                "none was found: check the plugin path",
                wanted_by)
          : fmt::format(
                "{} needs one router declaring the dense_baseline role, and {} do: {}; leave one "
                "of them off the plugin path",
                wanted_by, found.size(), fmt::join(names, ", ")));
}

const LoadedPlugin& PluginRegistry::require(const std::string& name, PluginKind kind,
                                            const std::string& wanted_by) const {
  for (const auto& p : plugins_) {
    if (p.descriptor.name != name) continue;
    if (p.descriptor.kind != kind) {
      throw PluginError(fmt::format("{} = \"{}\" names a {} plugin ({}), but a {} is needed",
                                    wanted_by, name, plugin_kind_name(p.descriptor.kind),
                                    p.descriptor.file, plugin_kind_name(kind)));
    }
    return p;
  }
  throw PluginError(fmt::format("{} = \"{}\": no such {} plugin (available: {})", wanted_by, name,
                                plugin_kind_name(kind), fmt::join(names_of_kind(kind), ", ")));
}

}  // namespace lory
