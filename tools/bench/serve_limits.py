#!/usr/bin/env python3
"""A bounded load test of a running `runner serve` on loopback: N normal clients each send R chat completions one
after another while M slow clients each trickle a request one byte per --slow-interval seconds (a slowloris).
Reports what the server did with each: normal requests served or refused (by status) and their latency, and the
slow clients refused at once (503 past --max-connections) or closed by the server (its --request-timeout) and
when. Standard library only.

    python3 tools/bench/serve_limits.py --port 8000 --clients 8 --requests 4 --slow 32 --seconds 10

Prints one JSON object.
"""
import argparse
import http.client
import json
import socket
import statistics
import threading
import time

from serve_load import run_clients  # same folder

SLOW_REQUEST = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"x" * 200 + b"\r\n\r\n"


def chat(port, i, max_tokens, key):
    body = json.dumps({"model": "llava", "max_tokens": max_tokens, "temperature": 0,
                       "messages": [{"role": "user", "content": f"Question {i}: name a colour."}]})
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = "Bearer " + key
    start = time.time()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("POST", "/v1/chat/completions", body, headers)
        status = conn.getresponse().status
        conn.close()
    except OSError as e:
        status = type(e).__name__
    return status, time.time() - start


def slow_client(port, interval, seconds, out, lock):
    """Sends SLOW_REQUEST a byte at a time until the server answers or closes, or `seconds` pass."""
    start = time.time()
    result = {"outcome": "still open", "after_s": None}
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.settimeout(interval)
        for k in range(len(SLOW_REQUEST)):
            if time.time() - start > seconds:
                break
            try:
                s.sendall(SLOW_REQUEST[k:k + 1])
            except OSError:
                result = {"outcome": "closed by the server", "after_s": time.time() - start}
                break
            try:
                data = s.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                data = b""
            if data.startswith(b"HTTP/1.1 503"):
                result = {"outcome": "refused with 503", "after_s": time.time() - start}
            elif data:
                result = {"outcome": "answered " + data[9:12].decode(), "after_s": time.time() - start}
            else:
                result = {"outcome": "closed by the server", "after_s": time.time() - start}
            break
        s.close()
    except OSError as e:
        result = {"outcome": "connect failed: " + type(e).__name__, "after_s": time.time() - start}
    with lock:
        out.append(result)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=4, help="per normal client, one after another")
    ap.add_argument("--max-tokens", type=int, default=8)
    ap.add_argument("--slow", type=int, default=32, help="slow clients")
    ap.add_argument("--slow-interval", type=float, default=1.0, help="seconds between a slow client's bytes")
    ap.add_argument("--seconds", type=float, default=10, help="how long slow clients keep trickling")
    ap.add_argument("--key", default="", help="bearer token for the normal clients")
    args = ap.parse_args()

    lock = threading.Lock()
    slow_results = []
    slow = [threading.Thread(target=slow_client, args=(args.port, args.slow_interval, args.seconds, slow_results, lock))
            for _ in range(args.slow)]
    for t in slow:
        t.start()
    time.sleep(min(1.0, args.seconds / 4))  # the slow clients are connected first

    normal_results, normal_seconds = run_clients(args.clients, args.requests,
                                                 lambda i: chat(args.port, i, args.max_tokens, args.key))
    for t in slow:
        t.join()

    latencies = sorted(l for s, l in normal_results if s == 200)
    refused = {}
    for s, _ in normal_results:
        if s != 200:
            refused[str(s)] = refused.get(str(s), 0) + 1
    outcomes = {}
    for r in slow_results:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
    closed = sorted(r["after_s"] for r in slow_results if r["outcome"] == "closed by the server")
    print(json.dumps({
        "clients": args.clients, "requests": len(normal_results), "served": len(latencies), "refused": refused,
        "normal_seconds": round(normal_seconds, 2),
        "latency_p50_s": round(statistics.median(latencies), 3) if latencies else None,
        "latency_max_s": round(latencies[-1], 3) if latencies else None,
        "slow_clients": args.slow, "slow_outcomes": outcomes,
        "slow_closed_median_s": round(statistics.median(closed), 2) if closed else None,
    }))


if __name__ == "__main__":
    main()
