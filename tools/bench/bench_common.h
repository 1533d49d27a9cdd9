// What the two benchmark programs share: wall-clock timing that waits for the GPU, and the published model shape
// they both start from (random weights, bf16, on the GPU).
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <iostream>
#include <memory>

#include "plugins/models/llava/llava.h"

namespace bench {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Kernels run asynchronously: a timer must wait for them.
inline void sync(const torch::Device& d) {
  if (d.is_cuda()) torch::cuda::synchronize();
}

// LLaVA-1.5-13B's shape with random weights in bf16 on the GPU; the command line may change each field.
inline mmr::llava::LlavaOptions published_shape() {
  mmr::llava::LlavaOptions o;
  o.random_init = true;
  o.shape = "llava-1.5-13b";
  o.dtype = "bfloat16";
  o.device = "cuda";
  return o;
}

// Builds the model and prints how long that took, as one JSON line ({"what": "load", ...}).
inline std::unique_ptr<mmr::llava::LlavaModel> load_timed(const mmr::llava::LlavaOptions& o) {
  const auto t0 = Clock::now();
  auto model = std::make_unique<mmr::llava::LlavaModel>(o);
  sync(model->device());
  std::cout << "{\"what\": \"load\", \"shape\": \"" << o.shape << "\", \"seconds\": " << seconds_since(t0) << "}"
            << std::endl;
  return model;
}

}  // namespace bench
