// What decoding needs from the device beyond LibTorch's portable API: a seeded sampling generator on the model's
// device, and CUDA graphs for the one-token step. The CUDA parts are built only against a CUDA LibTorch
// (MMR_WITH_CUDA); elsewhere the step simply runs.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <memory>

namespace mmr::llava {

// A generator for sampling on `device` (the GPU's own for CUDA: the draw then stays on the device), seeded.
at::Generator sampling_generator(const torch::Device& device, uint64_t seed);

// Decoding steps replayed as CUDA graphs, one captured per key (the attention span): a step is ~600 kernel launches
// at a 13B shape, which the CPU would otherwise issue one by one. `step` must read only tensors whose addresses do
// not change between calls, and be idempotent (its warm-up run, the capture and each replay write the same values).
// Off on the CPU, with `allowed` false, or with MMR_CUDA_GRAPHS=0: run() then calls the step.
//
// With `one_pool`, the graphs share one memory pool (what they keep is the largest one's activations, not the sum):
// for graphs of which only one runs at a time and whose output the caller copies before the next replay.
class StepGraphs {
 public:
  StepGraphs(const torch::Device& device, bool allowed, bool one_pool = false);
  ~StepGraphs();
  bool enabled() const { return impl_ != nullptr; }
  torch::Tensor run(int64_t key, const std::function<torch::Tensor()>& step);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mmr::llava
