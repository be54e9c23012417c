// Where a run's tensors live (trainer.device), in the worker: the torch::Device for a device name,
// checked against the GPUs this process can see, and the device a built model sits on, which is
// where its inputs are moved. Data are planned and batched on the host, then moved.
#pragma once

#include <torch/torch.h>

#include <string>

namespace lory {

// "cpu", "cuda" or "cuda:N" as a torch::Device; UserError (naming trainer.device) when the name is
// not one, when this LibTorch has no CUDA, or when the GPU is not visible.
torch::Device resolve_training_device(const std::string& name);

// The device of the module's first parameter (CPU for a module without parameters).
torch::Device module_device(const torch::nn::Module& module);

}  // namespace lory
