// The decoding step's attention kernel (plugins/models/llava/decode_attention_kernel.cuh) at the LLaVA-1.5-13B
// shape (40 heads of 128, one per key head) over a ~700-position cache, batch 1 and 8, in several block shapes:
// time per call, the cache bandwidth it reaches, and its largest error against an fp32 reference. "read_only" is a
// plain stream of 16-byte loads over the same cache bytes (the ceiling); "production" is the launch
// decode_attention.cu makes. The caches rotate through 40 layers' worth, more than L2, as in a step.
// Standalone (no project build), on a GPU machine:
//
//   nvcc -O3 -std=c++17 -arch=sm_90 -I . tools/bench/attention_bench.cu plugins/models/llava/decode_attention.cu \
//     -o /tmp/attention_bench && /tmp/attention_bench [ITERATIONS]   # one JSON line per (batch, variant)
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "plugins/models/llava/decode_attention_kernel.cuh"
#include "tools/bench/cuda_bench.cuh"

namespace gemv = mmr::llava::gemv;

namespace {

constexpr int kHeads = 40, kE = gemv::kHeadDim, kLayers = 40, kCapacity = 768, kSpan = 704, kSlot = 700;

// fp32 reference of the attention the kernel computes, once its key and value are in the cache (the kernel being
// checked writes them; the reference runs after it): one block per (row, head), one thread per head value.
__global__ void reference(gemv::DecodeAttentionProblem p, float* out) {
  const int b = blockIdx.y, h = blockIdx.x, t = threadIdx.x;
  const int n = kSlot + 1;
  __shared__ float q[kE], w[kSpan];
  const auto* row = static_cast<const __nv_bfloat16*>(p.qkv) + b * p.ld_qkv + h * kE;
  const auto* cs = static_cast<const __nv_bfloat16*>(p.cos) + b * p.ld_rope;
  const auto* sn = static_cast<const __nv_bfloat16*>(p.sin) + b * p.ld_rope;
  const int partner = t < kE / 2 ? t + kE / 2 : t - kE / 2;  // sin's first half is negated already
  q[t] = __bfloat162float(row[t]) * __bfloat162float(cs[t]) + __bfloat162float(row[partner]) * __bfloat162float(sn[t]);
  __syncthreads();
  const int64_t base = (int64_t{b} * p.kv_heads + h) * p.capacity * kE;
  const auto* k = static_cast<const __nv_bfloat16*>(p.k_cache) + base;
  const auto* v = static_cast<const __nv_bfloat16*>(p.v_cache) + base;
  for (int j = t; j < n; j += kE) {
    float d = 0.f;
    for (int e = 0; e < kE; ++e) d += q[e] * __bfloat162float(k[int64_t{j} * kE + e]);
    w[j] = d / sqrtf(float(kE));
  }
  __syncthreads();
  float m = -INFINITY, l = 0.f, o = 0.f;
  for (int j = 0; j < n; ++j) m = fmaxf(m, w[j]);
  for (int j = 0; j < n; ++j) {
    const float e = expf(w[j] - m);
    l += e;
    o += e * __bfloat162float(v[int64_t{j} * kE + t]);
  }
  out[(int64_t{b} * p.heads + h) * kE + t] = o / l;
}

__global__ void read_only(const uint4* a, const uint4* c, int64_t n, float* sink) {
  uint32_t x = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const uint4 u = a[i], w = c[i];
    x ^= u.x ^ u.y ^ u.z ^ u.w ^ w.x ^ w.y ^ w.z ^ w.w;
  }
  if (x == 0x12345678u) *sink = 1.f;
}

__global__ void bf16_to_float(const __nv_bfloat16* in, float* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = __bfloat162float(in[i]);
}

}  // namespace

