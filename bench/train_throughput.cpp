// Training throughput against this machine's own matmul peak, measured in one run:
//  - fp32 sgemm peak: C = A B with 1024 x 1024 matrices (best of several), via LibTorch's BLAS;
//  - a full training step (forward, backward, AdamW) of the quickstart model and of a
//    d_model = 512 model: tokens/s, achieved GFLOP/s, and that as a fraction of the sgemm peak.
// Usage: lory_bench_train [--threads N] [--steps N]
#include <fmt/format.h>

#include <boost/dll/runtime_symbol_info.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "nn/allocator_tuning.h"
#include "lory/testkit/plugin_set.h"
#include "train/adamw.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

double sgemm_gflops(int64_t n, int repeats) {
  const torch::Tensor a = torch::randn({n, n}), b = torch::randn({n, n});
  torch::Tensor c = torch::matmul(a, b);  // warm-up
  double best = 1e30;
  for (int r = 0; r < repeats; ++r) {
    const auto start = Clock::now();
    c = torch::matmul(a, b);
    best = std::min(best, seconds_since(start));
  }
  return 2.0 * static_cast<double>(n * n * n) / best / 1e9;
}

struct ModelShape {
  std::string name;
  int64_t d_model, layers, heads, vocab, context, batch;
};

struct StepResult {
  double tokens_per_s, gflops;
  int64_t parameters;
};

StepResult measure(const lory::testkit::PluginSet& plugins, const ModelShape& shape, int steps) {
  torch::manual_seed(0);
  auto model = plugins.build_model("dense", lory::ParamValues(), plugins.transformer_params(shape.d_model, shape.layers, shape.heads),
                                   shape.vocab, shape.context);
  model->train();
  lory::AdamW optimizer({0.9, 0.95, 1e-8, 0.1});
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (const auto& item : model->named_parameters()) named.emplace_back(item.key(), item.value());
  const torch::Tensor batch_BL1 = torch::randint(shape.vocab, {shape.batch, shape.context + 1}, torch::kInt64);
  const auto step = [&] {
    lory::RoutingContext context(lory::ForwardMode::Train, false);
    const torch::Tensor logits_BLV = model->forward(batch_BL1.slice(1, 0, -1), context);
    torch::nn::functional::cross_entropy(logits_BLV.reshape({-1, shape.vocab}), batch_BL1.slice(1, 1).reshape({-1}))
        .backward();
    optimizer.step(named, 1e-3);
    for (auto& p : model->parameters()) p.mutable_grad() = torch::Tensor();
  };
  step();  // warm-up: allocations, first-touch
  const auto start = Clock::now();
  for (int s = 0; s < steps; ++s) step();
  const double seconds = seconds_since(start) / steps;
  int64_t parameters = 0;
  for (const auto& p : model->parameters()) parameters += p.numel();
  const double tokens = static_cast<double>(shape.batch * shape.context);
  // FLOPs per token, forward + backward: 6 per weight that multiplies (all but the embedding
  // lookup) plus attention scores and mixing, 12 * context * d_model per layer (full, unmasked).
  const double matmul_weights = static_cast<double>(parameters - shape.vocab * shape.d_model);
  const double flops_per_token = 6.0 * matmul_weights + 12.0 * static_cast<double>(shape.layers * shape.context * shape.d_model);
  return {tokens / seconds, flops_per_token * tokens / seconds / 1e9, parameters};
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 1, steps = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--steps")) steps = std::atoi(argv[i + 1]);
  }
  torch::set_num_threads(threads);
  lory::tune_allocator_for_training();
  const std::string plugin_dir = (boost::dll::program_location().parent_path() / "plugins").string();
  const lory::testkit::PluginSet plugins({plugin_dir});
  const double peak = sgemm_gflops(1024, 5);
  std::printf("threads %d; fp32 sgemm 1024^3: %.1f GFLOP/s (the reference below)\n\n", threads, peak);
  std::printf("%-28s %12s %12s %12s %10s\n", "model", "parameters", "tokens/s", "GFLOP/s", "of sgemm");
  const ModelShape shapes[] = {
      {"quickstart d128 L4 ctx256", 128, 4, 4, 4096, 256, 16},
      {"d512 L4 ctx256", 512, 4, 8, 4096, 256, 8},
  };
  for (const ModelShape& shape : shapes) {
    const StepResult r = measure(plugins, shape, steps);
    std::printf("%-28s %12lld %12.0f %12.1f %9.0f%%\n", shape.name.c_str(), static_cast<long long>(r.parameters),
                r.tokens_per_s, r.gflops, 100.0 * r.gflops / peak);
  }
  return 0;
}
