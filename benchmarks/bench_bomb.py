"""Decompression bombs: peak memory of reading a small PNG that claims a huge image, with the pixel cap on
(the default) and off (``CLIPSCORE_SR_MAX_PIXELS=0``, the behaviour before the cap).

Usage::

    python benchmarks/bench_bomb.py [--side 10000] [--bits 16]

Writes a ``side x side`` RGB PNG of zeros (16-bit goes through imagecodecs, 8-bit through Pillow), then reads
it with :func:`clipscore_sr.io.read_image` in a fresh subprocess per case and prints each child's peak RSS
and the ratio. With the cap the read fails from the header, before any decoder allocates anything.
"""

from __future__ import annotations

import argparse
import os
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

CHILD = """
import resource, sys
from clipscore_sr import io
try:
    io.read_image(sys.argv[1])
    outcome = "decoded"
except Exception as exc:
    outcome = type(exc).__name__ + ": " + str(exc)[-90:]
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, outcome)
"""


def write_bomb(path: Path, side: int, bits: int) -> int:
    """A valid PNG of ``side x side`` RGB zeros, compressed row by row (no image is held in memory)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\0" * (1 + side * 3 * bits // 8)
    comp = zlib.compressobj(9)
    body = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, bits, 2, 0, 0, 0))
                     + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path.stat().st_size


def peak(path: Path, cap: str | None) -> tuple[float, str]:
    env = dict(os.environ)
    env.pop("CLIPSCORE_SR_MAX_PIXELS", None)
    if cap is not None:
        env["CLIPSCORE_SR_MAX_PIXELS"] = cap
    out = subprocess.run([sys.executable, "-c", CHILD, str(path)], env=env, capture_output=True, text=True,
                         check=True).stdout.split(" ", 1)
    return float(out[0]), out[1].strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=10_000)
    ap.add_argument("--bits", type=int, choices=(8, 16), default=16)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bomb.png"
        size = write_bomb(path, args.side, args.bits)
        decoded = args.side * args.side * 3 * args.bits // 8 / 2**20
        print(f"bomb: {size / 1024:.0f} KiB PNG, {args.side}x{args.side} RGB {args.bits}-bit "
              f"({decoded:.0f} MiB decoded, {decoded * 4 * 8 / args.bits:.0f} MiB as float32)")
        base, _ = peak(path, "1")  # fails at once: the cost of starting Python and importing clipscore_sr
        capped, msg_capped = peak(path, None)
        free, msg_free = peak(path, "0")
        print(f"interpreter + imports:   {base:8.0f} MiB")
        print(f"default cap:             {capped:8.0f} MiB  ({msg_capped})")
        print(f"no cap (before the fix): {free:8.0f} MiB  ({msg_free})")
        print(f"peak RSS ratio no cap / cap: {free / capped:.1f}x; above start-up: {free - base:.0f} vs "
              f"{capped - base:.0f} MiB")


if __name__ == "__main__":
    main()
