#!/usr/bin/env bash
# Installs what the build and the tests need on Debian 12, and nothing that is already there.
# Safe to re-run. Run as root (or with sudo available).
#
#   tools/setup.sh            install missing packages
#   tools/setup.sh --print    only print the package list (e.g. for `apt-get download` on another machine)
set -euo pipefail

packages=(
  # toolchain
  g++ cmake ninja-build ccache pkg-config git
  # LibTorch (CPU) and the libraries of the host and the plugins (DESIGN.md §5)
  libtorch-dev libyaml-cpp-dev libboost-dev libboost-filesystem-dev
  libsentencepiece-dev sentencepiece libstb-dev libsqlite3-dev sqlite3
  libspdlog-dev libfmt-dev nlohmann-json3-dev libcpp-httplib-dev libssl-dev
  # the runner's command line (subcommands, per-command --help, unknown options refused): CLI11, header-only
  libcli11-dev
  # c10d's Gloo process group (data-parallel training): its headers include Gloo's, which libtorch-dev lacks
  libgloo-dev
  # image decoding with the libraries Pillow uses: libjpeg-turbo for JPEG, libwebp (+ its demuxer) for WebP
  libjpeg62-turbo-dev libwebp-dev
  # an optimised BLAS for LibTorch's CPU matmuls (Debian's libtorch otherwise gets the reference BLAS: ~3x slower)
  libopenblas0-openmp
  # tools/fuzz.sh: clang with libFuzzer and the sanitizer runtimes (libclang-rt-14-dev holds libclang_rt.fuzzer)
  clang libclang-rt-14-dev
  # tests (curl: the `runner serve` test sends a request with it)
  libgtest-dev curl
  # `runner report` draws its plots with gnuplot (a child process writing SVG); the report test renders the
  # page in headless Chromium to check the plots are drawn and the tables hold the store's numbers
  gnuplot-nox chromium
  # the Slurm executor's test starts a real one-node Slurm (tests/slurm/slurm_cluster.sh)
  slurmctld slurmd slurm-client munge
)

if [[ "${1:-}" == "--print" ]]; then
  printf '%s\n' "${packages[@]}"
  exit 0
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "setup: all ${#packages[@]} packages are installed"
  exit 0
fi

sudo=""
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null; then sudo="sudo"; else
    echo "setup: missing packages (${missing[*]}) and not root; run as root or install sudo" >&2
    exit 1
  fi
fi

echo "setup: installing ${#missing[@]} missing package(s): ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq "${missing[@]}"
echo "setup: done"
