// y = x Wᵀ for decoding: a few rows of bf16 activations (M ≤ 8) against a bf16 weight matrix streamed once from
// memory, fp32 accumulation. Included by gemv.cu (the plugin's instance) and tools/bench/gemv_bench.cu (variants).
//
// At M ≤ 8 a linear layer is a matrix-vector product bound by reading W: a 13B decoding step reads 26 GB of
// weights, so what matters is keeping enough 16-byte loads in flight on every multiprocessor. The products use the
// tensor cores (mma.sync m16n8k16) with the activations as the 16-row A operand (rows ≥ M are zero) and 8 weight
// rows as B: each thread then reads 16 contiguous bytes of one weight row and 16 of one activation row per 32
// values of k, and the arithmetic costs next to nothing (with plain FMAs, M = 8 would be compute bound).
//
// The k order inside a product does not matter, so the 8 values thread (g, t) loads (row g, k = 32 s + 8 t ...
// + 7) serve as two mma steps: values 0-3 are its k = 2t, 2t+1, 2t+8, 2t+9 of the first, values 4-7 of the
// second; A and B use the same mapping, so the sum is the dot product.
//
// A block holds 8·T weight rows (T tiles of 8) and its WARPS warps split k; their partial sums meet in shared
// memory, where the epilogue (residual add, or SiLU(gate)·up) is applied before the one bf16 store.
//
// Measured (tools/bench/gemv_bench.cu, H200, M = 1): as fast as cuBLAS where N is small (o_proj 16.3 µs, down_proj
// 38.5, against 16.4 and 40.0), 12-14% above a plain read stream of the same bytes; cuBLAS is 8-9% faster at
// N ≥ 15360 (qkv 43.1 against 39.7 µs, lm_head 83.0 against 80.7). An RMSNorm fused in front (x·γ in the
// product, 1/rms after it) made the qkv and gate-up products 19-21% longer, more than the norm kernel it saved (a
// 13B step at batch 1: 9.50 ms against 9.04), so it is not done.
//
// Tried on H200s in session 16 and dropped (numbers in the README, "After the table"): k split over 2-4
// blocks per tile, the last one adding the parts (qkv 55-68 µs against 43.5 at M = 1: each block's fixed cost
// grows with their number); each block asking L2 for its whole tile before the PDL wait (a batch-1 step 8.96 ms
// against 7.79). Kept: persistent blocks (persistent_grid), a batch-8 step 9.46 ms against 9.74 with one block
// per tile in the same process, but slower at M = 1 on that machine (8.11 against 7.88 ms). Which block shape is
// fastest differed between machines, so gemv.cu times the candidates on the running card. Session 18 added
// gemv_staged_kernel (weights through shared memory, 3 groups of loads in flight): alone, down_proj 39.7 µs against
// 45.2 at M = 1; in a 13B step 7.44 / 9.00 ms (batch 1 / 8) against 7.73 / 9.22 with the register kernels only.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "gemv.h"
#include "pdl.cuh"

namespace mmr::llava::gemv {

namespace detail {

// A weight load: read once, so it should not displace the activations from L1; L2 fetches 256 bytes at once.
__device__ __forceinline__ uint4 load_weight(const void* p) {
  uint4 v;
  asm("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(p));
  return v;
}

// c += A B for one m16n8k16 step, A's rows 8..15 zero (their two result values are dropped).
__device__ __forceinline__ void mma(float (&c)[2], uint32_t a_lo, uint32_t a_hi, uint32_t b_lo, uint32_t b_hi) {
  float unused0, unused1;  // results of A's zero rows
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%10, %11, %12, %13};"
      : "=f"(c[0]), "=f"(c[1]), "=f"(unused0), "=f"(unused1)
      : "r"(a_lo), "r"(0u), "r"(a_hi), "r"(0u), "r"(b_lo), "r"(b_hi), "f"(c[0]), "f"(c[1]), "f"(0.f), "f"(0.f));
  (void)unused0;
  (void)unused1;
}

__device__ __forceinline__ float round_bf16(float v) { return __bfloat162float(__float2bfloat16(v)); }

}  // namespace detail

