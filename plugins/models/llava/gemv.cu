// The plugin's instances of the decode GEMV (gemv_kernel.cuh), and the choice among them per shape on the running
// card. Measured against cuBLAS and other shapes with tools/bench/gemv_bench.cu (numbers in the README).
//
// Why a choice at run time: the fastest block shape differed between H200 machines of the same type (session 16,
// docs/gpu-bench/2026-12-01-session16). On one, 8 rows a block, one block per tile was fastest at batch 1 (172 µs
// for a layer's four products); on three others 16 rows a block was (173-175 µs, against 178-190 for 8 rows),
// and at batch 8 by 11-18 µs a layer. All candidates split k over the same 8 warps in the same order, so they
// give the same bits: the choice changes the speed only. The staged candidates (gemv_staged_kernel) won every
// decoding shape of the 13B model on the H200 they were first timed on (session 18; README, "After the table").
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
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

// A block shape: T tiles of 8 weight rows, 4 / T loads of 16 bytes per thread and tile in a group (so 4 in all),
// one block per tile or persistent blocks (persistent_grid), one group in flight in registers (gemv_kernel) or
// kStages through shared memory (gemv_staged_kernel).
struct Config {
  const char* name;
  int tiles;
  bool persistent;
  bool staged;
};
constexpr int kStages = 3;  // 48 KB of shared memory a block
constexpr Config kConfigs[] = {{"t1", 1, false, false},  {"t1p", 1, true, false},  {"t2", 2, false, false},
                               {"t2p", 2, true, false},  {"t1s", 1, false, true},  {"t1sp", 1, true, true},
                               {"t2s", 2, false, true},  {"t2sp", 2, true, true}};
constexpr int kConfigCount = sizeof(kConfigs) / sizeof(kConfigs[0]);

// Without tuning (MMR_GEMV_TUNE=0, or inside a CUDA graph capture before any eager call of the shape): the shape
// that was fastest on the first machine measured, persistent from 2 rows on.
int default_config(int m) { return m >= 2 ? 1 : 0; }

// How many blocks of the kernel fit on one multiprocessor (0 if the query fails: one block per tile). It depends
// on the kernel and the architecture only, so one query per process; the grid changes the speed, never the result.
template <int T, bool Staged, Epilogue E>
struct Kernel {
  static constexpr int shared = Staged ? staged_bytes<T, kWarps, 4 / T, kStages>() : 0;  // dynamic, bytes
  static void (*get())(Problem) {
    if constexpr (Staged) return gemv_staged_kernel<T, kWarps, 4 / T, kStages, E>;
    else return gemv_kernel<T, kWarps, 4 / T, E>;
  }
  // Allows more than 48 KB of shared memory (static + dynamic) a block, once per device (a function's attributes
  // belong to the device's context); false if that failed.
  static bool prepared() {
    if (!Staged) return true;
    static std::atomic<uint64_t> done{0};  // a bit per device (setting it twice in a race is harmless)
    int device = 0;
    if (cudaGetDevice(&device) != cudaSuccess) return false;
    const uint64_t bit = device < 64 ? uint64_t(1) << device : 0;
    if (bit && (done.load() & bit)) return true;
    if (cudaFuncSetAttribute(get(), cudaFuncAttributeMaxDynamicSharedMemorySize, shared) != cudaSuccess) return false;
    done.fetch_or(bit);
    return true;
  }
  static int blocks_per_multiprocessor() {
    static const int per_sm = [] {
      int n = 0;
      return prepared() && cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, get(), kWarps * 32, shared) ==
                               cudaSuccess
                 ? n
                 : 0;
    }();
    return per_sm;
  }
};

// `multiprocessors`: the device's count, for a persistent grid.
template <int T, bool Staged, Epilogue E>
int launch_shape(const Problem& p, bool persistent, int multiprocessors, cudaStream_t stream, bool dependent) {
  using K = Kernel<T, Staged, E>;
  if (!K::prepared()) return static_cast<int>(cudaErrorInvalidConfiguration);
  constexpr int cols = (E == Epilogue::kSiluMul ? 4 : 8) * T;
  const int tiles = (p.n + cols - 1) / cols;
  const int grid = persistent ? persistent_grid(tiles, K::blocks_per_multiprocessor() * multiprocessors) : tiles;
  return pdl::launch_shared(K::get(), dim3(grid), dim3(kWarps * 32), K::shared, stream, dependent, p);
}

