// Helpers the llava plugin's source files share (not part of its interface).
#pragma once

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <memory>
#include <string>

#include "core/lib/safetensors/safetensors.h"

namespace mmr::llava {

std::shared_ptr<spdlog::logger> log();

// A checkpoint tensor as a torch tensor on the CPU (a copy; the mapping stays read-only).
torch::Tensor read_tensor(const safetensors::Checkpoint& ckpt, const std::string& name);

}  // namespace mmr::llava
