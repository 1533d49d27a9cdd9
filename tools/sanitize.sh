#!/usr/bin/env bash
# The torch-free code (host, spec, store, parsers, data, images, safetensors, scorers, judges, serve's request
# parsing) built with AddressSanitizer + UndefinedBehaviorSanitizer into build-asan/, and its unit tests run there:
# any report fails the test that triggered it. LibTorch code stays out (its folders are skipped: Debian's
# LibTorch is not instrumented), and so do the tests that load plugins, the sentencepiece module (RTLD_DEEPBIND,
# which AddressSanitizer refuses) or start the runner (mmr_add_gtest's PLUGINS, cmake/Mmr.cmake). Only the test
# executables are built there (target unit_tests), at -O1 -g1 (CMakeLists.txt says why).
#
# Then the code that runs threads against each other under ThreadSanitizer, in build-tsan/: the store's unit tests
# (writers in several processes and threads on one database) and the openai_compatible judge's worker threads
# against a loopback endpoint (test_judge_concurrency). Only those targets are built there.
#
#   tools/sanitize.sh            # configure, build (ccache helps) and run both
set -euo pipefail
cd "$(dirname "$0")/.."
torch_dirs=(core/lib/training plugins/models/llava plugins/algorithms/dpo plugins/algorithms/reference_logps
            plugins/algorithms/rejection_sampling plugins/algorithms/sample plugins/algorithms/sft
            plugins/algorithms/steerlm)
skip=$(IFS=';'; echo "${torch_dirs[*]}")
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
mkdir -p build-asan
cmake -S . -B build-asan "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMMR_SANITIZE=address,undefined \
  "-DMMR_SKIP_DIRS=$skip" > build-asan/configure.log || { cat build-asan/configure.log; exit 1; }
cmake --build build-asan -j "$(nproc)" --target unit_tests
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest --test-dir build-asan -j "$(nproc)" --output-on-failure

mkdir -p build-tsan
cmake -S . -B build-tsan "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMMR_SANITIZE=thread \
  "-DMMR_SKIP_DIRS=$skip" > build-tsan/configure.log || { cat build-tsan/configure.log; exit 1; }
cmake --build build-tsan -j "$(nproc)" --target test_store test_judge_concurrency mmr_plugin_openai_compatible
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tools/tsan.supp"
for t in test_store test_judge_concurrency; do
  echo "== ThreadSanitizer: $t"
  build-tsan/tests/$t --gtest_brief=1
done
