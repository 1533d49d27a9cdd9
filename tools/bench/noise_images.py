#!/usr/bin/env python3
"""Images of random pixels for the decode benchmark (tools/gpu_bench.sh): one per row of its largest batch, so that
no two rows of bench_llava's batch share an image, and so a prefill, as no two rows of HF's peer do (it draws
distinct random pixel values per row). PNG, 8-bit RGB, written with the standard library only.

    python3 tools/bench/noise_images.py --out /tmp/decode-images --count 8 --size 336   # prints the paths, comma-joined
"""
import argparse
import os
import random
import struct
import zlib


def png(width, height, rgb):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    rows = b"".join(b"\x00" + rgb[y * width * 3:(y + 1) * width * 3] for y in range(height))  # filter 0 per row
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit truecolour, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--count", type=int, default=8)
    ap.add_argument("--size", type=int, default=336)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    paths = []
    for i in range(args.count):
        rng = random.Random(i)
        path = os.path.join(args.out, f"noise{i}.png")
        with open(path + ".part", "wb") as f:
            f.write(png(args.size, args.size, rng.randbytes(args.size * args.size * 3)))
        os.replace(path + ".part", path)
        paths.append(path)
    print(",".join(paths))


if __name__ == "__main__":
    main()
