// `lory-data`: prepares corpora for lory (tokenizer, token shards, documents index, held-out
// split) and converts between text and token ids. It never links LibTorch (see tokenizer.h). One
// file per command (commands.h).
#include <CLI/CLI.hpp>
#include <string>

#include "core/support/program_main.h"
#include "data_tool/commands.h"
#include "lory/core/build_info.h"

int main(int argc, char** argv) {
  CLI::App app{"lory-data: prepare corpora for lory and convert between text and token ids"};
  app.set_version_flag("--version", std::string("lory-data ") + LORY_VERSION);
  app.require_subcommand(1);
  lory::data::add_prepare_command(app);
  lory::data::add_encode_command(app);
  lory::data::add_decode_command(app);
  lory::data::add_tokenize_tasks_command(app);
  lory::data::add_documents_command(app);
  lory::data::add_info_command(app);
  return lory::run_main("lory-data", app, [&] {
    app.parse(argc, argv);
    return lory::exit_status::kSuccess;
  });
}
