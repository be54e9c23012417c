// `lory-data prepare`: a corpus folder from JSONL files and text folders (prepare_corpus.h).
#include <fmt/format.h>

#include "core/support/command_line_options.h"
#include "core/support/diagnostics.h"
#include "data_tool/commands.h"
#include "data_tool/prepare_corpus.h"

namespace lory::data {

namespace {

struct PrepareCommandOptions {
  PrepareOptions prepare;
  std::vector<std::string> folder_specs;
  std::string sources_file;
  std::string bad_lines = "stop";
  double sample_mb = 20;
};

void run_prepare(PrepareCommandOptions options) {
  PrepareOptions& prepare = options.prepare;
  if (!options.sources_file.empty()) read_sources_file(options.sources_file, prepare);
  for (const auto& spec : options.folder_specs) {
    const auto eq = spec.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size()) {
      throw UserError(fmt::format("--folder '{}' must be DOMAIN=DIR", spec));
    }
    prepare.folders.push_back({spec.substr(0, eq), spec.substr(eq + 1)});
  }
  prepare.bad_lines = options.bad_lines == "skip" ? BadLinePolicy::Skip : BadLinePolicy::Stop;
  prepare.training.sample_bytes = static_cast<uint64_t>(options.sample_mb * (1 << 20));
  prepare.training.threads = prepare.threads;
  prepare_corpus(prepare);
}

}  // namespace

void add_prepare_command(CLI::App& app) {
  auto options = std::make_shared<PrepareCommandOptions>();
  PrepareOptions& prepare = options->prepare;
  CLI::App* prepare_cmd =
      app.add_subcommand("prepare", "Build a corpus folder from JSONL files and text folders");
  prepare_cmd->add_option("--out", prepare.out, "Output corpus folder")->required();
  prepare_cmd->add_flag("--force", prepare.force,
                        "Replace an existing prepared corpus (a folder with manifest.json); "
                        "anything else is refused");
  prepare_cmd->add_option("--jsonl", prepare.jsonl_files,
                          "JSONL file of {\"id\",\"domain\",\"text\"} (.gz ok; repeatable)");
  prepare_cmd->add_option("--folder", options->folder_specs,
                          "DOMAIN=DIR: every file under DIR is a document (repeatable)");
  prepare_cmd->add_option("--sources", options->sources_file,
                          "TOML file with [[jsonl]] path=... and [[folder]] path=... domain=...");
  prepare_cmd->add_option("--tokenizer", prepare.tokenizer, "sentencepiece or byte")
      ->check(CLI::IsMember({"sentencepiece", "byte"}))
      ->capture_default_str();
  prepare_cmd
      ->add_option("--vocab-size", prepare.training.vocab_size, "SentencePiece vocabulary size")
      ->check(CLI::Range(300u, 1u << 20))
      ->capture_default_str();
  prepare_cmd->add_option("--tokenizer-model", prepare.tokenizer_model,
                          "Reuse this SentencePiece model");
  prepare_cmd
      ->add_option("--tokenizer-sample-mb", options->sample_mb, "Text the tokenizer is trained on")
      ->check(lory::finite_range(0.001, 1 << 20))
      ->capture_default_str();
  prepare_cmd
      ->add_option("--heldout-fraction", prepare.heldout_fraction, "Held-out fraction per domain")
      ->check(lory::finite_range(0.0, 0.999999))
      ->capture_default_str();
  prepare_cmd
      ->add_option("--min-heldout-docs", prepare.min_heldout_documents,
                   "Minimum held-out documents per domain")
      ->capture_default_str();
  prepare_cmd->add_option("--split-salt", prepare.split_salt, "Salt of the split hash")
      ->capture_default_str();
  prepare_cmd
      ->add_option("--bad-lines", options->bad_lines,
                   "On a malformed JSON line: stop (report file:line) or skip (count)")
      ->check(CLI::IsMember({"stop", "skip"}))
      ->capture_default_str();
  prepare_cmd
      ->add_option(
          "--max-document-mb", prepare.max_document_mb,
          "Longest document accepted (a longer one is refused, or skipped with --bad-lines skip)")
      ->check(lory::finite_range(0.001, 1 << 20))
      ->capture_default_str();
  prepare_cmd->add_option("--threads", prepare.threads, "Encoding threads")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  prepare_cmd->callback([options] { run_prepare(*options); });
}

}  // namespace lory::data
