// The launch interface of the decoding step's attention kernels (decode_attention.cu; built only against a CUDA
// LibTorch with nvcc): plain C++, no CUDA or torch types, as gemv.h. One token per row, bf16, head size 128.
//
// One kernel: rotates the step's query and key heads (RoPE, rounded as the unfused bf16 ops round: the same
// bits), writes the rotated key and the value into the KV cache at the step's slot, which it reads on the device
// (a CUDA graph replays it unchanged from step to step), and computes softmax(q kᵀ / √E + mask) v over the cache,
// split along the keys into chunks that run in parallel (flash decoding); the last chunk of each key head to finish
// combines them. Positions after the step's slot are not read; masked ones before it are read and count for
// nothing (a NaN there does not leak).
#pragma once

#include <algorithm>
#include <cstdint>

namespace mmr::llava::gemv {

constexpr int kHeadDim = 128;

struct DecodeAttentionProblem {
  const void* qkv = nullptr;  // (B, (H + 2K)·E): the queries, then the keys, then the values; rows ld_qkv apart
  const void* cos = nullptr;  // (B, E) rows ld_rope apart; sin with its first half negated (Rope::cos_sin)
  const void* sin = nullptr;
  void* k_cache = nullptr;  // (B, K, C, E) contiguous
  void* v_cache = nullptr;
  const int64_t* slot = nullptr;  // on the device: the cache column this step writes, the same for every row
  const void* mask = nullptr;     // (B, S) additive, rows ld_mask apart: 0 visible, ≤ -1e30 hidden
  float* partial = nullptr;       // scratch of partial_floats() floats
  int* arrived = nullptr;         // B·K counters, zero before the launch; the launch leaves them zero
  void* out = nullptr;            // (B, H·E) contiguous
  int64_t ld_qkv = 0, ld_rope = 0, ld_mask = 0;
  int b = 0, heads = 0, kv_heads = 0, capacity = 0, span = 0;
  int chunk = 0;  // keys per chunk (keys_per_chunk())
};

// The block shape decode_attention.cu launches (decode_attention_kernel.cuh): 8 warps, each taking 4 keys a pass.
// tools/bench/attention_bench.cu on an H200, 13B heads, 701 positions, µs per layer (a plain read of the same
// bytes: 6.3 at batch 1, 28.6 at batch 8): the kernel before this one (4 warps of 16 keys, chunks of 64, every
// chunk's keys requested at once) 10.7 and 43.5; this shape with the chunks below 11.1 and 33.2. Other shapes
// (4 or 8 warps, 4, 8 or 16 keys a pass, chunks of 32 to 704 keys) were slower at batch 8, and at most 0.3 µs
// faster at batch 1.
constexpr int kAttentionWarps = 8, kAttentionPassKeys = 4;
constexpr int kMaxChunks = 256;
inline int64_t chunks(const DecodeAttentionProblem& p) { return (p.span + p.chunk - 1) / p.chunk; }
// Per (row, head, chunk): E partial sums, the chunk's maximum and its sum of exponentials.
inline int64_t partial_floats(const DecodeAttentionProblem& p) {
  return int64_t{p.b} * p.heads * chunks(p) * (kHeadDim + 2);
}

// Keys per chunk: enough chunks that the blocks number about kBlocksPerMultiprocessor per multiprocessor (a batch-1
// step has 40 key heads to spread over 132), as few as that allows (each chunk's partial sums cost a round trip
// through memory to combine; at batch 8 one chunk a head, 320 blocks, was the fastest), in whole passes of the
// block. A function of the launch's shape only, so a captured graph stays valid.
constexpr int kBlocksPerMultiprocessor = 2;
inline int keys_per_chunk(int b, int kv_heads, int span, int multiprocessors) {
  constexpr int pass = kAttentionWarps * kAttentionPassKeys;
  const int64_t heads = int64_t{b} * kv_heads;
  const int64_t wanted = std::max<int64_t>(1, (int64_t{kBlocksPerMultiprocessor} * multiprocessors + heads - 1) / heads);
  int64_t chunk = (span + wanted - 1) / wanted;
  chunk = std::max<int64_t>(chunk, (span + kMaxChunks - 1) / kMaxChunks);
  return static_cast<int>((chunk + pass - 1) / pass * pass);
}

// On `stream`, as a programmatic dependent launch when `pdl` (pdl.cuh); returns the CUDA error code, 0 when none.
int launch_decode_attention(const DecodeAttentionProblem& p, void* stream, bool pdl);

}  // namespace mmr::llava::gemv
