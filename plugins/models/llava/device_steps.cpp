// See device_steps.h.
#include "device_steps.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cstdlib>
#include <map>
#include <string>

#ifdef MMR_WITH_CUDA
#include <ATen/cuda/CUDAGeneratorImpl.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace mmr::llava {

at::Generator sampling_generator(const torch::Device& device, uint64_t seed) {
#ifdef MMR_WITH_CUDA
  if (device.is_cuda()) {
    at::Generator g = at::cuda::detail::createCUDAGenerator(device.index());
    g.set_current_seed(seed);
    return g;
  }
#endif
  return at::detail::createCPUGenerator(seed);
}

#ifdef MMR_WITH_CUDA
struct StepGraphs::Impl {
  struct Captured {
    at::cuda::CUDAGraph graph;
    torch::Tensor out;  // in the graph's memory pool: each replay refreshes it
  };
  c10::cuda::CUDAStream stream = c10::cuda::getStreamFromPool();
  std::map<int64_t, std::unique_ptr<Captured>> graphs;
  at::cuda::MempoolId_t pool = {0, 0};  // {0, 0}: each capture its own
};

StepGraphs::StepGraphs(const torch::Device& device, bool allowed, bool one_pool) {
  const char* env = std::getenv("MMR_CUDA_GRAPHS");
  if (!device.is_cuda() || !allowed || (env && std::string(env) == "0")) return;
  const c10::cuda::CUDAGuard guard(device);
  impl_ = std::make_unique<Impl>();
  if (one_pool) impl_->pool = at::cuda::graph_pool_handle();
}

torch::Tensor StepGraphs::run(int64_t key, const std::function<torch::Tensor()>& step) {
  if (!impl_) return step();
  auto it = impl_->graphs.find(key);
  if (it == impl_->graphs.end()) {
    auto c = std::make_unique<Impl::Captured>();
    // Captured on a side stream, after one eager run there: lazy set-up (cuBLAS workspaces, kernel choices) must
    // not happen inside the capture. The capture itself runs nothing; the replay below computes.
    torch::cuda::synchronize();
    {
      c10::cuda::CUDAStreamGuard side(impl_->stream);
      step();
      impl_->stream.synchronize();
      c->graph.capture_begin(impl_->pool, cudaStreamCaptureModeThreadLocal);
      c->out = step();
      c->graph.capture_end();
    }
    torch::cuda::synchronize();
    it = impl_->graphs.emplace(key, std::move(c)).first;
  }
  it->second->graph.replay();
  return it->second->out;
}
#else
struct StepGraphs::Impl {};
StepGraphs::StepGraphs(const torch::Device&, bool, bool) {}
torch::Tensor StepGraphs::run(int64_t, const std::function<torch::Tensor()>& step) { return step(); }
#endif

StepGraphs::~StepGraphs() = default;

}  // namespace mmr::llava
