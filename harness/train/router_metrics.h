// The routers' statistics of a logged training step as metric rows, each statistic combined by
// its declared rule over layers and over data-parallel ranks.
#pragma once

#include <vector>

#include "core/store/results_store.h"
#include "data_parallel.h"
#include "lory/nn/routing.h"

namespace lory {

// Values of one statistic combined under `rule`: Mean averages, Sum adds, Max takes the largest
// (0 for no values).
double combine(const std::vector<double>& values, Reduce rule);

// Rows "router/layer<i>/<name>" per layer, "router/<name>" over layers, and "aux/<name>" (aux
// losses: summed over layers, averaged over ranks), combined over the group's ranks; and the
// balance metrics (max_violation, load_p0, load_p10, load_p50, load_p90, load_p100) of each
// record's load_E summed over ranks. Appended to `rows`. Every rank must call it with records of
// the same layers and statistics.
void add_router_metrics(const RoutingContext& context, int64_t step, DataParallel& group,
                        std::vector<MetricRow>& rows);

}  // namespace lory
