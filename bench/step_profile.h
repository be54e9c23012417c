// Where a training step's time goes: LibTorch's autograd profiler (the legacy, CPU-only one)
// over a few steps, each op's self time (its own time, less the ops it called) attributed to an
// op family. Ops inside a `lory::` profiler scope (RECORD_FUNCTION in the harness: the chunked
// LM-head loss, Lory's merged-expert FFN, AdamW) count for that scope's family whatever they are.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace lory::bench {

struct OpShare {
  std::string name;  // an op or a family
  double ms_per_step;
  double fraction;  // of the profiled step's total self time
};

struct StepProfile {
  double ms_per_step;  // the steps' total self time over the steps (profiler overhead included)
  std::vector<OpShare> families;  // largest first
  std::vector<OpShare> ops;       // largest first
};

StepProfile profile_steps(const std::function<void()>& step, int steps);

// The family an op's time belongs to, from its name and the innermost lory:: scope around it
// ("" when none).
std::string op_family(const std::string& op, const std::string& scope);

}  // namespace lory::bench
