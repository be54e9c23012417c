// What validating an experiment file cannot know, checked by `lory run` before any cell is
// registered or any worker started: that the corpus each cell names is a complete prepared corpus
// (a missing folder, a file, an empty folder, a folder without a manifest, a malformed manifest,
// truncated or corrupted token files are each named), and that one micro-batch's activations fit
// in this machine's memory (estimated from the corpus's vocabulary and the model's shape).
// Every problem goes to `diagnostics` at the key it is about (data.corpus, trainer.batch_size).
#pragma once

#include <cstdint>

#include "core/experiment/experiment.h"
#include "core/support/diagnostics.h"

namespace lory {

// `cells_at_once` (lory run -j) divides the memory between the cells trained side by side.
void check_cells_can_run(const Experiment& experiment, int cells_at_once, Diagnostics& diagnostics);

// A lower bound, in bytes, on the activations LibTorch keeps for the backward pass of one
// micro-batch of `sequences` x `context` tokens (fp32): the LM head's logits and their gradient,
// and per layer the saved inputs of the norms, projections, FFN and attention scores. Exposed
// for its test.
double activation_bytes_lower_bound(int64_t sequences, int64_t context, int64_t vocab,
                                    int64_t d_model, int64_t n_layers, int64_t n_heads);

// Memory this process may use, in bytes: physical memory, or the cgroup limit (a container, a
// Slurm job) when that is smaller; 0 when unknown.
double physical_memory_bytes();

}  // namespace lory
