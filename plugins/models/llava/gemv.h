// The launch interface of the decoding step's kernels (gemv.cu, rms_norm.cu; built only against a CUDA LibTorch):
// plain C++, no CUDA or torch types, so the torch-side wrapper (fast_linear.cpp) and the standalone benchmark
// (tools/bench/gemv_bench.cu) share it. Shape letters: M activation rows, K input width, N output columns.
#pragma once

#include <cstdint>

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
int launch(const Problem& p, Epilogue e, void* stream, bool pdl);

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


}  // namespace mmr::llava::gemv
