// The lory-worker commands, one file each. Each adds its subcommand to the worker's CLI11 app; its
// callback runs the command and leaves the command's exit status in `status`.
#pragma once

#include <CLI/CLI.hpp>

namespace lory::worker {

void add_train_command(CLI::App& app, int& status);
void add_score_command(CLI::App& app, int& status);
void add_generate_command(CLI::App& app, int& status);
void add_eval_tasks_command(CLI::App& app, int& status);
void add_embed_command(CLI::App& app, int& status);
void add_export_command(CLI::App& app, int& status);

}  // namespace lory::worker
