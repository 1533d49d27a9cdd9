// RoPE and silu · up for a prefill (gemv.h): ATen runs RoPE as four kernels (a flip, two products, a sum) and
// silu · up as two, each reading and writing its whole tensor; in a 13B prefill of one image (~700 positions) they
// were 4.8 of 35 ms of kernels on an H200 (bench_llava --profile-calls). Here each is one pass, with the unfused
// ops' roundings: every ATen op computes in float32 and rounds its result to bf16 once, so doing the same steps in
// the same order gives the same bits.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "gemv.h"

namespace mmr::llava::gemv {

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float bf16_round(float v) { return __bfloat162float(__float2bfloat16(v)); }

// 8 bf16 values of a 16-byte load as floats.
struct Eight {
  float v[8];
  __device__ explicit Eight(uint4 raw) {
    const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&raw);
    for (int i = 0; i < 4; ++i) {
      const float2 f = __bfloat1622float2(h[i]);
      v[2 * i] = f.x;
      v[2 * i + 1] = f.y;
    }
  }
};

__device__ __forceinline__ uint4 pack(const float (&v)[8]) {
  uint4 out;
  __nv_bfloat162* o = reinterpret_cast<__nv_bfloat162*>(&out);
  for (int i = 0; i < 4; ++i) o[i] = __floats2bfloat162_rn(v[2 * i], v[2 * i + 1]);
  return out;
}

// One thread per 8 values of a head's first half and the 8 they pair with in its second half.
__global__ void __launch_bounds__(kThreads) rope_kernel(RopeProblem p) {
  const int half = p.e / 2, chunks = half / 8;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (idx >= static_cast<int64_t>(p.b) * p.t * p.rows * chunks) return;
  const int c = static_cast<int>(idx % chunks);
  const int64_t row = idx / chunks, bt = row / p.rows;
  const int r = static_cast<int>(row % p.rows);
  const int64_t b = bt / p.t, t = bt % p.t;
  const auto* x = static_cast<const __nv_bfloat16*>(p.x) + b * p.ld_batch + t * p.ld_token + r * p.e + 8 * c;
  const auto* cos = static_cast<const __nv_bfloat16*>(p.cos) + bt * p.e + 8 * c;
  const auto* sin = static_cast<const __nv_bfloat16*>(p.sin) + bt * p.e + 8 * c;
  auto load = [](const __nv_bfloat16* at) { return Eight(*reinterpret_cast<const uint4*>(at)); };
  const Eight x1 = load(x), x2 = load(x + half), c1 = load(cos), c2 = load(cos + half), s1 = load(sin),
              s2 = load(sin + half);
  float y1[8], y2[8];
  for (int i = 0; i < 8; ++i) {
    y1[i] = bf16_round(x1.v[i] * c1.v[i]) + bf16_round(x2.v[i] * s1.v[i]);
    y2[i] = bf16_round(x2.v[i] * c2.v[i]) + bf16_round(x1.v[i] * s2.v[i]);
  }
  auto* y = static_cast<__nv_bfloat16*>(p.y) + row * p.e + 8 * c;
  *reinterpret_cast<uint4*>(y) = pack(y1);
  *reinterpret_cast<uint4*>(y + half) = pack(y2);
}

// One thread per 8 outputs. silu as ATen's kernel computes it, x / (1 + exp(-x)) in float32.
__global__ void __launch_bounds__(kThreads) silu_mul_kernel(SiluMulProblem p) {
  const int chunks = p.n / 8;
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (idx >= p.m * chunks) return;
  const int64_t m = idx / chunks;
  const int c = static_cast<int>(idx % chunks);
  const auto* gu = static_cast<const __nv_bfloat16*>(p.gate_up) + m * p.ld + 8 * c;
  const Eight gate(*reinterpret_cast<const uint4*>(gu)), up(*reinterpret_cast<const uint4*>(gu + p.n));
  float y[8];
  for (int i = 0; i < 8; ++i) y[i] = bf16_round(gate.v[i] / (1.f + expf(-gate.v[i]))) * up.v[i];
  *reinterpret_cast<uint4*>(static_cast<__nv_bfloat16*>(p.y) + m * p.n + 8 * c) = pack(y);
}

unsigned blocks_for(int64_t threads) { return static_cast<unsigned>((threads + kThreads - 1) / kThreads); }

}  // namespace

int launch_rope(const RopeProblem& p, void* stream) {
  const int64_t threads = static_cast<int64_t>(p.b) * p.t * p.rows * (p.e / 16);
  if (threads == 0) return 0;
  rope_kernel<<<blocks_for(threads), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(p);
  return static_cast<int>(cudaGetLastError());
}

int launch_silu_mul(const SiluMulProblem& p, void* stream) {
  const int64_t threads = p.m * (p.n / 8);
  if (threads == 0) return 0;
  silu_mul_kernel<<<blocks_for(threads), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(p);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace mmr::llava::gemv
