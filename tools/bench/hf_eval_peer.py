#!/usr/bin/env python3
"""The peer of the POPE-shaped evaluation in tools/gpu_bench.sh: HF transformers answering the same questions
file with LlavaForConditionalGeneration.generate in batches — images opened with PIL and preprocessed by
CLIPImageProcessor, the vicuna_v1 prompt tokenized by the same tokenizer.model when sentencepiece is installed
(otherwise random ids of --text-tokens, said in the output), greedy, at most --max-new-tokens, answers decoded.
Random weights at a published shape, bf16, SDPA; --mode as hf_llava_peer.py. Prints questions/s as JSON.

    python3 tools/bench/hf_eval_peer.py --questions /tmp/pope-bench/questions.jsonl \
        --image-folder tests/data/tiny-llava/images --batch-size 16
"""
import argparse
import json
import os
import time

import torch
from PIL import Image
from transformers import CLIPImageProcessor

from llava_shapes import random_model

SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, "
          "detailed, and polite answers to the human's questions.")
SUFFIX = "\nAnswer the question using a single word or phrase."


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--questions", required=True)
    ap.add_argument("--image-folder", required=True)
    ap.add_argument("--shape", default="llava-1.5-13b")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=8)
    ap.add_argument("--mode", default="eager", choices=["eager", "static-compile"])
    ap.add_argument("--text-tokens", type=int, default=70, help="prompt length without a tokenizer")
    args = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    questions = [json.loads(line) for line in open(args.questions)]
    tokenizer = None
    try:
        import sentencepiece
        tokenizer = sentencepiece.SentencePieceProcessor(
            model_file=os.path.join(root, "tests/data/tiny-llava/model/tokenizer.model"))
    except ImportError:
        pass
    processor = CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    model = random_model(args.shape)
    model.eval()
    extra = {"cache_implementation": "static"} if args.mode == "static-compile" else {}
    gen = torch.Generator().manual_seed(0)

    def prompt_ids(q):
        if tokenizer is None:
            text = torch.randint(3, 32000, (args.text_tokens,), generator=gen).tolist()
            return [1] + text[:40] + [32000] * 576 + text[40:]
        before = tokenizer.encode(SYSTEM + " USER: ")
        after = tokenizer.encode("\n" + q["text"] + SUFFIX + " ASSISTANT:")
        return [1] + before + [32000] * 576 + after

    # With a static cache, every batch padded to the longest prompt of the file: one cache length, so the compiled
    # step is compiled once (a new length per batch would recompile it, then fall back to eager).
    fixed_width = max(len(prompt_ids(q)) for q in questions) if args.mode == "static-compile" else 0

    def answer(batch):
        images = [Image.open(os.path.join(args.image_folder, q["image"])).convert("RGB") for q in batch]
        pixels = processor(images, return_tensors="pt")["pixel_values"].to("cuda", torch.bfloat16)
        rows = [prompt_ids(q) for q in batch]
        width = max([fixed_width] + [len(r) for r in rows])
        ids = torch.tensor([[0] * (width - len(r)) + r for r in rows], device="cuda")  # left padding
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device="cuda")
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, pixel_values=pixels, do_sample=False,
                                 max_new_tokens=args.max_new_tokens, pad_token_id=0, **extra)
        new = out[:, width:].tolist()
        if tokenizer:  # ids past the small test tokenizer's vocabulary (a random model draws from 32064) are dropped
            n = tokenizer.get_piece_size()
            new = [tokenizer.decode([i for i in r if i < n]) for r in new]
        return new, sum(len(r) for r in rows)

    answer(questions[:args.batch_size])  # warm-up (and compilation)
    torch.cuda.synchronize()
    t = time.perf_counter()
    prompt_tokens = 0
    for i in range(0, len(questions), args.batch_size):
        prompt_tokens += answer(questions[i:i + args.batch_size])[1]
    torch.cuda.synchronize()
    secs = time.perf_counter() - t
    peer = "hf_" + args.mode.replace("-", "_")
    print(json.dumps({"what": "pope_eval", "peer": peer, "questions": len(questions), "batch_size": args.batch_size,
                      "seconds": secs, "questions_per_second": len(questions) / secs,
                      "mean_prompt_tokens": prompt_tokens / len(questions),
                      "tokenizer": "tokenizer.model" if tokenizer else f"random ids ({args.text_tokens})"}), flush=True)


if __name__ == "__main__":
    main()
