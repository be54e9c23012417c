// The reusable router checks must catch what they are for: a router that looks at its own segment
// (not causal) and a router whose backward is wrong.
#include <gtest/gtest.h>

#include "lory/nn/expert_merge.h"
#include "lory/testkit/router_checks.h"

namespace lory {
namespace {

// Routes each segment from its OWN mean: the mistake Lory's causal rule exists to avoid.
class OwnSegmentRouter final : public FeedForward {
 public:
  OwnSegmentRouter() {
    torch::manual_seed(0);
    experts_ = {register_parameter("g", torch::randn({3, 6, 4}, torch::kFloat64)),
                register_parameter("u", torch::randn({3, 6, 4}, torch::kFloat64)),
                register_parameter("d", torch::randn({3, 4, 6}, torch::kFloat64))};
    router_ = register_parameter("router", torch::randn({3, 4}, torch::kFloat64));
  }
  torch::Tensor forward(const torch::Tensor& h_BLD, RoutingContext&) override {
    const int64_t B = h_BLD.size(0), L = h_BLD.size(1), T = 4;
    const torch::Tensor x_STD = h_BLD.reshape({B * L / T, T, 4});
    const torch::Tensor w_SE = torch::softmax(torch::matmul(x_STD.mean(1), router_.t()), -1);
    return merged_expert_ffn(x_STD, w_SE, experts_, 4).view({B, L, 4});
  }

 private:
  ExpertWeights experts_;
  torch::Tensor router_;
};

// y = h W with a backward that doubles the weight gradient.
struct WrongBackward : public torch::autograd::Function<WrongBackward> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& h,
                               const torch::Tensor& w) {
    ctx->save_for_backward({h, w});
    return torch::matmul(h, w);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor dh = torch::matmul(grad[0], saved[1].t());
    const torch::Tensor dw = torch::matmul(saved[0].reshape({-1, saved[0].size(-1)}).t(),
                                           grad[0].reshape({-1, grad[0].size(-1)}));
    return {dh, 2 * dw};
  }
};

class LinearLayer final : public FeedForward {
 public:
  explicit LinearLayer(bool wrong) : wrong_(wrong) {
    torch::manual_seed(1);
    w_ = register_parameter("w", torch::randn({4, 4}, torch::kFloat64));
  }
  torch::Tensor forward(const torch::Tensor& h_BLD, RoutingContext&) override {
    return wrong_ ? WrongBackward::apply(h_BLD, w_) : torch::matmul(h_BLD, w_);
  }

 private:
  bool wrong_;
  torch::Tensor w_;
};

TEST(RouterChecks, CatchARouterThatLooksAtItsOwnSegment) {
  OwnSegmentRouter layer;
  const torch::Tensor h_BLD = torch::randn({2, 8, 4}, torch::kFloat64);
  // Perturbing position 6 changes positions 4 and 5 of its own segment.
  EXPECT_EQ(testkit::earlier_outputs_changed(layer, h_BLD, 6), (std::vector<int64_t>{4, 5}));
  EXPECT_EQ(testkit::earlier_outputs_changed(layer, h_BLD, 4), std::vector<int64_t>{});
}

TEST(RouterChecks, CatchARouterWhoseGradientIsWrong) {
  LinearLayer wrong(true), right(false);
  const torch::Tensor h_BLD = torch::randn({2, 5, 4}, torch::kFloat64);
  EXPECT_GT(testkit::gradient_check(wrong, h_BLD), 0.1);
  EXPECT_LT(testkit::gradient_check(right, h_BLD), 1e-6);
  const testkit::LayerComparison c = testkit::compare_layers(wrong, right, h_BLD);
  EXPECT_LT(c.output, 1e-12);            // same forward...
  EXPECT_LT(c.input_gradient, 1e-12);    // ...and input gradient,
  EXPECT_GT(c.parameters.at("w"), 0.1);  // but the weight gradient differs
}

}  // namespace
}  // namespace lory
