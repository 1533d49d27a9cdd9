// A decoding step's linear layers and RMSNorms through our kernels (gemv_kernel.cuh, rms_norm.cu) instead of
// cuBLAS and at::rms_norm: on a GPU, in bf16, at most 8 rows, autograd off. Anything else (the CPU, float32, a
// prefill, training, a build without CUDA) gets nullopt and the caller runs its ATen path, so the float32 results
// never change. The model uses the GEMV where it measured at least as fast as cuBLAS (gemv_kernel.cuh): o_proj and
// down_proj with the residual add, and gate-up with silu · up, which saves the two elementwise kernels.
// MMR_GEMV=0 turns all of it off (the ATen path everywhere, for measuring). MMR_GEMV_PDL=1 launches the GEMV as a
// programmatic dependent launch (weights loaded before the previous kernel ends): 1-1.4 µs less per call after a
// small kernel in tools/bench/gemv_bench.cu, but a 13B step 0.08 ms slower on an H200, so off by default.
#pragma once

#include <torch/torch.h>

#include <optional>

namespace mmr::llava {

// Whether this build has the kernels (a CUDA LibTorch and nvcc); without them every function below gives nullopt.
bool fast_kernels_built();

// x (..., K), w (N, K): residual + x Wᵀ, (..., N). residual (..., N) or undefined.
std::optional<torch::Tensor> fast_linear(const torch::Tensor& x, const torch::Tensor& w,
                                         const torch::Tensor& residual = {});

// x (..., K), gate_up (2I, K) = [gate; up]: silu(x Gᵀ) · x Uᵀ, (..., I).
std::optional<torch::Tensor> fast_silu_mul(const torch::Tensor& x, const torch::Tensor& gate_up);

// x (..., K), weight (K): x / rms(x) · weight, (..., K).
std::optional<torch::Tensor> fast_rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps);

}  // namespace mmr::llava
