// The plugin's instances of the decode GEMV (gemv_kernel.cuh), and the choice among them per shape on the running
// card. Measured against cuBLAS and other shapes with tools/bench/gemv_bench.cu (numbers in the README).
//
// Why a choice at run time: the fastest block shape differed between H200 machines of the same type (session 16,
// docs/gpu-bench/2026-12-01-session16). On one, 8 rows a block, one block per tile was fastest at batch 1 (172 µs
// for a layer's four products); on three others 16 rows a block was (173-175 µs, against 178-190 for 8 rows),
// and at batch 8 by 11-18 µs a layer. All candidates split k over the same 8 warps in the same order, so they
// give the same bits: the choice changes the speed only.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "gemv_kernel.cuh"

namespace mmr::llava::gemv {

namespace {

constexpr int kWarps = 8;  // every candidate: 8 warps split k alike, so their sums (and bits) agree

// A block shape: T tiles of 8 weight rows, 4 / T loads of 16 bytes in flight per thread and tile (so 4 in all),
// one block per tile or persistent blocks (persistent_grid).
struct Config {
  const char* name;
  int tiles;
  bool persistent;
};
constexpr Config kConfigs[] = {{"t1", 1, false}, {"t1p", 1, true}, {"t2", 2, false}, {"t2p", 2, true}};
constexpr int kConfigCount = sizeof(kConfigs) / sizeof(kConfigs[0]);

// Without tuning (MMR_GEMV_TUNE=0, or inside a CUDA graph capture before any eager call of the shape): the shape
// that was fastest on the first machine measured, persistent from 2 rows on.
int default_config(int m) { return m >= 2 ? 1 : 0; }

// How many blocks of the kernel fit on one multiprocessor (0 if the query fails: one block per tile). It depends
// on the kernel and the architecture only, so one query per process; the grid changes the speed, never the result.
template <int T, Epilogue E>
int blocks_per_multiprocessor() {
  static const int per_sm = [] {
    int n = 0;
    return cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, gemv_kernel<T, kWarps, 4 / T, E>, kWarps * 32, 0) ==
                   cudaSuccess
               ? n
               : 0;
  }();
  return per_sm;
}

// `multiprocessors`: the device's count, for a persistent grid.
template <int T, Epilogue E>
int launch_shape(const Problem& p, bool persistent, int multiprocessors, cudaStream_t stream, bool dependent) {
  constexpr int cols = (E == Epilogue::kSiluMul ? 4 : 8) * T;
  const int tiles = (p.n + cols - 1) / cols;
  const int grid =
      persistent ? persistent_grid(tiles, blocks_per_multiprocessor<T, E>() * multiprocessors) : tiles;
  return pdl::launch(gemv_kernel<T, kWarps, 4 / T, E>, dim3(grid), dim3(kWarps * 32), stream, dependent, p);
}

template <Epilogue E>
int launch_config(const Problem& p, const Config& c, int multiprocessors, cudaStream_t stream, bool dependent) {
  return c.tiles == 1 ? launch_shape<1, E>(p, c.persistent, multiprocessors, stream, dependent)
                      : launch_shape<2, E>(p, c.persistent, multiprocessors, stream, dependent);
}

int launch_config(const Problem& p, Epilogue e, int config, int multiprocessors, cudaStream_t stream,
                  bool dependent) {
  const Config& c = kConfigs[config];
  switch (e) {
    case Epilogue::kNone: return launch_config<Epilogue::kNone>(p, c, multiprocessors, stream, dependent);
    case Epilogue::kResidual: return launch_config<Epilogue::kResidual>(p, c, multiprocessors, stream, dependent);
    case Epilogue::kSiluMul: return launch_config<Epilogue::kSiluMul>(p, c, multiprocessors, stream, dependent);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

// Reads n 16-byte words, so that what L2 held before is gone (reads: a memset would leave dirty lines whose
// write-back the timed kernel then pays).
__global__ void evict_l2(const uint4* p, size_t n, unsigned* sink) {
  unsigned acc = 0;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    acc ^= __ldcg(p + i).x;
  if (acc == 0x9e3779b9u) *sink = acc;  // never in practice; keeps the loads
}

// "m=1 k=5120 n=5120 residual": the shape a choice is for, as tuned_choices() lists it.
std::string shape_name(const Problem& p, Epilogue e) {
  static const char* const epilogue_names[] = {"none", "residual", "silu_mul"};
  return "m=" + std::to_string(p.m) + " k=" + std::to_string(p.k) + " n=" + std::to_string(p.n) + " " +
         epilogue_names[static_cast<int>(e)];
}

// Times each candidate on p as a decoding step meets it: weights not in L2 (a read of twice L2's size before
// each call), 9 calls each, interleaved; the median decides. Returns the fastest, or -1 if a CUDA call failed
// (the caller then uses the default, and its launch reports an error that is not the tuning's).
int tune(const Problem& p, Epilogue e, int multiprocessors, cudaStream_t stream, std::string* report) {
  constexpr int kCalls = 9;
  int device = 0, l2 = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, device) != cudaSuccess)
    return -1;
  const size_t flush_bytes = std::max<size_t>(size_t(2) * l2, size_t(64) << 20);
  void* flush = nullptr;
  if (cudaMalloc(&flush, flush_bytes) != cudaSuccess) {
    cudaGetLastError();  // out of memory is not sticky: clear it, decode untuned
    return -1;
  }
  cudaEvent_t start = nullptr, stop = nullptr;
  std::vector<float> us[kConfigCount];
  bool ok = cudaEventCreate(&start) == cudaSuccess && cudaEventCreate(&stop) == cudaSuccess;
  for (int call = 0; ok && call < kCalls; ++call)
    for (int c = 0; ok && c < kConfigCount; ++c) {
      float ms = 0.f;
      evict_l2<<<1024, 256, 0, stream>>>(static_cast<const uint4*>(flush), flush_bytes / 16,
                                         static_cast<unsigned*>(flush));
      ok = cudaPeekAtLastError() == cudaSuccess && cudaEventRecord(start, stream) == cudaSuccess &&
           launch_config(p, e, c, multiprocessors, stream, false) == 0 &&
           cudaEventRecord(stop, stream) == cudaSuccess && cudaEventSynchronize(stop) == cudaSuccess &&
           cudaEventElapsedTime(&ms, start, stop) == cudaSuccess;
      us[c].push_back(1e3f * ms);
    }
  if (start) cudaEventDestroy(start);
  if (stop) cudaEventDestroy(stop);
  cudaFree(flush);
  if (!ok) return -1;
  float median[kConfigCount];
  for (int c = 0; c < kConfigCount; ++c) {
    std::nth_element(us[c].begin(), us[c].begin() + kCalls / 2, us[c].end());
    median[c] = us[c][kCalls / 2];
  }
  // Another shape only when it is clearly faster alone: in a step, behind the kernel before it (PDL), a near tie
  // can go either way (persistent blocks tied one block per tile alone on one machine, and made its batch-1 step
  // 3% longer).
  const int fallback = default_config(p.m);
  int best = fallback;
  for (int c = 0; c < kConfigCount; ++c)
    if (median[c] < 0.97f * median[fallback] && median[c] < median[best]) best = c;
  *report = shape_name(p, e) + ": " + kConfigs[best].name + " (";
  for (int c = 0; c < kConfigCount; ++c) {
    char time[64];
    std::snprintf(time, sizeof time, "%s%s %.1f µs", c ? ", " : "", kConfigs[c].name, median[c]);
    *report += time;
  }
  *report += ")";
  return best;
}

// The choices made so far, per device and shape; each with tune()'s report.
struct Choices {
  std::mutex mutex;
  std::map<std::tuple<int, int, int, int, int>, std::pair<int, std::string>> by_shape;
};
Choices& choices() {
  static Choices c;
  return c;
}

// MMR_GEMV_CONFIG=<name> forces a candidate (tests, benchmarks); MMR_GEMV_TUNE=0 keeps the default. Both are read
// at each launch, so bench_llava measures them in one process (a captured step makes no launches).
int choose(const Problem& p, Epilogue e, int multiprocessors, cudaStream_t stream) {
  if (const char* forced = std::getenv("MMR_GEMV_CONFIG"))
    for (int c = 0; c < kConfigCount; ++c)
      if (std::strcmp(forced, kConfigs[c].name) == 0) return c;
  if (const char* tune_env = std::getenv("MMR_GEMV_TUNE"); tune_env && std::strcmp(tune_env, "0") == 0)
    return default_config(p.m);
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return default_config(p.m);
  const auto key = std::make_tuple(device, p.m, p.k, p.n, static_cast<int>(e));
  Choices& all = choices();
  std::lock_guard<std::mutex> lock(all.mutex);
  if (auto it = all.by_shape.find(key); it != all.by_shape.end()) return it->second.first;
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream, &capturing) != cudaSuccess || capturing != cudaStreamCaptureStatusNone)
    return default_config(p.m);  // no timing inside a capture; StepGraphs runs each step eagerly first anyway
  std::string report;
  int best = tune(p, e, multiprocessors, stream, &report);
  if (best < 0) {  // kept too, so that a failing timing (no memory for the eviction buffer) is not retried per call
    best = default_config(p.m);
    report = shape_name(p, e) + ": " + kConfigs[best].name + " (not timed: a CUDA call failed)";
  }
  all.by_shape.emplace(key, std::make_pair(best, report));
  return best;
}

}  // namespace

int launch(const Problem& p, Epilogue e, void* stream, bool dependent, int multiprocessors) {
  const auto s = static_cast<cudaStream_t>(stream);
  return launch_config(p, e, choose(p, e, multiprocessors, s), multiprocessors, s, dependent);
}

std::string tuned_choices() {
  Choices& all = choices();
  std::lock_guard<std::mutex> lock(all.mutex);
  std::string out;
  for (const auto& [key, choice] : all.by_shape) out += choice.second + "\n";
  return out;
}

}  // namespace mmr::llava::gemv
