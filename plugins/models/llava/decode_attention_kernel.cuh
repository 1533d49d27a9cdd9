// The decoding step's attention kernel (decode_attention.h), as a template over the block's shape so that
// tools/bench/attention_bench.cu can time other shapes against the one decode_attention.cu launches. Before these
// kernels a 13B step spent, per layer, five kernels on RoPE and the cache writes and three on attention and its
// transposes (bench_llava --profile on an H200: 0.32 ms RoPE, 0.20 ms cache writes, 0.49 ms attention per step at
// batch 1, 1.76 ms attention at batch 8, where SDPA read all 128 slots of the last bucket and the padding too).
// Here one kernel does all of it: rotates, writes the cache, reads each visible key and value once and combines
// its chunks.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>

#include "decode_attention.h"
#include "pdl.cuh"

namespace mmr::llava::gemv::attention {

constexpr int kE = kHeadDim;
static_assert(kE == 4 * 32, "one warp reads a head's row as 4 values per lane");

__device__ __forceinline__ float round_bf16(float v) { return __bfloat162float(__float2bfloat16_rn(v)); }

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
template <int Threads>
__device__ void combine(const DecodeAttentionProblem& p, int b, int head, int n_chunks) {
  __shared__ float weight[kMaxChunks], share[kMaxChunks];
  __shared__ float total;
  const float* part = p.partial + (int64_t{b} * p.heads + head) * n_chunks * (kE + 2);
  const int t = threadIdx.x, lane = t % 32;
  for (int c = t; c < n_chunks; c += Threads) {
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
  if (t < kE) {
    float o = 0.f;
#pragma unroll 8
    for (int c = 0; c < n_chunks; ++c) o += weight[c] * __ldcg(part + c * (kE + 2) + t);
    static_cast<__nv_bfloat16*>(p.out)[(int64_t{b} * p.heads + head) * kE + t] =
        __float2bfloat16_rn(total > 0.f ? o / total : 0.f);
  }
  __syncthreads();  // the shared arrays are reused by the next head
}

// The running softmax of one query head over the keys a warp has seen: maximum, sum of exponentials against it,
// and the exponential-weighted sum of values (the 4 of the head's 128 this lane holds).
struct Running {
  float m = -INFINITY, l = 0.f, acc[4] = {0.f, 0.f, 0.f, 0.f};
};

// One pass of a warp: P consecutive keys, their values and mask entries, requested together.
template <int P>
struct Pass {
  uint2 k[P], v[P];
  __nv_bfloat16 mask[P];
  int first = 0;
};

// A masked slot below the limit is read like the others (a padded row's few) and then counts for nothing: its
// score is -inf whatever the key holds, and its value is never added, so stale or NaN bytes there do not leak.
template <int P>
__device__ __forceinline__ void request(Pass<P>& pass, int first, int limit, const __nv_bfloat16* keys,
                                        const __nv_bfloat16* values, const __nv_bfloat16* mask) {
  pass.first = first;
#pragma unroll
  for (int i = 0; i < P; ++i) {
    const int pos = first + i;
    if (pos < limit) {
      pass.mask[i] = mask[pos];
      pass.k[i] = *reinterpret_cast<const uint2*>(keys + int64_t{pos} * kE);
      pass.v[i] = *reinterpret_cast<const uint2*>(values + int64_t{pos} * kE);
    }
  }
}

// The pass's keys into each query head's running softmax: every lane computes the same scores (the dot products
// are reduced across the warp with xor shuffles), so the statistics need no shared memory.
template <int G, int P>
__device__ __forceinline__ void consume(const Pass<P>& pass, int limit, const float (&q)[G][4], Running (&run)[G]) {
  bool visible[P];
  float bias[P];
#pragma unroll
  for (int i = 0; i < P; ++i) {
    bias[i] = pass.first + i < limit ? __bfloat162float(pass.mask[i]) : -INFINITY;
    visible[i] = bias[i] > -1e30f;  // ≤ -1e30: hidden
  }
#pragma unroll
  for (int g = 0; g < G; ++g) {
    float s[P];
    float m = run[g].m;
#pragma unroll
    for (int i = 0; i < P; ++i) {
      float k[4] = {0.f, 0.f, 0.f, 0.f};
      if (visible[i]) unpack4(pass.k[i], k);
      const float d = warp_sum(q[g][0] * k[0] + q[g][1] * k[1] + q[g][2] * k[2] + q[g][3] * k[3]);
      s[i] = visible[i] ? d + bias[i] : -INFINITY;
      m = fmaxf(m, s[i]);
    }
    if (m == -INFINITY) continue;  // nothing visible yet
    const float rescale = __expf(run[g].m - m);  // 0 when nothing was visible before
    run[g].l *= rescale;
    for (int e = 0; e < 4; ++e) run[g].acc[e] *= rescale;
    run[g].m = m;
#pragma unroll
    for (int i = 0; i < P; ++i) {
      if (!visible[i]) continue;
      const float w = __expf(s[i] - m);
      float v[4];
      unpack4(pass.v[i], v);
      run[g].l += w;
      for (int e = 0; e < 4; ++e) run[g].acc[e] += w * v[e];
    }
  }
}

// Block (chunk, key head, row): the G query heads that share the key head, against p.chunk keys, in passes of
// Warps·P keys (warp w takes keys w·P .. w·P + P - 1 of each pass, each lane 4 of a row's 128 values). A warp
// requests its next pass before it computes the current one, so its loads stay in flight while it works: the
// cache streams through at close to the memory's rate however long the chunk is (tools/bench/attention_bench.cu).
// The warps' softmaxes meet in shared memory; with one chunk the block writes the output, with several its
// unnormalised sums, maximum and sum of exponentials, and the last block of the key head combines them.
template <int G, int Warps, int P>
__global__ void __launch_bounds__(Warps * 32) attention_kernel(DecodeAttentionProblem p) {
  constexpr int kThreads = Warps * 32, kPassKeys = Warps * P;
  static_assert(kThreads >= kE, "a thread per head value");
  __shared__ float sums[Warps][G][kE];
  __shared__ float stat[Warps][G][2];  // maximum, sum of exponentials
  __shared__ bool last;
  pdl::allow_next_kernel();
  pdl::wait_for_previous_kernel();  // everything below reads the step's data (pdl.cuh)
  const int chunk = blockIdx.x, kv_head = blockIdx.y, b = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, t = threadIdx.x;
  const int64_t slot = *p.slot;
  const int begin = chunk * p.chunk;
  const int limit = static_cast<int>(min(min(static_cast<int64_t>(p.span), slot + 1), int64_t{begin} + p.chunk));
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
  if (warp == 0 && chunk == min(static_cast<int64_t>(gridDim.x) - 1, slot / p.chunk)) {
    float k[4], v[4];
    load4(row + (p.heads + kv_head) * kE, k);
    load4(row + (p.heads + p.kv_heads + kv_head) * kE, v);
    rotate4(k, cs, sn);
    store4(static_cast<__nv_bfloat16*>(p.k_cache) + (cache_row + slot) * kE + lane * 4, k);
    store4(static_cast<__nv_bfloat16*>(p.v_cache) + (cache_row + slot) * kE + lane * 4, v);
  }
  __syncthreads();

  Pass<P> a, c;  // the pass being computed and the next, alternately
  request(a, begin + warp * P, limit, keys, values, mask);
  float q[G][4];  // each chunk's block rotates the queries itself: 128 values a head
  const float scale = rsqrtf(static_cast<float>(kE));
  for (int g = 0; g < G; ++g) {
    load4(row + (kv_head * G + g) * kE, q[g]);
    rotate4(q[g], cs, sn);
    for (int e = 0; e < 4; ++e) q[g][e] *= scale;
  }
  Running run[G];
  for (int first = begin + warp * P; first < limit; first += 2 * kPassKeys) {
    request(c, first + kPassKeys, limit, keys, values, mask);
    consume<G>(a, limit, q, run);
    if (first + kPassKeys >= limit) break;
    request(a, first + 2 * kPassKeys, limit, keys, values, mask);
    consume<G>(c, limit, q, run);
  }
  for (int g = 0; g < G; ++g) {
    for (int e = 0; e < 4; ++e) sums[warp][g][lane * 4 + e] = run[g].acc[e];
    if (lane == 0) stat[warp][g][0] = run[g].m, stat[warp][g][1] = run[g].l;
  }
  __syncthreads();
  if (t < kE) {  // one of the head's 128 values: the warps' softmaxes rescaled to their largest maximum
    for (int g = 0; g < G; ++g) {
      float m = -INFINITY;
      for (int w = 0; w < Warps; ++w) m = fmaxf(m, stat[w][g][0]);
      float o = 0.f, l = 0.f;
      for (int w = 0; w < Warps; ++w) {
        const float f = stat[w][g][0] == -INFINITY ? 0.f : __expf(stat[w][g][0] - m);
        o += f * sums[w][g][t];
        l += f * stat[w][g][1];
      }
      const int head = kv_head * G + g;
      if (gridDim.x == 1) {
        static_cast<__nv_bfloat16*>(p.out)[(int64_t{b} * p.heads + head) * kE + t] =
            __float2bfloat16_rn(l > 0.f ? o / l : 0.f);
      } else {
        float* part = p.partial + ((int64_t{b} * p.heads + head) * gridDim.x + chunk) * (kE + 2);
        part[t] = o;
        if (t == 0) part[kE] = m, part[kE + 1] = l;
      }
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
  for (int g = 0; g < G; ++g) combine<kThreads>(p, b, kv_head * G + g, gridDim.x);
  if (t == 0) *arrived = 0;  // ready for the next launch (stream-ordered after this one)
}

template <int G, int Warps, int P>
int launch(const DecodeAttentionProblem& p, cudaStream_t stream, bool dependent) {
  if (p.chunk <= 0 || chunks(p) > kMaxChunks) return static_cast<int>(cudaErrorInvalidValue);
  return pdl::launch(attention_kernel<G, Warps, P>, dim3(static_cast<unsigned>(chunks(p)), p.kv_heads, p.b),
                     dim3(Warps * 32), stream, dependent, p);
}

// By the number of query heads per key head (the ones LLaMA models use).
template <int Warps, int P>
int launch_any_group(const DecodeAttentionProblem& p, cudaStream_t stream, bool dependent) {
  switch (p.heads / p.kv_heads) {
    case 1: return launch<1, Warps, P>(p, stream, dependent);
    case 2: return launch<2, Warps, P>(p, stream, dependent);
    case 4: return launch<4, Warps, P>(p, stream, dependent);
    case 8: return launch<8, Warps, P>(p, stream, dependent);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

}  // namespace mmr::llava::gemv::attention
