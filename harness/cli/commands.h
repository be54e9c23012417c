// The `lory` subcommands; each registers itself on the CLI11 app with its options and callback.
#pragma once

#include <CLI/CLI.hpp>

namespace lory::cli {

void register_plugins_command(CLI::App& app);
void register_run_command(CLI::App& app);
void register_query_command(CLI::App& app);
void register_score_command(CLI::App& app);
void register_generate_command(CLI::App& app);
void register_eval_tasks_command(CLI::App& app);
void register_export_command(CLI::App& app);
void register_embed_command(CLI::App& app);
void register_status_command(CLI::App& app);
void register_report_command(CLI::App& app);
void register_merge_command(CLI::App& app);

}  // namespace lory::cli
