#include "step_profile.h"

#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/torch.h>

#include <algorithm>
#include <map>

namespace lory::bench {

namespace {

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

bool any_of(const std::string& op, std::initializer_list<const char*> names) {
  for (const char* n : names) {
    if (op == n) return true;
  }
  return false;
}

std::vector<OpShare> largest_first(const std::map<std::string, double>& us, double total_us,
                                   int steps) {
  std::vector<OpShare> out;
  for (const auto& [name, value] : us)
    out.push_back({name, value / 1000.0 / steps, value / total_us});
  std::sort(out.begin(), out.end(),
            [](const OpShare& a, const OpShare& b) { return a.ms_per_step > b.ms_per_step; });
  return out;
}

}  // namespace

std::string op_family(const std::string& op, const std::string& scope) {
  if (scope == "lory::adamw") return "AdamW";
  if (starts_with(scope, "lory::linear_cross_entropy") || contains(op, "LinearCrossEntropy"))
    return "LM head + loss (chunked)";
  if (starts_with(scope, "lory::merged_expert_ffn") || contains(op, "MergedExpertFFN"))
    return "Lory merged-expert FFN";
  if (any_of(op, {"aten::_log_softmax", "aten::_log_softmax_backward_data", "aten::log_softmax",
                  "aten::nll_loss", "aten::nll_loss_forward", "aten::nll_loss_backward",
                  "aten::nll_loss_nd", "aten::cross_entropy_loss"}))
    return "log_softmax + NLL (full logits)";
  if (any_of(op, {"aten::_softmax", "aten::_softmax_backward_data", "aten::softmax"}))
    return "attention softmax";
  if (any_of(op, {"aten::masked_fill", "aten::masked_fill_", "aten::triu", "aten::tril"}))
    return "attention mask";
  if (any_of(op, {"aten::mm", "aten::bmm", "aten::addmm", "aten::addmm_", "aten::baddbmm",
                  "aten::matmul", "aten::linear", "aten::addbmm"}))
    return "GEMM";
  if (any_of(op, {"aten::fill_", "aten::zero_", "aten::zeros", "aten::zeros_like", "aten::empty",
                  "aten::empty_like", "aten::empty_strided", "aten::ones", "aten::ones_like",
                  "aten::full", "aten::new_zeros", "aten::new_empty", "aten::new_empty_strided",
                  "aten::resize_"}))
    return "fills + allocation";
  if (any_of(
          op,
          {"aten::copy_",           "aten::clone",      "aten::contiguous", "aten::cat",
           "aten::_to_copy",        "aten::to",         "aten::reshape",    "aten::view",
           "aten::_reshape_alias",  "aten::transpose",  "aten::permute",    "aten::slice",
           "aten::select",          "aten::expand",     "aten::t",          "aten::as_strided",
           "aten::narrow",          "aten::unsqueeze",  "aten::squeeze",    "aten::split",
           "aten::unbind",          "aten::detach",     "detach",           "aten::slice_backward",
           "aten::select_backward", "aten::stack",      "aten::alias",      "aten::unsafe_view",
           "aten::_unsafe_view",    "aten::lift_fresh", "aten::result_type"}))
    return "copies + views";
  if (any_of(op, {"aten::silu", "aten::silu_backward"})) return "SwiGLU activation";
  if (any_of(op, {"aten::embedding", "aten::embedding_backward", "aten::embedding_dense_backward",
                  "aten::index_select", "aten::index_add_", "aten::gather", "aten::scatter_add_",
                  "aten::index"}))
    return "embedding + gathers";
  if (any_of(op,
             {"aten::sum", "aten::mean", "aten::logsumexp", "aten::amax", "aten::max", "aten::norm",
              "aten::linalg_vector_norm", "aten::topk", "aten::sort", "aten::cumsum"}))
    return "reductions";
  if (starts_with(op, "autograd::") || contains(op, "Backward") || contains(op, "AccumulateGrad") ||
      starts_with(op, "torch::autograd"))
    return "autograd bookkeeping";
  if (starts_with(op, "aten::")) return "elementwise (norms, RoPE, residuals, ...)";
  return "other";
}

StepProfile profile_steps(const std::function<void()>& step, int steps) {
  using torch::autograd::profiler::EventKind;
  torch::autograd::profiler::enableProfilerLegacy(
      torch::profiler::impl::ProfilerConfig(torch::profiler::impl::ProfilerState::CPU));
  for (int s = 0; s < steps; ++s) step();
  const auto threads = torch::autograd::profiler::disableProfilerLegacy();

  struct Open {
    std::string name;
    double start_us, children_us;
  };
  std::map<std::string, double> by_family, by_op;
  double total_us = 0;
  for (const auto& events : threads) {
    std::vector<Open> stack;
    for (const auto& e : events) {
      if (e.kind() == EventKind::PushRange) {
        stack.push_back({e.name(), e.cpuUs(), 0});
      } else if (e.kind() == EventKind::PopRange && !stack.empty()) {
        const Open open = stack.back();
        stack.pop_back();
        const double span = e.cpuUs() - open.start_us;
        const double self = std::max(0.0, span - open.children_us);
        if (!stack.empty()) stack.back().children_us += span;
        std::string scope;
        for (auto it = stack.rbegin(); it != stack.rend(); ++it) {
          if (starts_with(it->name, "lory::")) {
            scope = it->name;
            break;
          }
        }
        if (starts_with(open.name, "lory::")) scope = open.name;
        by_family[op_family(open.name, scope)] += self;
        by_op[open.name] += self;
        total_us += self;
      }
    }
  }
  return {total_us / 1000.0 / steps, largest_first(by_family, total_us, steps),
          largest_first(by_op, total_us, steps)};
}

}  // namespace lory::bench
