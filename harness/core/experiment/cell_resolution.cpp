#include "core/experiment/cell_resolution.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/experiment/harness_sections.h"
#include "core/experiment/training_device.h"
#include "core/support/did_you_mean.h"

namespace lory {

namespace {

const std::vector<std::string> kTopLevelKeys = {"include", "experiment", "plugins", "data", "model",
                                                "router",  "batcher",    "trainer", "eval", "grid"};

void check_top_level_keys(const ConfigNode& tree, Diagnostics& diagnostics) {
  for (const ConfigNode& member : tree.children()) {
    if (std::find(kTopLevelKeys.begin(), kTopLevelKeys.end(), member.key()) ==
        kTopLevelKeys.end()) {
      const std::string hint = quoted_dotted_key_hint(member.key());
      diagnostics.error(
          member.key_where(),
          fmt::format("unknown key '{}'{}", member.key(),
                      hint.empty() ? did_you_mean_suffix(member.key(), kTopLevelKeys) : hint));
    } else if (member.key() != "include" && !member.is_table()) {
      diagnostics.error(member.where(),
                        fmt::format("'{}' must be a table ([{}])", member.key(), member.key()));
    }
  }
}

std::vector<std::string> params_declaring(const PluginCatalog& catalog, PluginKind kind,
                                          const std::string& key) {
  std::vector<std::string> out;
  for (const PluginDescriptor* p : catalog.all()) {
    if (p->kind == kind && p->schema.find(key)) out.push_back(p->name);
  }
  return out;
}

// Where `key` of `table` was written (its key), or `fallback` when the table does not hold it.
SourceLocation key_location(const ConfigNode* table, const std::string& key,
                            const SourceLocation& fallback) {
  if (table && table->is_table()) {
    if (const ConfigNode* node = table->find(key))
      return node->key_where().known() ? node->key_where() : node->where();
  }
  return fallback;
}

// The plugin a section selects, as written ("lory"), or its default; "" when not a string.
std::string selected_plugin_name(const HarnessSection& section, const ConfigNode* table) {
  if (table) {
    if (const ConfigNode* plugin = table->find("plugin")) {
      return plugin->kind() == ConfigNode::Kind::String ? plugin->as_string() : "";
    }
  }
  const ParamSpec* spec = section.schema.find("plugin");
  return spec && spec->default_value ? std::get<std::string>(*spec->default_value) : "";
}

// The plugin's own cross-parameter rules (LORY_PARAM_CHECK), each reported at the parameter it
// names, so that a grid of such cells fails here, all at once, not one worker at a time.
void check_plugin_rules(const PluginDescriptor& plugin, const ParamValues& values,
                        const std::string& section, const ConfigNode* plugin_table,
                        const SourceLocation& where, Diagnostics& diagnostics) {
  if (!plugin.check) return;
  for (const ParamProblem& problem : plugin.check(values)) {
    diagnostics.error(problem.key.empty() ? where : key_location(plugin_table, problem.key, where),
                      fmt::format("{}.{}: {}", section, plugin.name, problem.message));
  }
}

SectionConfig resolve_plugin_section(const HarnessSection& section, const ConfigNode* table,
                                     const SourceLocation& where, const PluginCatalog& catalog,
                                     Diagnostics& diagnostics) {
  const std::string kind_name = plugin_kind_name(*section.plugin_kind);
  const std::string selected_name = selected_plugin_name(section, table);
  ConfigNode harness_keys = ConfigNode::table(where);
  std::vector<const ConfigNode*> plugin_tables;
  if (table) {
    for (const ConfigNode& member : table->children()) {
      if (member.is_table()) {
        plugin_tables.push_back(&member);
      } else if (section.schema.find(member.key())) {
        harness_keys.set(member.key(), member, member.key_where());
      } else {
        auto owners = params_declaring(catalog, *section.plugin_kind, member.key());
        // The plugin this section selects first: `router.experts` with the lory router means
        // router.lory.experts, whichever other router also has an `experts`.
        const auto selected_owner = std::find(owners.begin(), owners.end(), selected_name);
        if (selected_owner != owners.end())
          std::rotate(owners.begin(), selected_owner, selected_owner + 1);
        if (!owners.empty()) {
          diagnostics.error(
              member.key_where(),
              fmt::format(
                  "'{}.{}' is a parameter of the {} plugin '{}': write it under [{}.{}] (or as "
                  "{}.{}.{})",
                  section.name, member.key(), kind_name, owners.front(), section.name,
                  owners.front(), section.name, owners.front(), member.key()));
        } else {
          std::vector<std::string> candidates = section.schema.names();
          for (const auto& n : catalog.names_of_kind(*section.plugin_kind)) candidates.push_back(n);
          diagnostics.error(member.key_where(),
                            fmt::format("unknown key '{}.{}'{}", section.name, member.key(),
                                        did_you_mean_suffix(member.key(), candidates)));
        }
      }
    }
  }
  SectionConfig out;
  out.values = validate_params(&harness_keys, section.schema, section.name, where, diagnostics);
  const std::string plugin = out.values.has("plugin") ? out.values.get_string("plugin") : "";
  const PluginDescriptor* selected = nullptr;
  if (!plugin.empty()) {
    const ConfigNode* plugin_node = harness_keys.find("plugin");
    const SourceLocation plugin_where = plugin_node ? plugin_node->where() : where;
    const PluginDescriptor* found = catalog.find(plugin);
    const auto available = catalog.names_of_kind(*section.plugin_kind);
    if (!found) {
      diagnostics.error(
          plugin_where,
          fmt::format("unknown {} plugin '{}'{} (available: {})", kind_name, plugin,
                      did_you_mean_suffix(plugin, available), fmt::join(available, ", ")));
    } else if (found->kind != *section.plugin_kind) {
      diagnostics.error(
          plugin_where,
          fmt::format("'{}' is a {} plugin ({}), but {}.plugin needs a {} (available: {})", plugin,
                      plugin_kind_name(found->kind), found->file, section.name, kind_name,
                      fmt::join(available, ", ")));
    } else {
      selected = found;
    }
  }
  bool selected_has_table = false;
  for (const ConfigNode* plugin_table : plugin_tables) {
    const std::string& name = plugin_table->key();
    const PluginDescriptor* descriptor = catalog.find(name);
    const auto available = catalog.names_of_kind(*section.plugin_kind);
    if (!descriptor) {
      diagnostics.error(
          plugin_table->key_where(),
          fmt::format("[{}.{}]: no {} plugin is named '{}'{} (available: {})", section.name, name,
                      kind_name, name, did_you_mean_suffix(name, available),
                      fmt::join(available, ", ")));
      continue;
    }
    if (descriptor->kind != *section.plugin_kind) {
      diagnostics.error(plugin_table->key_where(),
                        fmt::format("[{}.{}]: '{}' is a {} plugin, not a {}", section.name, name,
                                    name, plugin_kind_name(descriptor->kind), kind_name));
      continue;
    }
    const size_t errors_before = diagnostics.size();
    ParamValues params =
        validate_params(plugin_table, descriptor->schema, section.name + "." + name,
                        plugin_table->where(), diagnostics);
    if (descriptor == selected) {
      out.plugin_params = std::move(params);
      selected_has_table = true;
      if (diagnostics.size() == errors_before) {
        check_plugin_rules(*selected, out.plugin_params, section.name, plugin_table,
                           plugin_table->where(), diagnostics);
      }
    }
  }
  if (selected && !selected_has_table) {
    const size_t errors_before = diagnostics.size();
    out.plugin_params =
        validate_params(nullptr, selected->schema, section.name + "." + plugin, where, diagnostics);
    if (diagnostics.size() == errors_before) {
      check_plugin_rules(*selected, out.plugin_params, section.name, nullptr, where, diagnostics);
    }
  }
  return out;
}

// More tokens than any model has been trained on (~15T): a value this large is a typo, and
// step, token and progress counters would overflow long before it trained.
constexpr double kMaxTrainingTokens = 1e15;

void check_trainer_consistency(const SectionConfig& trainer, const ConfigNode* table,
                               const SourceLocation& where, Diagnostics& diagnostics) {
  if (trainer.values.has("device")) {
    if (const auto problem = training_device_problem(trainer.values.get_string("device"))) {
      diagnostics.error(key_location(table, "device", where), "trainer.device = " + *problem);
    }
  }
  if (!trainer.values.has("steps") || !trainer.values.has("tokens")) return;
  const int64_t steps = trainer.values.get_int("steps"), tokens = trainer.values.get_int("tokens");
  if ((steps > 0) == (tokens > 0)) {
    // Both set: at trainer.tokens (the message names both); neither: at the section.
    const SourceLocation at =
        steps > 0 ? key_location(table, "tokens", key_location(table, "steps", where)) : where;
    diagnostics.error(
        at, fmt::format("set exactly one of trainer.steps and trainer.tokens (got steps = {}, "
                        "tokens = {})",
                        steps, tokens));
  }
  if (!trainer.values.has("batch_size") || !trainer.values.has("micro_batch_size")) return;
  const int64_t batch = trainer.values.get_int("batch_size"),
                micro = trainer.values.get_int("micro_batch_size");
  if (micro > 0 && batch % micro != 0) {
    diagnostics.error(
        key_location(table, "micro_batch_size", where),
        fmt::format("trainer.micro_batch_size = {} must divide trainer.batch_size = {}", micro,
                    batch));
  }
}

// Rules between the trainer and the model's context length: what one step holds, and a budget
// that is at least one step and not absurd. lr = 0 is legal (a frozen-model control) but almost
// never meant, so it is a warning.
void check_training_budget(const CellConfig& config, const ConfigNode* trainer_table,
                           const SourceLocation& where, Diagnostics& diagnostics) {
  const ParamValues& trainer = config.section("trainer").values;
  const ParamValues& model = config.section("model").values;
  if (!model.has("context_length") || !trainer.has("batch_size") || !trainer.has("steps") ||
      !trainer.has("tokens")) {
    return;
  }
  const int64_t context = model.get_int("context_length"), batch = trainer.get_int("batch_size");
  const int64_t steps = trainer.get_int("steps"), tokens = trainer.get_int("tokens");
  const double tokens_per_step = static_cast<double>(batch) * static_cast<double>(context);
  if (tokens > 0 && steps == 0 && static_cast<double>(tokens) < tokens_per_step) {
    diagnostics.error(
        key_location(trainer_table, "tokens", where),
        fmt::format("trainer.tokens = {} is less than one step (trainer.batch_size x "
                    "model.context_length = {} x {} = {:.0f} tokens); ask for at least that many",
                    tokens, batch, context, tokens_per_step));
  }
  const double total =
      steps > 0 ? static_cast<double>(steps) * tokens_per_step : static_cast<double>(tokens);
  if (total > kMaxTrainingTokens) {
    const std::string key = steps > 0 ? "steps" : "tokens";
    diagnostics.error(
        key_location(trainer_table, key, where),
        fmt::format(
            "trainer.{} = {} asks for {:.3g} training tokens, more than the {:.0e} lory accepts "
            "(more than any language model has been trained on); a typo?",
            key, steps > 0 ? steps : tokens, total, kMaxTrainingTokens));
  }
  if (trainer.has("lr") && trainer.get_float("lr") == 0.0) {
    diagnostics.warning(
        key_location(trainer_table, "lr", where),
        "trainer.lr = 0: the optimizer will not change the model (weight decay included); the run "
        "measures an untrained model");
  }
}

void check_eval_consistency(const CellConfig& config, const ConfigNode* table,
                            const SourceLocation& where, Diagnostics& diagnostics) {
  const ParamValues& eval = config.section("eval").values;
  const ParamValues& model = config.section("model").values;
  if (!model.has("context_length")) return;
  const int64_t context = model.get_int("context_length");
  if (eval.has("skip_first_tokens") && eval.get_int("skip_first_tokens") >= context) {
    diagnostics.error(
        key_location(table, "skip_first_tokens", where),
        fmt::format("eval.skip_first_tokens = {} leaves nothing to score in sequences of "
                    "model.context_length = {}",
                    eval.get_int("skip_first_tokens"), context));
  }
  if (eval.has("prompt_routing") && eval.get_bool("prompt_routing") && eval.has("prompt_length") &&
      eval.get_int("prompt_length") >= context) {
    diagnostics.error(
        key_location(table, "prompt_length", where),
        fmt::format("eval.prompt_length = {} must be shorter than model.context_length = {}",
                    eval.get_int("prompt_length"), context));
  }
}

}  // namespace

CellConfig resolve_cell(const ConfigNode& tree, const SourceLocation& file_where,
                        const PluginCatalog& catalog, Diagnostics& diagnostics) {
  check_top_level_keys(tree, diagnostics);
  CellConfig config;
  for (const HarnessSection& section : harness_sections()) {
    const ConfigNode* table = tree.find(section.name);
    if (table && !table->is_table()) table = nullptr;  // reported by check_top_level_keys
    const SourceLocation where = table ? table->where() : file_where;
    if (section.plugin_kind) {
      config.sections[section.name] =
          resolve_plugin_section(section, table, where, catalog, diagnostics);
    } else {
      config.sections[section.name].values =
          validate_params(table, section.schema, section.name, where, diagnostics);
    }
    if (section.name == "trainer")
      check_trainer_consistency(config.sections["trainer"], table, where, diagnostics);
    if (section.name == "eval") check_eval_consistency(config, table, where, diagnostics);
  }
  const ConfigNode* trainer_table = tree.find("trainer");
  check_training_budget(config,
                        trainer_table && trainer_table->is_table() ? trainer_table : nullptr,
                        trainer_table ? trainer_table->where() : file_where, diagnostics);
  return config;
}

}  // namespace lory