template <Epilogue E>
int launch_config(const Problem& p, const Config& c, int multiprocessors, cudaStream_t stream, bool dependent) {
  if (c.staged)
    return c.tiles == 1 ? launch_shape<1, true, E>(p, c.persistent, multiprocessors, stream, dependent)
                        : launch_shape<2, true, E>(p, c.persistent, multiprocessors, stream, dependent);
  return c.tiles == 1 ? launch_shape<1, false, E>(p, c.persistent, multiprocessors, stream, dependent)
                      : launch_shape<2, false, E>(p, c.persistent, multiprocessors, stream, dependent);
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
// each call), 9 calls each, interleaved. Returns each candidate's median in µs, or nothing if a CUDA call failed
// (the caller then uses the default, and its launch reports an error that is not the tuning's).
std::vector<float> tune(const Problem& p, Epilogue e, int multiprocessors, cudaStream_t stream) {
  constexpr int kCalls = 9;
  int device = 0, l2 = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, device) != cudaSuccess)
    return {};
  const size_t flush_bytes = std::max<size_t>(size_t(2) * l2, size_t(64) << 20);
  void* flush = nullptr;
  if (cudaMalloc(&flush, flush_bytes) != cudaSuccess) {
    cudaGetLastError();  // out of memory is not sticky: clear it, decode untuned
    return {};
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
  if (!ok) return {};
  std::vector<float> median(kConfigCount);
  for (int c = 0; c < kConfigCount; ++c) {
    std::nth_element(us[c].begin(), us[c].begin() + kCalls / 2, us[c].end());
    median[c] = us[c][kCalls / 2];
  }
  return median;
}

// MMR_GEMV_STAGED=0 leaves the staged candidates out of the choice (bench_llava's base_gemv_unstaged).
bool staged_allowed() {
  const char* env = std::getenv("MMR_GEMV_STAGED");
  return !(env && std::strcmp(env, "0") == 0);
}

// The fastest candidate by the medians, but another than the default only when it is clearly faster alone: in a
// step, behind the kernel before it (PDL), a near tie can go either way (persistent blocks tied one block per tile
// alone on one machine, and made its batch-1 step 3% longer).
int best_of(const std::vector<float>& median, int m) {
  const int fallback = default_config(m);
  if (median.empty()) return fallback;
  const bool staged = staged_allowed();
  int best = fallback;
  for (int c = 0; c < kConfigCount; ++c)
    if ((staged || !kConfigs[c].staged) && median[c] < 0.97f * median[fallback] && median[c] < median[best])
      best = c;
  return best;
}

// Each shape's timing so far, per device; empty when it failed (not retried per call: no memory for the
// eviction buffer stays so).
struct Timings {
  std::mutex mutex;
  std::map<std::tuple<int, int, int, int, int>, std::pair<std::string, std::vector<float>>> by_shape;
};
Timings& timings() {
  static Timings t;
  return t;
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
  Timings& all = timings();
  std::lock_guard<std::mutex> lock(all.mutex);
  if (auto it = all.by_shape.find(key); it != all.by_shape.end()) return best_of(it->second.second, p.m);
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(stream, &capturing) != cudaSuccess || capturing != cudaStreamCaptureStatusNone)
    return default_config(p.m);  // no timing inside a capture; StepGraphs runs each step eagerly first anyway
  const auto& timed = all.by_shape.emplace(key, std::make_pair(shape_name(p, e), tune(p, e, multiprocessors, stream)))
                          .first->second.second;
  return best_of(timed, p.m);
}

}  // namespace

int launch(const Problem& p, Epilogue e, void* stream, bool dependent, int multiprocessors) {
  const auto s = static_cast<cudaStream_t>(stream);
  return launch_config(p, e, choose(p, e, multiprocessors, s), multiprocessors, s, dependent);
}

std::string tuned_choices() {
  Timings& all = timings();
  std::lock_guard<std::mutex> lock(all.mutex);
  std::string out;
  for (const auto& [key, timed] : all.by_shape) {
    const auto& [name, median] = timed;
    out += name + ": " + kConfigs[best_of(median, std::get<1>(key))].name;
    if (median.empty()) {
      out += " (not timed: a CUDA call failed)\n";
      continue;
    }
    for (int c = 0; c < kConfigCount; ++c) {
      char time[64];
      std::snprintf(time, sizeof time, "%s%s %.1f µs", c ? ", " : " (", kConfigs[c].name, median[c]);
      out += time;
    }
    out += ")\n";
  }
  return out;
}

}  // namespace mmr::llava::gemv
