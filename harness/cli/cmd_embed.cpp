// `lory embed`: one vector per corpus document from a trained run, for the similarity batcher.
#include <fmt/format.h>

#include "commands.h"
#include "core/support/command_line_options.h"
#include "core/support/diagnostics.h"
#include "worker_job.h"

namespace lory::cli {

void register_embed_command(CLI::App& app) {
  auto options = std::make_shared<TrainedRunOptions>();
  CLI::App* cmd = app.add_subcommand("embed",
                                     "Embed every corpus document with a trained run (mean final "
                                     "hidden state), for the similarity batcher");
  options->add_common(cmd);
  cmd->add_option("--out", options->out_file,
                  "Output file (use as batcher.similarity.embedding_file)")
      ->required();
  cmd->callback([options] {
    run_worker_command(*options, "embed", {"--out", options->out_file}, "embedding");
  });
}

}  // namespace lory::cli
