// Checks a router plugin with lory's reusable test helpers (Lory::testkit), from outside the lory
// tree: causality at every position, analytic gradients against finite differences, and that
// every parameter (the router's included) receives a gradient at all, so that a configuration
// in which the router is never used cannot pass by comparing zero with zero.
// Usage: check_router PLUGIN_DIR ROUTER causal|not-causal [NAME=VALUE ...]
// (installed with the SDK as `lory-check-router`; the in-tree routers are found without
// PLUGIN_DIR's help, so `lory-check-router . topk causal` checks the installed topk). NAME=VALUE
// overrides a parameter of the router (e.g. segment_length=4, so that the 12-token test sequences
// hold several segments). Exits 0 when the router behaves as expected.
#include <lory/testkit/plugin_set.h>
#include <lory/testkit/router_checks.h>

#include <cstdio>
#include <cstring>
#include <string>

namespace {

// Relative tolerance of the causality check, in float64. Routers that group tokens by expert
// (lory::dispatch_to_experts) run a GEMM whose row count changes when a later token changes
// experts, and BLAS may round the unchanged rows differently in the last bits; a real leak moves
// earlier outputs by many orders of magnitude more.
constexpr double kTolerance = 1e-10;

// Parses VALUE with the type the plugin declared for NAME.
lory::ParamValue parse_override(const lory::ParamValues& params, const std::string& name,
                                const std::string& text) {
  const auto it = params.all().find(name);
  if (it == params.all().end())
    throw std::invalid_argument("the router has no parameter '" + name + "'");
  if (std::holds_alternative<int64_t>(it->second)) return static_cast<int64_t>(std::stoll(text));
  if (std::holds_alternative<double>(it->second)) return std::stod(text);
  if (std::holds_alternative<bool>(it->second)) return text == "true";
  return text;
}

}  // namespace

int check(int argc, char** argv);

int main(int argc, char** argv) {
  try {
    return check(argc, argv);
  } catch (const std::exception& e) {
    // Loader problems, an unknown router or parameter, a factory's refusal: one line, exit 2.
    std::fprintf(stderr, "check_router: %s\n", e.what());
    return 2;
  }
}

int check(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr,
                 "usage: check_router PLUGIN_DIR ROUTER causal|not-causal [NAME=VALUE ...]\n");
    return 2;
  }
  const std::string router = argv[2];
  const bool expect_causal = std::strcmp(argv[3], "causal") == 0;
  torch::manual_seed(0);
  // The test kit adds lory's own plugins (the transformer, the in-tree routers) to the folder
  // given.
  const lory::testkit::PluginSet plugins({argv[1]});
  lory::ParamValues params = plugins.params(router);
  try {
    for (int i = 4; i < argc; ++i) {
      const std::string assignment = argv[i];
      const size_t equals = assignment.find('=');
      if (equals == std::string::npos)
        throw std::invalid_argument("'" + assignment + "' is not NAME=VALUE");
      const std::string name = assignment.substr(0, equals);
      params.set(name, parse_override(params, name, assignment.substr(equals + 1)));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "check_router: %s\n", e.what());
    return 2;
  }
  auto layer = plugins.build_layer(router, {8, 12, 0, 1, 0.3, 0.3}, params);
  layer->to(torch::kFloat64);
  const torch::Tensor h_BLD = torch::randn({2, 12, 8}, torch::kFloat64);
  int leaking_positions = 0;
  for (int64_t p = 1; p < h_BLD.size(1); ++p) {
    leaking_positions += !lory::testkit::earlier_outputs_changed(
                              *layer, h_BLD, p, lory::ForwardMode::Train, kTolerance)
                              .empty();
  }
  const double gradient_error = lory::testkit::gradient_check(*layer, h_BLD);

  // Gradient flow: a parameter whose gradient is exactly zero takes no part in this forward.
  layer->zero_grad();
  lory::RoutingContext context = lory::testkit::checking_context(lory::ForwardMode::Train, h_BLD);
  const torch::Tensor y_BLD = layer->forward(h_BLD, context);
  (y_BLD * torch::randn_like(y_BLD)).sum().backward();
  std::string without_gradient;
  for (const auto& parameter : layer->named_parameters()) {
    const torch::Tensor& grad = parameter.value().grad();
    if (!grad.defined() || grad.abs().max().item<double>() == 0)
      without_gradient += " " + parameter.key();
  }
  std::printf(
      "%s: %d of 11 positions leak into earlier outputs; gradient relative error %.2e; %s\n",
      router.c_str(), leaking_positions, gradient_error,
      without_gradient.empty() ? "every parameter has a gradient"
                               : ("no gradient for:" + without_gradient).c_str());
  const bool causal_as_expected = (leaking_positions == 0) == expect_causal;
  return causal_as_expected && gradient_error < 1e-6 && without_gradient.empty() ? 0 : 1;
}
