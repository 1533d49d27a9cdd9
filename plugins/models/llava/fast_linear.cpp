// See fast_linear.h. The checks here decide whether a kernel applies; gemv.cu and rms_norm.cu (built with a CUDA
// LibTorch and nvcc: MMR_WITH_GEMV) launch them.
#include "fast_linear.h"

#ifdef MMR_WITH_GEMV
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGraphsC10Utils.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "core/api/error.h"
#include "decode_attention.h"
#include "gemv.h"
#endif

namespace mmr::llava {

#ifdef MMR_WITH_GEMV
bool fast_kernels_built() { return true; }

namespace {

bool env_on(const char* name) {
  const char* v = std::getenv(name);
  return !(v && std::strcmp(v, "0") == 0);
}

// Whether the kernels go out as programmatic dependent launches (pdl.cuh); MMR_PDL=0: plain launches. Read at
// each launch, as MMR_DECODE_ATTENTION: bench_llava measures both in one process (a captured step makes no calls).
bool dependent_launches() { return env_on("MMR_PDL"); }

bool aligned16(const torch::Tensor& t) { return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0; }

// x as (M, K) rows the kernel can read (16-byte aligned, unit stride, row stride a multiple of 8), or undefined
// when the kernel does not apply to x and w.
torch::Tensor kernel_rows(const torch::Tensor& x, const torch::Tensor& w) {
  static const bool enabled = env_on("MMR_GEMV");
  if (!enabled || !x.is_cuda() || x.scalar_type() != torch::kBFloat16 || w.scalar_type() != torch::kBFloat16 ||
      x.device() != w.device() || at::GradMode::is_enabled() || w.dim() != 2 || x.dim() < 1)
    return {};
  const int64_t k = w.size(1);
  if (x.size(-1) != k || k % 8 != 0 || k > (int64_t{1} << 30) || w.size(0) > (int64_t{1} << 30) ||
      w.stride(1) != 1 || w.stride(0) % 8 != 0 || !aligned16(w) || x.numel() == 0)
    return {};
  const int64_t m = x.numel() / k;
  if (m > gemv::kMaxRows) return {};
  torch::Tensor x2 = x.reshape({m, k});
  if (x2.stride(1) != 1 || x2.stride(0) % 8 != 0 || !aligned16(x2)) x2 = x2.contiguous();
  return x2;
}

torch::Tensor run(const torch::Tensor& x, const torch::Tensor& x2, const torch::Tensor& w, int64_t n,
                  const torch::Tensor& residual2, gemv::Epilogue e) {
  const c10::cuda::CUDAGuard guard(x.device());
  torch::Tensor y = torch::empty({x2.size(0), n}, x.options());
  gemv::Problem p;
  p.x = x2.data_ptr();
  p.ldx = x2.stride(0);
  p.w = w.data_ptr();
  p.ldw = w.stride(0);
  if (residual2.defined()) {
    p.residual = residual2.data_ptr();
    p.ldr = residual2.stride(0);
  }
  p.y = y.data_ptr();
  p.ldy = y.stride(0);
  p.m = static_cast<int>(x2.size(0));
  p.k = static_cast<int>(x2.size(1));
  p.n = static_cast<int>(n);
  // The device's properties are read once per process (ATen caches them).
  const int err = gemv::launch(p, e, c10::cuda::getCurrentCUDAStream(x.device().index()).stream(),
                               dependent_launches(),
                               at::cuda::getDeviceProperties(x.device().index())->multiProcessorCount);
  MMR_CHECK(err == 0, "decode GEMV launch failed: " << cudaGetErrorString(static_cast<cudaError_t>(err)));
  auto sizes = x.sizes().vec();
  sizes.back() = n;
  return y.view(sizes);
}

}  // namespace

std::optional<torch::Tensor> fast_linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& residual) {
  const torch::Tensor x2 = kernel_rows(x, w);
  if (!x2.defined()) return std::nullopt;
  const int64_t n = w.size(0);
  torch::Tensor r2;
  if (residual.defined()) {
    if (residual.scalar_type() != torch::kBFloat16 || residual.device() != x.device() ||
        residual.numel() != x2.size(0) * n || residual.size(-1) != n)
      return std::nullopt;
    r2 = residual.reshape({x2.size(0), n});
    if (r2.stride(1) != 1) r2 = r2.contiguous();
  }
  return run(x, x2, w, n, r2, residual.defined() ? gemv::Epilogue::kResidual : gemv::Epilogue::kNone);
}

