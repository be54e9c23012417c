// The training loop of one run: AdamW with warm-up + cosine schedule, gradient accumulation and
// clipping, optional dense warm-up then upcycling, periodic metrics, held-out evaluation and
// checkpoints, resumption from the latest checkpoint, and a guard that stops on a non-finite
// loss or gradient.
#pragma once

#include <string>

#include "core/store/results_store.h"
#include "data_parallel.h"
#include "run_setup.h"

namespace lory {

struct TrainOutcome {
  std::string status;  // run_status::kDone, kDiverged
  std::string reason;
  int64_t last_step = 0;
};

// Trains run `run` of `store` to the end (or to divergence, or a stop request) and returns how it
// ended; the caller records the outcome. Exceptions (bad config, plugin errors) propagate. With
// a data-parallel group, every rank calls it; only rank 0 writes to the store and checkpoints.
TrainOutcome train_run(RunSetup& setup, ResultsStore& store, const RunRecord& run,
                       const std::string& run_dir, DataParallel& group);

}  // namespace lory
