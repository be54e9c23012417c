// Training throughput against this machine's own matmul peak, measured in one run:
//  - fp32 sgemm peak: C = A B with 1024 x 1024 matrices (best of several), via LibTorch's BLAS;
//  - a full training step (forward, backward, AdamW) of dense, lory-8 and lory-32 models at the
//    quickstart shape (vocabulary 4,096), the study shape (8,192) and d_model 512: tokens/s,
//    achieved GFLOP/s and that as a fraction of the sgemm peak, for the trainer's loss (the
//    chunked LM head + cross-entropy) and for the full-logits loss every step used before it;
//    and the chunked loss with bf16 matmuls (trainer.precision = "bf16"); the three alternate, step
//    by step, so that machine noise hits them alike;
//  - with --profile, where one step's time goes, by op family (bench/step_profile.h), for dense
//    and lory-8 at the quickstart and study shapes and d_model 512, with both loss paths in fp32
//    and the chunked one in bf16;
//  - with --experts, [regimes] part 1's cells at the study shape (fp32, the trainer's loss): dense
//    (d_ff 352), lory with 8, 16 and 32 experts of width 352 merged per segment of 64, and the
//    dense model of lory-8's total FFN size (d_ff 2,816): what the merge costs as E grows, against
//    what matching total parameters with a dense FFN costs.
// Usage: lory_bench_train [--threads N] [--steps N] [--profile] [--quick] [--experts]
#include <fmt/format.h>

#include <algorithm>
#include <boost/dll/runtime_symbol_info.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "lory/nn/precision.h"
#include "lory/testkit/plugin_set.h"
#include "nn/allocator_tuning.h"
#include "step_profile.h"
#include "train/adamw.h"
#include "train/linear_cross_entropy.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

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
  int64_t d_model, layers, heads, d_ff, vocab, context, batch;
};

struct RouterCase {
  std::string name, plugin;
  int64_t experts;  // 0 for dense
};

// One model under training: its step with either loss path, and the FLOPs a step does.
class TrainedModel {
 public:
  TrainedModel(const lory::testkit::PluginSet& plugins, const ModelShape& shape,
               const RouterCase& router)
      : shape_(shape), optimizer_({0.9, 0.95, 1e-8, 0.1}) {
    torch::manual_seed(0);
    const lory::ParamValues router_params =
        router.experts > 0
            ? plugins.params(router.plugin, {{"experts", lory::ParamValue(router.experts)},
                                             {"segment_length", lory::ParamValue(int64_t{64})}})
            : plugins.params(router.plugin);
    model_ =
        plugins.build_model(router.plugin, router_params,
                            plugins.transformer_params(shape.d_model, shape.layers, shape.heads,
                                                       {{"d_ff", lory::ParamValue(shape.d_ff)}}),
                            shape.vocab, shape.context);
    model_->train();
    for (const auto& item : model_->named_parameters())
      named_.emplace_back(item.key(), item.value());
    batch_BL1_ = torch::randint(shape.vocab, {shape.batch, shape.context + 1}, torch::kInt64);
  }

  void step(lory::LmLossPath path, lory::Precision precision = lory::Precision::Fp32) {
    lory::RoutingContext context(lory::ForwardMode::Train, false);
    torch::Tensor loss;
    {
      lory::MatmulPrecisionScope scope(precision, torch::kCPU);
      loss = lory::language_model_loss(*model_, batch_BL1_.slice(1, 0, -1), batch_BL1_.slice(1, 1),
                                       context, path);
    }
    loss.add(context.total_aux_loss()).backward();
    optimizer_.step(named_, 1e-3);
    for (auto& p : model_->parameters()) p.mutable_grad() = torch::Tensor();
  }

  double tokens_per_step() const { return static_cast<double>(shape_.batch * shape_.context); }

  // FLOPs per step, forward + backward: 6 per token per active weight that multiplies (all but
  // the embedding lookup) plus attention scores and mixing, 12 * context * d_model per layer
  // (full, unmasked). Lory's merge (E x F x D per segment, three times) is not counted: the
  // figure is the dense model's useful work, so lory's GFLOP/s reads as "dense-equivalent".
  double flops_per_step() const {
    int64_t dense_ffn = 3 * shape_.d_model * shape_.d_ff * shape_.layers;
    int64_t other = 0;
    for (const auto& [name, p] : named_) {
      if (name.find(".ffn.") == std::string::npos) other += p.numel();
    }
    const double matmul_weights =
        static_cast<double>(other + dense_ffn - shape_.vocab * shape_.d_model);
    const double per_token =
        6.0 * matmul_weights +
        12.0 * static_cast<double>(shape_.layers * shape_.context * shape_.d_model);
    return per_token * tokens_per_step();
  }

