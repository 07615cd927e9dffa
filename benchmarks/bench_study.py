"""Benchmark `srmetrics study`. Everything is measured in this run; ratios against the baselines count.

1. ``make``: 2,000 trials (5% sentinels, 5% repeats) over 300 scenes of 512x512 RGB PNGs and 4 methods
   (1,500 input images). Reported: seconds per trial, and the ratio to the I/O floor: a plain loop that
   reads every input with ``io.read_image`` and writes it back as an 8-bit PNG (same compression level).
2. Answers: 2,000 submissions through a running ``srmetrics study serve`` (a uvicorn subprocess; one
   keep-alive HTTP client; every answer fsynced before its response): median and p99 latency, against two
   baselines measured the same way: ``GET /api/config`` on the same server (HTTP without a write) and a
   bare in-process append + fsync of a CSV line (the disk's floor). Checks that the file has 2,000 rows.

Usage: python benchmarks/bench_study.py [--trials 2000] [--scenes 300] [--size 512] [--submissions 2000]
"""

from __future__ import annotations

import argparse
import csv
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from clipscore_sr.human.study.make import make_study
from clipscore_sr.io import read_image

METHODS = ("bicubic", "srcnn", "esrgan", "sr3")


def inputs(root: Path, n_scenes: int, size: int, methods: tuple[str, ...] = METHODS) -> tuple[Path, dict[str, Path]]:
    rng = np.random.default_rng(0)
    gt_dir = root / "gt"
    dirs = {m: root / m for m in methods}
    for d in [gt_dir, *dirs.values()]:
        d.mkdir(parents=True)
    for i in range(n_scenes):
        gt = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(gt).save(gt_dir / f"s{i:04d}.png", compress_level=1)
        for j, m in enumerate(methods):
            sr = np.clip(gt.astype(np.int16) + rng.integers(-4 - j, 5 + j, gt.shape), 0, 255).astype(np.uint8)
            Image.fromarray(sr).save(dirs[m] / f"s{i:04d}.png", compress_level=1)
    return gt_dir, dirs


def io_floor(files: list[Path], dest: Path) -> float:
    dest.mkdir()
    t0 = time.perf_counter()
    for i, f in enumerate(files):
        arr = read_image(f).data
        hwc = np.rint(np.clip(arr, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)
        Image.fromarray(hwc).save(dest / f"{i}.png", compress_level=1)
    return time.perf_counter() - t0


def pct(x: list[float]) -> tuple[float, float]:
    a = np.asarray(x) * 1000
    return float(np.median(a)), float(np.percentile(a, 99))


def start_server(study: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """``srmetrics study serve STUDY`` on a free loopback port (a uvicorn subprocess); returns (process, URL) once
    ``/api/config`` answers."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "clipscore_sr", "study", "serve", str(study), "--port", str(port),
                             *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(3000):
        try:
            httpx.get(url + "/api/config", timeout=5).raise_for_status()
            return proc, url
        except httpx.HTTPError:
            if proc.poll() is not None:
                raise SystemExit(f"the server exited ({proc.returncode})") from None
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the server did not start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=2000)
    ap.add_argument("--scenes", type=int, default=300)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--submissions", type=int, default=2000)
    args = ap.parse_args()
    import httpx

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        gt_dir, dirs = inputs(tmp / "in", args.scenes, args.size)
        print(f"inputs: {args.scenes} scenes x (GT + {len(METHODS)} methods) {args.size}x{args.size} RGB PNG "
              f"in {time.perf_counter() - t0:.1f} s")
        files = sorted(gt_dir.iterdir()) + [f for d in dirs.values() for f in sorted(d.iterdir())]
        base = io_floor(files, tmp / "floor")
        t0 = time.perf_counter()
        study = make_study(gt_dir, dirs, args.trials, tmp / "study", seed=0, sentinels=0.05, repeats=0.05)
        t_make = time.perf_counter() - t0
        n = len(study.trials)
        print(f"make: {n} trials in {t_make:.1f} s = {1000 * t_make / n:.1f} ms/trial; I/O floor (read + write "
              f"each of {len(files)} inputs, 1 thread) {base:.1f} s; ratio make/floor {t_make / base:.2f}")

        proc, url = start_server(tmp / "study", "--annotator", "bench")
        try:
            with httpx.Client(base_url=url, timeout=30) as c:
                trials = c.get("/api/session", params={"annotator": "bench"}).json()["trials"]
                m = min(args.submissions, len(trials))
                get_lat, post_lat = [], []
                for _ in range(m):
                    t0 = time.perf_counter()
                    c.get("/api/config").raise_for_status()
                    get_lat.append(time.perf_counter() - t0)
                for i, t in enumerate(trials[:m]):
                    body = {"annotator": "bench", "trial": t["id"], "shown_left": t["shown_left"],
                            "choice": ("left", "right")[i % 2], "rt_ms": 1000 + i}
                    t0 = time.perf_counter()
                    c.post("/api/answer", json=body).raise_for_status()
                    post_lat.append(time.perf_counter() - t0)
        finally:
            proc.kill()
            proc.wait()
        rows = list(csv.DictReader(open(tmp / "study" / "judgements.csv", newline="")))
        fs_lat = []
        with open(tmp / "floor.csv", "ab") as fh:
            for i in range(m):
                t0 = time.perf_counter()
                fh.write(f"t{i:04d},study,renders/x/gt.png,a.png,b.png,a,bench,m1,m2,real,a,1000,now\n".encode())
                fh.flush()
                os.fsync(fh.fileno())
                fs_lat.append(time.perf_counter() - t0)
        (pm, p99), (gm, g99), (fm, f99) = pct(post_lat), pct(get_lat), pct(fs_lat)
        print(f"answers: {m} POST /api/answer: median {pm:.2f} ms, p99 {p99:.2f} ms, "
              f"{m / sum(post_lat):.0f} answers/s")
        print(f"  baseline GET /api/config (no write): median {gm:.2f} ms, p99 {g99:.2f} ms; "
              f"bare append+fsync: median {fm:.2f} ms, p99 {f99:.2f} ms")
        print(f"  ratio of medians: answer/GET {pm / gm:.2f}, answer/(GET + fsync) {pm / (gm + fm):.2f}")
        ok = len(rows) == m and len({r['pair_id'] for r in rows}) == m
        print(f"judgements.csv: {len(rows)} rows ({'OK' if ok else 'WRONG'}: expected {m} distinct trials)")
        if not ok:
            sys.exit(1)


if __name__ == "__main__":
    main()
