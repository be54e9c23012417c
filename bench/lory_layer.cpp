// Lory's cost against a dense FFN of the same active size, measured in one run:
//  1. layer forward + backward time and peak tensor memory for E in {8, 32}, T in {64, 256},
//     d_model in {256, 512}, 4 sequences of 1024 tokens (ratios lory / dense, interleaved
//     repeats, median), with fp32 and with bf16 matmuls (trainer.precision);
//  2. extra memory over dense as the number of segments grows, for two chunk sizes: it is
//     bounded by the chunk, not by the number of segments;
//  3. end-to-end training tokens/s of a small model, lory / dense.
// Usage: lory_bench_lory [--threads N] [--repeats N] [--quick]
#include <fmt/format.h>

#include <algorithm>
#include <boost/dll/runtime_symbol_info.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "lory/nn/precision.h"
#include "lory/testkit/plugin_set.h"
#include "nn/allocator_tuning.h"
#include "tensor_memory.h"
#include "train/adamw.h"

namespace {

using Clock = std::chrono::steady_clock;
using lory::bench::TensorMemory;

struct Measurement {
  double seconds;
  double peak_mb;  // above the memory held before the pass (parameters, input)
};

Measurement forward_backward(lory::FeedForward& layer, const torch::Tensor& h_BLD,
                             TensorMemory& memory,
                             lory::Precision precision = lory::Precision::Fp32) {
  for (auto& p : layer.parameters()) p.mutable_grad() = torch::Tensor();
  const torch::Tensor h = h_BLD.detach().requires_grad_();
  memory.reset_peak();
  const size_t before = memory.current();
  const auto start = Clock::now();
  {
    lory::RoutingContext context(lory::ForwardMode::Train, false);
    torch::Tensor y;
    {
      lory::MatmulPrecisionScope scope(precision, torch::kCPU);
      y = layer.forward(h, context);
    }
    y.sum().backward();
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return {seconds, static_cast<double>(memory.peak() - before) / 1e6};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Pair {
  double dense_s, lory_s, dense_mb, lory_mb;
};

// Dense and lory passes alternate so that machine noise hits both alike.
Pair compare(lory::FeedForward& dense, lory::FeedForward& moe, const torch::Tensor& h_BLD,
             TensorMemory& memory, int repeats, lory::Precision precision) {
  forward_backward(dense, h_BLD, memory, precision);
  forward_backward(moe, h_BLD, memory, precision);
  std::vector<double> dense_times, lory_times;
  double dense_mb = 0, lory_mb = 0;
  for (int r = 0; r < repeats; ++r) {
    const Measurement d = forward_backward(dense, h_BLD, memory, precision);
    const Measurement l = forward_backward(moe, h_BLD, memory, precision);
    dense_times.push_back(d.seconds);
    lory_times.push_back(l.seconds);
    dense_mb = d.peak_mb;
    lory_mb = l.peak_mb;
  }
  return {median(dense_times), median(lory_times), dense_mb, lory_mb};
}

double train_tokens_per_s(const lory::testkit::PluginSet& plugins, const std::string& router,
                          const lory::ParamValues& router_params, int steps) {
  const int64_t vocab = 4096, context = 256, batch = 16;
  torch::manual_seed(0);
  auto model = plugins.build_model(router, router_params, plugins.transformer_params(128, 4, 4),
                                   vocab, context);
  lory::AdamW optimizer({0.9, 0.95, 1e-8, 0.1});
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (const auto& item : model->named_parameters()) named.emplace_back(item.key(), item.value());
  const torch::Tensor batch_BL1 = torch::randint(vocab, {batch, context + 1}, torch::kInt64);
  const auto step = [&] {
    lory::RoutingContext ctx(lory::ForwardMode::Train, false);
    const torch::Tensor logits = model->forward(batch_BL1.slice(1, 0, -1), ctx);
    torch::nn::functional::cross_entropy(logits.reshape({-1, vocab}),
                                         batch_BL1.slice(1, 1).reshape({-1}))
        .backward();
    optimizer.step(named, 1e-3);
    for (auto& p : model->parameters()) p.mutable_grad() = torch::Tensor();
  };
  step();
  const auto start = Clock::now();
  for (int s = 0; s < steps; ++s) step();
  return static_cast<double>(steps * batch * context) /
         std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 1, repeats = 5;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) threads = std::atoi(argv[++i]);
    if (!std::strcmp(argv[i], "--repeats") && i + 1 < argc) repeats = std::atoi(argv[++i]);
    if (!std::strcmp(argv[i], "--quick")) quick = true;
  }
  torch::set_num_threads(threads);
  lory::tune_allocator_for_training();
  TensorMemory& memory = TensorMemory::install();
  const lory::testkit::PluginSet plugins(
      {(boost::dll::program_location().parent_path() / "plugins").string()});
  const int64_t batch = 4, length = 1024;

  std::printf(
      "1. FFN layer forward+backward, %lld x %lld tokens, fp32 and bf16 matmuls, %d thread(s), "
      "median of %d\n",
      static_cast<long long>(batch), static_cast<long long>(length), threads, repeats);
  std::printf("%5s %6s %4s %5s %10s %10s %8s %9s %10s %10s %8s\n", "prec", "d", "E", "T",
              "dense ms", "lory ms", "time x", "floor x", "dense MB", "lory MB", "mem x");
  for (const int64_t d_model : quick ? std::vector<int64_t>{256} : std::vector<int64_t>{256, 512}) {
    const int64_t d_ff = (8 * d_model / 3 + 31) / 32 * 32;
    const lory::FeedForwardSpec spec{d_model, d_ff, 0, 1, 0.02, 0.02};
    torch::manual_seed(0);
    auto dense = plugins.build_layer("dense", spec, lory::ParamValues());
    const torch::Tensor h_BLD = torch::randn({batch, length, d_model});
    for (const int64_t experts : {8, 32}) {
      for (const int64_t segment : {64, 256}) {
        auto moe = plugins.build_layer(
            "lory", spec,
            plugins.params("lory", {{"experts", experts}, {"segment_length", segment}}));
        for (const lory::Precision precision : {lory::Precision::Fp32, lory::Precision::Bf16}) {
          const Pair p = compare(*dense, *moe, h_BLD, memory, repeats, precision);
          // FLOP floor: merging adds E/T of the FFN's forward FLOPs, and its backward adds twice
          // that again plus the recomputed merge: 24 E d F per segment over 18 T d F for the FFN.
          const double floor = 1.0 + 24.0 * experts / (18.0 * segment);
          std::printf("%5s %6lld %4lld %5lld %10.1f %10.1f %8.3f %9.3f %10.1f %10.1f %8.2f\n",
                      lory::precision_name(precision), static_cast<long long>(d_model),
                      static_cast<long long>(experts), static_cast<long long>(segment),
                      1e3 * p.dense_s, 1e3 * p.lory_s, p.lory_s / p.dense_s, floor, p.dense_mb,
                      p.lory_mb, p.lory_mb / p.dense_mb);
          std::fflush(stdout);
        }
      }
    }
  }

  std::printf("\n2. extra peak memory over dense vs number of segments (d 256, E 32, T 64)\n");
  std::printf("%10s %10s %14s %14s\n", "segments", "chunk", "extra MB", "merged MB/chunk");
  {
    const int64_t d_model = 256, d_ff = 704;
    const lory::FeedForwardSpec spec{d_model, d_ff, 0, 1, 0.02, 0.02};
    auto dense = plugins.build_layer("dense", spec, lory::ParamValues());
    for (const int64_t chunk : {4, 16}) {
      auto moe = plugins.build_layer("lory", spec,
                                     plugins.params("lory", {{"experts", int64_t{32}},
                                                             {"segment_length", int64_t{64}},
                                                             {"chunk_segments", chunk}}));
      for (const int64_t sequences : {1, 4, 16}) {
        const torch::Tensor h_BLD = torch::randn({sequences, 1024, d_model});
        const Measurement d = forward_backward(*dense, h_BLD, memory);
        const Measurement l = forward_backward(*moe, h_BLD, memory);
        std::printf("%10lld %10lld %14.1f %14.1f\n", static_cast<long long>(sequences * 16),
                    static_cast<long long>(chunk), l.peak_mb - d.peak_mb,
                    3.0 * chunk * d_model * d_ff * 4 / 1e6);
      }
    }
  }

  std::printf(
      "\n3. end-to-end training, d_model 128, 4 layers, context 256, batch 16 (tokens/s)\n");
  const int steps = quick ? 2 : 4;
  const double dense_tps = train_tokens_per_s(plugins, "dense", lory::ParamValues(), steps);
  for (const int64_t experts : {8, 32}) {
    for (const int64_t segment : {64, 256}) {
      const double lory_tps = train_tokens_per_s(
          plugins, "lory",
          plugins.params("lory", {{"experts", experts}, {"segment_length", segment}}), steps);
      std::printf("  dense %.0f, lory E=%lld T=%lld %.0f: lory / dense = %.3f\n", dense_tps,
                  static_cast<long long>(experts), static_cast<long long>(segment), lory_tps,
                  lory_tps / dense_tps);
    }
  }
  return 0;
}
