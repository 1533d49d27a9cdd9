// The plugin's instance of the decode GEMV (gemv_kernel.cuh): one block shape for every LLaVA projection. Measured
// against cuBLAS and other shapes with tools/bench/gemv_bench.cu (numbers in its report and the README).
#include <cuda_runtime.h>

#include "gemv_kernel.cuh"

namespace mmr::llava::gemv {

namespace {

// 8 weight rows per block, 8 warps splitting k, 4 loads of 16 bytes in flight per thread: of the variants tried
// (1-4 tiles, 4-16 warps, 2-8 loads), the one closest to cuBLAS on all five 13B shapes at M = 1..8 (H200).
constexpr int kTiles = 1, kWarps = 8, kUnroll = 4;

template <Epilogue E>
int launch_as(const Problem& p, cudaStream_t stream, bool pdl) {
  constexpr int cols = E == Epilogue::kSiluMul ? 4 * kTiles : 8 * kTiles;
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3((p.n + cols - 1) / cols);
  config.blockDim = dim3(kWarps * 32);
  config.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  config.attrs = attr;
  config.numAttrs = pdl ? 1 : 0;
  return static_cast<int>(cudaLaunchKernelEx(&config, gemv_kernel<kTiles, kWarps, kUnroll, E>, p));
}

}  // namespace

int launch(const Problem& p, Epilogue e, void* stream, bool pdl) {
  const auto s = static_cast<cudaStream_t>(stream);
  switch (e) {
    case Epilogue::kNone: return launch_as<Epilogue::kNone>(p, s, pdl);
    case Epilogue::kResidual: return launch_as<Epilogue::kResidual>(p, s, pdl);
    case Epilogue::kSiluMul: return launch_as<Epilogue::kSiluMul>(p, s, pdl);
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

}  // namespace mmr::llava::gemv
