// The decoding step's attention (decode_attention.h). Before these kernels a 13B step spent, per layer, five
// kernels on RoPE and the cache writes and three on attention and its transposes (bench_llava --profile on an
// H200: 0.32 ms RoPE, 0.20 ms cache writes, 0.49 ms attention per step at batch 1, 1.76 ms attention at batch 8,
// where SDPA read all 128 slots of the last bucket and the padding too). Here one kernel does all of it: rotates,
// writes the cache, reads each visible key and value once and combines its chunks.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>

#include "decode_attention.h"
#include "pdl.cuh"

namespace mmr::llava::gemv {

namespace {

constexpr int kE = kHeadDim;
constexpr int kWarps = 4, kThreads = kWarps * 32;
constexpr int kKeysPerWarp = kKeysPerChunk / kWarps;
static_assert(kE == 4 * 32, "one warp reads a head's row as 4 values per lane");

__device__ __forceinline__ float round_bf16(float v) { return __bfloat162float(__float2bfloat16_rn(v)); }

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

// Lane `lane` of a warp holds values 4·lane .. 4·lane + 3 of a head; RoPE pairs value i with i ± 64, which lane
// lane ^ 16 holds. Rotated as apply_rope computes x·cos + cat(x₂, x₁)·sin in bf16 (sin's first half negated by
// Rope::cos_sin): each product rounded, then the sum, so the values are the same bits as the unfused ops'.
__device__ __forceinline__ void rotate4(float (&x)[4], const float (&cs)[4], const float (&sn)[4]) {
  float partner[4];
  for (int e = 0; e < 4; ++e) partner[e] = __shfl_xor_sync(0xffffffffu, x[e], 16);
  for (int e = 0; e < 4; ++e) x[e] = round_bf16(round_bf16(x[e] * cs[e]) + round_bf16(partner[e] * sn[e]));
}

__device__ __forceinline__ void store4(__nv_bfloat16* dst, const float (&f)[4]) {
  uint2 u;
  *reinterpret_cast<__nv_bfloat162*>(&u.x) = __floats2bfloat162_rn(f[0], f[1]);
  *reinterpret_cast<__nv_bfloat162*>(&u.y) = __floats2bfloat162_rn(f[2], f[3]);
  *reinterpret_cast<uint2*>(dst) = u;
}

// The chunks' sums of one query head rescaled to their largest maximum and normalised, by the block that finished
// last. It is on the step's critical path, so no thread waits on a chain of loads: the chunks' statistics are read
// one per thread, reduced in shared memory, and each thread then sums its value over the chunks with independent
// loads. Partial sums written by other blocks are read past L1 (__ldcg): L1 is not coherent.
__device__ void combine(const DecodeAttentionProblem& p, int b, int head, int n_chunks) {
  __shared__ float weight[kMaxChunks], share[kMaxChunks];
  __shared__ float total;
  const float* part = p.partial + (int64_t{b} * p.heads + head) * n_chunks * (kE + 2);
  const int t = threadIdx.x, lane = t % 32;
  for (int c = t; c < n_chunks; c += kThreads) {
    weight[c] = __ldcg(part + c * (kE + 2) + kE);  // the chunk's maximum, for now
    share[c] = __ldcg(part + c * (kE + 2) + kE + 1);
  }
  __syncthreads();
  if (t < 32) {
    float m = -INFINITY;
    for (int c = lane; c < n_chunks; c += 32) m = fmaxf(m, weight[c]);
    m = warp_max(m);
    float l = 0.f;
    for (int c = lane; c < n_chunks; c += 32) {
      const float w = weight[c] == -INFINITY ? 0.f : __expf(weight[c] - m);  // nothing visible: counts for nothing
      weight[c] = w;
      l += w * share[c];
    }
    l = warp_sum(l);
    if (lane == 0) total = l;
  }
  __syncthreads();
  float o = 0.f;
#pragma unroll 8
  for (int c = 0; c < n_chunks; ++c) o += weight[c] * __ldcg(part + c * (kE + 2) + t);
  static_cast<__nv_bfloat16*>(p.out)[(int64_t{b} * p.heads + head) * kE + t] =
      __float2bfloat16_rn(total > 0.f ? o / total : 0.f);
  __syncthreads();  // the shared arrays are reused by the next head
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
  pdl::allow_next_kernel();
  pdl::wait_for_previous_kernel();  // everything below reads the step's data (pdl.cuh)
  const int chunk = blockIdx.x, kv_head = blockIdx.y, b = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int limit = static_cast<int>(min(static_cast<int64_t>(p.span), *p.slot + 1));  // slots after it: unwritten
  const int first = chunk * kKeysPerChunk + warp * kKeysPerWarp;
  const int64_t cache_row = (int64_t{b} * p.kv_heads + kv_head) * p.capacity;
  const __nv_bfloat16* keys = static_cast<const __nv_bfloat16*>(p.k_cache) + cache_row * kE + lane * 4;
  const __nv_bfloat16* values = static_cast<const __nv_bfloat16*>(p.v_cache) + cache_row * kE + lane * 4;
  const __nv_bfloat16* mask = static_cast<const __nv_bfloat16*>(p.mask) + b * p.ld_mask;
  const __nv_bfloat16* row = static_cast<const __nv_bfloat16*>(p.qkv) + b * p.ld_qkv + lane * 4;
  float cs[4], sn[4];
  load4(static_cast<const __nv_bfloat16*>(p.cos) + b * p.ld_rope + lane * 4, cs);
  load4(static_cast<const __nv_bfloat16*>(p.sin) + b * p.ld_rope + lane * 4, sn);

  // The step's key and value into the cache, by the block whose chunk holds the slot (the last one if the slot
  // lies past the span: written, not attended to), before any warp of it reads that slot.
  const int64_t slot = *p.slot;
  if (warp == 0 && chunk == min(static_cast<int64_t>(gridDim.x) - 1, slot / kKeysPerChunk)) {
    float k[4], v[4];
    load4(row + (p.heads + kv_head) * kE, k);
    load4(row + (p.heads + p.kv_heads + kv_head) * kE, v);
    rotate4(k, cs, sn);
    store4(static_cast<__nv_bfloat16*>(p.k_cache) + (cache_row + slot) * kE + lane * 4, k);
    store4(static_cast<__nv_bfloat16*>(p.v_cache) + (cache_row + slot) * kE + lane * 4, v);
  }
  __syncthreads();

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
  float q[G][4];  // each chunk's block rotates the queries itself: 128 values a head
  const float scale = rsqrtf(static_cast<float>(kE));
  for (int g = 0; g < G; ++g) {
    load4(row + (kv_head * G + g) * kE, q[g]);
    rotate4(q[g], cs, sn);
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
  int* arrived = p.arrived + b * p.kv_heads + kv_head;
  if (t == 0) last = atomicAdd(arrived, 1) == static_cast<int>(gridDim.x) - 1;
  __syncthreads();
  if (!last) return;
  __threadfence();
  for (int g = 0; g < G; ++g) combine(p, b, kv_head * G + g, gridDim.x);
  if (t == 0) *arrived = 0;  // ready for the next launch (stream-ordered after this one)
}

template <int G>
int launch_attention(const DecodeAttentionProblem& p, cudaStream_t stream, bool dependent) {
  return pdl::launch(attention_kernel<G>, dim3(static_cast<unsigned>(chunks(p)), p.kv_heads, p.b), dim3(kThreads),
                     stream, dependent, p);
}

}  // namespace

int launch_decode_attention(const DecodeAttentionProblem& p, void* stream, bool dependent) {
  const auto s = static_cast<cudaStream_t>(stream);
  switch (p.heads / p.kv_heads) {
    case 1: return launch_attention<1>(p, s, dependent);
    case 2: return launch_attention<2>(p, s, dependent);
    case 4: return launch_attention<4>(p, s, dependent);
    case 8: return launch_attention<8>(p, s, dependent);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

}  // namespace mmr::llava::gemv
