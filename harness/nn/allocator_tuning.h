// Keeps freed tensor memory in the process instead of returning it to the kernel after every
// step. glibc by default serves blocks above 128 KB (growing to 32 MB) with mmap and trims the
// heap top eagerly, so each training step page-faults its activations in again: measured here,
// 27% of a small model's step time (bench/train_throughput, with and without this tuning).
#pragma once

namespace lory {

// Call once at process start, before tensors are allocated.
void tune_allocator_for_training();

}  // namespace lory
