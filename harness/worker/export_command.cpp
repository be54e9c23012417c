// `lory-worker export`: a trained run's weights (torch.load-able) and its config with the plugins'
// export layouts, from which python/lory_export.py rebuilds the model in PyTorch.
#include <fmt/format.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/support/diagnostics.h"
#include "worker/commands.h"
#include "worker/trained_model.h"

namespace lory::worker {

namespace {

int export_command(const RunSelection& selection, const std::string& out_dir) {
  TrainedModel trained(selection);
  const auto& setup = trained.setup;
  const auto& model = trained.model;
  const RunRecord* run = &trained.run;
  std::filesystem::create_directories(out_dir);
  c10::Dict<std::string, at::Tensor> weights;
  for (const auto& item : model->named_parameters())
    weights.insert(item.key(), item.value().detach().clone());
  // Buffers too: state a layer keeps outside its parameters (topk's balancing bias, RoPE tables).
  for (const auto& item : model->named_buffers())
    weights.insert(item.key(), item.value().detach().clone());
  const std::vector<char> bytes = torch::pickle_save(c10::IValue(weights));
  const std::string weights_path = (std::filesystem::path(out_dir) / "weights.pt").string();
  std::ofstream(weights_path, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  nlohmann::json config = nlohmann::json::parse(run->config_json);
  // The plugins describe themselves (resolved sizes, tensor layouts, conventions), so that a
  // PyTorch user can rebuild the model from this folder alone (python/lory_export.py does).
  const auto parse_layout = [](const std::string& text, const std::string& who) {
    try {
      return nlohmann::json::parse(text);
    } catch (const std::exception& e) {
      throw UserError(
          fmt::format("the {} plugin's export layout is not valid JSON: {}", who, e.what()));
    }
  };
  const nlohmann::json layout = {
      {"model",
       parse_layout(model->export_layout_json(), setup->config().section("model").plugin())},
      {"ffn", parse_layout(model->feed_forward(0)->export_layout_json(), setup->router_name())}};
  std::string tokenizer = setup->corpus().manifest().tokenizer;
  const std::filesystem::path tokenizer_model =
      std::filesystem::path(selection.corpus) / "tokenizer.model";
  if (std::filesystem::exists(tokenizer_model)) {
    std::filesystem::copy_file(tokenizer_model, std::filesystem::path(out_dir) / "tokenizer.model",
                               std::filesystem::copy_options::overwrite_existing);
    tokenizer =
        "tokenizer.model (SentencePiece; load with "
        "sentencepiece.SentencePieceProcessor(model_file=...))";
  } else if (tokenizer == "byte") {
    tokenizer = "byte: token id = byte value 0-255, 256 = end of document";
  }
  const nlohmann::json info = {{"run_id", run->id},
                               {"layout", layout},
                               {"tokenizer", tokenizer},
                               {"eod_id", setup->corpus().manifest().eod_id},
                               {"experiment", run->experiment},
                               {"label", run->label},
                               {"cell_hash", run->cell_hash},
                               {"status", run->status},
                               {"vocab_size", setup->corpus().manifest().vocab_size},
                               {"config", config}};
  std::ofstream(std::filesystem::path(out_dir) / "config.json") << info.dump(2) << "\n";
  std::printf(
      "wrote %s (%zu tensors; torch.load opens it as a name -> tensor dict), config.json (config, "
      "resolved "
      "layout)%s; python/lory_export.py rebuilds the model in PyTorch\n",
      weights_path.c_str(), weights.size(),
      std::filesystem::exists(tokenizer_model) ? " and tokenizer.model" : "");
  return 0;
}

}  // namespace

void add_export_command(CLI::App& app, int& status) {
  auto selection = std::make_shared<RunSelection>();
  auto out_dir = std::make_shared<std::string>();
  CLI::App* command = app.add_subcommand("export", "Write a trained run's weights for torch.load");
  selection->add_options(command);
  command->add_option("--out", *out_dir, "Output folder")->required();
  command->callback([selection, out_dir, &status] {
    end_with_parent();
    status = export_command(*selection, *out_dir);
  });
}

}  // namespace lory::worker
