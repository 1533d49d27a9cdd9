#!/usr/bin/env python3
"""A POPE-shaped evaluation workload for tools/gpu_bench.sh: N questions "Is there a <object> in the image?" over
the fixture images (several questions per image, as POPE asks 6 about each of its 500), LLaVA's question format,
and the experiment file that evaluates a random-init LLaVA-1.5 shape on them through the real POPE stage
(greedy, at most --max-new-tokens new tokens, no labels: generation only).

    python3 tools/bench/pope_workload.py --out /tmp/pope-bench --questions 512 --shape llava-1.5-13b
"""
import argparse
import json
import os

OBJECTS = ["dining table", "person", "car", "chair", "cup", "dog", "bottle", "bicycle"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--questions", type=int, default=512)
    ap.add_argument("--shape", default="llava-1.5-13b")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=8)
    args = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    images = os.path.join(root, "tests/data/tiny-llava/images")
    names = sorted(f for f in os.listdir(images) if f.endswith((".png", ".jpg")))
    args.out = os.path.abspath(args.out)  # the experiment names its files absolutely (paths in it are read from its folder)
    os.makedirs(args.out, exist_ok=True)
    questions = os.path.join(args.out, "questions.jsonl")
    with open(questions, "w") as f:
        for i in range(args.questions):
            q = {"question_id": i, "image": names[(i // 6) % len(names)], "category": "adversarial",
                 "text": f"Is there a {OBJECTS[i % len(OBJECTS)]} in the image?"}
            f.write(json.dumps(q) + "\n")
    model = {"plugin": "llava", "random_init": True, "shape": args.shape, "dtype": "bfloat16", "device": "cuda",
             "tokenizer": os.path.join(root, "tests/data/tiny-llava/model")}
    experiment = {"name": "pope-throughput", "stages": [{
        "name": "pope", "benchmark": "pope", "model": model, "questions": questions, "image_folder": images,
        "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens}]}
    with open(os.path.join(args.out, "experiment.yaml"), "w") as f:
        json.dump(experiment, f, indent=1)  # JSON is YAML
    print(json.dumps({"questions": questions, "images": len(names), "experiment": os.path.join(args.out, "experiment.yaml")}))


if __name__ == "__main__":
    main()
