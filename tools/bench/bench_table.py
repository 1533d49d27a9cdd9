#!/usr/bin/env python3
"""Reads the JSON lines tools/gpu_bench.sh collected (one file per program run) and prints one Markdown table:
ours against each HF peer, with ratios (peer time / our time, so > 1 means we are faster).

    python3 tools/bench/bench_table.py gpu-bench-out/*.jsonl
"""
import json
import sys


def load(paths):
    rows = []
    for p in paths:
        for line in open(p):
            line = line.strip()
            if line.startswith("{"):
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    return rows


def pick(rows, what, peer, key=None, **match):
    """The matching row; of several (a program that measures a DPO step three times), the median by `key`."""
    found = [r for r in rows
             if r.get("what") == what and r.get("peer", "ours") in peer and all(r.get(k) == v for k, v in match.items())]
    if not found:
        return None
    if key:
        found.sort(key=lambda r: r.get(key, 0))
    return found[len(found) // 2] if key else found[0]


# Each column's peer: HF eager; HF's fastest configuration (static KV cache + torch.compile for generation,
# torch.compile for training).
PEERS = [("hf_eager",), ("hf_static_compile", "hf_compile")]


def main():
    rows = load(sys.argv[1:])
    out = ["| workload | ours | HF eager (SDPA) | HF static cache + torch.compile (training: torch.compile) | vs eager | vs compiled |",
           "|---|---|---|---|---|---|"]

    def line(label, what, key, fmt, higher_better, ours_only=None, **match):
        ours = pick(rows, what, ("ours",), key, **match, **(ours_only or {}))
        peers = [pick(rows, what, p, key, **match) for p in PEERS]
        cells = [fmt(ours) if ours else "–"] + [fmt(p) if p else "not run" for p in peers]
        ratios = []
        for p in peers:
            if ours and p and p.get(key) and ours.get(key):
                r = ours[key] / p[key] if higher_better else p[key] / ours[key]
                ratios.append(f"**{r:.2f}x**")
            else:
                ratios.append("–")
        out.append(f"| {label} | " + " | ".join(cells + ratios) + " |")

    for variant, vname in [("base", ""), ("adapter_r128", ", LoRA r128 adapter loaded")]:
        for b in (1, 8):
            ours = pick(rows, "greedy_decode", ("ours",), batch=b, variant=variant) or {}
            rows_note = ""  # bench_llava says how many distinct images its rows had (before: one for all)
            if b > 1:
                rows_note = (" (each row its own image)" if ours.get("images", 1) >= b else
                             f" (ours: {ours.get('images', 1)} distinct image(s), rows sharing one share its prefill)")
            line(f"greedy decode 13B, batch {b}{rows_note}{vname}: tok/s over 128 new tokens, prefill included",
                 "greedy_decode",
                 "tokens_per_second", lambda r: f"{r['tokens_per_second']:.1f} tok/s", True, batch=b, variant=variant)
            line(f"  same, one decoding step (after the prefill)", "greedy_decode", "step_ms",
                 lambda r: f"{r['step_ms']:.2f} ms", False, batch=b, variant=variant)
            line(f"  same, decoding rate after the prefill (rows ÷ step)", "greedy_decode", "decode_tokens_per_second",
                 lambda r: f"{r['decode_tokens_per_second']:.1f} tok/s", True, batch=b, variant=variant)
            line(f"  same, prefill (image + prompt, first token)", "greedy_decode", "prefill_seconds",
                 lambda r: f"{1e3 * r['prefill_seconds']:.1f} ms", False, batch=b, variant=variant)
    # Ours alone with one part of the decoding step turned off, same process (bench_llava's variants).
    for variant, without in (("base_aten_attention", "with RoPE, cache writes and attention as ATen ops "
                              "(MMR_DECODE_ATTENTION=0)"),
                             ("base_plain_launches", "with each kernel launched after the one before ends (MMR_PDL=0)"),
                             ("base_no_cuda_graphs", "without CUDA graphs (MMR_CUDA_GRAPHS=0)"),
                             ("base_gemv_untuned", "with the GEMV's default block shapes, not timed on the card "
                                                   "(MMR_GEMV_TUNE=0)"),
                             ("base_gemv_t1", "with 8 rows a GEMV block, one block per tile (MMR_GEMV_CONFIG=t1)"),
                             ("base_gemv_unstaged", "with the GEMV's register kernels only, no weights staged "
                                                    "through shared memory (MMR_GEMV_STAGED=0)"),
                             ("base_again", "again, after the variants above (the card's drift)")):
        for b in (1, 8):
            r = pick(rows, "greedy_decode", ("ours",), batch=b, variant=variant)
            if r:
                out.append(f"| greedy decode 13B, batch {b}, ours {without} | {r['tokens_per_second']:.1f} tok/s, "
                           f"step {r['step_ms']:.2f} ms | | | | |")
    line("POPE-shaped evaluation, 13B: questions/s after the first batch (image + question, ≤ 8 new tokens, "
         "batch 16)", "pope_eval", "questions_per_second", lambda r: f"{r['questions_per_second']:.2f} q/s", True,
         variant=None)  # the shared-prefix run (the default); the unshared one is below
    for r in rows:
        if r.get("what") == "pope_eval" and r.get("peer", "ours") == "ours":
            name = {None: "ours", "unshared": "ours without prefix sharing (MMR_SHARE_PREFIXES=0)",
                    "no_image_cache": "ours decoding every batch's images again (MMR_IMAGE_CACHE=0)"}[r.get("variant")]
            out.append(f"|   same, {name}, the whole stage (first batch and warm-up included) | "
                       f"{r['with_warmup_questions_per_second']:.2f} q/s ({r['questions_per_second']:.2f} after the "
                       f"first batch) | | | | |")
    for shape in ("llava-1.5-7b", "llava-1.5-13b"):
        for sharing, how in (("on", "prefix_sharing: on"), ("off", "prefix_sharing: off, the default")):
            line(f"DPO train step {shape[10:].upper()} (8 pairs × 896 tokens, LoRA r128 + projector, recomputation; "
                 f"ours with {how})", "dpo_train_step", "seconds",
                 lambda r: f"{r['seconds']:.3f} s, peak {r['peak_allocated_gib']:.1f} GiB", False,
                 ours_only={"prefix_sharing": sharing}, shape=shape)
    print("\n".join(out))


if __name__ == "__main__":
    main()
