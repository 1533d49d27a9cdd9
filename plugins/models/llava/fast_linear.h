// A decoding step's linear layers and RMSNorms through our kernels (gemv_kernel.cuh, rms_norm.cu) instead of
// cuBLAS and at::rms_norm: on a GPU, in bf16, at most 8 rows, autograd off. Anything else (the CPU, float32, a
// prefill, training, a build without CUDA) gets nullopt and the caller runs its ATen path, so the float32 results
// never change. The model uses the GEMV where it measured at least as fast as cuBLAS (gemv_kernel.cuh): o_proj and
// down_proj with the residual add, and gate-up with silu · up (cuBLAS reads gate-up's weight 1 µs faster, 70.6
// against 71.6 µs a call, but the silu · up kernel it then needs made a 13B step at batch 1 0.2 ms slower: 7.96
// against 7.75 ms on an H200, bench_llava at commit 411c545). qkv and lm_head stay with cuBLAS: through the
// GEMV, tuned, qkv made a 13B step longer at batch 1 and 8 and lm_head tied (session 17, README).
// MMR_GEMV=0 turns all of it off (the ATen path everywhere, for measuring). The kernels go out as programmatic
// dependent launches (pdl.cuh), each starting in the last wave of the one before; MMR_PDL=0 launches them plainly.
#pragma once

#include <torch/torch.h>

#include <optional>
#include <string>

namespace mmr::llava {

// Whether this build has the kernels (a CUDA LibTorch and nvcc); without them every function below gives nullopt.
bool fast_kernels_built();

// x (..., K), w (N, K): residual + x Wᵀ, (..., N). residual (..., N) or undefined.
std::optional<torch::Tensor> fast_linear(const torch::Tensor& x, const torch::Tensor& w,
                                         const torch::Tensor& residual = {});

// The GEMV's block shape per shape and device, chosen by timing at the first call (gemv.h): one line per shape
// so far, with each candidate's time; empty before any, or without the kernels.
std::string gemv_tuning_report();

// x (..., K), gate_up (2I, K) = [gate; up]: silu(x Gᵀ) · x Uᵀ, (..., I).
std::optional<torch::Tensor> fast_silu_mul(const torch::Tensor& x, const torch::Tensor& gate_up);

// x (..., K), weight (K): x / rms(x) · weight, (..., K).
std::optional<torch::Tensor> fast_rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps);

// A prefill's elementwise steps in one kernel each (prefill_ops.cu), with the unfused ops' roundings, so the same
// bits (on a GPU, bf16, autograd off; MMR_PREFILL_OPS=0 turns them off):
// x (B, T, R, E) with its R heads adjacent, cos and sin (B, T, E) as Rope::cos_sin gives them: apply_rope's result.
std::optional<torch::Tensor> fast_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin);
// gate_up (..., 2I), gate first: silu(gate) · up, (..., I).
std::optional<torch::Tensor> fast_silu_mul_rows(const torch::Tensor& gate_up);
// How many times the two above ran their kernel in this process (tests check that a prefill used them).
int64_t prefill_ops_launched();

// A decoding step's attention for one token per row (decode_attention.h), the cache slot on the device (a
// graph-captured step): qk (B, 1, H + K, E) and v (B, 1, K, E), views of one packed projection's output; cos and
// sin (B, 1, E) as Rope::cos_sin gives them; mask (B, 1, 1, span) additive; k_cache and v_cache (B, K, C, E).
// Rotates q and k, writes k and v at slot `write_at`, attends over the first `span` slots: (B, 1, H·E).
// Head size 128 and H/K of 1, 2, 4 or 8 only. MMR_DECODE_ATTENTION=0 turns it off.
std::optional<torch::Tensor> fast_decode_attention(const torch::Tensor& qk, const torch::Tensor& v,
                                                   const torch::Tensor& cos, const torch::Tensor& sin,
                                                   const torch::Tensor& mask, const torch::Tensor& k_cache,
                                                   const torch::Tensor& v_cache, const torch::Tensor& write_at,
                                                   int64_t span);

}  // namespace mmr::llava
