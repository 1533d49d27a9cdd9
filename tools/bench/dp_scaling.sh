#!/usr/bin/env bash
# Data-parallel scaling of the DPO train step (bench_train, tools/bench/bench_train.cpp) on one machine with
# several GPUs, after tools/gpu_build.sh: the same global batch (--pairs, default 8) on 1 GPU and on N GPUs (one
# rank per GPU, NCCL), at the 7B and 13B shapes, then one table with the ratio. Logs go to $OUT.
#
#   tools/bench/dp_scaling.sh [N=2]      # MMR_BENCH_SHAPES="llava-1.5-7b" to run one shape
#
# Rank k sees only GPU k (CUDA_VISIBLE_DEVICES=k, as the runner starts ranks); MMR_DP_ALL_VISIBLE=1 shows every
# rank every GPU and gives it --device cuda:k instead (as torchrun scripts do).
set -uo pipefail
cd "$(dirname "$0")/../.."
gpus=${1:-2}
source tools/gpu_env.sh gpu-check-out  # b, out, the library path and libstdc++ preloaded (see there)
bench=($b/bin/bench_train --image tests/data/tiny-llava/images/wide.png --pairs "${MMR_BENCH_PAIRS:-8}" --steps 3)

# Runs `bench_train` as $2 ranks at shape $1, rank k on GPU k; rank 0's JSON lines go to $out/dp_$1_$2.jsonl.
run() {
  local shape=$1 world=$2 port=$((29000 + RANDOM % 1000)) pids=() k
  for ((k = world - 1; k >= 0; k--)); do
    local device=(--device cuda) visible=$k
    [[ -n "${MMR_DP_ALL_VISIBLE:-}" ]] && device=(--device "cuda:$k") visible=${CUDA_VISIBLE_DEVICES:-}
    # Each rank its share of the cores, as torchrun and the runner's ranks do: two ranks with a thread per core
    # each oversubscribe the CPU, and the forward pass's CPU work (image preprocessing) slows down.
    env ${visible:+CUDA_VISIBLE_DEVICES=$visible} OMP_NUM_THREADS=$(( $(nproc) / world )) RANK=$k WORLD_SIZE=$world MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
      "${bench[@]}" --shape "$shape" "${device[@]}" > "$out/dp_${shape}_${world}_rank$k.log" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || echo "dp_scaling: a rank of $shape x $world failed (see $out)"; done
  grep -h '"dpo_train_step"' "$out/dp_${shape}_${world}_rank0.log" > "$out/dp_${shape}_${world}.jsonl"
}

for shape in ${MMR_BENCH_SHAPES:-llava-1.5-7b llava-1.5-13b}; do
  echo "== $shape: 1 GPU, then $gpus GPUs"
  run "$shape" 1
  run "$shape" "$gpus"
done
# The table: the median step of each run, and N-GPU throughput over 1-GPU throughput.
python3 - "$out" "$gpus" ${MMR_BENCH_SHAPES:-llava-1.5-7b llava-1.5-13b} <<'PY'
import json, statistics, sys
out, gpus, shapes = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
print(f"| shape | 1 GPU: s/step (tok/s) | {gpus} GPUs: s/step (tok/s) | scaling | peak GiB per GPU (1 / {gpus}) |")
print("|---|---|---|---|---|")
for shape in shapes:
    rows = {}
    for w in (1, gpus):
        try:
            rows[w] = [json.loads(l) for l in open(f"{out}/dp_{shape}_{w}.jsonl")]
        except (OSError, ValueError):
            rows[w] = []
    if not rows[1] or not rows[gpus]:
        print(f"| {shape} | {'failed' if not rows[1] else 'ok'} | {'failed' if not rows[gpus] else 'ok'} | - | - |")
        continue
    s1 = statistics.median(r["seconds"] for r in rows[1]); sn = statistics.median(r["seconds"] for r in rows[gpus])
    tok = rows[1][0]["tokens"]
    print(f"| {shape} | {s1:.3f} ({tok / s1:,.0f}) | {sn:.3f} ({tok / sn:,.0f}) | **{s1 / sn:.2f}x** | "
          f"{rows[1][0]['peak_allocated_gib']:.1f} / {rows[gpus][0]['peak_allocated_gib']:.1f} |")
PY
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
