// Per-layer summaries of routing at evaluation, from the routing mass of every (domain, expert):
// how specialised the experts are to domains, and how evenly the load spreads. Torch-free, so the
// evaluator, the report and the tests share one definition.
#pragma once

#include <vector>

namespace lory {

// mass_DE[d][e]: the routing weight that tokens of domain d put on expert e, summed over tokens.
// Returns I(D; E) / H(E) for the joint distribution proportional to mass_DE: 0 when routing does
// not depend on the domain, 1 when the expert mix is a function of the domain (one-hot routing
// fully determined by the domain). 0 when H(E) = 0 (a single expert).
double specialisation_score(const std::vector<std::vector<double>>& mass_DE);

// max / mean of the experts' total mass (1 = perfectly even).
double load_imbalance(const std::vector<std::vector<double>>& mass_DE);
// The one definition of load imbalance: the largest expert's load over the mean load (1 when
// balanced; 0 when nothing was routed). Loads are weight mass or token counts per expert.
double load_imbalance(const std::vector<double>& load_E);

// MaxVio (Wang et al., 2024, "Auxiliary-loss-free load balancing"): (max load - mean load) / mean
// load, 0 when balanced (and when nothing was routed).
double max_violation(const std::vector<double>& load_E);

// The `percent`-th percentile (0 = min, 50 = median, 100 = max; linear interpolation between
// ranks, as numpy) of the experts' loads, relative to the mean load: 1 = an average expert.
double relative_load_percentile(const std::vector<double>& load_E, double percent);

}  // namespace lory
