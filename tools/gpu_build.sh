#!/usr/bin/env bash
# Builds the project on a GPU machine against the CUDA LibTorch of its PyTorch install (DESIGN §5): the Debian 12
# -dev packages travel as .deb files in .deb/ (make them with `tools/gpu_build.sh --download` on a Debian 12
# machine), are unpacked into a private prefix, and CMake gets both prefixes.
#
#   tools/gpu_build.sh --download      # on the Debian machine: fill .deb/ (about 22 MB)
#   tools/gpu_build.sh                 # on the GPU machine: unpack, configure, build into build-gpu/
set -euo pipefail
cd "$(dirname "$0")/.."
debs=(libyaml-cpp-dev libyaml-cpp0.7 libspdlog-dev libspdlog1.10 libfmt-dev libfmt9 libsqlite3-dev libsqlite3-0
      libsentencepiece-dev libsentencepiece0 libstb-dev libstb0 libgtest-dev nlohmann-json3-dev libboost1.74-dev
      libboost-filesystem1.74-dev libboost-filesystem1.74.0 libboost-system1.74-dev libboost-system1.74.0
      libboost-atomic1.74.0 libboost-atomic1.74-dev
      libcpp-httplib-dev libcpp-httplib0.11 libssl-dev libssl3 zlib1g-dev libbrotli-dev libbrotli1 libcli11-dev
      libgloo-dev  # c10d's ProcessGroupGloo.hpp includes Gloo's headers, which PyTorch's wheel does not ship
      libjpeg62-turbo-dev libjpeg62-turbo libwebp-dev libwebp7 libwebpdemux2)  # image decoding (core/lib/image)
if [[ "${1:-}" == "--download" ]]; then
  mkdir -p .deb && cd .deb && apt-get download "${debs[@]}"
  exit 0
fi
# Compiler/linker flags from the environment (a PyTorch image may set e.g. -static-libstdc++) would reach CMake;
# a plugin with its own libstdc++ copy breaks under RTLD_DEEPBIND, so build with the toolchain defaults only.
for v in CFLAGS CXXFLAGS CPPFLAGS LDFLAGS; do
  [[ -n "${!v:-}" ]] && echo "gpu_build: ignoring $v='${!v}'"
  unset "$v"
done
prefix=${MMR_DEPS_PREFIX:-/tmp/mmr-deps}
mkdir -p "$prefix"
for f in .deb/*.deb; do dpkg -x "$f" "$prefix"; done
torch_prefix=$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)')
export PKG_CONFIG_PATH="$prefix/usr/lib/x86_64-linux-gnu/pkgconfig:$prefix/usr/share/pkgconfig"
export PKG_CONFIG_SYSROOT_DIR="$prefix"
export LD_LIBRARY_PATH="$prefix/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
# OpenSSL's configuration headers (included by httplib.h) sit in the multiarch folder, which GCC searches only
# under the system root.
export CPATH="$prefix/usr/include/x86_64-linux-gnu${CPATH:+:$CPATH}"
# Gloo's headers (libgloo-dev) have no CMake or pkg-config file to bring their folder in.
export CPATH="$CPATH:$prefix/usr/include"
# nccl.h for c10d's NCCL backend: from the nvidia-nccl wheel PyTorch depends on (site-packages/nvidia/.../nccl.h).
nccl=()
site=$(python3 -c 'import torch, os; print(os.path.dirname(os.path.dirname(torch.__file__)))')
nccl_h=$(find "$site/nvidia" -name nccl.h 2>/dev/null | head -1)
if [[ -n "$nccl_h" ]]; then nccl=("-DMMR_NCCL_INCLUDE_DIR=$(dirname "$nccl_h")"); else echo "gpu_build: no nccl.h (Gloo only)"; fi
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S . -B build-gpu "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  "-DCMAKE_PREFIX_PATH=$torch_prefix;$prefix/usr;$prefix/usr/lib/x86_64-linux-gnu/cmake" \
  -DCMAKE_CUDA_ARCHITECTURES=90 "${nccl[@]}" "$@"
# MMR_GPU_TARGETS="a b": build only those targets (a check that needs two tests need not build the whole tree).
targets=()
for t in ${MMR_GPU_TARGETS:-}; do targets+=(--target "$t"); done
cmake --build build-gpu -j "$(nproc)" "${targets[@]}"
