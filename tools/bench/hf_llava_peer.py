#!/usr/bin/env python3
"""The peer for tools/bench/bench_llava: HF transformers' LlavaForConditionalGeneration with random weights at a
published LLaVA-1.5 shape, bf16, SDPA, greedy decoding of N new tokens (EOS ignored) from one image + a short
prompt, at the given batch sizes. Prints one JSON object per measurement, like bench_llava.

    python3 tools/bench/hf_llava_peer.py --shape llava-1.5-13b --new-tokens 128 --batches 1,8
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
    ap.add_argument("--prompt-tokens", type=int, default=30, help="text tokens besides the 576 image tokens")
    args = ap.parse_args()

    t0 = time.perf_counter()
    model = random_model(args.shape)
    model.eval()
    torch.cuda.synchronize()
    print(json.dumps({"what": "load", "peer": "hf", "shape": args.shape, "seconds": time.perf_counter() - t0}), flush=True)

    g = torch.Generator().manual_seed(0)
    text_ids = torch.randint(3, 32000, (args.prompt_tokens,), generator=g)
    ids = torch.cat([torch.tensor([1]), text_ids[:5], torch.full((576,), 32000), text_ids[5:]])
    pixels = torch.randn(1, 3, 336, 336, generator=g).to("cuda", torch.bfloat16)
    for b in [int(x) for x in args.batches.split(",")]:
        input_ids = ids.unsqueeze(0).repeat(b, 1).cuda()
        kw = dict(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), pixel_values=pixels.repeat(b, 1, 1, 1),
                  do_sample=False, eos_token_id=None, pad_token_id=32001)
        with torch.no_grad():
            model.generate(**kw, max_new_tokens=4, min_new_tokens=4)
            torch.cuda.synchronize()
            t1 = time.perf_counter()
            out = model.generate(**kw, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens)
            torch.cuda.synchronize()
        secs = time.perf_counter() - t1
        new = (out.shape[1] - input_ids.shape[1]) * b
        print(json.dumps({"what": "greedy_decode", "peer": "hf", "batch": b, "new_tokens": new, "seconds": secs,
                          "tokens_per_second": new / secs}), flush=True)
    print(json.dumps({"what": "peak_memory_gib", "peer": "hf",
                      "value": torch.cuda.max_memory_allocated() / 2**30}), flush=True)


if __name__ == "__main__":
    main()
