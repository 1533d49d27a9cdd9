#!/usr/bin/env bash
# What we run on a GPU machine to check a change (after tools/gpu_build.sh): the whole suite on the CUDA LibTorch
# build, the model parity tests on CUDA, and the fixture generator (tools/fixtures) — validated against the
# committed fixture, then used to make grouped-query-attention fixtures that the parity tests must also pass
# (LLAVA_REFERENCE_DIR). Logs and the new fixtures go to $OUT (or ./gpu-check-out).
set -uo pipefail
cd "$(dirname "$0")/.."
source tools/gpu_env.sh gpu-check-out  # b, out, the library path and libstdc++ preloaded (see there)
step() { echo "== $*"; }
# Frames of a crash report (core/crash.cpp) as function and file:line, via addr2line.
symbolize() {
  grep -oE '^[^ ]+\(\+0x[0-9a-f]+\)' "$1" | head -25 | while read -r f; do
    mod=${f%%(*}; off=${f#*(+}; off=${off%)}
    echo "  $(basename "$mod") $(addr2line -f -C -i -e "$mod" "$off" 2>/dev/null | paste -sd' ' | cut -c1-220)"
  done
}

step "ctest (CPU paths of the CUDA build)"
# Many tests at once, each LibTorch process with 2 threads, not one per core each: with nproc threads apiece, 16
# parallel tests slowed each other past the timeouts of the tests that start several processes.
(cd $b && OMP_NUM_THREADS=2 ctest -j "$(nproc)" --output-on-failure > "$out/ctest.log" 2>&1); grep -E "tests passed|\(Failed\)|\(SEGFAULT\)" "$out/ctest.log"

step "parity on CUDA, float32 (tolerances x10) and bf16"
MMR_TEST_DEVICE=cuda $b/tests/test_llava_parity > "$out/parity_cuda.log" 2>&1; grep -E "^\[  (PASSED|FAILED) |Failure|fatal signal" "$out/parity_cuda.log" | head -20
symbolize "$out/parity_cuda.log"
step "crash reports of two failing tests, if any"
$b/tests/test_registry --gtest_filter=Registry.OptionsAreCheckedAgainstTheSchema > "$out/crash_registry.log" 2>&1; grep -E "fatal signal|PASSED|FAILED" "$out/crash_registry.log"; symbolize "$out/crash_registry.log"

sp=(); python3 -c 'import sentencepiece' 2>/dev/null || sp=(--reuse-token-ids)
step "fixture generator against the committed fixture"
if [[ -z "${MMR_SKIP_FIXTURE_CHECK:-}" ]]; then
  python3 tools/fixtures/make_tiny_llava.py --check-against tests/data/tiny-llava --out /tmp/fx-check "${sp[@]}" > "$out/fixture_check.log" 2>&1; echo "rc=$?"; tail -5 "$out/fixture_check.log"
fi
for v in ${MMR_FIXTURE_VARIANTS:-gqa gqa-llama3}; do
  step "fixture $v: generate, then parity (CPU and CUDA) and tokenizer tests against it"
  python3 tools/fixtures/make_tiny_llava.py --variant $v --tokenizer-from tests/data/tiny-llava --out /tmp/fx-$v "${sp[@]}" > "$out/fixture_$v.log" 2>&1; echo "rc=$?"; tail -3 "$out/fixture_$v.log"
  LLAVA_REFERENCE_DIR=/tmp/fx-$v $b/tests/test_llava_parity > "$out/parity_${v}_cpu.log" 2>&1; grep -E "^\[  (PASSED|FAILED) |Failure" "$out/parity_${v}_cpu.log" | head -10
  LLAVA_REFERENCE_DIR=/tmp/fx-$v MMR_TEST_DEVICE=cuda $b/tests/test_llava_parity > "$out/parity_${v}_cuda.log" 2>&1; grep -E "^\[  (PASSED|FAILED) |Failure" "$out/parity_${v}_cuda.log" | head -10
  LLAVA_REFERENCE_DIR=/tmp/fx-$v $b/tests/test_tokenizer 2>&1 | grep -E "^\[  (PASSED|FAILED) " | head -3
done
for v in ${MMR_FIXTURE_VARIANTS:-gqa gqa-llama3}; do tar czf "$out/fixture-$v.tgz" -C /tmp fx-$v; done
exit 0
