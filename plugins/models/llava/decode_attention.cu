// The decoding step's attention (decode_attention.h). Before these kernels a 13B step spent, per layer, five
// kernels on RoPE and the cache writes and three on attention and its transposes (bench_llava --profile on an
// H200: 0.32 ms RoPE, 0.20 ms cache writes, 0.49 ms attention per step at batch 1, 1.76 ms attention at batch 8,
// where SDPA read all 128 slots of the last bucket and the padding too). Here: one kernel rotates and writes, one
// reads each visible key and value once and combines its chunks (no third launch).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>

#include "decode_attention.h"

namespace mmr::llava::gemv {

namespace {

constexpr int kE = kHeadDim, kHalf = kE / 2;
constexpr int kWarps = 4, kThreads = kWarps * 32;
constexpr int kKeysPerWarp = kKeysPerChunk / kWarps;
static_assert(kE == 4 * 32, "one warp reads a head's row as 4 values per lane");

__device__ __forceinline__ float round_bf16(float v) { return __bfloat162float(__float2bfloat16_rn(v)); }

// ---- RoPE and the cache write ----

// Work items of one row: 8-value chunks of each rotated head's first half (the partner chunk in the second half
// comes with it), then 8-value chunks of each value head.
__global__ void __launch_bounds__(256) rope_write_kernel(DecodeAttentionProblem p) {
  const int b = blockIdx.y;
  const int rotated = (p.heads + p.kv_heads) * (kHalf / 8), items = rotated + p.kv_heads * (kE / 8);
  const int item = blockIdx.x * blockDim.x + threadIdx.x;
  if (item < p.kv_heads) p.arrived[b * p.kv_heads + item] = 0;  // for attention_kernel's combining block
  if (item >= items) return;
  const int64_t slot = *p.slot;
  const __nv_bfloat16* row = static_cast<const __nv_bfloat16*>(p.qkv) + b * p.ld_qkv;
  auto cache_at = [&](void* cache, int kv_head) {
    return static_cast<__nv_bfloat16*>(cache) + ((int64_t{b} * p.kv_heads + kv_head) * p.capacity + slot) * kE;
  };
  if (item >= rotated) {  // a value: copied as it is
    const int i = item - rotated, head = i / (kE / 8), at = i % (kE / 8) * 8;
    *reinterpret_cast<uint4*>(cache_at(p.v_cache, head) + at) =
        *reinterpret_cast<const uint4*>(row + (p.heads + p.kv_heads + head) * kE + at);
    return;
  }
  const int head = item / (kHalf / 8), at = item % (kHalf / 8) * 8;  // head < H: a query, else a key
  const __nv_bfloat16* x = row + head * kE;
  const __nv_bfloat16* cs = static_cast<const __nv_bfloat16*>(p.cos) + b * p.ld_rope;
  const __nv_bfloat16* sn = static_cast<const __nv_bfloat16*>(p.sin) + b * p.ld_rope;
  const uint4 x1 = *reinterpret_cast<const uint4*>(x + at), x2 = *reinterpret_cast<const uint4*>(x + kHalf + at);
  const uint4 c1 = *reinterpret_cast<const uint4*>(cs + at), c2 = *reinterpret_cast<const uint4*>(cs + kHalf + at);
  const uint4 s1 = *reinterpret_cast<const uint4*>(sn + at), s2 = *reinterpret_cast<const uint4*>(sn + kHalf + at);
  const auto* a = reinterpret_cast<const __nv_bfloat16*>(&x1);
  const auto* a2 = reinterpret_cast<const __nv_bfloat16*>(&x2);
  uint4 o1, o2;
  auto* r1 = reinterpret_cast<__nv_bfloat16*>(&o1);
  auto* r2 = reinterpret_cast<__nv_bfloat16*>(&o2);
  for (int i = 0; i < 8; ++i) {
    // x·cos + cat(x₂, x₁)·sin as apply_rope computes it in bf16: each product rounded, then the sum.
    const float f1 = __bfloat162float(a[i]), f2 = __bfloat162float(a2[i]);
    r1[i] = __float2bfloat16_rn(round_bf16(f1 * __bfloat162float(reinterpret_cast<const __nv_bfloat16*>(&c1)[i])) +
                                round_bf16(f2 * __bfloat162float(reinterpret_cast<const __nv_bfloat16*>(&s1)[i])));
    r2[i] = __float2bfloat16_rn(round_bf16(f2 * __bfloat162float(reinterpret_cast<const __nv_bfloat16*>(&c2)[i])) +
                                round_bf16(f1 * __bfloat162float(reinterpret_cast<const __nv_bfloat16*>(&s2)[i])));
  }
  __nv_bfloat16* dst = head < p.heads ? static_cast<__nv_bfloat16*>(p.q) + (int64_t{b} * p.heads + head) * kE
                                      : cache_at(p.k_cache, head - p.heads);
  *reinterpret_cast<uint4*>(dst + at) = o1;
  *reinterpret_cast<uint4*>(dst + kHalf + at) = o2;
}

// ---- attention over one chunk of keys ----


__device__ __forceinline__ void unpack4(const uint2& u, float (&f)[4]) {
  const float2 lo = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u.x));
  const float2 hi = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&u.y));
  f[0] = lo.x, f[1] = lo.y, f[2] = hi.x, f[3] = hi.y;
}

