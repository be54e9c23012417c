#include "nn/allocator_tuning.h"

#include <malloc.h>

namespace lory {

void tune_allocator_for_training() {
  // 32 MB is glibc's largest allowed mmap threshold; freed memory below it is reused, and the
  // heap is never trimmed back, so steady-state steps allocate without page faults.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 64 << 20);
}

}  // namespace lory
