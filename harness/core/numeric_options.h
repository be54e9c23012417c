// Command-line validators for numbers that must be finite: CLI11's Range lets NaN through (every
// comparison with NaN is false), so `--temperature nan` would be accepted. Shared by the three
// programs (lory, lory-worker, lory-data).
#pragma once

#include <CLI/CLI.hpp>

#include <cmath>
#include <string>

namespace lory {

// A finite number in [min_value, max_value] (NaN and infinities refused, with the option's range).
inline CLI::Validator finite_range(double min_value, double max_value) {
  const std::string description = "FINITE in [" + CLI::detail::to_string(min_value) + " - " +
                                  CLI::detail::to_string(max_value) + "]";
  return CLI::Validator(
      [min_value, max_value](std::string& input) -> std::string {
        double value = 0;
        if (!CLI::detail::lexical_cast(input, value)) return "value " + input + " is not a number";
        if (!std::isfinite(value)) return "value " + input + " is not a finite number";
        if (value < min_value || value > max_value) {
          return "value " + input + " is not in [" + CLI::detail::to_string(min_value) + ", " +
                 CLI::detail::to_string(max_value) + "]";
        }
        return std::string();
      },
      description);
}

}  // namespace lory
