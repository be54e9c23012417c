// Test-only crash injection, for the crash-safety tests of the grid runner: when the environment
// variable LORY_TEST_KILL_AT is "<point>:<step>", the process sends itself SIGKILL (exactly what
// `kill -9` does) the first time it passes that named point at that step. Points used:
//   after_step          a training step is done, before its rows and checkpoint
//   metrics_transaction inside the metrics INSERT transaction, before COMMIT
//   evals_transaction   inside the evals INSERT transaction, before COMMIT
//   checkpoint_file     the checkpoint's temporary file is written, not yet renamed
//   checkpoint_index    the checkpoint file is in place, latest.json not yet updated
//   before_done         the run is finished, not yet marked done
//   eval_tasks_started  a worker of `lory eval-tasks` has started (step 0; with
//                       LORY_TEST_KILL_SIGNAL=19 it stops itself there, for the interruption tests)
// LORY_TEST_KILL_RANK=N restricts it to rank N of a data-parallel group (RANK).
// LORY_TEST_KILL_SIGNAL=N sends signal N instead (6 = SIGABRT: a crash of the worker's own, which
// fails its cell, where SIGKILL from outside only interrupts it).
// Unset (always, outside tests) it costs one string comparison per point.
//
// Test-only faults, for the tests of the divergence guard: LORY_TEST_FAULT="<fault>:<step>" makes
// fault_injected(fault, step) true at that step. Faults used:
//   nan_loss   the step's loss is NaN
//   inf_grad   one gradient entry of the step is infinite, the loss finite
//   internal_error (step 0) a program throws an unanticipated exception at start (run_main)
// (Before schema version 6 these were the config keys trainer.inject_nan_at_step and
// trainer.inject_nan_grad_at_step: test knobs do not belong in a cell's identity.)
#pragma once

#include <cstdint>

namespace lory {

void kill_point(const char* point, int64_t step);
bool fault_injected(const char* fault, int64_t step);

}  // namespace lory
