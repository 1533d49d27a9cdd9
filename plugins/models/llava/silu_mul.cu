// silu(gate) · up after a decoding step's gate-up product (gemv.h). cuBLAS reads the 283 MB gate-up weight of a
// 13B layer at the bandwidth of a plain read (67.4 µs at M = 1 on an H200, tools/bench/gemv_bench.cu) where the
// GEMV with this epilogue fused took 72.7 µs; this kernel then costs one small launch instead of ATen's two.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "gemv.h"

namespace mmr::llava::gemv {

namespace {

__device__ __forceinline__ float round_bf16(float v) { return __bfloat162float(__float2bfloat16_rn(v)); }

// Grid (columns / 256, rows); one value each.
__global__ void __launch_bounds__(256) silu_mul_kernel(SiluMulProblem p) {
  const int col = blockIdx.x * blockDim.x + threadIdx.x, row = blockIdx.y;
  if (col >= p.n) return;
  const __nv_bfloat16* gu = static_cast<const __nv_bfloat16*>(p.gate_up) + row * p.ld_gate_up;
  const float gate = __bfloat162float(gu[col]), up = __bfloat162float(gu[p.n + col]);
  // torch.silu rounds its result to bf16, then the product rounds once more.
  static_cast<__nv_bfloat16*>(p.y)[row * p.ld_y + col] = __float2bfloat16_rn(round_bf16(gate / (1.f + expf(-gate))) * up);
}

}  // namespace

int launch_silu_mul(const SiluMulProblem& p, void* stream) {
  silu_mul_kernel<<<dim3((p.n + 255) / 256, p.m), 256, 0, static_cast<cudaStream_t>(stream)>>>(p);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace mmr::llava::gemv