// The grid for `tiles` column tiles when `resident` blocks fit on the card at once: each block then takes the
// same number of tiles (tiles ≤ resident: one each, the plain one-block-per-tile launch).
inline int persistent_grid(int tiles, int resident) {
  if (resident <= 0 || tiles <= resident) return tiles;
  const int per_block = (tiles + resident - 1) / resident;
  return (tiles + per_block - 1) / per_block;
}

// The weight row that thread row g reads for tile `tile`, its i-th group of 8 rows (kSiluMul: the first half of a
// block's rows are gate rows, the second half the matching up rows, N rows further). Past the end: row 0, whose
// sums are never stored.
template <int T, Epilogue E>
__device__ __forceinline__ const __nv_bfloat16* weight_row(const Problem& p, int tile, int i, int g) {
  constexpr int kRows = 8 * T, kCols = E == Epilogue::kSiluMul ? kRows / 2 : kRows;
  const int col0 = tile * kCols, r = 8 * i + g;
  int row = col0 + r;
  if (E == Epilogue::kSiluMul) row = r < kCols ? col0 + r : p.n + col0 + r - kCols;
  const int w_rows = E == Epilogue::kSiluMul ? 2 * p.n : p.n;
  return static_cast<const __nv_bfloat16*>(p.w) + (row < w_rows ? row : 0) * p.ldw;
}

// A tile's end: the warps' partial sums (acc[i][j]: activation row g, weight row 8 i + 2 t + j) meet in
// `partial` (this tile's half of the block's [2][WARPS][8 T][8] buffer: two halves, so one __syncthreads per tile
// suffices — a warp writing tile i + 2's sums has passed tile i + 1's barrier, which every thread reaches after
// reading tile i's), summed over the warps in order, the epilogue applied, one bf16 store per output.
template <int T, int WARPS, Epilogue E>
__device__ __forceinline__ void store_tile(const Problem& p, int tile, const float (&acc)[T][2],
                                           float (*partial)[8 * T][8]) {
  constexpr int kRows = 8 * T, kCols = E == Epilogue::kSiluMul ? kRows / 2 : kRows;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int i = 0; i < T; ++i) {
    partial[warp][8 * i + 2 * t][g] = acc[i][0];
    partial[warp][8 * i + 2 * t + 1][g] = acc[i][1];
  }
  __syncthreads();
  const int col0 = tile * kCols;
  for (int idx = threadIdx.x; idx < 8 * kCols; idx += WARPS * 32) {
    const int m = idx / kCols, c = idx % kCols, col = col0 + c;
    if (m >= p.m || col >= p.n) continue;
    float v = 0.f;
#pragma unroll
    for (int w = 0; w < WARPS; ++w) v += partial[w][c][m];
    if (E == Epilogue::kResidual)
      v += __bfloat162float(static_cast<const __nv_bfloat16*>(p.residual)[m * p.ldr + col]);
    if (E == Epilogue::kSiluMul) {
      float up = 0.f;
#pragma unroll
      for (int w = 0; w < WARPS; ++w) up += partial[w][kCols + c][m];
      const float gate = detail::round_bf16(v);
      v = detail::round_bf16(gate / (1.f + expf(-gate))) * detail::round_bf16(up);
    }
    static_cast<__nv_bfloat16*>(p.y)[m * p.ldy + col] = __float2bfloat16(v);
  }
}

// How a warp splits k (every kernel here alike, so their sums and bits agree): its share is slabs
// [s_begin, s_end) of 32 values (one 16-byte chunk per thread and row, chunk (s + u)·4 + t); past its share or the
// row's end a thread loads chunk 0 (always valid) and uses zeros.
struct KSplit {
  int chunks, s_begin, s_end, t;
  template <int WARPS>
  __device__ static KSplit of(const Problem& p, int warp, int t) {
    const int chunks = p.k >> 3, slabs = (chunks + 3) >> 2;
    return {chunks, slabs * warp / WARPS, slabs * (warp + 1) / WARPS, t};
  }
  __device__ int chunk(int s, int u) const { return (s + u) * 4 + t; }
  __device__ bool valid(int s, int u) const { return s + u < s_end && chunk(s, u) < chunks; }
  __device__ int offset(int s, int u) const { return 8 * (valid(s, u) ? chunk(s, u) : 0); }  // in values
};

