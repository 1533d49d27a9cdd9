#!/usr/bin/env bash
# The GPU speed table (issue 13): ours against HF transformers as most users run it (eager, SDPA) and in its fastest
# documented configuration (static KV cache + torch.compile), same card, same run, random-init LLaVA-1.5 shapes
# in bf16. After tools/gpu_build.sh on a GPU machine:
#
#   tools/gpu_bench.sh                 # all parts: decode eval dpo compiled
#   tools/gpu_bench.sh decode          # any of them (compiled: HF's fastest configuration, static cache + torch.compile,
#                                      # for decode, eval and dpo (torch.compile alone there);
#                                      # serve: runner serve under 8 clients, --max-batch 1 against 8; not in "all")
#
# Every program prints JSON lines into $OUT (default gpu-bench-out); the table is $OUT/table.md.
set -uo pipefail
cd "$(dirname "$0")/.."
source tools/gpu_env.sh gpu-bench-out  # b, out, the library path and libstdc++ preloaded (see there)
tok=tests/data/tiny-llava/model
img=tests/data/tiny-llava/images/wide.png
parts=("$@")
[[ ${#parts[@]} -eq 0 ]] && parts=(decode eval dpo compiled)
has() { [[ " ${parts[*]} " == *" $1 "* ]]; }
run() {  # name, command...: JSON lines to $out/name.jsonl, the rest to $out/name.log
  local name=$1; shift
  echo "== $name: $*"
  local t0=$SECONDS
  "$@" > "$out/$name.jsonl" 2> "$out/$name.log"
  echo "   rc=$? in $((SECONDS - t0)) s"; grep -h '^{' "$out/$name.jsonl" | cut -c1-300
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/card.txt"
if has decode; then
  # A batch's rows ask about distinct images (random pixels), so no two share a prefill: HF's peer gives each row
  # its own random pixel values too.
  rows=$(python3 tools/bench/noise_images.py --out /tmp/decode-images --count 8 --size 336)
  run ours_decode $b/bin/bench_llava --shape llava-1.5-13b --tokenizer $tok --image "$rows" --new-tokens 128 --batches 1,8
  run ours_decode_adapter $b/bin/bench_llava --shape llava-1.5-13b --tokenizer $tok --image "$rows" --new-tokens 128 \
    --batches 1,8 --adapter-rank 128
  run hf_decode_eager python3 tools/bench/hf_llava_peer.py --shape llava-1.5-13b --new-tokens 128 --batches 1,8
  run hf_decode_eager_adapter python3 tools/bench/hf_llava_peer.py --shape llava-1.5-13b --new-tokens 128 --batches 1,8 \
    --adapter-rank 128
fi
w=/tmp/pope-bench  # the POPE-shaped workload: questions, images, experiment file
if has eval || has compiled; then
  rm -rf $w && python3 tools/bench/pope_workload.py --out $w --questions 512 --batch-size 16 --max-new-tokens 8 > /dev/null
fi
if has eval; then
  # no_image_cache: every batch decodes its images again (the workload's 6 images would otherwise stay cached, as
  # POPE's 500 would not).
  for variant in shared_prefixes unshared no_image_cache; do
    log=$out/ours_eval_$variant.log
    echo "== ours_eval ($variant): runner, POPE stage"
    t0=$SECONDS
    MMR_SHARE_PREFIXES=$([[ $variant == unshared ]] && echo 0 || echo 1) \
      MMR_IMAGE_CACHE=$([[ $variant == no_image_cache ]] && echo 0 || echo 1) \
      $b/bin/runner --results $w/results_$variant.db $w/experiment.yaml > "$log" 2>&1
    echo "   rc=$? in $((SECONDS - t0)) s"
    # The stage's last progress line ("pope answers: done, 512/512 (100%), R it/s, elapsed ...": the whole stage's
    # generation, warm-up included) and its rate after the first batch ("pope answers: R replies/s after the first
    # batch"), which is what the HF peer measures (it answers one batch before it starts the clock).
    python3 - "$log" $variant > "$out/ours_eval_$variant.jsonl" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
done = re.search(r"pope answers: done, (\d+)/\d+ \(100%\), ([0-9.]+) it/s, elapsed (\S+)", text)
steady = re.search(r"pope answers: ([0-9.]+) replies/s after the first batch", text)
if done and steady:
    row = {"what": "pope_eval", "questions": int(done[1]), "batch_size": 16, "questions_per_second": float(steady[1]),
           "with_warmup_questions_per_second": float(done[2]), "elapsed": done[3]}
    if sys.argv[2] != "shared_prefixes":
        row["variant"] = sys.argv[2]
    print(json.dumps(row))
PY
    cat "$out/ours_eval_$variant.jsonl"
  done
  run hf_eval_eager python3 tools/bench/hf_eval_peer.py --questions $w/questions.jsonl \
    --image-folder tests/data/tiny-llava/images --batch-size 16 --max-new-tokens 8
fi
if has dpo; then
  for shape in ${MMR_BENCH_SHAPES:-llava-1.5-7b llava-1.5-13b}; do
    run ours_dpo_$shape $b/bin/bench_train --shape $shape --image $img --pairs 8 --steps 3
    run ours_dpo_shared_$shape $b/bin/bench_train --shape $shape --image $img --pairs 8 --steps 3 --prefix-sharing on
    run hf_dpo_$shape python3 tools/bench/hf_dpo_peer.py --shape $shape --pairs 8 --steps 3
  done
fi
if has compiled; then  # HF's fastest configuration: static KV cache + torch.compile (training: torch.compile)
  run hf_decode_compiled python3 tools/bench/hf_llava_peer.py --shape llava-1.5-13b --new-tokens 128 --batches 1,8 \
    --mode static-compile
  run hf_decode_compiled_adapter python3 tools/bench/hf_llava_peer.py --shape llava-1.5-13b --new-tokens 128 \
    --batches 1,8 --mode static-compile --adapter-rank 128
  run hf_eval_compiled python3 tools/bench/hf_eval_peer.py --questions $w/questions.jsonl \
    --image-folder tests/data/tiny-llava/images --batch-size 16 --max-new-tokens 8 --mode static-compile
  for shape in ${MMR_BENCH_SHAPES:-llava-1.5-7b llava-1.5-13b}; do
    run hf_dpo_compiled_$shape python3 tools/bench/hf_dpo_peer.py --shape $shape --pairs 8 --steps 3 --mode compile
  done
fi
if has serve; then  # runner serve at 13B (random weights, bf16): 8 clients at once, one request at a time vs batched
  for mb in 1 8; do
    rm -f "$out/port"
    $b/bin/runner serve --model llava --model-opt random_init=true --model-opt shape=llava-1.5-13b \
      --model-opt tokenizer=$tok --model-opt dtype=bfloat16 --model-opt device=cuda --port 0 \
      --port-file "$out/port" --max-batch $mb 2> "$out/serve_mb$mb.log" &
    pid=$!
    for _ in $(seq 600); do [[ -s "$out/port" ]] && break; sleep 0.5; done
    run serve_mb$mb python3 tools/bench/serve_load.py --url "http://127.0.0.1:$(cat "$out/port")" --clients 8 \
      --requests 2 --max-tokens 128
    kill $pid; wait $pid
  done
fi
python3 tools/bench/bench_table.py "$out"/*.jsonl | tee "$out/table.md"
