// Checks a router plugin with lory's reusable test helpers (Lory::testkit), from outside the lory
// tree: causality at every position, and analytic gradients against finite differences.
// Usage: check_router PLUGIN_DIR ROUTER [causal|not-causal]
// Exits 0 when the router behaves as expected.
#include <lory/testkit/plugin_set.h>
#include <lory/testkit/router_checks.h>

#include <cstdio>
#include <cstring>
#include <string>

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: check_router PLUGIN_DIR ROUTER causal|not-causal\n");
    return 2;
  }
  const std::string router = argv[2];
  const bool expect_causal = std::strcmp(argv[3], "causal") == 0;
  torch::manual_seed(0);
  const lory::testkit::PluginSet plugins({argv[1], LORY_INSTALLED_PLUGIN_DIR});
  lory::ParamValues params = plugins.params(router);
  auto layer = plugins.build_layer(router, {8, 12, 0, 1, 0.3, 0.3}, params);
  layer->to(torch::kFloat64);
  const torch::Tensor h_BLD = torch::randn({2, 12, 8}, torch::kFloat64);
  int leaking_positions = 0;
  for (int64_t p = 1; p < h_BLD.size(1); ++p) {
    leaking_positions += !lory::testkit::earlier_outputs_changed(*layer, h_BLD, p).empty();
  }
  const double gradient_error = lory::testkit::gradient_check(*layer, h_BLD);
  std::printf("%s: %d of 11 positions leak into earlier outputs; gradient relative error %.2e\n", router.c_str(),
              leaking_positions, gradient_error);
  const bool causal_as_expected = (leaking_positions == 0) == expect_causal;
  return causal_as_expected && gradient_error < 1e-6 ? 0 : 1;
}
