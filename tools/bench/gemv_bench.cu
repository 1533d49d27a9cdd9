// The decode GEMV kernel (plugins/models/llava/gemv_kernel.cuh) against cuBLAS at the LLaVA-1.5-13B linear shapes,
// M = 1, 2, 4, 8 activation rows, bf16: time per call, the weight bandwidth it reaches, and the largest error
// against an fp32 reference (max |y - ref| / max |ref|). Each shape runs with the epilogue the model uses
// (o_proj and down_proj add the residual, gate-up applies SiLU·up); cuBLAS runs the plain product of the same
// weight. Weights rotate through copies that together exceed L2, as in a step, where each is read once. Also:
// "read_only", a plain stream of 16-byte loads over the same bytes (the ceiling); "prior_alone", a tiny kernel
// that writes x (as the RMSNorm before a projection does); "+prior" / "+prior_pdl", that kernel and the product,
// the product launched plainly or as a programmatic dependent launch (checked against the reference too);
// "slow_prior", a ~10 µs latency-bound kernel standing in for the attention, and the products behind it (PDL).
// Variant names: T tiles of 8 rows per block, W warps, U loads in flight per thread; _P<s>: persistent blocks,
// s fewer per multiprocessor than fit (persistent_grid).
// Standalone (no project build), on a GPU machine:
//
//   nvcc -O3 -std=c++17 -arch=sm_90 -I plugins/models/llava tools/bench/gemv_bench.cu -lcublas -o /tmp/gemv_bench
//   /tmp/gemv_bench [ITERATIONS]   # one JSON line per (shape, M, variant); ITERATIONS timed calls each (50)
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "cuda_bench.cuh"
#include "gemv_kernel.cuh"

using mmr::llava::gemv::Epilogue;
using mmr::llava::gemv::Problem;

namespace {

struct Shape {
  const char* name;
  int k, n;  // n: output columns (gate-up: 13824, its weight 27648 rows)
  Epilogue epilogue;
};

// fp32 reference, one thread per output: the epilogue without intermediate rounding.
__global__ void reference(Problem p, Epilogue e, float* out) {
  const int col = blockIdx.x * blockDim.x + threadIdx.x, m = blockIdx.y;
  if (col >= p.n) return;
  const __nv_bfloat16 *x = static_cast<const __nv_bfloat16*>(p.x), *w = static_cast<const __nv_bfloat16*>(p.w);
  auto dot = [&](int row) {
    float s = 0.f;
    for (int k = 0; k < p.k; ++k)
      s += __bfloat162float(x[m * p.ldx + k]) * __bfloat162float(w[row * p.ldw + k]);
    return s;
  };
  float v = dot(col);
  if (e == Epilogue::kResidual) v += __bfloat162float(static_cast<const __nv_bfloat16*>(p.residual)[m * p.ldr + col]);
  if (e == Epilogue::kSiluMul) v = v / (1.f + expf(-v)) * dot(p.n + col);
  out[m * p.n + col] = v;
}

// With `pdl`, as a programmatic dependent launch: it may start before the kernel before it ends. `slack` < 0:
// one block per tile; otherwise persistent_grid with `slack` fewer resident blocks per multiprocessor than fit.
template <int T, int WARPS, int U, Epilogue E>
void launch(const Problem& p, cudaStream_t s, bool pdl, int slack) {
  constexpr int cols = E == Epilogue::kSiluMul ? 4 * T : 8 * T;
  const auto kernel = mmr::llava::gemv::gemv_kernel<T, WARPS, U, E>;
  const int tiles = (p.n + cols - 1) / cols;
  int grid = tiles;
  if (slack >= 0) {
    static int per_sm = -1, sms = 0;  // per template instance
    if (per_sm < 0) {
      CHECK_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, WARPS * 32, 0));
      CHECK_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    }
    grid = mmr::llava::gemv::persistent_grid(tiles, (per_sm - slack) * sms);
  }
  CHECK_CUDA(static_cast<cudaError_t>(
      mmr::llava::gemv::pdl::launch(kernel, dim3(grid), dim3(WARPS * 32), s, pdl, p)));
}

struct Variant {
  std::string name;
  std::function<void(const Problem&, Epilogue, cudaStream_t, bool)> run;
};

template <int T, int WARPS, int U>
Variant variant(int slack = -1) {
  std::string name = "T" + std::to_string(T) + "_W" + std::to_string(WARPS) + "_U" + std::to_string(U);
  if (slack >= 0) name += "_P" + std::to_string(slack);
  return {name, [slack](const Problem& p, Epilogue e, cudaStream_t s, bool pdl) {
            if (e == Epilogue::kNone) launch<T, WARPS, U, Epilogue::kNone>(p, s, pdl, slack);
            if (e == Epilogue::kResidual) launch<T, WARPS, U, Epilogue::kResidual>(p, s, pdl, slack);
            if (e == Epilogue::kSiluMul) launch<T, WARPS, U, Epilogue::kSiluMul>(p, s, pdl, slack);
          }};
}

