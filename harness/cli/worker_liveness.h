// Whether the worker process a run records (runs.worker_pid, runs.host) is still training it.
// A process id alone says little: a killed worker whose parent died with it can linger as a
// zombie (its /proc entry still there), and a process id is reused by later processes. So a run
// counts as being trained only if its process, on this host, is alive (not a zombie), is a
// lory-worker, and is the very process that started training it: its boot and start time equal
// the run's `worker_start` attribute (core/process_identity.h). Runs recorded before that
// attribute existed fall back to the heartbeat: a reused id belongs to a process started after
// the worker it once named had stopped writing.
#pragma once

#include <string>

#include "core/store/results_store.h"

namespace lory::cli {

struct WorkerLiveness {
  bool alive = false;
  std::string why;  // why it is not (for messages): "no such process", "a zombie", ...
};

// `recorded_start`: the run's worker_start attribute, "" when it has none.
WorkerLiveness worker_liveness(const RunRecord& run, const std::string& recorded_start);

}  // namespace lory::cli