std::optional<torch::Tensor> fast_silu_mul(const torch::Tensor& x, const torch::Tensor& gate_up) {
  const torch::Tensor x2 = kernel_rows(x, gate_up);
  if (!x2.defined() || gate_up.size(0) % 2 != 0) return std::nullopt;
  return run(x, x2, gate_up, gate_up.size(0) / 2, {}, gemv::Epilogue::kSiluMul);
}

std::optional<torch::Tensor> fast_rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  // The norm reads x as the GEMV reads its activations (rows of K values against a (1, K) "weight").
  const torch::Tensor x2 = kernel_rows(x, weight.view({1, -1}));
  if (!x2.defined() || weight.dim() != 1 || !weight.is_contiguous()) return std::nullopt;
  const c10::cuda::CUDAGuard guard(x.device());
  torch::Tensor y = torch::empty(x2.sizes(), x.options());
  gemv::NormProblem p;
  p.x = x2.data_ptr();
  p.ldx = x2.stride(0);
  p.weight = weight.data_ptr();
  p.y = y.data_ptr();
  p.ldy = y.stride(0);
  p.m = static_cast<int>(x2.size(0));
  p.k = static_cast<int>(x2.size(1));
  p.eps = static_cast<float>(eps);
  const int err = gemv::launch_rms_norm(p, c10::cuda::getCurrentCUDAStream(x.device().index()).stream(),
                                        dependent_launches());
  MMR_CHECK(err == 0, "decode RMSNorm launch failed: " << cudaGetErrorString(static_cast<cudaError_t>(err)));
  return y.view(x.sizes());
}

namespace {

bool bf16_on(const torch::Tensor& t, const torch::Device& d) {
  return t.defined() && t.scalar_type() == torch::kBFloat16 && t.device() == d;
}

// Rows of `t` (dim 0) of unit stride, 16-byte aligned and a multiple of 8 values apart, as the kernels read them.
// (A single row's stride is never used, and a view may give a size-1 dimension any stride.)
bool kernel_rows_ok(const torch::Tensor& t) {
  return t.stride(-1) == 1 && (t.size(0) == 1 || t.stride(0) % 8 == 0) && aligned16(t);
}

// `n` zeroed counters for the attention kernel, which leaves them zero after each launch: one buffer per stream,
// made outside any graph capture (the warm-up run before a capture makes it) and never freed, since captured graphs
// keep its address. nullptr when a new one would have to be made inside a capture.
int* arrival_counters(const torch::Device& d, int64_t n) {
  static std::mutex mutex;
  static std::map<std::pair<int, int64_t>, std::vector<torch::Tensor>> buffers;  // the last one is in use
  const std::lock_guard lock(mutex);
  auto& kept = buffers[{d.index(), c10::cuda::getCurrentCUDAStream(d.index()).id()}];
  if (kept.empty() || kept.back().numel() < n) {
    if (c10::cuda::currentStreamCaptureStatusMayInitCtx() != c10::cuda::CaptureStatus::None) return nullptr;
    kept.push_back(torch::zeros({std::max<int64_t>(n, 4096)}, torch::TensorOptions().dtype(torch::kInt32).device(d)));
  }
  return kept.back().data_ptr<int>();
}

// Whether the kernel applies (fast_linear.h): the shapes, dtypes and layouts decode_attention.h asks for.
bool decode_attention_applies(const torch::Tensor& qk, const torch::Tensor& v, const torch::Tensor& cos,
                              const torch::Tensor& sin, const torch::Tensor& mask, const torch::Tensor& k_cache,
                              const torch::Tensor& v_cache, const torch::Tensor& write_at, int64_t span) {
  // Read at each call (a step captured as a CUDA graph makes none): a test compares both paths in one process.
  if (!env_on("MMR_DECODE_ATTENTION") || !env_on("MMR_GEMV") || !qk.is_cuda() || at::GradMode::is_enabled() ||
      qk.dim() != 4 || v.dim() != 4)
    return false;
  const torch::Device d = qk.device();
  const int64_t b = qk.size(0), e = qk.size(3), kv_heads = v.size(2), heads = qk.size(2) - kv_heads;
  if (qk.size(1) != 1 || e != gemv::kHeadDim || heads <= 0 || heads % kv_heads != 0) return false;
  const int64_t group = heads / kv_heads;
  if (group != 1 && group != 2 && group != 4 && group != 8) return false;
  for (const torch::Tensor* t : {&qk, &v, &cos, &sin, &mask, &k_cache, &v_cache})
    if (!bf16_on(*t, d)) return false;
  // qk and v: one packed output row per token, the values right after the keys.
  if (v.sizes() != torch::IntArrayRef({b, 1, kv_heads, e}) || qk.stride(2) != e || v.stride(2) != e ||
      (b > 1 && v.stride(0) != qk.stride(0)) || !kernel_rows_ok(qk) ||
      v.data_ptr() != static_cast<const char*>(qk.data_ptr()) + (heads + kv_heads) * e * qk.element_size())
    return false;
  if (cos.sizes() != torch::IntArrayRef({b, 1, e}) || sin.sizes() != cos.sizes() ||
      (b > 1 && sin.stride(0) != cos.stride(0)) || !kernel_rows_ok(cos) || !kernel_rows_ok(sin))
    return false;
  const int64_t capacity = k_cache.dim() == 4 ? k_cache.size(2) : 0;
  if (k_cache.sizes() != torch::IntArrayRef({b, kv_heads, capacity, e}) || v_cache.sizes() != k_cache.sizes() ||
      !k_cache.is_contiguous() || !v_cache.is_contiguous() || !aligned16(k_cache) || !aligned16(v_cache) ||
      span <= 0 || span > capacity)
    return false;
  if (mask.sizes() != torch::IntArrayRef({b, 1, 1, span}) || mask.stride(-1) != 1) return false;
  return write_at.scalar_type() == torch::kInt64 && write_at.numel() == 1 && write_at.device() == d;
}

}  // namespace

