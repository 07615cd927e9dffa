"""Streaming scene evaluation: wall time, Mpx/s and peak RSS of `srmetrics scene` on a synthetic 4-band uint16
LR of N x N and its x4 SR (tiled, deflate), at fractions of the full size (2745 -> 10980), and `score --lr`
(lr-l1/psnr/sam/shift) on a sample of the same tiles written as files, for the throughput comparison.

    python benchmarks/bench_scene.py                 # fractions 1/16 and 1/4 of the area, then full size
    python benchmarks/bench_scene.py --sizes 686,1372 --score-tiles 4

Each size runs in a fresh process (peak RSS = ru_maxrss of that child). Mpx/s counts SR pixels.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FULL = 2745


def make_scene(root: Path, n: int, scale: int = 4, seed: int = 0) -> tuple[Path, Path]:
    """Smooth random LR (uint16, reflectance-like) and an SR = bicubic-ish x4 + detail, written window by window."""
    import rasterio
    import torch
    import torch.nn.functional as F
    from rasterio.transform import Affine
    from rasterio.windows import Window

    rng = np.random.default_rng(seed)
    base = torch.from_numpy(rng.random((1, 4, n // 16 + 2, n // 16 + 2)))
    lr = F.interpolate(base, size=(n, n), mode="bicubic", align_corners=False)[0].numpy()
    lr = np.clip(2000 + 3000 * lr + rng.normal(0, 50, lr.shape), 0, 10000).astype(np.uint16)
    t = Affine(10.0, 0, 300000.0, 0, -10.0, 5000000.0)
    common = dict(driver="GTiff", count=4, dtype="uint16", crs="EPSG:32633", tiled=True, blockxsize=512,
                  blockysize=512, compress="deflate", nodata=0)
    lr_path, sr_path = root / f"lr_{n}.tif", root / f"sr_{n}.tif"
    with rasterio.open(lr_path, "w", width=n, height=n, transform=t, **common) as d:
        d.write(lr)
    step = 256
    with rasterio.open(sr_path, "w", width=n * scale, height=n * scale, transform=t @ Affine.scale(1 / scale),
                       BIGTIFF="YES", **common) as d:
        for r in range(0, n, step):
            h = min(step, n - r)
            x = torch.from_numpy(lr[:, max(0, r - 2):r + h + 2].astype(np.float64))[None]
            up = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)[0].numpy()
            top = (r - max(0, r - 2)) * scale
            up = up[:, top:top + h * scale] + rng.normal(0, 20, (4, h * scale, n * scale))
            d.write(np.clip(up, 1, 65534).astype(np.uint16), window=Window(0, r * scale, n * scale, h * scale))
    return lr_path, sr_path


def child(args: list[str]) -> dict:
    """Run a Python snippet in a fresh process; wall time and its peak RSS (MiB)."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", *args], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode not in (0, 1):
        raise SystemExit(p.stderr[-2000:])
    return {"wall_s": wall, **json.loads(p.stdout.strip().splitlines()[-1])}


SCENE = """
import json, resource, sys
from clipscore_sr.scene import evaluate_scenes, SceneSettings
r = evaluate_scenes([(sys.argv[1], sys.argv[2])], sys.argv[3], SceneSettings(tile=int(sys.argv[4])), progress=False)
print(json.dumps({"rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "errors": r["errors"]}))
"""

SCORE = """
import json, resource, sys, time
from clipscore_sr import io
from clipscore_sr.pipeline import score_pairs
pairing = io.pair_folders(sys.argv[1], sys.argv[2])
t0 = time.perf_counter()
score_pairs(pairing.pairs, ["lr-l1", "lr-psnr", "lr-sam", "lr-shift"], progress=False)
print(json.dumps({"compute_s": time.perf_counter() - t0,
                  "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_tiles(lr_path: Path, sr_path: Path, root: Path, tile: int, count: int) -> tuple[Path, Path, int]:
    import rasterio
    import tifffile
    from rasterio.windows import Window

    (root / "lr").mkdir(parents=True, exist_ok=True)
    (root / "sr").mkdir(exist_ok=True)
    px = 0
    with rasterio.open(lr_path) as lr, rasterio.open(sr_path) as sr:
        for i in range(count):
            r, c = (i // 2) * tile, (i % 2) * tile
            a = lr.read(window=Window(c, r, tile, tile))
            b = sr.read(window=Window(4 * c, 4 * r, 4 * tile, 4 * tile))
            tifffile.imwrite(root / "lr" / f"t{i}.tif", np.moveaxis(a, 0, -1))
            tifffile.imwrite(root / "sr" / f"t{i}.tif", np.moveaxis(b, 0, -1))
            px += b.shape[1] * b.shape[2]
    return root / "lr", root / "sr", px


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default=f"{FULL // 4},{FULL // 2},{FULL}", help="LR sizes (N x N)")
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--score-tiles", type=int, default=4)
    ap.add_argument("--root", default=None)
    a = ap.parse_args()
    root = Path(a.root or tempfile.mkdtemp(prefix="bench_scene."))
    root.mkdir(parents=True, exist_ok=True)
    print(f"folder {root}; {os.cpu_count()} CPUs")
    rows = []
    for n in (int(s) for s in a.sizes.split(",")):
        t0 = time.perf_counter()
        lr, sr = make_scene(root, n)
        made = time.perf_counter() - t0
        res = child([SCENE, str(lr), str(sr), str(root / f"out_{n}"), str(a.tile)])
        mpx = (4 * n) ** 2 / 1e6
        rows.append((n, mpx, res))
        print(f"LR {n}x{n} / SR {4 * n}x{4 * n} ({mpx:.0f} Mpx, made in {made:.0f} s): {res['wall_s']:.1f} s, "
              f"{mpx / res['wall_s']:.2f} Mpx/s, peak RSS {res['rss_mib']:.0f} MiB, errors {res['errors']}",
              flush=True)
    if len(rows) > 1:
        print(f"peak RSS {rows[-1][2]['rss_mib'] / rows[0][2]['rss_mib']:.2f}x from {rows[0][0]}^2 to {rows[-1][0]}^2 "
              f"({rows[-1][1] / rows[0][1]:.0f}x the pixels)")
    lr_dir, sr_dir, px = write_tiles(lr, sr, root / "score", a.tile,
                                     a.score_tiles)
    res = child([SCORE, str(lr_dir), str(sr_dir)])
    print(f"score --lr on {a.score_tiles} tiles as files ({px / 1e6:.1f} SR Mpx): {res['compute_s']:.2f} s scoring, "
          f"{px / 1e6 / res['compute_s']:.2f} Mpx/s (scene path above: {rows[-1][1] / rows[-1][2]['wall_s']:.2f} "
          f"Mpx/s end to end)")


if __name__ == "__main__":
    main()
