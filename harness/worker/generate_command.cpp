// `lory-worker generate`: token ids after a prompt, streamed as they come (KV cache where the model
// and its routers have one).
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "core/support/command_line_options.h"
#include "train/generator.h"
#include "worker/commands.h"
#include "worker/trained_model.h"

namespace lory::worker {

namespace {

// Generated tokens go to standard output as they come, one "id<TAB>log-prob" line each (lory
// generate pipes them into `lory-data decode --stream`), then one summary line starting with '#'.
int generate_command(const RunSelection& selection, const std::string& token_ids_file,
                     GenerationOptions options) {
  TrainedModel trained(selection);
  const auto& setup = trained.setup;
  const auto& model = trained.model;
  const auto& manifest = setup->corpus().manifest();
  const std::vector<int64_t> prompt = read_token_ids(token_ids_file, manifest.vocab_size);
  options.stop_token = manifest.eod_id;  // the end of a document ends the text
  const auto started = std::chrono::steady_clock::now();
  const GenerationResult result = generate_tokens(
      *model, prompt, setup->context_length(), options, [](const GeneratedToken& token) {
        std::printf("%lld\t%.6f\n", static_cast<long long>(token.id), token.log_prob);
        std::fflush(stdout);
      });
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf("# %zu tokens after a %zu-token prompt in %.2f s (%.1f tokens/s), %s%s\n",
              result.tokens.size(), prompt.size(), seconds,
              static_cast<double>(result.tokens.size()) / std::max(seconds, 1e-9),
              result.cached ? "KV cache"
              : options.use_cache
                  ? "full recomputation per token (the model or a router has no decoding cache)"
                  : "full recomputation per token (--no-cache)",
              result.ffn_merges > 0
                  ? fmt::format(", {} merged FFNs built", result.ffn_merges).c_str()
                  : "");
  std::fflush(stdout);
  return 0;
}

}  // namespace

void add_generate_command(CLI::App& app, int& status) {
  auto selection = std::make_shared<RunSelection>();
  auto generation = std::make_shared<GenerationOptions>();
  auto prompt_ids_file = std::make_shared<std::string>();
  auto routing = std::make_shared<std::string>("prompt");
  auto no_cache = std::make_shared<bool>(false);
  CLI::App* command =
      app.add_subcommand("generate", "Generate token ids after a prompt with a trained run");
  selection->add_options(command);
  selection->add_precision_option(command);
  command->add_option("--token-ids", *prompt_ids_file, "File of the prompt's token ids")
      ->required();
  command->add_option("--max-tokens", generation->max_tokens, "Tokens to generate")
      ->check(CLI::Range(1, 1 << 20));
  command->add_option("--temperature", generation->sampling.temperature, "0 = greedy")
      ->check(finite_range(0.0, 100.0));
  command->add_option("--top-k", generation->sampling.top_k, "0 = no limit")
      ->check(CLI::Range(0, 1 << 24));
  command->add_option("--top-p", generation->sampling.top_p, "Nucleus mass")
      ->check(finite_range(1e-9, 1.0));
  command->add_option("--seed", generation->sampling.seed, "Sampling seed");
  command->add_option("--routing", *routing, "prompt or segment")
      ->check(CLI::IsMember({"prompt", "segment"}));
  command->add_flag("--no-cache", *no_cache,
                    "Recompute the whole sequence for every token (reference, benchmarks)");
  command->callback([selection, generation, prompt_ids_file, routing, no_cache, &status] {
    end_with_parent();
    GenerationOptions options = *generation;
    options.routing = *routing == "prompt" ? EvalRouting::Rule::Prompt : EvalRouting::Rule::Train;
    options.use_cache = !*no_cache;
    status = generate_command(*selection, *prompt_ids_file, options);
  });
}

}  // namespace lory::worker