std::optional<torch::Tensor> fast_decode_attention(const torch::Tensor& qk, const torch::Tensor& v,
                                                   const torch::Tensor& cos, const torch::Tensor& sin,
                                                   const torch::Tensor& mask, const torch::Tensor& k_cache,
                                                   const torch::Tensor& v_cache, const torch::Tensor& write_at,
                                                   int64_t span) {
  if (!decode_attention_applies(qk, v, cos, sin, mask, k_cache, v_cache, write_at, span)) return std::nullopt;
  const torch::Device d = qk.device();
  const int64_t b = qk.size(0), e = qk.size(3), kv_heads = v.size(2), heads = qk.size(2) - kv_heads;
  const c10::cuda::CUDAGuard guard(d);
  int* arrived = arrival_counters(d, b * kv_heads);
  if (!arrived) return std::nullopt;
  torch::Tensor out = torch::empty({b, 1, heads * e}, qk.options());
  gemv::DecodeAttentionProblem p;
  p.qkv = qk.data_ptr();
  p.ld_qkv = qk.stride(0);
  p.cos = cos.data_ptr();
  p.sin = sin.data_ptr();
  p.ld_rope = cos.stride(0);
  p.k_cache = k_cache.data_ptr();
  p.v_cache = v_cache.data_ptr();
  p.slot = write_at.data_ptr<int64_t>();
  p.mask = mask.data_ptr();
  p.ld_mask = mask.stride(0);
  p.out = out.data_ptr();
  p.b = static_cast<int>(b);
  p.heads = static_cast<int>(heads);
  p.kv_heads = static_cast<int>(kv_heads);
  p.capacity = static_cast<int>(k_cache.size(2));
  p.span = static_cast<int>(span);
  // The device's properties are read once per process (ATen caches them): this runs every layer of every step.
  p.chunk = gemv::keys_per_chunk(p.b, p.kv_heads, p.span,
                                 at::cuda::getDeviceProperties(d.index())->multiProcessorCount);
  torch::Tensor partial = torch::empty({gemv::partial_floats(p)}, qk.options().dtype(torch::kFloat32));
  p.partial = partial.data_ptr<float>();
  p.arrived = arrived;
  const int err =
      gemv::launch_decode_attention(p, c10::cuda::getCurrentCUDAStream(d.index()).stream(), dependent_launches());
  MMR_CHECK(err == 0, "decode attention launch failed: " << cudaGetErrorString(static_cast<cudaError_t>(err)));
  return out;
}

namespace {

std::atomic<int64_t> prefill_launches{0};

// Whether a prefill kernel applies to these tensors: bf16 on one GPU, autograd off, not turned off.
bool prefill_ops_apply(std::initializer_list<const torch::Tensor*> ts) {
  if (!env_on("MMR_PREFILL_OPS") || !env_on("MMR_GEMV") || at::GradMode::is_enabled()) return false;
  const torch::Device d = (*ts.begin())->device();
  for (const torch::Tensor* t : ts)
    if (!d.is_cuda() || !bf16_on(*t, d) || !aligned16(*t) || t->numel() == 0) return false;
  return true;
}

}  // namespace