// The products of one group of U slabs: activations loaded here (L1 and L2 keep them, every block reads them).
template <int T, int U>
__device__ __forceinline__ void multiply_group(float (&acc)[T][2], const uint4 (&wv)[U][T], const KSplit& ks,
                                               int s, const __nv_bfloat16* x_row, bool has_x) {
  const uint4 zero = make_uint4(0, 0, 0, 0);
  uint4 xv[U];
#pragma unroll
  for (int u = 0; u < U; ++u) {
    xv[u] = __ldg(reinterpret_cast<const uint4*>(x_row + ks.offset(s, u)));
    if (!ks.valid(s, u) || !has_x) xv[u] = zero;
  }
#pragma unroll
  for (int u = 0; u < U; ++u)
#pragma unroll
    for (int i = 0; i < T; ++i) {
      detail::mma(acc[i], xv[u].x, xv[u].y, wv[u][i].x, wv[u][i].y);
      detail::mma(acc[i], xv[u].z, xv[u].w, wv[u][i].z, wv[u][i].w);
    }
}

// Grid: any number of blocks up to one per tile of 8·T output columns (kSiluMul: 4·T, each with its gate and up
// row); block b takes tiles b, b + grid, ... WARPS·32 threads. With fewer blocks than tiles (persistent_grid), a
// block issues its next tile's first loads before the current tile's reduction, so the memory system does not
// drain between tiles as it does between blocks.
template <int T, int WARPS, int U, Epilogue E>
__global__ void __launch_bounds__(WARPS * 32) gemv_kernel(Problem p) {
  constexpr int kCols = E == Epilogue::kSiluMul ? 4 * T : 8 * T;
  __shared__ float partial[2][WARPS][8 * T][8];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2;
  const int tiles = (p.n + kCols - 1) / kCols;
  const KSplit ks = KSplit::of<WARPS>(p, warp, lane & 3);
  const bool has_x = g < p.m;
  const __nv_bfloat16* x_row = static_cast<const __nv_bfloat16*>(p.x) + (has_x ? g : 0) * p.ldx;

  const __nv_bfloat16* w_row[T];
  auto point_at = [&](int tile) {
#pragma unroll
    for (int i = 0; i < T; ++i) w_row[i] = weight_row<T, E>(p, tile, i, g);
  };
  uint4 wv[U][T];
  auto load_w = [&](int s) {
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int i = 0; i < T; ++i) {
        wv[u][i] = detail::load_weight(w_row[i] + ks.offset(s, u));
        if (!ks.valid(s, u)) wv[u][i] = make_uint4(0, 0, 0, 0);
      }
  };
  // The weights do not depend on the kernel before this one: the first group's loads go out before waiting for
  // it (pdl.cuh).
  pdl::allow_next_kernel();
  point_at(blockIdx.x);
  if (ks.s_begin < ks.s_end) load_w(ks.s_begin);
  pdl::wait_for_previous_kernel();
  int parity = 0;
  for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x, parity ^= 1) {
    float acc[T][2] = {};
    for (int s = ks.s_begin; s < ks.s_end; s += U) {
      if (s != ks.s_begin) load_w(s);
      multiply_group<T, U>(acc, wv, ks, s, x_row, has_x);
    }
    if (tile + int(gridDim.x) < tiles) {  // the next tile's first loads, in flight during this one's reduction
      point_at(tile + gridDim.x);
      if (ks.s_begin < ks.s_end) load_w(ks.s_begin);
    }
    store_tile<T, WARPS, E>(p, tile, acc, partial[parity]);
  }
}

