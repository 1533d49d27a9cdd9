#!/usr/bin/env bash
# On a GPU machine after tools/gpu_build.sh: the training checks on CUDA (one DPO + SFT step against the HF
# fixtures in float32 with tolerances x10; DPO and SFT learning through the runner in bf16); with --bench, the DPO
# train-step benchmark against its HF + PEFT peer at the 7B and 13B shapes (tools/gpu_bench.sh dpo). Logs go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
source tools/gpu_env.sh gpu-check-out  # b, out, the library path and libstdc++ preloaded (see there)
if [[ "${1:-}" != "--bench" ]]; then
  for fx in tiny-llava tiny-llava-gqa-llama3; do
    echo "== training parity on CUDA, fixture $fx"
    LLAVA_REFERENCE_DIR=tests/data/$fx MMR_TEST_DEVICE=cuda $b/tests/test_dpo_parity > "$out/train_parity_$fx.log" 2>&1
    grep -E "^\[  (PASSED|FAILED) |Failure|Expected|actual|Which" "$out/train_parity_$fx.log" | head -20
  done
  echo "== DPO and SFT learning in bf16 on CUDA"
  MMR_TEST_DEVICE=cuda $b/tests/test_algorithms_e2e --gtest_filter='*DpoLearns*:*SftLowers*' > "$out/e2e_cuda.log" 2>&1
  grep -E "^\[  (PASSED|FAILED) |OK \]|Failure|actual|before" "$out/e2e_cuda.log" | head -20
  echo "== algorithm tests on the CPU of this build"
  (cd $b && ctest -R "Algorithms|PreferenceLoss|Schedule|Order|TrainingParity|ActivationRecomputation" -j 4 > "$out/ctest_train.log" 2>&1)
  grep -E "tests passed|\(Failed\)|\(SEGFAULT\)" "$out/ctest_train.log"
  exit 0
fi
exec tools/gpu_bench.sh dpo  # the DPO step against its HF + PEFT peer, 7B and 13B
