#include "lr_schedule.h"

#include <algorithm>
#include <cmath>

namespace lory {

double LrSchedule::at(int64_t step) const {
  if (step < warmup_steps)
    return peak * static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
  const double minimum = peak * min_ratio;
  const int64_t decay_steps = std::max<int64_t>(1, total_steps - warmup_steps);
  const double progress =
      std::min(1.0, static_cast<double>(step - warmup_steps) / static_cast<double>(decay_steps));
  return minimum + 0.5 * (peak - minimum) * (1.0 + std::cos(M_PI * progress));
}

}  // namespace lory
