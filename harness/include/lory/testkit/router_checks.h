// Checks every router should pass, reusable from any test (in-tree or a plugin built outside):
//  - causality: perturbing position p must leave every earlier position's output bit-identical;
//  - equivalence: two layers (e.g. a fast path and a naive reference) agree in outputs and in the
//    gradients of the input and of every parameter;
//  - gradients: a layer's analytic gradients agree with central finite differences.
// Layers are run in training mode on float64 inputs unless the caller says otherwise.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "lory/nn/feed_forward.h"
#include "lory/nn/model_api.h"

namespace lory::testkit {

// The context the layer checks below run a layer in: `mode`, not recording, with token ids (a fixed
// pseudo-random [B, L] int64 pattern) for routers that route by token id. A perturbed input keeps
// its token ids: the checks perturb hidden states, not tokens.
RoutingContext checking_context(ForwardMode mode, const torch::Tensor& h_BLD);

// Positions before `position` whose layer output changed when the input at `position` (every
// sequence of the batch) was perturbed. Empty = causal at that position. `tolerance` 0 asks for
// bit-identical outputs (right for segment routers, whose earlier outputs are computed from
// exactly the same numbers). Routers that group tokens by expert need a tiny tolerance: when a
// later token switches experts, the GEMM of an expert's group changes shape, and BLAS may round
// the unchanged rows differently in the last bit (1e-12 relative in float64 is far below any
// real leak).
std::vector<int64_t> earlier_outputs_changed(FeedForward& layer, const torch::Tensor& h_BLD,
                                             int64_t position,
                                             ForwardMode mode = ForwardMode::Train,
                                             double tolerance = 0);

// The same for a whole model and its logits, perturbing one token id.
std::vector<int64_t> earlier_logits_changed(LanguageModel& model, const torch::Tensor& tokens_BL,
                                            int64_t position, int64_t vocab_size);

struct LayerComparison {
  double output = 0;                         // max |y_a - y_b|
  double input_gradient = 0;                 // max |dh_a - dh_b|
  std::map<std::string, double> parameters;  // max |dθ_a - dθ_b| per parameter name
  double worst() const;
};

// Copies a's parameters into b (same names and shapes), runs both on h_BLD with the loss
// sum(y * probe) for a fixed random probe, and compares.
LayerComparison compare_layers(FeedForward& a, FeedForward& b, const torch::Tensor& h_BLD);

// Largest relative error between analytic and central-difference gradients over `samples`
// random coordinates of the input and of each parameter (float64 inputs recommended).
double gradient_check(FeedForward& layer, const torch::Tensor& h_BLD, int samples = 8,
                      double epsilon = 1e-6);

}  // namespace lory::testkit