// The ceiling: a plain stream of 16-byte loads over the same bytes (grid-stride, 4 in flight per thread).
__global__ void read_only(const uint4* p, size_t n, uint32_t* sink) {
  uint32_t acc = 0;
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x;
  for (; i + 3 * stride < n; i += 4 * stride) {
    uint4 v[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) v[u] = mmr::llava::gemv::detail::load_weight(reinterpret_cast<const __nv_bfloat16*>(p + i + u * stride));
#pragma unroll
    for (int u = 0; u < 4; ++u) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  }
  for (; i < n; i += stride) acc ^= p[i].x;
  if (acc == 0x12345678u) *sink = acc;
}

// Stands in for the RMSNorm before a projection: writes the activations the product reads.
__global__ void prior(const __nv_bfloat16* in, __nv_bfloat16* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = __float2bfloat16(__bfloat162float(in[i]) * 1.0001f);
}

// Stands in for the attention before o_proj: latency-bound, few blocks, ~10 µs (a clock spin), then writes x.
__global__ void slow_prior(const __nv_bfloat16* in, __nv_bfloat16* out, int n) {
  const long long until = clock64() + 20000;  // ~10 µs at the H200's ~1.98 GHz
  while (clock64() < until) {
  }
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = __float2bfloat16(__bfloat162float(in[i]) * 1.0001f);
}

float max_rel_error(const std::vector<__nv_bfloat16>& y, const std::vector<float>& ref) {
  float err = 0.f, scale = 0.f;
  for (size_t i = 0; i < ref.size(); ++i) {
    err = std::max(err, std::fabs(__bfloat162float(y[i]) - ref[i]));
    scale = std::max(scale, std::fabs(ref[i]));
  }
  return err / scale;
}

}  // namespace