int main(int argc, char** argv) {
  const int iters = argc > 1 ? std::atoi(argv[1]) : 20;
  cudaStream_t stream;
  CHECK_CUDA(cudaStreamCreate(&stream));
  cudaEvent_t start, stop;
  CHECK_CUDA(cudaEventCreate(&start));
  CHECK_CUDA(cudaEventCreate(&stop));
  for (const int batch : {1, 8}) {
    const size_t layer_elems = size_t(batch) * kHeads * kCapacity * kE;
    __nv_bfloat16 *k_cache, *v_cache, *qkv, *cos, *sin, *mask, *out;
    CHECK_CUDA(cudaMalloc(&k_cache, layer_elems * 2 * kLayers));
    CHECK_CUDA(cudaMalloc(&v_cache, layer_elems * 2 * kLayers));
    CHECK_CUDA(cudaMalloc(&qkv, size_t(batch) * 3 * kHeads * kE * 2));
    CHECK_CUDA(cudaMalloc(&cos, size_t(batch) * kE * 2));
    CHECK_CUDA(cudaMalloc(&sin, size_t(batch) * kE * 2));
    CHECK_CUDA(cudaMalloc(&mask, size_t(batch) * kSpan * 2));
    CHECK_CUDA(cudaMalloc(&out, size_t(batch) * kHeads * kE * 2));
    bench::fill_random<<<1024, 256, 0, stream>>>(k_cache, layer_elems * kLayers, 1, 1.f);
    bench::fill_random<<<1024, 256, 0, stream>>>(v_cache, layer_elems * kLayers, 2, 1.f);
    bench::fill_random<<<64, 256, 0, stream>>>(qkv, size_t(batch) * 3 * kHeads * kE, 3, 2.f);
    bench::fill_random<<<4, 256, 0, stream>>>(cos, size_t(batch) * kE, 4, 1.f);
    bench::fill_random<<<4, 256, 0, stream>>>(sin, size_t(batch) * kE, 5, 1.f);
    CHECK_CUDA(cudaMemsetAsync(mask, 0, size_t(batch) * kSpan * 2, stream));  // all visible
    int64_t* slot;
    int* arrived;
    float *partial, *ref, *got, *sink;
    CHECK_CUDA(cudaMalloc(&slot, sizeof(int64_t)));
    const int64_t host_slot = kSlot;
    CHECK_CUDA(cudaMemcpy(slot, &host_slot, sizeof(int64_t), cudaMemcpyHostToDevice));
    CHECK_CUDA(cudaMalloc(&arrived, sizeof(int) * batch * kHeads));
    CHECK_CUDA(cudaMemset(arrived, 0, sizeof(int) * batch * kHeads));
    CHECK_CUDA(cudaMalloc(&partial, sizeof(float) * batch * kHeads * gemv::kMaxChunks * (kE + 2)));
    CHECK_CUDA(cudaMalloc(&ref, sizeof(float) * batch * kHeads * kE));
    CHECK_CUDA(cudaMalloc(&got, sizeof(float) * batch * kHeads * kE));
    CHECK_CUDA(cudaMalloc(&sink, sizeof(float)));
    auto problem = [&](int layer) {
      gemv::DecodeAttentionProblem p;
      p.qkv = qkv, p.cos = cos, p.sin = sin, p.mask = mask, p.out = out;
      p.k_cache = k_cache + layer_elems * layer, p.v_cache = v_cache + layer_elems * layer;
      p.slot = slot, p.partial = partial, p.arrived = arrived;
      p.ld_qkv = 3 * kHeads * kE, p.ld_rope = kE, p.ld_mask = kSpan;
      p.b = batch, p.heads = kHeads, p.kv_heads = kHeads, p.capacity = kCapacity, p.span = kSpan;
      return p;
    };
    const double bytes = double(batch) * kHeads * (kSlot + 1) * kE * 2 * 2;
    auto timed = [&](const std::string& name, const std::function<void(int)>& call, bool check) {
      for (int l = 0; l < kLayers; ++l) call(l);
      CHECK_CUDA(cudaEventRecord(start, stream));
      for (int i = 0; i < iters; ++i)
        for (int l = 0; l < kLayers; ++l) call(l);
      CHECK_CUDA(cudaEventRecord(stop, stream));
      CHECK_CUDA(cudaEventSynchronize(stop));
      CHECK_CUDA(cudaGetLastError());
      float ms = 0.f;
      CHECK_CUDA(cudaEventElapsedTime(&ms, start, stop));
      const double us = 1e3 * ms / (iters * kLayers);
      double err = 0.0;
      if (check) {
        const auto p = problem(0);
        call(0);
        reference<<<dim3(kHeads, batch), kE, 0, stream>>>(p, ref);
        bf16_to_float<<<(batch * kHeads * kE + 255) / 256, 256, 0, stream>>>(out, got, batch * kHeads * kE);
        std::vector<float> r(size_t(batch) * kHeads * kE), g(r.size());
        CHECK_CUDA(cudaMemcpyAsync(r.data(), ref, r.size() * 4, cudaMemcpyDeviceToHost, stream));
        CHECK_CUDA(cudaMemcpyAsync(g.data(), got, g.size() * 4, cudaMemcpyDeviceToHost, stream));
        CHECK_CUDA(cudaStreamSynchronize(stream));
        float scale = 0.f;
        for (size_t i = 0; i < r.size(); ++i) scale = std::max(scale, std::fabs(r[i])), err = std::max<double>(err, std::fabs(r[i] - g[i]));
        err /= scale;
      }
      std::printf("{\"batch\": %d, \"positions\": %d, \"variant\": \"%s\", \"us_per_layer\": %.2f, \"TB_per_s\": %.3f, "
                  "\"step_ms_40_layers\": %.3f, \"max_rel_error\": %.2e}\n",
                  batch, kSlot + 1, name.c_str(), us, bytes / (us * 1e-6) / 1e12, us * kLayers / 1e3, err);
      std::fflush(stdout);
    };
    timed("read_only", [&](int l) {
      // The same bytes as the kernels read: each (row, head)'s first kSlot + 1 positions are contiguous, but
      // positions up to the capacity follow; streaming the whole capacity would read 9% more, so this reads
      // (slot + 1) / capacity of each layer's bytes, laid out as one contiguous run (the ceiling, not the layout).
      const int64_t n = int64_t(layer_elems) * (kSlot + 1) / kCapacity * 2 / 16;  // 16-byte loads from each
      read_only<<<132 * 8, 512, 0, stream>>>(reinterpret_cast<const uint4*>(k_cache + layer_elems * l),
                                             reinterpret_cast<const uint4*>(v_cache + layer_elems * l), n, sink);
    }, false);
    int multiprocessors = 0;
    CHECK_CUDA(cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount, 0));
    const int chosen = gemv::keys_per_chunk(batch, kHeads, kSpan, multiprocessors);
    timed("production, chunk " + std::to_string(chosen), [&](int l) {
      auto p = problem(l);
      p.chunk = chosen;
      CHECK_CUDA(cudaError_t(gemv::launch_decode_attention(p, stream, false)));
    }, true);
    using Launch = int (*)(const gemv::DecodeAttentionProblem&, cudaStream_t, bool);
    const std::vector<std::pair<std::string, Launch>> shapes = {
        {"warps4_pass8", gemv::attention::launch<1, 4, 8>}, {"warps4_pass4", gemv::attention::launch<1, 4, 4>},
        {"warps8_pass4", gemv::attention::launch<1, 8, 4>}, {"warps8_pass8", gemv::attention::launch<1, 8, 8>},
        {"warps4_pass16", gemv::attention::launch<1, 4, 16>}};
    for (const auto& [name, launch] : shapes)
      for (const int chunk : {32, 64, 128, 192, 256, 352, 704}) {
        timed(name + ", chunk " + std::to_string(chunk), [&, launch = launch](int l) {
          auto p = problem(l);
          p.chunk = chunk;
          CHECK_CUDA(cudaError_t(launch(p, stream, false)));
        }, true);
      }
    for (void* p : {(void*)k_cache, (void*)v_cache, (void*)qkv, (void*)cos, (void*)sin, (void*)mask, (void*)out,
                    (void*)slot, (void*)arrived, (void*)partial, (void*)ref, (void*)got, (void*)sink})
      CHECK_CUDA(cudaFree(p));
  }
  return 0;
}
