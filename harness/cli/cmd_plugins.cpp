// `lory plugins`: what plugins are found, where, and (--describe) what parameters they take.
#include <fmt/format.h>

#include <cstdio>

#include "commands.h"
#include "core/experiment/harness_sections.h"
#include "core/plugins/plugin_loader.h"
#include "core/support/text_table.h"

namespace lory::cli {

namespace {

struct PluginsOptions {
  std::string describe;
  std::vector<std::string> plugin_path;
};

void print_parameters(const ParamSchema& schema, const std::string& table_name) {
  TextTable table({"parameter", "type", "default", "range", "description"});
  for (const ParamSpec& p : schema.params()) {
    table.add_row({p.name, param_type_name(p.type), p.default_text(), p.range_text(), p.doc});
  }
  std::printf("  parameters ([%s] in an experiment file):\n%s", table_name.c_str(),
              table.render("  ").c_str());
}

// The keys the harness itself reads from one section of an experiment file (trainer.precision,
// eval.every, ...): declared like a plugin's parameters, so described the same way.
void describe_section(const HarnessSection& section) {
  std::printf("%s (harness section of an experiment file; docs/experiment-format.md)\n",
              section.name.c_str());
  if (section.plugin_kind) {
    std::printf(
        "  also holds one sub-table per %s plugin ([%s.<plugin>]: lory plugins --describe "
        "<plugin>)\n",
        plugin_kind_name(*section.plugin_kind), section.name.c_str());
  }
  std::printf("\n");
  print_parameters(section.schema, section.name);
}

void describe_plugin(const PluginDescriptor& d) {
  std::printf("%s (%s plugin)\n  %s\n", d.name.c_str(), plugin_kind_name(d.kind),
              d.description.c_str());
  std::printf(
      "  file:     %s\n  ABI:      %u\n  built by: %s, _GLIBCXX_USE_CXX11_ABI=%d, LibTorch %s\n\n",
      d.file.c_str(), d.abi_version, d.compiler.c_str(), d.cxx11_abi, d.torch_version.c_str());
  if (!d.roles.empty())
    std::printf("  roles:    %s (lory/core/router_roles.h)\n\n",
                fmt::format("{}", fmt::join(d.roles, ", ")).c_str());
  if (d.schema.params().empty()) {
    std::printf("  no parameters\n");
    return;
  }
  print_parameters(d.schema, fmt::format("{}.{}", plugin_kind_name(d.kind), d.name));
}

void run_plugins(const PluginsOptions& options) {
  const PluginRegistry registry = PluginRegistry::discover_default(options.plugin_path);
  if (!options.describe.empty()) {
    const PluginDescriptor* d = registry.find(options.describe);
    const HarnessSection* section = find_harness_section(options.describe);
    if (d) {
      describe_plugin(*d);
    } else if (section) {
      describe_section(*section);
    } else {
      std::vector<std::string> names;
      for (const auto* p : registry.all()) names.push_back(p->name);
      std::vector<std::string> sections;
      for (const HarnessSection& s : harness_sections()) sections.push_back(s.name);
      throw UserError(
          fmt::format("no plugin or harness section named '{}' (plugins found: {}; sections: {})",
                      options.describe, fmt::join(names, ", "), fmt::join(sections, ", ")));
    }
  } else {
    TextTable table({"kind", "name", "abi", "file", "description"});
    for (const PluginDescriptor* d : registry.all()) {
      table.add_row({plugin_kind_name(d->kind), d->name, std::to_string(d->abi_version), d->file,
                     d->description});
    }
    std::printf("%s", table.render().c_str());
  }
  registry.throw_if_problems();
}

}  // namespace

void register_plugins_command(CLI::App& app) {
  auto options = std::make_shared<PluginsOptions>();
  CLI::App* cmd = app.add_subcommand(
      "plugins", "List the plugins found (build folder, LORY_PLUGIN_PATH, --plugin-path)");
  cmd->add_option(
         "--describe", options->describe,
         "Print one plugin's parameters, or the keys of a harness section (data, model, router, "
         "batcher, trainer, eval)")
      ->option_text("NAME");
  cmd->add_option("--plugin-path", options->plugin_path,
                  "Extra plugin folder or file (repeatable)");
  cmd->callback([options] { run_plugins(*options); });
}

}  // namespace lory::cli
