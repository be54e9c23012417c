// Command-line options shared by the three programs (lory, lory-worker, lory-data): validators
// for numbers that must be finite (CLI11's Range lets NaN through: every comparison with NaN is
// false, so `--temperature nan` would be accepted), and the evaluation-routing option of `score`
// and `eval-tasks`, declared once for `lory` and the worker it hands the work to.
#pragma once

#include <CLI/CLI.hpp>

#include <cmath>
#include <string>
#include <vector>

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

// How a trained run routes when it is evaluated (RoutingContext's EvalRouting::Rule): "train" as
// in training, "prompt" once from a prompt, "inference" by the router's own inference rule.
inline const std::vector<std::string>& evaluation_routing_rules() {
  static const std::vector<std::string> rules = {"train", "prompt", "inference"};
  return rules;
}

// `--routing` of `score` and `eval-tasks`, one of evaluation_routing_rules(); `description` says
// what each rule means for the command.
inline CLI::Option* add_evaluation_routing_option(CLI::App* command, std::string& rule,
                                                  const std::string& description) {
  return command->add_option("--routing", rule, description)
      ->check(CLI::IsMember(evaluation_routing_rules()))
      ->capture_default_str();
}

}  // namespace lory
