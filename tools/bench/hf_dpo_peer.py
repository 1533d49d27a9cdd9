#!/usr/bin/env python3
"""The peer for tools/bench/bench_train: one DPO training step with HF transformers + PEFT at a published LLaVA-1.5
shape with random weights — bf16, SDPA, LoRA r128/alpha 256 on every language-model linear, trainable projector
(modules_to_save), gradient checkpointing, 8 pairs x (576 image + 320 text) tokens, sigmoid DPO on summed response
log-probs (the paper's loss, as LLaVA's get_batch_logps computes them), gradient clipping at 1.0, AdamW.
--mode compile: the model's forward through torch.compile (default mode; the backward then runs the compiled
graphs too), HF's fastest documented training configuration short of a custom kernel library. The first step
(compilation) is not timed, in either mode. Prints one JSON object per measurement, like bench_train.

    python3 tools/bench/hf_dpo_peer.py --shape llava-1.5-13b --pairs 8 --steps 3
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model

from llava_shapes import SHAPES, random_model

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="llava-1.5-13b", choices=sorted(SHAPES))
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--text-tokens", type=int, default=320)
    ap.add_argument("--response-tokens", type=int, default=160)
    ap.add_argument("--mode", default="eager", choices=["eager", "compile"])
    args = ap.parse_args()

    t0 = time.perf_counter()
    model = random_model(args.shape)
    torch.set_default_dtype(torch.float32)
    lora = LoraConfig(r=128, lora_alpha=256, lora_dropout=0.0,
                      target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)",
                      modules_to_save=["multi_modal_projector"])
    model = get_peft_model(model, lora)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    model.train()
    forward = torch.compile(model) if args.mode == "compile" else model
    torch.cuda.synchronize()
    print(json.dumps({"what": "load", "shape": args.shape, "seconds": time.perf_counter() - t0}), flush=True)

    g = torch.Generator().manual_seed(7)
    n = 2 * args.pairs
    prompt_len = args.text_tokens - args.response_tokens  # BOS + prompt text
    ids = torch.randint(3, 32000, (n, args.text_tokens), generator=g)
    ids[:, 0] = 1
    ids[args.pairs:, :prompt_len] = ids[:args.pairs, :prompt_len]  # a pair shares its prompt
    image = torch.full((n, 576), 32000)
    input_ids = torch.cat([ids[:, :1], image, ids[:, 1:]], dim=1).cuda()  # BOS, 576 image tokens, text
    labels = input_ids.clone()
    labels[:, :1 + 576 + prompt_len - 1] = -100
    pixel_values = torch.randn(n, 3, 336, 336, generator=g).to("cuda", torch.bfloat16)
    ref = torch.full((args.pairs,), -1000.0, device="cuda")
    params = [p for p in model.parameters() if p.requires_grad]
    proj = [p for n_, p in model.named_parameters() if p.requires_grad and "multi_modal_projector" in n_]
    rest = [p for n_, p in model.named_parameters() if p.requires_grad and "multi_modal_projector" not in n_]
    opt = torch.optim.AdamW([{"params": rest, "lr": 5e-5}, {"params": proj, "lr": 2e-5}], weight_decay=0.0)
    tokens = n * input_ids.shape[1]
    for step in range(args.steps + 1):
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        logits = forward(input_ids=input_ids, pixel_values=pixel_values).logits[:, :-1].float()
        tgt = labels[:, 1:]
        mask = tgt != -100
        lp = torch.gather(logits.log_softmax(-1), 2, tgt.clamp_min(0).unsqueeze(2)).squeeze(2)
        sums = (lp * mask).sum(-1)
        h = (sums[:args.pairs] - ref) - (sums[args.pairs:] - ref)
        loss = -F.logsigmoid(0.1 * h).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        torch.cuda.synchronize()
        secs = time.perf_counter() - t1
        if step == 0:
            continue
        print(json.dumps({"what": "dpo_train_step", "peer": "hf_" + args.mode, "shape": args.shape, "pairs": args.pairs, "tokens": tokens,
                          "seconds": secs, "tokens_per_second": tokens / secs, "loss": float(loss),
                          "peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30}), flush=True)


if __name__ == "__main__":
    main()
