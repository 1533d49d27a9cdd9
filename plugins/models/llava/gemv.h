// The launch interface of the decoding step's kernels (gemv.cu, rms_norm.cu; built only against a CUDA LibTorch):
// plain C++, no CUDA or torch types, so the torch-side wrapper (fast_linear.cpp) and the standalone benchmark
// (tools/bench/gemv_bench.cu) share it. Shape letters: M activation rows, K input width, N output columns.
#pragma once

#include <cstdint>
#include <string>

namespace mmr::llava::gemv {

enum class Epilogue {
  kNone,      // y = x Wᵀ
  kResidual,  // y = residual + x Wᵀ, rounded once (as addmm with beta = 1)
  kSiluMul,   // W = [gate; up] (2N, K): y = silu(x Gᵀ) · (x Uᵀ), rounded where the unfused ops round
};

// All tensors bf16, row-major, rows ld elements apart.
struct Problem {
  const void* x = nullptr;         // (M, K); 16-byte aligned, ldx a multiple of 8
  const void* w = nullptr;         // (N, K), or (2N, K) for kSiluMul; as x
  const void* residual = nullptr;  // (M, N); kResidual only
  void* y = nullptr;               // (M, N)
  int64_t ldx = 0, ldw = 0, ldr = 0, ldy = 0;
  int m = 0, k = 0, n = 0;  // M in 1..8, K a multiple of 8
};

constexpr int kMaxRows = 8;

// Launches the product on `stream` (a cudaStream_t); `pdl`: as a programmatic dependent launch, which may start
// (and load weights) before the kernel before it ends (pdl.cuh). Returns the CUDA error code, 0 when none.
// The block shape is chosen per device and shape at the first call outside a graph capture, by timing each
// candidate (gemv.cu): the first call of a shape takes a few milliseconds and synchronizes the stream.
// `multiprocessors`: the device's count (the persistent candidates' grid).
int launch(const Problem& p, Epilogue e, void* stream, bool pdl, int multiprocessors);

// One line per shape tuned so far in this process: the choice and each candidate's median time.
std::string tuned_choices();

// y = x / rms(x) · weight per row (Zhang & Sennrich 2019), in float32, rounded to bf16 once (as at::rms_norm).
struct NormProblem {
  const void* x = nullptr;       // (M, K), rows ldx apart; 16-byte aligned, ldx a multiple of 8
  const void* weight = nullptr;  // (K); 16-byte aligned
  void* y = nullptr;             // (M, K), rows ldy apart; as x
  int64_t ldx = 0, ldy = 0;
  int m = 0, k = 0;  // K a multiple of 8
  float eps = 0.f;
};

int launch_rms_norm(const NormProblem& p, void* stream, bool pdl);  // as launch()

// A prefill's elementwise steps (prefill_ops.cu), each one kernel instead of ATen's two to four, rounded to bf16
// where those round; plain launches (the products around them are cuBLAS's).

// LlamaRotaryEmbedding as apply_rope in modules.cpp: y = x·cos + cat(x₂, x₁)·sin, with sin's first half negated.
struct RopeProblem {
  const void* x = nullptr;    // (B, T, R, E): rows of R heads of E values, heads adjacent; 16-byte aligned
  const void* cos = nullptr;  // (B, T, E), contiguous
  const void* sin = nullptr;  // as cos
  void* y = nullptr;          // (B, T, R, E), contiguous
  int64_t ld_batch = 0, ld_token = 0;  // x's strides, multiples of 8
  int b = 0, t = 0, rows = 0, e = 0;   // E a multiple of 16
};
int launch_rope(const RopeProblem& p, void* stream);

// silu(gate) · up from one packed product: gate_up (M, 2N) rows ld apart, gate first; y (M, N) contiguous.
struct SiluMulProblem {
  const void* gate_up = nullptr;  // 16-byte aligned, ld a multiple of 8
  void* y = nullptr;
  int64_t ld = 0, m = 0;
  int n = 0;  // a multiple of 8
};
int launch_silu_mul(const SiluMulProblem& p, void* stream);


}  // namespace mmr::llava::gemv
