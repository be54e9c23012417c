// trainer.device, parsed without torch: "cpu", "cuda" (GPU 0) or "cuda:N". The CLI validates it
// (and refuses CUDA where this build's LibTorch has none); the worker turns it into a
// torch::Device and checks that the GPU is there.
#pragma once

#include <optional>
#include <string>

namespace lory {

struct TrainingDevice {
  bool cuda = false;
  int index = 0;  // the GPU's index when cuda
};

// std::nullopt when `name` is none of the accepted forms.
std::optional<TrainingDevice> parse_training_device(const std::string& name);

// Why `name` cannot be used by this build, or std::nullopt when it can: not a device name, or CUDA
// asked of a LibTorch built without it.
std::optional<std::string> training_device_problem(const std::string& name);

}  // namespace lory
