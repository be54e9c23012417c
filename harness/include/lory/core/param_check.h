// Rules between a plugin's parameters that a range cannot state (k <= experts; d_model a multiple
// of n_heads with an even head width). A plugin that has such rules exports one check function,
//
//   std::vector<lory::ParamProblem> check(const lory::ParamValues& params);
//   LORY_PARAM_CHECK(my_plugin::check)
//
// and calls the same function from its factory or constructor. `lory run` (and `--dry-run`)
// calls it for every cell at validation, before any run is registered or any worker started, and
// reports each problem at the file:line:col of the parameter it names. The entry point is
// optional: a plugin without it is checked by its declared ranges only. It takes and returns
// plain C++ values of the SDK and builds no LibTorch object, so calling it is cheap.
#pragma once

#include <string>
#include <vector>

#include "lory/core/param_values.h"

namespace lory {

struct ParamProblem {
  std::string
      key;  // the parameter the problem is about (its location is reported), or "" for the table
  std::string message;  // one sentence, naming the values: "k = 6 exceeds experts = 4"
};

using ParamCheckFunction = std::vector<ParamProblem>(const ParamValues& params);

// The exported alias the harness looks for.
inline constexpr const char* kParamCheckAlias = "lory_check_params";

// Throws std::invalid_argument with every problem, prefixed by `table` ("router.topk"): what a
// factory calls so that a rule has one home.
inline void throw_param_problems(const std::string& table,
                                 const std::vector<ParamProblem>& problems) {
  if (problems.empty()) return;
  std::string message;
  for (const ParamProblem& p : problems)
    message += (message.empty() ? "" : "; ") + table + ": " + p.message;
  throw std::invalid_argument(message);
}

}  // namespace lory
