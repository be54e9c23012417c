// The lory-data commands, one file each; each adds its subcommand (options and callback) to the
// app.
#pragma once

#include <CLI/CLI.hpp>

namespace lory::data {

void add_prepare_command(CLI::App& app);
void add_encode_command(CLI::App& app);
void add_decode_command(CLI::App& app);
void add_tokenize_tasks_command(CLI::App& app);
void add_documents_command(CLI::App& app);
void add_info_command(CLI::App& app);

}  // namespace lory::data
