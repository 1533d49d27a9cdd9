// Programmatic dependent launch for the decoding step's kernels (gemv_kernel.cuh, rms_norm.cu,
// decode_attention.cu), which follow one another in a step: 7 per layer at batch 1. Launched this way, a kernel
// may start while the one before it is still running, so its blocks fill the multiprocessors the other's last wave
// leaves idle and its weight loads are in flight before that wave ends; without it, each kernel's ramp and tail
// leave the memory system partly idle (2-4 µs a projection above a plain read of the same bytes, gemv_bench).
//
// The rules that keep it exact (each kernel follows them):
// - allow_next_kernel() first: the next kernel may launch once every block of this one has begun (not ended).
// - wait_for_previous_kernel() before reading anything an earlier kernel of the step wrote and before writing
//   anything: it returns when the previous kernel has completed and its writes are visible. Every kernel calls it
//   unconditionally, so completion is transitive (the previous one had waited for its own predecessor), and a
//   buffer the caching allocator hands from one kernel to a later one is never written while still being read.
// - Before the wait, only constant data: the weights.
// Without the launch attribute both instructions return at once, so the kernels run as plain launches too.
#pragma once

#include <cuda_runtime.h>

#include <utility>

namespace mmr::llava::gemv::pdl {

__device__ __forceinline__ void allow_next_kernel() {
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

__device__ __forceinline__ void wait_for_previous_kernel() {
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// kernel<<<grid, block, shared, stream>>>(args...), as a programmatic dependent launch when `dependent`; returns
// the CUDA error code, 0 when none.
template <typename... Params, typename... Args>
int launch_shared(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared, cudaStream_t stream,
                  bool dependent, Args&&... args) {
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = shared;
  config.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  config.attrs = attr;
  config.numAttrs = dependent ? 1 : 0;
  return static_cast<int>(cudaLaunchKernelEx(&config, kernel, std::forward<Args>(args)...));
}

template <typename... Params, typename... Args>
int launch(void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t stream, bool dependent, Args&&... args) {
  return launch_shared(kernel, grid, block, 0, stream, dependent, std::forward<Args>(args)...);
}

}  // namespace mmr::llava::gemv::pdl
