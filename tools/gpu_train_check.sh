#!/usr/bin/env bash
# On a GPU machine after tools/gpu_build.sh: the training checks on CUDA (one DPO + SFT step against the HF
# fixtures in float32 with tolerances x10; DPO and SFT learning through the runner in bf16), then, with --bench,
# the DPO train-step benchmark against its HF + PEFT peer at the 7B and 13B shapes. Logs go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-check-out}
mkdir -p "$out"
export LD_LIBRARY_PATH="${MMR_DEPS_PREFIX:-/tmp/mmr-deps}/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
export LD_PRELOAD="$(g++ -print-file-name=libstdc++.so.6)"  # see tools/gpu_check.sh
b=build-gpu
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
img=tests/data/tiny-llava/images/wide.png
for shape in ${MMR_BENCH_SHAPES:-llava-1.5-7b llava-1.5-13b}; do
  echo "== $shape: ours"
  $b/bin/bench_train --shape $shape --image $img --pairs 8 --steps 3 2>&1 | tee "$out/bench_train_$shape.log" | grep -E "^\{|error" 
  echo "== $shape: HF transformers + PEFT"
  python3 tools/bench/hf_dpo_peer.py --shape $shape --pairs 8 --steps 3 2>&1 | tee "$out/hf_dpo_$shape.log" | grep -E "^\{|Error" 
done
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