int main(int argc, char** argv) {
  const int iters = argc > 1 ? std::atoi(argv[1]) : 50;
  cudaDeviceProp prop;
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf("{\"card\": \"%s\", \"sms\": %d, \"l2_mb\": %d}\n", prop.name, prop.multiProcessorCount,
              prop.l2CacheSize >> 20);
  const std::vector<Shape> shapes = {{"qkv", 5120, 15360, Epilogue::kNone},
                                     {"o_proj", 5120, 5120, Epilogue::kResidual},
                                     {"gate_up", 5120, 13824, Epilogue::kSiluMul},
                                     {"down_proj", 13824, 5120, Epilogue::kResidual},
                                     {"lm_head", 5120, 32000, Epilogue::kNone}};
  // The plugin's (gemv.cu) first.
  // _P<s>: persistent blocks, s fewer per multiprocessor than fit (room for the next kernel's first blocks).
  const std::vector<Variant> variants = {variant<1, 8, 4>(), variant<1, 8, 4>(0), variant<2, 8, 2>(),
                                         variant<2, 8, 2>(0), variant<1, 8, 2>(0), variant<1, 4, 4>(0),
                                         variant<2, 8, 4>(),  variant<1, 16, 2>()};
  uint32_t* sink;
  CHECK_CUDA(cudaMalloc(&sink, 4));
  cudaStream_t stream;
  CHECK_CUDA(cudaStreamCreate(&stream));
  cublasHandle_t blas;
  cublasCreate(&blas);
  cublasSetStream(blas, stream);
  cudaEvent_t start, stop;
  CHECK_CUDA(cudaEventCreate(&start));
  CHECK_CUDA(cudaEventCreate(&stop));

  // Peak read+write bandwidth of a large device copy, for scale.
  {
    const size_t bytes = size_t(1) << 30;
    void *a, *b;
    CHECK_CUDA(cudaMalloc(&a, bytes));
    CHECK_CUDA(cudaMalloc(&b, bytes));
    CHECK_CUDA(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, stream));
    CHECK_CUDA(cudaEventRecord(start, stream));
    for (int i = 0; i < 10; ++i) CHECK_CUDA(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, stream));
    CHECK_CUDA(cudaEventRecord(stop, stream));
    CHECK_CUDA(cudaEventSynchronize(stop));
    float ms;
    CHECK_CUDA(cudaEventElapsedTime(&ms, start, stop));
    std::printf("{\"what\": \"d2d_copy\", \"gb_per_s\": %.0f}\n", 2.0 * bytes * 10 / (ms * 1e-3) / 1e9);
    CHECK_CUDA(cudaFree(a));
    CHECK_CUDA(cudaFree(b));
  }

  for (const Shape& shape : shapes) {
    const int w_rows = shape.epilogue == Epilogue::kSiluMul ? 2 * shape.n : shape.n;
    const size_t w_elems = size_t(w_rows) * shape.k;
    const int copies = int(std::max<size_t>(2, (size_t(400) << 20) / (w_elems * 2) + 1));
    __nv_bfloat16 *w, *x, *res, *y;
    float* ref;
    CHECK_CUDA(cudaMalloc(&w, w_elems * 2 * copies));
    CHECK_CUDA(cudaMalloc(&x, size_t(8) * shape.k * 2));
    CHECK_CUDA(cudaMalloc(&res, size_t(8) * shape.n * 2));
    CHECK_CUDA(cudaMalloc(&y, size_t(8) * w_rows * 2));
    CHECK_CUDA(cudaMalloc(&ref, size_t(8) * shape.n * 4));

    bench::fill_random<<<1024, 256, 0, stream>>>(w, w_elems * copies, 1, 1.f / std::sqrt(float(shape.k)));
    bench::fill_random<<<64, 256, 0, stream>>>(x, size_t(8) * shape.k, 2, 1.f);
    bench::fill_random<<<64, 256, 0, stream>>>(res, size_t(8) * shape.n, 3, 1.f);
    for (int m : {1, 2, 4, 8}) {
      Problem p;
      p.x = x; p.w = w; p.residual = res; p.y = y;
      p.ldx = shape.k; p.ldw = shape.k; p.ldr = shape.n; p.ldy = shape.n;
      p.m = m; p.k = shape.k; p.n = shape.n;
      reference<<<dim3((shape.n + 127) / 128, m), 128, 0, stream>>>(p, shape.epilogue, ref);
      std::vector<float> ref_host(size_t(m) * shape.n);
      CHECK_CUDA(cudaMemcpyAsync(ref_host.data(), ref, ref_host.size() * 4, cudaMemcpyDeviceToHost, stream));
      CHECK_CUDA(cudaStreamSynchronize(stream));
      const double bytes = double(w_elems) * 2 + double(m) * (shape.k + 2.0 * shape.n) * 2;

      auto time = [&](const std::function<void(int)>& call) {  // call(copy index)
        for (int i = 0; i < 3; ++i) call(i % copies);
        CHECK_CUDA(cudaEventRecord(start, stream));
        for (int i = 0; i < iters; ++i) call(i % copies);
        CHECK_CUDA(cudaEventRecord(stop, stream));
        CHECK_CUDA(cudaEventSynchronize(stop));
        CHECK_CUDA(cudaGetLastError());
        float ms;
        CHECK_CUDA(cudaEventElapsedTime(&ms, start, stop));
        return ms * 1e3 / iters;
      };
      auto report = [&](const std::string& who, double us, float err) {
        std::printf("{\"shape\": \"%s\", \"k\": %d, \"n\": %d, \"m\": %d, \"who\": \"%s\", \"us\": %.2f, "
                    "\"gb_per_s\": %.0f, \"max_rel_err\": %.2e}\n",
                    shape.name, shape.k, w_rows, m, who.c_str(), us, bytes / (us * 1e-6) / 1e9, err);
      };

      // cuBLAS: y (M, W_rows) = x Wᵀ, i.e. column-major yᵀ = W xᵀ, the call ATen's linear makes.
      const float one = 1.f, zero = 0.f;
      const double us_blas = time([&](int c) {
        cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, w_rows, m, shape.k, &one, w + c * w_elems, CUDA_R_16BF,
                     shape.k, x, CUDA_R_16BF, shape.k, &zero, y, CUDA_R_16BF, w_rows, CUBLAS_COMPUTE_32F,
                     CUBLAS_GEMM_DEFAULT);
      });
      float err_blas = -1.f;
      if (shape.epilogue == Epilogue::kNone) {
        cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, w_rows, m, shape.k, &one, w, CUDA_R_16BF, shape.k, x,
                     CUDA_R_16BF, shape.k, &zero, y, CUDA_R_16BF, w_rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        std::vector<__nv_bfloat16> y_host(size_t(m) * shape.n);
        CHECK_CUDA(cudaMemcpy(y_host.data(), y, y_host.size() * 2, cudaMemcpyDeviceToHost));
        err_blas = max_rel_error(y_host, ref_host);
      }
      report("cublas", us_blas, err_blas);
      if (m == 1) {
        const double us_read = time([&](int c) {
          read_only<<<prop.multiProcessorCount * 8, 256, 0, stream>>>(reinterpret_cast<const uint4*>(w + c * w_elems),
                                                                      w_elems / 8, sink);
        });
        report("read_only", us_read, 0.f);
      }

      for (const Variant& v : variants) {
        const double us = time([&](int c) {
          Problem q = p;
          q.w = w + c * w_elems;
          v.run(q, shape.epilogue, stream, false);
        });
        v.run(p, shape.epilogue, stream, false);
        std::vector<__nv_bfloat16> y_host(size_t(m) * shape.n);
        CHECK_CUDA(cudaMemcpyAsync(y_host.data(), y, y_host.size() * 2, cudaMemcpyDeviceToHost, stream));
        CHECK_CUDA(cudaStreamSynchronize(stream));
        report(v.name, us, max_rel_error(y_host, ref_host));
      }
      // After a small kernel that writes x (as the RMSNorm does in a step): launched plainly, then as a
      // programmatic dependent launch; the result must be the same.
      if (m == 1 || m == 8) {
        __nv_bfloat16* x_src;
        CHECK_CUDA(cudaMalloc(&x_src, size_t(8) * shape.k * 2));
        CHECK_CUDA(cudaMemcpy(x_src, x, size_t(8) * shape.k * 2, cudaMemcpyDeviceToDevice));
        const int xn = m * shape.k;
        const double us_prior = time([&](int) { prior<<<(xn + 255) / 256, 256, 0, stream>>>(x_src, x, xn); });
        report("prior_alone", us_prior, 0.f);
        const float one = 1.f, zero = 0.f;
        const double us_blas_prior = time([&](int c) {
          prior<<<(xn + 255) / 256, 256, 0, stream>>>(x_src, x, xn);
          cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, w_rows, m, shape.k, &one, w + c * w_elems, CUDA_R_16BF,
                       shape.k, x, CUDA_R_16BF, shape.k, &zero, y, CUDA_R_16BF, w_rows, CUBLAS_COMPUTE_32F,
                       CUBLAS_GEMM_DEFAULT);
        });
        report("cublas+prior", us_blas_prior, 0.f);
        const double us_slow = time([&](int) { slow_prior<<<(xn + 255) / 256, 256, 0, stream>>>(x_src, x, xn); });
        report("slow_prior_alone", us_slow, 0.f);
        for (size_t vi : {size_t(0), size_t(1), size_t(2), size_t(3)}) {
          const Variant& v = variants[vi];
          const double us = time([&](int c) {
            slow_prior<<<(xn + 255) / 256, 256, 0, stream>>>(x_src, x, xn);
            Problem q = p;
            q.w = w + c * w_elems;
            v.run(q, shape.epilogue, stream, true);
          });
          report(v.name + "+slow_prior_pdl", us, 0.f);
        }
        for (size_t vi : {size_t(0), size_t(1), size_t(2), size_t(3)}) {
          const Variant& v = variants[vi];
          for (bool pdl : {false, true}) {
            const double us = time([&](int c) {
              prior<<<(xn + 255) / 256, 256, 0, stream>>>(x_src, x, xn);
              Problem q = p;
              q.w = w + c * w_elems;
              v.run(q, shape.epilogue, stream, pdl);
            });
            // Correctness after the prior kernel, against the reference of what it wrote.
            CHECK_CUDA(cudaMemset(x, 0, size_t(8) * shape.k * 2));
            prior<<<(xn + 255) / 256, 256, 0, stream>>>(x_src, x, xn);
            v.run(p, shape.epilogue, stream, pdl);
            std::vector<__nv_bfloat16> y_host(size_t(m) * shape.n);
            CHECK_CUDA(cudaMemcpyAsync(y_host.data(), y, y_host.size() * 2, cudaMemcpyDeviceToHost, stream));
            reference<<<dim3((shape.n + 127) / 128, m), 128, 0, stream>>>(p, shape.epilogue, ref);
            CHECK_CUDA(cudaMemcpyAsync(ref_host.data(), ref, ref_host.size() * 4, cudaMemcpyDeviceToHost, stream));
            CHECK_CUDA(cudaStreamSynchronize(stream));
            report(v.name + (pdl ? "+prior_pdl" : "+prior"), us, max_rel_error(y_host, ref_host));
          }
        }
        CHECK_CUDA(cudaFree(x_src));
      }
    }
    CHECK_CUDA(cudaFree(w));
    CHECK_CUDA(cudaFree(x));
    CHECK_CUDA(cudaFree(res));
    CHECK_CUDA(cudaFree(y));
    CHECK_CUDA(cudaFree(ref));
  }
  return 0;
}