std::optional<torch::Tensor> fast_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin) {
  if (x.dim() != 4 || !prefill_ops_apply({&x, &cos, &sin})) return std::nullopt;
  const int64_t b = x.size(0), t = x.size(1), e = x.size(3);
  if (e % 16 != 0 || x.stride(3) != 1 || x.stride(2) != e || (b > 1 && x.stride(0) % 8 != 0) ||
      (t > 1 && x.stride(1) % 8 != 0) || cos.sizes() != torch::IntArrayRef({b, t, e}) || sin.sizes() != cos.sizes() ||
      !cos.is_contiguous() || !sin.is_contiguous() || b * t * x.size(2) > (int64_t{1} << 31))
    return std::nullopt;
  const c10::cuda::CUDAGuard guard(x.device());
  torch::Tensor y = torch::empty(x.sizes(), x.options());
  gemv::RopeProblem p;
  p.x = x.data_ptr();
  p.cos = cos.data_ptr();
  p.sin = sin.data_ptr();
  p.y = y.data_ptr();
  p.ld_batch = x.stride(0);
  p.ld_token = x.stride(1);
  p.b = static_cast<int>(b);
  p.t = static_cast<int>(t);
  p.rows = static_cast<int>(x.size(2));
  p.e = static_cast<int>(e);
  const int err = gemv::launch_rope(p, c10::cuda::getCurrentCUDAStream(x.device().index()).stream());
  MMR_CHECK(err == 0, "prefill RoPE launch failed: " << cudaGetErrorString(static_cast<cudaError_t>(err)));
  ++prefill_launches;
  return y;
}

std::optional<torch::Tensor> fast_silu_mul_rows(const torch::Tensor& gate_up) {
  if (gate_up.dim() < 1 || !prefill_ops_apply({&gate_up})) return std::nullopt;
  const int64_t n2 = gate_up.size(-1), m = gate_up.numel() / n2;
  if (n2 % 16 != 0 || n2 / 2 > (int64_t{1} << 30)) return std::nullopt;
  const torch::Tensor rows = gate_up.reshape({m, n2});  // a view for a packed product's output
  if (!kernel_rows_ok(rows)) return std::nullopt;
  const c10::cuda::CUDAGuard guard(gate_up.device());
  auto sizes = gate_up.sizes().vec();
  sizes.back() = n2 / 2;
  torch::Tensor y = torch::empty(sizes, gate_up.options());
  gemv::SiluMulProblem p;
  p.gate_up = rows.data_ptr();
  p.ld = rows.stride(0);
  p.m = m;
  p.n = static_cast<int>(n2 / 2);
  p.y = y.data_ptr();
  const int err = gemv::launch_silu_mul(p, c10::cuda::getCurrentCUDAStream(gate_up.device().index()).stream());
  MMR_CHECK(err == 0, "prefill silu·up launch failed: " << cudaGetErrorString(static_cast<cudaError_t>(err)));
  ++prefill_launches;
  return y;
}

int64_t prefill_ops_launched() { return prefill_launches; }

std::string gemv_tuning_report() { return gemv::tuned_choices(); }

#else  // a CPU LibTorch or no CUDA compiler: the ATen path everywhere

bool fast_kernels_built() { return false; }

std::optional<torch::Tensor> fast_linear(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&) {
  return std::nullopt;
}

std::optional<torch::Tensor> fast_silu_mul(const torch::Tensor&, const torch::Tensor&) { return std::nullopt; }

std::optional<torch::Tensor> fast_rms_norm(const torch::Tensor&, const torch::Tensor&, double) { return std::nullopt; }

std::optional<torch::Tensor> fast_rope(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&) {
  return std::nullopt;
}

std::optional<torch::Tensor> fast_silu_mul_rows(const torch::Tensor&) { return std::nullopt; }

int64_t prefill_ops_launched() { return 0; }

std::string gemv_tuning_report() { return {}; }

std::optional<torch::Tensor> fast_decode_attention(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&,
                                                   const torch::Tensor&, const torch::Tensor&, const torch::Tensor&,
                                                   const torch::Tensor&, const torch::Tensor&, int64_t) {
  return std::nullopt;
}

#endif

}  // namespace mmr::llava
