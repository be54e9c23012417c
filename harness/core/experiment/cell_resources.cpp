#include "core/experiment/cell_resources.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <optional>

#include "lory/core/corpus.h"

namespace lory {

namespace {

struct CorpusFinding {
  std::optional<CorpusManifest> manifest;  // set when the corpus opened and verified
  std::string problem;
};

CorpusFinding inspect_corpus(const std::string& directory) {
  CorpusFinding finding;
  try {
    // Structure, sizes and record bounds: a missing, truncated or malformed corpus is found here
    // at any corpus size; the worker verifies the checksums before it trains.
    const auto corpus = Corpus::open(directory, /*verify_checksums=*/false);
    if (corpus->documents_of_split(Split::Train).empty()) {
      finding.problem = fmt::format(
          "corpus '{}' holds no training documents; prepare it again with more text", directory);
    } else {
      finding.manifest = corpus->manifest();
    }
  } catch (const UserError& e) {
    finding.problem = e.what();
  }
  return finding;
}

std::optional<int64_t> int_param(const ParamValues& values, const char* name) {
  if (!values.has(name) || !std::holds_alternative<int64_t>(values.all().at(name)))
    return std::nullopt;
  return values.get_int(name);
}

std::string gigabytes(double bytes) { return fmt::format("{:.1f} GB", bytes / 1e9); }

void check_memory(const ExperimentCell& cell, const CorpusManifest& manifest, double memory,
                  Diagnostics& diagnostics) {
  const ParamValues& trainer = cell.config.section("trainer").values;
  const ParamValues& model = cell.config.section("model").plugin_params;
  const int64_t context = cell.config.section("model").values.get_int("context_length");
  const int64_t batch = trainer.get_int("batch_size");
  const int64_t micro =
      trainer.get_int("micro_batch_size") > 0 ? trainer.get_int("micro_batch_size") : batch;
  // The model's shape where its plugin names it the usual way; otherwise only the LM head counts.
  const int64_t d_model = int_param(model, "d_model").value_or(0);
  const int64_t layers = int_param(model, "n_layers").value_or(0);
  const int64_t heads = int_param(model, "n_heads").value_or(0);
  const double needed =
      activation_bytes_lower_bound(micro, context, manifest.vocab_size, d_model, layers, heads);
  if (memory <= 0 || needed <= memory) return;
  const double per_sequence =
      activation_bytes_lower_bound(1, context, manifest.vocab_size, d_model, layers, heads);
  const auto fitting = static_cast<int64_t>(0.8 * memory / per_sequence);
  const bool micro_set = trainer.get_int("micro_batch_size") > 0;
  diagnostics.error(
      cell.where(micro_set ? "trainer.micro_batch_size" : "trainer.batch_size"),
      fmt::format(
          "one forward/backward of {} sequences x {} tokens needs at least {} of activations "
          "(vocabulary {}, d_model {}, {} layers), more than the {} of memory each cell has "
          "here: {}",
          micro, context, gigabytes(needed), manifest.vocab_size, d_model, layers,
          gigabytes(memory),
          fitting >= 1 ? fmt::format("set trainer.micro_batch_size to at most {} (a divisor of "
                                     "batch_size; gradients accumulate to the same batch)",
                                     fitting)
                       : std::string("even one sequence does not fit; shorten "
                                     "model.context_length or shrink the model")));
}

}  // namespace

double activation_bytes_lower_bound(int64_t sequences, int64_t context, int64_t vocab,
                                    int64_t d_model, int64_t n_layers, int64_t n_heads) {
  const double tokens = static_cast<double>(sequences) * static_cast<double>(context);
  // fp32: logits, their log-softmax and its gradient over the vocabulary.
  const double head = 3.0 * 4.0 * static_cast<double>(vocab);
  // Per layer, at least 16 d_model-wide tensors (norms, q/k/v, attention output, residuals, the
  // FFN's input and its two hidden halves at >= d_model each) and the attention scores and
  // probabilities of every head over the context.
  const double per_layer = 16.0 * 4.0 * static_cast<double>(d_model) +
                           2.0 * 4.0 * static_cast<double>(n_heads) * static_cast<double>(context);
  return tokens * (head + static_cast<double>(n_layers) * per_layer);
}

double physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGE_SIZE);
  double memory = pages > 0 && page_size > 0
                      ? static_cast<double>(pages) * static_cast<double>(page_size)
                      : 0.0;
  // A container's or a Slurm job's limit (cgroup v2, then v1) is the memory that counts.
  for (const char* limit_file :
       {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}) {
    std::ifstream in(limit_file);
    double limit = 0;
    if (in >> limit && limit > 0 && (memory <= 0 || limit < memory))
      memory = limit;  // "max" reads as no number
  }
  return memory;
}

void check_cells_can_run(const Experiment& experiment, int cells_at_once,
                         Diagnostics& diagnostics) {
  std::map<std::string, CorpusFinding> corpora;
  // Cells trained side by side (-j) share the machine.
  const double memory = physical_memory_bytes() / std::max(1, cells_at_once);
  for (const ExperimentCell& cell : experiment.cells) {
    const std::string directory = experiment.corpus_path(cell.config);
    auto it = corpora.find(directory);
    if (it == corpora.end()) it = corpora.emplace(directory, inspect_corpus(directory)).first;
    const CorpusFinding& corpus = it->second;
    if (!corpus.problem.empty()) {
      diagnostics.error(cell.where("data.corpus"), corpus.problem);  // one line per location
      continue;
    }
    check_memory(cell, *corpus.manifest, memory, diagnostics);
  }
}

}  // namespace lory