__device__ __forceinline__ void load4(const __nv_bfloat16* src, float (&f)[4]) {
  unpack4(*reinterpret_cast<const uint2*>(src), f);
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// The chunks' sums of one query head rescaled to their largest maximum and normalised, by the block that finished
// last; one thread per value. Partial sums written by other blocks are read past L1 (__ldcg): L1 is not coherent.
__device__ void combine(const DecodeAttentionProblem& p, int b, int head, int n_chunks) {
  __shared__ float weight[kMaxChunks];
  __shared__ float total;
  const float* part = p.partial + (int64_t{b} * p.heads + head) * n_chunks * (kE + 2);
  const int t = threadIdx.x;
  float m = -INFINITY;
  for (int c = 0; c < n_chunks; ++c) m = fmaxf(m, __ldcg(part + c * (kE + 2) + kE));
  for (int c = t; c < n_chunks; c += kThreads) {
    const float mc = __ldcg(part + c * (kE + 2) + kE);
    weight[c] = mc == -INFINITY ? 0.f : __expf(mc - m);  // a chunk with nothing visible counts for nothing
  }
  __syncthreads();
  if (t == 0) {
    float l = 0.f;
    for (int c = 0; c < n_chunks; ++c) l += weight[c] * __ldcg(part + c * (kE + 2) + kE + 1);
    total = l;
  }
  float o = 0.f;
#pragma unroll 4
  for (int c = 0; c < n_chunks; ++c) o += weight[c] * __ldcg(part + c * (kE + 2) + t);
  __syncthreads();
  static_cast<__nv_bfloat16*>(p.out)[(int64_t{b} * p.heads + head) * kE + t] =
      __float2bfloat16_rn(total > 0.f ? o / total : 0.f);
  __syncthreads();  // weight and total are reused by the next head
}

// Block (chunk, key head, row): the G query heads that share the key head, against kKeysPerChunk keys. Each warp
// takes kKeysPerWarp consecutive keys, each lane 4 of a row's 128 values; the warp's keys and values are all
// requested before any is used, so they are in flight together. With one chunk the block writes the output; with
// several, its unnormalised sums, maximum and sum of exponentials, and the last block of the key head combines.
template <int G>
__global__ void __launch_bounds__(kThreads) attention_kernel(DecodeAttentionProblem p) {
  __shared__ float score[G][kKeysPerChunk];
  __shared__ float sums[kWarps][G][kE];
  __shared__ float stat[G][2];  // maximum, sum of exponentials
  __shared__ bool last;
  const int chunk = blockIdx.x, kv_head = blockIdx.y, b = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int limit = static_cast<int>(min(static_cast<int64_t>(p.span), *p.slot + 1));
  const int first = chunk * kKeysPerChunk + warp * kKeysPerWarp;
  const int64_t cache_row = (int64_t{b} * p.kv_heads + kv_head) * p.capacity;
  const __nv_bfloat16* keys = static_cast<const __nv_bfloat16*>(p.k_cache) + cache_row * kE + lane * 4;
  const __nv_bfloat16* values = static_cast<const __nv_bfloat16*>(p.v_cache) + cache_row * kE + lane * 4;
  const __nv_bfloat16* mask = static_cast<const __nv_bfloat16*>(p.mask) + b * p.ld_mask;

  float bias[kKeysPerWarp];
  uint2 k_raw[kKeysPerWarp], v_raw[kKeysPerWarp];
#pragma unroll
  for (int i = 0; i < kKeysPerWarp; ++i) {
    const int pos = first + i;
    bias[i] = pos < limit ? __bfloat162float(mask[pos]) : -INFINITY;
    if (bias[i] <= -1e30f) bias[i] = -INFINITY;  // hidden: not read
    if (bias[i] != -INFINITY) {
      k_raw[i] = *reinterpret_cast<const uint2*>(keys + int64_t{pos} * kE);
      v_raw[i] = *reinterpret_cast<const uint2*>(values + int64_t{pos} * kE);
    }
  }
  float q[G][4];
  const float scale = rsqrtf(static_cast<float>(kE));
  for (int g = 0; g < G; ++g) {
    load4(static_cast<const __nv_bfloat16*>(p.q) + (int64_t{b} * p.heads + kv_head * G + g) * kE + lane * 4, q[g]);
    for (int e = 0; e < 4; ++e) q[g][e] *= scale;
  }
#pragma unroll
  for (int i = 0; i < kKeysPerWarp; ++i) {
    float k[4] = {0.f, 0.f, 0.f, 0.f};
    if (bias[i] != -INFINITY) unpack4(k_raw[i], k);
    for (int g = 0; g < G; ++g) {
      const float d = warp_sum(q[g][0] * k[0] + q[g][1] * k[1] + q[g][2] * k[2] + q[g][3] * k[3]);
      if (lane == 0) score[g][warp * kKeysPerWarp + i] = d + bias[i];  // -inf when hidden
    }
  }
  __syncthreads();
  for (int g = warp; g < G; g += kWarps) {  // softmax numerators of the chunk, against its own maximum
    const float a = score[g][lane], c = score[g][lane + 32];
    const float m = warp_max(fmaxf(a, c));
    const float ea = m == -INFINITY ? 0.f : __expf(a - m), ec = m == -INFINITY ? 0.f : __expf(c - m);
    score[g][lane] = ea;
    score[g][lane + 32] = ec;
    const float l = warp_sum(ea + ec);
    if (lane == 0) stat[g][0] = m, stat[g][1] = l;
  }
  __syncthreads();
  float acc[G][4] = {};
#pragma unroll
  for (int i = 0; i < kKeysPerWarp; ++i) {
    if (bias[i] == -INFINITY) continue;
    float v[4];
    unpack4(v_raw[i], v);
    for (int g = 0; g < G; ++g) {
      const float w = score[g][warp * kKeysPerWarp + i];
      for (int e = 0; e < 4; ++e) acc[g][e] += w * v[e];
    }
  }
  for (int g = 0; g < G; ++g)
    for (int e = 0; e < 4; ++e) sums[warp][g][lane * 4 + e] = acc[g][e];
  __syncthreads();
  const int t = threadIdx.x;  // one of the head's 128 values
  for (int g = 0; g < G; ++g) {
    float o = 0.f;
    for (int w = 0; w < kWarps; ++w) o += sums[w][g][t];
    const int head = kv_head * G + g;
    if (gridDim.x == 1) {
      const float l = stat[g][1];
      static_cast<__nv_bfloat16*>(p.out)[(int64_t{b} * p.heads + head) * kE + t] = __float2bfloat16_rn(l > 0.f ? o / l : 0.f);
    } else {
      float* part = p.partial + ((int64_t{b} * p.heads + head) * gridDim.x + chunk) * (kE + 2);
      part[t] = o;
      if (t == 0) part[kE] = stat[g][0], part[kE + 1] = stat[g][1];
    }
  }
  if (gridDim.x == 1) return;
  __threadfence();  // this block's partial sums visible to the block that combines
  __syncthreads();
  if (t == 0) last = atomicAdd(p.arrived + b * p.kv_heads + kv_head, 1) == static_cast<int>(gridDim.x) - 1;
  __syncthreads();
  if (!last) return;
  __threadfence();
  for (int g = 0; g < G; ++g) combine(p, b, kv_head * G + g, gridDim.x);
}

template <int G>
int launch_attention(const DecodeAttentionProblem& p, cudaStream_t stream) {
  attention_kernel<G><<<dim3(static_cast<unsigned>(chunks(p)), p.kv_heads, p.b), kThreads, 0, stream>>>(p);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

int launch_rope_write(const DecodeAttentionProblem& p, void* stream) {
  const int items = (p.heads + p.kv_heads) * (kHalf / 8) + p.kv_heads * (kE / 8);
  rope_write_kernel<<<dim3((items + 255) / 256, p.b), 256, 0, static_cast<cudaStream_t>(stream)>>>(p);
  return static_cast<int>(cudaGetLastError());
}

int launch_decode_attention(const DecodeAttentionProblem& p, void* stream) {
  const auto s = static_cast<cudaStream_t>(stream);
  switch (p.heads / p.kv_heads) {
    case 1: return launch_attention<1>(p, s);
    case 2: return launch_attention<2>(p, s);
    case 4: return launch_attention<4>(p, s);
    case 8: return launch_attention<8>(p, s);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

}  // namespace mmr::llava::gemv
