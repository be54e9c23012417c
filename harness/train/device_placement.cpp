#include "device_placement.h"

#include <fmt/format.h>

#include "core/experiment/training_device.h"
#include "core/support/diagnostics.h"

namespace lory {

torch::Device resolve_training_device(const std::string& name) {
  if (const auto problem = training_device_problem(name))
    throw UserError("trainer.device = " + *problem);
  const TrainingDevice device = *parse_training_device(name);
  if (!device.cuda) return torch::Device(torch::kCPU);
  const int64_t visible =
      torch::cuda::is_available() ? static_cast<int64_t>(torch::cuda::device_count()) : 0;
  if (device.index >= visible) {
    throw UserError(fmt::format("trainer.device = '{}': this process sees {} CUDA GPU{}{}", name,
                                visible, visible == 1 ? "" : "s",
                                visible == 0
                                    ? " (check the driver and CUDA_VISIBLE_DEVICES, or use \"cpu\")"
                                    : fmt::format("; use cuda:0 .. cuda:{}", visible - 1)));
  }
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(device.index));
}

torch::Device module_device(const torch::nn::Module& module) {
  for (const auto& p : module.parameters()) return p.device();
  return torch::Device(torch::kCPU);
}

}  // namespace lory
