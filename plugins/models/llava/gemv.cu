// The plugin's instance of the decode GEMV (gemv_kernel.cuh): one block shape for every LLaVA projection. Measured
// against cuBLAS and other shapes with tools/bench/gemv_bench.cu (numbers in its report and the README).
#include <cuda_runtime.h>

#include "gemv_kernel.cuh"

namespace mmr::llava::gemv {

namespace {

// 8 weight rows per block, 8 warps splitting k, 4 loads of 16 bytes in flight per thread: of the variants tried
// (1-4 tiles, 4-16 warps, 2-8 loads), the one closest to cuBLAS on all five 13B shapes at M = 1..8 (H200).
constexpr int kTiles = 1, kWarps = 8, kUnroll = 4;

// How many blocks of the kernel fit on one multiprocessor (0 if the query fails: one block per tile). It depends
// on the kernel and the architecture only, so one query per process; the grid changes the speed, never the result.
template <Epilogue E>
int blocks_per_multiprocessor() {
  static const int per_sm = [] {
    int n = 0;
    return cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, gemv_kernel<kTiles, kWarps, kUnroll, E>, kWarps * 32,
                                                         0) == cudaSuccess
               ? n
               : 0;
  }();
  return per_sm;
}

template <Epilogue E>
int launch_as(const Problem& p, cudaStream_t stream, bool dependent, int persistent_on) {
  constexpr int cols = E == Epilogue::kSiluMul ? 4 * kTiles : 8 * kTiles;
  const int tiles = (p.n + cols - 1) / cols;
  const int grid = persistent_on > 0 ? persistent_grid(tiles, blocks_per_multiprocessor<E>() * persistent_on) : tiles;
  return pdl::launch(gemv_kernel<kTiles, kWarps, kUnroll, E>, dim3(grid), dim3(kWarps * 32), stream, dependent, p);
}

}  // namespace

int launch(const Problem& p, Epilogue e, void* stream, bool dependent, int persistent_on) {
  const auto s = static_cast<cudaStream_t>(stream);
  switch (e) {
    case Epilogue::kNone: return launch_as<Epilogue::kNone>(p, s, dependent, persistent_on);
    case Epilogue::kResidual: return launch_as<Epilogue::kResidual>(p, s, dependent, persistent_on);
    case Epilogue::kSiluMul: return launch_as<Epilogue::kSiluMul>(p, s, dependent, persistent_on);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

}  // namespace mmr::llava::gemv
