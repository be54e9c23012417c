// Decoding cost, measured in one run (`lory generate`'s path, train/generator.h): tokens/s of
// greedy generation with the KV cache for dense, Lory under the prompt rule (experts merged once
// per layer from the prompt) and under the segment rule (merged again every T tokens), top-1 of 8,
// and without the cache (the whole sequence recomputed per token). The Lory paper's claim to
// check: with prompt routing, decoding costs what a dense model of the same active size costs.
// Model: the quickstart's (d_model 128, 4 layers, 8,192-token vocabulary, context 256), random
// weights (speed does not depend on them). Runs alternate so that machine noise hits all alike.
// Usage: lory_bench_decode [--threads N] [--repeats N] [--tokens N]
#include <fmt/format.h>

#include <algorithm>
#include <boost/dll/runtime_symbol_info.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "lory/testkit/plugin_set.h"
#include "train/generator.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Subject {
  std::string name, router;
  lory::ParamValues router_params;
  lory::EvalRouting::Rule rule;
  bool cache;
  std::shared_ptr<lory::LanguageModel> model;
  std::vector<double> tokens_per_s;
  int64_t merges = 0;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 1, repeats = 5;
  int64_t tokens = 128;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) threads = std::atoi(argv[++i]);
    if (!std::strcmp(argv[i], "--repeats") && i + 1 < argc) repeats = std::atoi(argv[++i]);
    if (!std::strcmp(argv[i], "--tokens") && i + 1 < argc) tokens = std::atoll(argv[++i]);
  }
  repeats = std::max(1, repeats);
  torch::set_num_threads(threads);
  const lory::testkit::PluginSet plugins(
      {(boost::dll::program_location().parent_path() / "plugins").string()});
  const int64_t vocab = 8192, context = 256, prompt_length = 64;
  const auto transformer = plugins.transformer_params(128, 4, 4, {{"d_ff", int64_t{352}}});
  const auto lory_params =
      plugins.params("lory", {{"experts", int64_t{8}}, {"segment_length", int64_t{64}}});
  const auto topk_params = plugins.params(
      "topk", {{"experts", int64_t{8}}, {"k", int64_t{1}}, {"expert_d_ff", int64_t{352}}});
  using Rule = lory::EvalRouting::Rule;
  std::vector<Subject> subjects = {
      {"dense, cache", "dense", lory::ParamValues(), Rule::Prompt, true, nullptr, {}, 0},
      {"lory-8 prompt rule, cache", "lory", lory_params, Rule::Prompt, true, nullptr, {}, 0},
      {"lory-8 segment rule, cache", "lory", lory_params, Rule::Train, true, nullptr, {}, 0},
      {"top1-8, cache", "topk", topk_params, Rule::Train, true, nullptr, {}, 0},
      {"dense, no cache", "dense", lory::ParamValues(), Rule::Prompt, false, nullptr, {}, 0},
      {"lory-8 prompt rule, no cache", "lory", lory_params, Rule::Prompt, false, nullptr, {}, 0},
  };
  for (auto& s : subjects) {
    torch::manual_seed(0);
    s.model = plugins.build_model(s.router, s.router_params, transformer, vocab, context);
  }
  std::vector<int64_t> prompt;
  for (int64_t i = 0; i < prompt_length; ++i) prompt.push_back((i * 131 + 7) % vocab);
  std::printf(
      "decoding %lld tokens after a %lld-token prompt, d_model 128, 4 layers, vocab %lld, %d "
      "thread(s), %d "
      "repeats (median)\n",
      static_cast<long long>(tokens), static_cast<long long>(prompt_length),
      static_cast<long long>(vocab), threads, repeats);
  for (int r = 0; r <= repeats; ++r) {  // round 0 warms up
    for (auto& s : subjects) {
      lory::GenerationOptions options;
      options.max_tokens = tokens;
      options.sampling.temperature = 0;
      options.routing = s.rule;
      options.use_cache = s.cache;
      const auto start = Clock::now();
      const lory::GenerationResult result =
          lory::generate_tokens(*s.model, prompt, context, options);
      const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
      if (r > 0) s.tokens_per_s.push_back(static_cast<double>(result.tokens.size()) / seconds);
      s.merges = result.ffn_merges;
    }
  }
  const double dense = median(subjects[0].tokens_per_s);
  std::printf("%-30s %12s %14s %14s\n", "", "tokens/s", "vs dense+cache", "merged FFNs");
  for (const auto& s : subjects) {
    const double rate = median(s.tokens_per_s);
    std::printf("%-30s %12.1f %14.2f %14lld\n", s.name.c_str(), rate, rate / dense,
                static_cast<long long>(s.merges));
  }
  std::printf("cache speed-up: dense %.2fx, lory-8 prompt rule %.2fx\n",
              dense / median(subjects[4].tokens_per_s),
              median(subjects[1].tokens_per_s) / median(subjects[5].tokens_per_s));
  return 0;
}
