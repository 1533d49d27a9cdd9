// The launch interface of the decoding step's attention kernels (decode_attention.cu; built only against a CUDA
// LibTorch with nvcc): plain C++, no CUDA or torch types, as gemv.h. One token per row, bf16, head size 128.
//
// One kernel: rotates the step's query and key heads (RoPE, rounded as the unfused bf16 ops round: the same
// bits), writes the rotated key and the value into the KV cache at the step's slot, which it reads on the device
// (a CUDA graph replays it unchanged from step to step), and computes softmax(q kᵀ / √E + mask) v over the cache,
// split along the keys into chunks that run in parallel (flash decoding); the last chunk of each key head to finish
// combines them. Positions after the step's slot and masked ones are skipped, not read.
#pragma once

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
};

constexpr int kKeysPerChunk = 64;
constexpr int kMaxChunks = 256;  // spans up to 16,384 slots
inline int64_t chunks(const DecodeAttentionProblem& p) { return (p.span + kKeysPerChunk - 1) / kKeysPerChunk; }
// Per (row, head, chunk): E partial sums, the chunk's maximum and its sum of exponentials.
inline int64_t partial_floats(const DecodeAttentionProblem& p) {
  return int64_t{p.b} * p.heads * chunks(p) * (kHeadDim + 2);
}

// On `stream`, as a programmatic dependent launch when `pdl` (pdl.cuh); returns the CUDA error code, 0 when none.
int launch_decode_attention(const DecodeAttentionProblem& p, void* stream, bool pdl);

}  // namespace mmr::llava::gemv
