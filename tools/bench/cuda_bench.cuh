// What the standalone CUDA benches (gemv_bench.cu, attention_bench.cu) share: a check that exits on a CUDA error,
// and a fill of bf16 values uniform in [-scale, scale) from a hash of each index (no host copy, reproducible).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#define CHECK_CUDA(e)                                                                              \
  do {                                                                                             \
    cudaError_t err_ = (e);                                                                        \
    if (err_ != cudaSuccess) {                                                                     \
      std::fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(err_));           \
      std::exit(1);                                                                                \
    }                                                                                              \
  } while (0)

namespace bench {

__global__ void fill_random(__nv_bfloat16* p, size_t n, uint32_t seed, float scale) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    uint32_t h = uint32_t(i) * 2654435761u ^ seed;
    h ^= h >> 15; h *= 2246822519u; h ^= h >> 13; h *= 3266489917u; h ^= h >> 16;
    p[i] = __float2bfloat16((h / 4294967296.f * 2.f - 1.f) * scale);
  }
}

}  // namespace bench
