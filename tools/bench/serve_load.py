#!/usr/bin/env python3
"""Load on a running `runner serve`: C clients at once, each sending R chat completions one after another (greedy,
max_tokens fixed), and the throughput that comes back: completion tokens per second over the whole run, and the
mean latency of a request. Standard library only (the GPU machines have no network).

    python3 tools/bench/serve_load.py --url http://127.0.0.1:8000 --clients 8 --requests 4 --max-tokens 128

Prints one JSON line: {"clients", "requests", "completion_tokens", "seconds", "tokens_per_s", "mean_latency_s"}.
"""
import argparse
import json
import threading
import time
import urllib.request

QUESTIONS = ["Describe a busy street market in the morning.", "Write a short poem about the sea.",
             "Explain how a bicycle stays upright.", "List five uses of a paperclip.",
             "Tell a story about a lost key.", "What makes bread rise?", "Describe a thunderstorm.",
             "Give advice for a first job interview."]


def ask(url, i, max_tokens):
    body = json.dumps({"model": "llava", "max_tokens": max_tokens, "temperature": 0,
                       "messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)] + f" ({i})"}]})
    req = urllib.request.Request(url + "/v1/chat/completions", data=body.encode(),
                                 headers={"Content-Type": "application/json"})
    start = time.time()
    with urllib.request.urlopen(req, timeout=600) as r:
        reply = json.load(r)
    return reply["usage"]["completion_tokens"], time.time() - start


def run_clients(clients, requests, send):
    """`clients` threads, each sending `requests` requests one after another (send(i), i numbering them all);
    returns every result and the wall-clock seconds until the last one came back."""
    results, lock = [], threading.Lock()

    def client(c):
        for r in range(requests):
            out = send(c * requests + r)
            with lock:
                results.append(out)

    start = time.time()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, time.time() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=4, help="per client, one after another")
    ap.add_argument("--max-tokens", type=int, default=128)
    args = ap.parse_args()
    ask(args.url, 0, 8)  # warm-up: the first request pays for lazy setup
    results, seconds = run_clients(args.clients, args.requests, lambda i: ask(args.url, i, args.max_tokens))
    tokens = sum(t for t, _ in results)
    print(json.dumps({"clients": args.clients, "requests": len(results), "completion_tokens": tokens,
                      "seconds": round(seconds, 3), "tokens_per_s": round(tokens / seconds, 1),
                      "mean_latency_s": round(sum(l for _, l in results) / len(results), 3)}))


if __name__ == "__main__":
    main()
