#include "core/experiment/training_device.h"

#include <fmt/format.h>

#include <cctype>

#include "lory/core/build_info.h"

namespace lory {

std::optional<TrainingDevice> parse_training_device(const std::string& name) {
  if (name == "cpu") return TrainingDevice{false, 0};
  if (name == "cuda") return TrainingDevice{true, 0};
  const std::string prefix = "cuda:";
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0)
    return std::nullopt;
  const std::string digits = name.substr(prefix.size());
  if (digits.size() > 4) return std::nullopt;
  for (const char c : digits) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return std::nullopt;
  }
  return TrainingDevice{true, std::stoi(digits)};
}

std::optional<std::string> training_device_problem(const std::string& name) {
  const std::optional<TrainingDevice> device = parse_training_device(name);
  if (!device)
    return fmt::format(
        "'{}' is not a device: use \"cpu\", \"cuda\" or \"cuda:N\" (N = the GPU's index)", name);
  if (device->cuda && !LORY_TORCH_HAS_CUDA) {
    return fmt::format(
        "'{}' needs CUDA, but the LibTorch this lory was built with has none (Debian's libtorch is "
        "CPU-only); use \"cpu\", or rebuild lory against a CUDA LibTorch",
        name);
  }
  return std::nullopt;
}

}  // namespace lory