namespace detail {

// 16 bytes from global to shared memory without passing through registers (cp.async), cached in L2 only, L2
// fetching 256 bytes at once; `bytes` = 0 writes zeros instead (a chunk past the share of k or the row's end).
__device__ __forceinline__ void copy_async(void* shared, const void* global, int bytes) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(shared));
  asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16, %2;" ::"r"(dst), "l"(global), "r"(bytes)
               : "memory");
}
__device__ __forceinline__ void commit_copies() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int Pending>
__device__ __forceinline__ void wait_copies() {  // until at most Pending of this thread's groups are in flight
  asm volatile("cp.async.wait_group %0;" ::"n"(Pending) : "memory");
}

}  // namespace detail

// The bytes of dynamic shared memory gemv_staged_kernel<T, WARPS, U, S, E> needs.
template <int T, int WARPS, int U, int S>
constexpr int staged_bytes() {
  return S * U * T * WARPS * 32 * 16;
}

// gemv_kernel with the weights staged through shared memory: each thread keeps S groups of U·T 16-byte loads in
// flight (cp.async) instead of one group in registers, so more of the memory system's latency is covered by
// loads already issued (the register kernel is held to one group by its registers). A thread reads back only
// what it copied itself, so cp.async.wait_group orders it and no barrier is needed; its slabs, their order and
// the sums are gemv_kernel's, so the bits are the same. A thread's sequence of groups runs on across its block's
// tiles (group q: tile blockIdx.x + (q / groups)·grid, slabs s_begin + (q mod groups)·U), so a persistent block's
// next tile is already loading during the current one's end. Dynamic shared memory: staged_bytes().
template <int T, int WARPS, int U, int S, Epilogue E>
__global__ void __launch_bounds__(WARPS * 32) gemv_staged_kernel(Problem p) {
  constexpr int kCols = E == Epilogue::kSiluMul ? 4 * T : 8 * T;
  __shared__ float partial[2][WARPS][8 * T][8];
  extern __shared__ uint4 staged[];  // [S][U][T][WARPS * 32]: a warp's 16-byte words adjacent, no bank conflict
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int g = lane >> 2;
  const int tiles = (p.n + kCols - 1) / kCols;
  const KSplit ks = KSplit::of<WARPS>(p, warp, lane & 3);
  const bool has_x = g < p.m;
  const __nv_bfloat16* x_row = static_cast<const __nv_bfloat16*>(p.x) + (has_x ? g : 0) * p.ldx;
  const int groups = ks.s_end > ks.s_begin ? (ks.s_end - ks.s_begin + U - 1) / U : 1;  // per tile, this warp
  auto slot = [&](int q, int u, int i) { return staged + ((q % S * U + u) * T + i) * (WARPS * 32) + threadIdx.x; };
  auto issue = [&](int q) {  // group q's copies (none past the last tile), always one commit
    const int tile = blockIdx.x + (q / groups) * int(gridDim.x), s = ks.s_begin + (q % groups) * U;
    if (tile < tiles)
#pragma unroll
      for (int i = 0; i < T; ++i) {
        const __nv_bfloat16* row = weight_row<T, E>(p, tile, i, g);
#pragma unroll
        for (int u = 0; u < U; ++u) detail::copy_async(slot(q, u, i), row + ks.offset(s, u), ks.valid(s, u) ? 16 : 0);
      }
    detail::commit_copies();
  };
  // The weights do not depend on the kernel before this one: the first S groups go out before waiting (pdl.cuh).
  pdl::allow_next_kernel();
#pragma unroll
  for (int q = 0; q < S; ++q) issue(q);
  pdl::wait_for_previous_kernel();
  int q = 0, parity = 0;
  for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x, parity ^= 1) {
    float acc[T][2] = {};
    for (int j = 0; j < groups; ++j, ++q) {
      detail::wait_copies<S - 1>();  // group q has landed
      uint4 wv[U][T];
#pragma unroll
      for (int u = 0; u < U; ++u)
#pragma unroll
        for (int i = 0; i < T; ++i) wv[u][i] = *slot(q, u, i);
      issue(q + S);  // into the slots just read (this thread's own: program order suffices)
      multiply_group<T, U>(acc, wv, ks, ks.s_begin + j * U, x_row, has_x);
    }
    store_tile<T, WARPS, E>(p, tile, acc, partial[parity]);
  }
}

}  // namespace mmr::llava::gemv
