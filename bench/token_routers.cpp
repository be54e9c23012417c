// Token-level MoE layers against a dense FFN at equal active parameters, measured in one run:
// forward + backward time of top-k token choice (E in {8, 32}, k in {1, 2}, experts of width
// F / k) and expert choice (token and segment level, capacity factor 1), on 4 x 1024 tokens,
// d_model 256, float32. Dense and MoE passes alternate; medians of the repeats.
// Usage: lory_bench_tokens [--threads N] [--repeats N]
#include <boost/dll/runtime_symbol_info.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "lory/testkit/plugin_set.h"
#include "nn/allocator_tuning.h"

namespace {

using Clock = std::chrono::steady_clock;

double pass_seconds(lory::FeedForward& layer, const torch::Tensor& h_BLD) {
  for (auto& p : layer.parameters()) p.mutable_grad() = torch::Tensor();
  const torch::Tensor h = h_BLD.detach().requires_grad_();
  const auto start = Clock::now();
  lory::RoutingContext context(lory::ForwardMode::Train, false);
  (layer.forward(h, context).sum() + context.total_aux_loss()).backward();
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::pair<double, double> compare(lory::FeedForward& dense, lory::FeedForward& moe,
                                  const torch::Tensor& h_BLD, int repeats) {
  pass_seconds(dense, h_BLD);
  pass_seconds(moe, h_BLD);
  std::vector<double> d, m;
  for (int r = 0; r < repeats; ++r) {
    d.push_back(pass_seconds(dense, h_BLD));
    m.push_back(pass_seconds(moe, h_BLD));
  }
  std::sort(d.begin(), d.end());
  std::sort(m.begin(), m.end());
  return {d[d.size() / 2], m[m.size() / 2]};
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 1, repeats = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--repeats")) repeats = std::atoi(argv[i + 1]);
  }
  torch::set_num_threads(threads);
  lory::tune_allocator_for_training();
  const lory::testkit::PluginSet plugins(
      {(boost::dll::program_location().parent_path() / "plugins").string()});
  const int64_t d_model = 256, d_ff = 704;
  const lory::FeedForwardSpec spec{d_model, d_ff, 0, 1, 0.02, 0.02};
  torch::manual_seed(0);
  auto dense = plugins.build_layer("dense", spec, lory::ParamValues());
  const torch::Tensor h_BLD = torch::randn({4, 1024, d_model});
  std::printf(
      "FFN layer forward+backward at equal active parameters, 4 x 1024 tokens, d %lld, F %lld, %d "
      "thread(s)\n",
      static_cast<long long>(d_model), static_cast<long long>(d_ff), threads);
  std::printf("%-34s %10s %10s %8s\n", "router", "dense ms", "moe ms", "moe x");
  for (const int64_t experts : {8, 32}) {
    for (const int64_t k : {1, 2}) {
      auto moe = plugins.build_layer(
          "topk", spec,
          plugins.params("topk", {{"experts", experts}, {"k", k}, {"expert_d_ff", d_ff / k}}));
      const auto [dense_s, moe_s] = compare(*dense, *moe, h_BLD, repeats);
      std::printf("topk E=%-3lld k=%lld width F/%lld %12s %10.1f %10.1f %8.3f\n",
                  static_cast<long long>(experts), static_cast<long long>(k),
                  static_cast<long long>(k), "", 1e3 * dense_s, 1e3 * moe_s, moe_s / dense_s);
    }
    for (const std::string level : {"token", "segment"}) {
      auto moe = plugins.build_layer(
          "expert_choice", spec,
          plugins.params(
              "expert_choice",
              {{"experts", experts}, {"level", level}, {"segment_length", int64_t{64}}}));
      const auto [dense_s, moe_s] = compare(*dense, *moe, h_BLD, repeats);
      std::printf("expert_choice E=%-3lld %-8s cf=1 %7s %10.1f %10.1f %8.3f\n",
                  static_cast<long long>(experts), level.c_str(), "", 1e3 * dense_s, 1e3 * moe_s,
                  moe_s / dense_s);
    }
  }
  return 0;
}
