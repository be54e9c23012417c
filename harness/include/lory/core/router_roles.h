// The parts a router plugin plays beyond building FFN layers, declared next to its metadata:
//
//   LORY_ROUTER_ROLES("dense_baseline")
//
// Roles (comma-separated; a router without the declaration has none):
//   dense_baseline  the baseline MoE runs are compared with: `lory report` and the results views
//                   pair every other run with the run of this router that shares everything else
//                   (moe_vs_dense), the trainer never runs a dense warm-up for it, and it builds
//                   the dense FFNs of other routers' warm-up (so exactly one loaded router may
//                   declare it when a cell uses trainer.dense_warmup_fraction).
// The harness records a run's roles when it trains it (run attribute `router_roles`), so the
// views need no plugin to pair runs.
#pragma once

namespace lory {

inline constexpr const char* kRouterRolesSymbol = "lory_router_roles";
inline constexpr const char* kDenseBaselineRole = "dense_baseline";

}  // namespace lory

#define LORY_ROUTER_ROLES(roles)                                                          \
  extern "C" __attribute__((visibility("default"))) const char* lory_router_roles(void) { \
    return roles;                                                                         \
  }
