# Sourced, from the repository root, by the scripts that run the GPU build (tools/gpu_check.sh,
# tools/gpu_train_check.sh, tools/gpu_bench.sh, tools/bench/dp_scaling.sh):
#
#   source tools/gpu_env.sh DEFAULT_OUT      # sets b (the build folder) and out ($OUT or DEFAULT_OUT, created)
#
# The Debian libraries tools/gpu_build.sh unpacked come first in the library path. PyTorch 2.11's libtorch_cpu.so
# exports its own, incompatible copies of std::filesystem functions; in a program linked against it they win over
# libstdc++'s unless libstdc++ comes first (std::filesystem::remove_all then segfaults). cmake/Mmr.cmake asks the
# linker for that order, which the GPU machines' toolchain did not honour, so the torch-linked programs run with
# libstdc++ preloaded. The runner itself does not link LibTorch (plugins bring it in after libstdc++).
b=build-gpu
out=${OUT:-$1}
mkdir -p "$out"
export LD_LIBRARY_PATH="${MMR_DEPS_PREFIX:-/tmp/mmr-deps}/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
export LD_PRELOAD="$(g++ -print-file-name=libstdc++.so.6)"
