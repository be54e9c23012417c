// `lory-worker embed`: one vector per corpus document from a trained run, for the similarity
// batcher.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <stdexcept>

#include "core/support/diagnostics.h"
#include "core/support/progress_line.h"
#include "lory/core/embedding_file.h"
#include "train/device_placement.h"
#include "worker/commands.h"
#include "worker/trained_model.h"

namespace lory::worker {

namespace {

// One vector per corpus document: the mean of the trained model's final hidden states over the
// document's tokens (windows of the context length), in the format of lory/core/embedding_file.h
// (the similarity batcher's embedding_file), which carries the corpus checksum and the run id.
int embed_command(const RunSelection& selection, const std::string& out_file) {
  TrainedModel trained(selection);
  const auto& setup = trained.setup;
  const auto& model = trained.model;
  const RunRecord* run = &trained.run;
  torch::NoGradGuard no_grad;
  const Corpus& corpus = setup->corpus();
  const int64_t context = setup->context_length();
  const uint64_t rows = corpus.document_count();
  int64_t dimension = 0;
  std::optional<EmbeddingFileWriter> out;
  try {
    out.emplace(out_file, corpus, run->id);
  } catch (const std::runtime_error& e) {
    throw UserError(e.what());  // the --out the user gave cannot be written
  }
  std::vector<uint32_t> tokens;
  ProgressLine progress("embed: documents", static_cast<int64_t>(rows));
  for (uint64_t i = 0; i < rows; ++i) {
    progress.update(static_cast<int64_t>(i));
    const DocumentRecord& record = corpus.document(i);
    tokens.resize(record.length);
    corpus.copy_tokens(record.offset, record.length, tokens.data());
    torch::Tensor sum_D;
    int64_t counted = 0;
    for (int64_t start = 0; start < static_cast<int64_t>(tokens.size()); start += context) {
      const int64_t end = std::min<int64_t>(static_cast<int64_t>(tokens.size()), start + context);
      const torch::Tensor window_1L =
          torch::tensor(std::vector<int64_t>(tokens.begin() + start, tokens.begin() + end),
                        torch::kInt64)
              .unsqueeze(0)
              .to(module_device(*model));
      RoutingContext routing(ForwardMode::Eval, false);
      const torch::Tensor h_D =
          model->hidden_states(window_1L, routing)[0].sum(0).to(torch::kFloat32);
      sum_D = sum_D.defined() ? sum_D + h_D : h_D;
      counted += end - start;
    }
    const torch::Tensor mean_D =
        (sum_D / static_cast<double>(std::max<int64_t>(1, counted))).cpu().contiguous();
    dimension = mean_D.size(0);
    out->append(mean_D.data_ptr<float>(), dimension);
  }
  try {
    out->finish();
  } catch (const std::runtime_error& e) {
    throw UserError(e.what());
  }
  std::printf("wrote %s: %llu documents x %lld dimensions (mean final hidden state of run %lld)\n",
              out_file.c_str(), static_cast<unsigned long long>(rows),
              static_cast<long long>(dimension), static_cast<long long>(run->id));
  return 0;
}

}  // namespace

void add_embed_command(CLI::App& app, int& status) {
  auto selection = std::make_shared<RunSelection>();
  auto out_file = std::make_shared<std::string>();
  CLI::App* command = app.add_subcommand(
      "embed", "Mean final hidden state of every corpus document (lory/core/embedding_file.h)");
  selection->add_options(command);
  selection->add_precision_option(command);
  command->add_option("--out", *out_file, "Output file")->required();
  command->callback([selection, out_file, &status] {
    end_with_parent();
    status = embed_command(*selection, *out_file);
  });
}

}  // namespace lory::worker
