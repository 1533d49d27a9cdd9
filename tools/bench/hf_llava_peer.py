#!/usr/bin/env python3
"""The peer for tools/bench/bench_llava: HF transformers' LlavaForConditionalGeneration with random weights at a
published LLaVA-1.5 shape, bf16, SDPA, greedy decoding of N new tokens (EOS ignored) from an image + a short
prompt per row (each row its own random pixels), at the given batch sizes — prefill and per-token time apart, as bench_llava measures them.

--mode eager: generate() as most users call it (dynamic KV cache).
--mode static-compile: HF's fastest documented configuration, a static KV cache with the decoding step compiled
  (torch.compile, mode "reduce-overhead": CUDA graphs); generate() compiles it itself once the cache is static.
  The warm-up runs at the full length, so compilation is not timed.
--adapter-rank R: a PEFT LoRA adapter of rank R on every language-model linear, unmerged (how PEFT generates).

    python3 tools/bench/hf_llava_peer.py --shape llava-1.5-13b --new-tokens 128 --batches 1,8 --mode eager
"""
import argparse
import json
import time

import torch

from llava_shapes import SHAPES, random_model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="llava-1.5-13b", choices=sorted(SHAPES))
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--mode", default="eager", choices=["eager", "static-compile"])
    ap.add_argument("--adapter-rank", type=int, default=0)
    ap.add_argument("--prompt-tokens", type=int, default=30, help="text tokens besides the 576 image tokens")
    args = ap.parse_args()

    t0 = time.perf_counter()
    model = random_model(args.shape)
    if args.adapter_rank:
        from peft import LoraConfig, get_peft_model
        lora = LoraConfig(r=args.adapter_rank, lora_alpha=2 * args.adapter_rank, lora_dropout=0.0,
                          target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)")
        model = get_peft_model(model, lora)
    model.eval()
    torch.cuda.synchronize()
    peer = "hf_" + args.mode.replace("-", "_")
    print(json.dumps({"what": "load", "peer": peer, "shape": args.shape, "seconds": time.perf_counter() - t0}), flush=True)

    g = torch.Generator().manual_seed(0)
    text_ids = torch.randint(3, 32000, (args.prompt_tokens,), generator=g)
    ids = torch.cat([torch.tensor([1]), text_ids[:5], torch.full((576,), 32000), text_ids[5:]])
    batches = [int(x) for x in args.batches.split(",")]
    # Each row its own image (as bench_llava's rows under tools/gpu_bench.sh): no two rows are the same prompt.
    pixels = torch.randn(max(batches), 3, 336, 336, generator=g).to("cuda", torch.bfloat16)
    extra = {"cache_implementation": "static"} if args.mode == "static-compile" else {}
    variant = f"adapter_r{args.adapter_rank}" if args.adapter_rank else "base"
    for b in batches:
        input_ids = ids.unsqueeze(0).repeat(b, 1).cuda()
        kw = dict(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), pixel_values=pixels[:b],
                  do_sample=False, eos_token_id=None, pad_token_id=32001, **extra)

        def run(n):
            torch.cuda.synchronize()
            t = time.perf_counter()
            with torch.no_grad():
                out = model.generate(**kw, max_new_tokens=n, min_new_tokens=n)
            torch.cuda.synchronize()
            return time.perf_counter() - t, (out.shape[1] - input_ids.shape[1]) * b

        run(args.new_tokens)  # warm-up at the full length (and compilation, with static-compile)
        run(1)
        prefill = min(run(1)[0] for _ in range(3))
        secs, new = run(args.new_tokens)
        step = (secs - prefill) / (args.new_tokens - 1)
        print(json.dumps({"what": "greedy_decode", "peer": peer, "variant": variant, "batch": b, "new_tokens": new,
                          "seconds": secs, "tokens_per_second": new / secs, "prefill_seconds": prefill,
                          "step_ms": 1e3 * step, "decode_tokens_per_second": b / step}), flush=True)
    print(json.dumps({"what": "peak_memory_gib", "peer": peer,
                      "value": torch.cuda.max_memory_allocated() / 2**30}), flush=True)


if __name__ == "__main__":
    main()