 private:
  ModelShape shape_;
  std::shared_ptr<lory::LanguageModel> model_;
  lory::AdamW optimizer_;
  std::vector<std::pair<std::string, torch::Tensor>> named_;
  torch::Tensor batch_BL1_;
};

struct Throughput {
  double chunked_s, full_s, bf16_s;  // median seconds per step
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

Throughput measure(TrainedModel& model, int steps) {
  model.step(lory::LmLossPath::Chunked);  // warm-up: allocations, first-touch
  model.step(lory::LmLossPath::FullLogits);
  model.step(lory::LmLossPath::Chunked, lory::Precision::Bf16);
  std::vector<double> chunked, full, bf16;
  for (int s = 0; s < steps; ++s) {
    auto start = Clock::now();
    model.step(lory::LmLossPath::Chunked);
    chunked.push_back(seconds_since(start));
    start = Clock::now();
    model.step(lory::LmLossPath::FullLogits);
    full.push_back(seconds_since(start));
    start = Clock::now();
    model.step(lory::LmLossPath::Chunked, lory::Precision::Bf16);
    bf16.push_back(seconds_since(start));
  }
  return {median(chunked), median(full), median(bf16)};
}

// Median seconds per step of the trainer's fp32 step alone (no other loss path or precision).
double measure_fp32_step(TrainedModel& model, int steps) {
  model.step(lory::LmLossPath::Chunked);  // warm-up
  std::vector<double> seconds;
  for (int s = 0; s < steps; ++s) {
    const auto start = Clock::now();
    model.step(lory::LmLossPath::Chunked);
    seconds.push_back(seconds_since(start));
  }
  return median(seconds);
}

// [regimes] part 1's cells, each against the active-matched dense model, in one run.
void print_experts_sweep(const lory::testkit::PluginSet& plugins, const ModelShape& study,
                         int steps) {
  ModelShape total = study;
  total.name = "study d_ff 2816";
  total.d_ff = 8 * study.d_ff;
  const std::vector<std::pair<ModelShape, RouterCase>> cells = {
      {study, {"dense", "dense", 0}},       {study, {"lory-8", "lory", 8}},
      {study, {"lory-16", "lory", 16}},     {study, {"lory-32", "lory", 32}},
      {total, {"dense-total", "dense", 0}},
  };
  std::printf("%-22s %-12s %10s %9s\n", "shape", "cell", "tokens/s", "vs dense");
  double dense_tokens_per_s = 0;
  for (const auto& [shape, router] : cells) {
    TrainedModel model(plugins, shape, router);
    const double tokens_per_s = model.tokens_per_step() / measure_fp32_step(model, steps);
    if (dense_tokens_per_s == 0) dense_tokens_per_s = tokens_per_s;
    std::printf("%-22s %-12s %10.0f %8.2fx\n", shape.name.c_str(), router.name.c_str(),
                tokens_per_s, tokens_per_s / dense_tokens_per_s);
    std::fflush(stdout);
  }
}

void print_profile(const std::string& title, const lory::bench::StepProfile& profile) {
  std::printf("\n%s: %.1f ms per step (self time of profiled ops)\n", title.c_str(),
              profile.ms_per_step);
  for (const auto& f : profile.families) {
    if (f.fraction < 0.005) continue;
    std::printf("  %-44s %9.1f ms %6.1f%%\n", f.name.c_str(), f.ms_per_step, 100 * f.fraction);
  }
  std::printf("  top ops:");
  for (size_t i = 0; i < std::min<size_t>(8, profile.ops.size()); ++i) {
    std::printf("%s %s %.1f%%", i ? "," : "", profile.ops[i].name.c_str(),
                100 * profile.ops[i].fraction);
  }
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 1, steps = 5;
  bool profile = false, quick = false, experts = false;
  for (int i = 1; i < argc; ++i) {
    const bool has_value = i + 1 < argc;
    if (!std::strcmp(argv[i], "--threads") && has_value)
      threads = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--steps") && has_value)
      steps = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--profile"))
      profile = true;
    else if (!std::strcmp(argv[i], "--experts"))
      experts = true;
    else if (!std::strcmp(argv[i], "--quick"))
      quick = true;
    else {
      std::fprintf(stderr,
                   "usage: lory_bench_train [--threads N] [--steps N] [--profile] [--quick] "
                   "[--experts]\n");
      return 2;
    }
  }
  torch::set_num_threads(threads);
  lory::tune_allocator_for_training();
  const std::string plugin_dir =
      (boost::dll::program_location().parent_path() / "plugins").string();
  const lory::testkit::PluginSet plugins({plugin_dir});
  const double peak = sgemm_gflops(1024, 5);
  std::printf(
      "threads %d; fp32 sgemm 1024^3: %.1f GFLOP/s (the reference below); median of %d steps "
      "each\n\n",
      threads, peak, steps);

  const ModelShape quickstart{"quickstart d128 V4096", 128, 4, 4, 352, 4096, 256, 16};
  const ModelShape study{"study d128 V8192", 128, 4, 4, 352, 8192, 256, 16};
  const ModelShape wide{"d512 V4096", 512, 4, 8, 1408, 4096, 256, 8};
  const RouterCase dense{"dense", "dense", 0}, lory8{"lory-8", "lory", 8},
      lory32{"lory-32", "lory", 32};

  if (experts) {
    print_experts_sweep(plugins, study, steps);
    return 0;
  }
  if (profile) {
    for (const ModelShape& shape : {quickstart, study, wide}) {
      for (const RouterCase& router : {dense, lory8}) {
        TrainedModel model(plugins, shape, router);
        using lory::LmLossPath;
        using lory::Precision;
        for (const auto& [path, precision] : {std::pair{LmLossPath::FullLogits, Precision::Fp32},
                                              std::pair{LmLossPath::Chunked, Precision::Fp32},
                                              std::pair{LmLossPath::Chunked, Precision::Bf16}}) {
          model.step(path, precision);
          const auto result = lory::bench::profile_steps([&] { model.step(path, precision); }, 3);
          print_profile(fmt::format("{} {}, {} loss, {}", shape.name, router.name,
                                    path == LmLossPath::Chunked ? "chunked" : "full-logits",
                                    lory::precision_name(precision)),
                        result);
        }
      }
    }
    return 0;
  }

  std::printf("%-22s %-8s %10s %10s %8s %10s %9s %9s %10s %8s %9s\n", "shape", "router", "tokens/s",
              "full-log.", "chunked/", "GFLOP/s", "of sgemm", "vs dense", "bf16", "bf16/",
              "bf16 vs");
  std::printf("%-22s %-8s %10s %10s %8s %10s %9s %9s %10s %8s %9s\n", "", "", "(chunked)",
              "tokens/s", "full", "(chunked)", "", "", "tokens/s", "fp32", "dense");
  std::vector<ModelShape> shapes = {quickstart, study, wide};
  std::vector<RouterCase> routers = {dense, lory8, lory32};
  if (quick) {
    shapes = {quickstart};
    routers = {dense, lory8};
  }
  for (const ModelShape& shape : shapes) {
    double dense_tokens_per_s = 0, dense_bf16_tokens_per_s = 0;
    for (const RouterCase& router : routers) {
      TrainedModel model(plugins, shape, router);
      const Throughput t = measure(model, steps);
      const double tokens_per_s = model.tokens_per_step() / t.chunked_s;
      const double bf16_tokens_per_s = model.tokens_per_step() / t.bf16_s;
      if (router.experts == 0) {
        dense_tokens_per_s = tokens_per_s;
        dense_bf16_tokens_per_s = bf16_tokens_per_s;
      }
      const double gflops = model.flops_per_step() / t.chunked_s / 1e9;
      std::printf("%-22s %-8s %10.0f %10.0f %7.2fx %10.1f %8.0f%% %8.2fx %10.0f %7.2fx %8.2fx\n",
                  shape.name.c_str(), router.name.c_str(), tokens_per_s,
                  model.tokens_per_step() / t.full_s, t.full_s / t.chunked_s, gflops,
                  100.0 * gflops / peak, tokens_per_s / dense_tokens_per_s, bf16_tokens_per_s,
                  t.chunked_s / t.bf16_s, bf16_tokens_per_s / dense_bf16_tokens_per_s);
      std::fflush(stdout);
    }
  }
  return 0;
}
