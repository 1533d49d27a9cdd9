#!/usr/bin/env bash
# Configures and builds into build/ (Ninja, ccache when present, every core). Extra arguments go to CMake's
# configure step, e.g. tools/build.sh -DCMAKE_PREFIX_PATH=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
generator=()
if command -v ninja >/dev/null && [[ ! -f "$build/CMakeCache.txt" || -f "$build/build.ninja" ]]; then
  generator=(-G Ninja)
fi
cmake -S . -B "$build" "${generator[@]}" "$@"
cmake --build "$build" -j "$(nproc)"
