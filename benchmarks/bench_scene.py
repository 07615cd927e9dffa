"""Streaming scene evaluation: wall time, Mpx/s and peak RSS of `srmetrics scene` on a synthetic 4-band uint16
LR of N x N and its x4 SR (tiled 512, deflate), at fractions of the full size (2745 -> 10980), and its throughput
against `score --lr` (lr-l1/psnr/sam/shift) on tiles of the same scene written as files, measured in one process.

    python benchmarks/bench_scene.py                       # 1/16, 1/4 and full size (minutes)
    python benchmarks/bench_scene.py --sizes 686,1372 --score-tiles 4 --rounds 1

Peak RSS: each size runs in a fresh process (VmHWM of that child, imports included). Throughput: one more
child times, round by round, `score --lr` on ``--score-tiles`` full tiles of the largest scene (the same LR/SR
windows as the scene's tiles) written as deflate GeoTIFFs like the scene (the fair comparison: decode included
on both sides) and as uncompressed TIFFs (score's best case), and the whole scene end to end (every output:
table, summary, maps, quick-look); imports excluded on both sides. Mpx/s counts SR pixels; the ratio is the
median over rounds of scene Mpx/s / score Mpx/s. The load average is printed: the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FULL = 2745
SCALE = 4


def make_scene(root: Path, n: int, scale: int = SCALE, seed: int = 0) -> tuple[Path, Path]:
    """Smooth random LR (uint16, reflectance-like) and an SR = bicubic x4 + noise, written window by window
    (kept in ``root`` and reused)."""
    import rasterio
    import torch
    import torch.nn.functional as F
    from rasterio.transform import Affine
    from rasterio.windows import Window

    lr_path, sr_path = root / f"lr_{n}.tif", root / f"sr_{n}.tif"
    if lr_path.exists() and sr_path.exists():
        return lr_path, sr_path
    rng = np.random.default_rng(seed)
    base = torch.from_numpy(rng.random((1, 4, n // 16 + 2, n // 16 + 2)))
    lr = F.interpolate(base, size=(n, n), mode="bicubic", align_corners=False)[0].numpy()
    lr = np.clip(2000 + 3000 * lr + rng.normal(0, 50, lr.shape), 0, 10000).astype(np.uint16)
    t = Affine(10.0, 0, 300000.0, 0, -10.0, 5000000.0)
    common = dict(driver="GTiff", count=4, dtype="uint16", crs="EPSG:32633", tiled=True, blockxsize=512,
                  blockysize=512, compress="deflate", nodata=0)
    tmp_sr = sr_path.with_name(sr_path.name + ".tmp")
    with rasterio.open(lr_path, "w", width=n, height=n, transform=t, **common) as d:
        d.write(lr)
    step = 256
    with rasterio.open(tmp_sr, "w", width=n * scale, height=n * scale, transform=t @ Affine.scale(1 / scale),
                       BIGTIFF="YES", **common) as d:
        for r in range(0, n, step):
            h = min(step, n - r)
            x = torch.from_numpy(lr[:, max(0, r - 2):r + h + 2].astype(np.float64))[None]
            up = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)[0].numpy()
            top = (r - max(0, r - 2)) * scale
            up = up[:, top:top + h * scale] + rng.normal(0, 20, (4, h * scale, n * scale))
            d.write(np.clip(up, 1, 65534).astype(np.uint16), window=Window(0, r * scale, n * scale, h * scale))
    os.replace(tmp_sr, sr_path)
    return lr_path, sr_path


def write_tiles(lr_path: Path, sr_path: Path, root: Path, tile: int, count: int) -> int:
    """The first ``count`` full tiles of the scene as files: ``root/{deflate,plain}/{lr,sr}/tN.tif``; returns
    their SR pixels."""
    import warnings

    import rasterio
    import tifffile
    from rasterio.windows import Window

    warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
    px = 0
    with rasterio.open(lr_path) as lr, rasterio.open(sr_path) as sr:
        per_row = lr.width // tile
        if per_row * (lr.height // tile) < count:
            raise SystemExit(f"--score-tiles {count}: the {lr.width}^2 scene has fewer full tiles of {tile}")
        for i in range(count):
            r, c = (i // per_row) * tile, (i % per_row) * tile
            a = lr.read(window=Window(c, r, tile, tile))
            b = sr.read(window=Window(SCALE * c, SCALE * r, SCALE * tile, SCALE * tile))
            for kind in ("deflate", "plain"):
                for name, arr in (("lr", a), ("sr", b)):
                    path = root / kind / name / f"t{i}.tif"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    if kind == "plain":
                        tifffile.imwrite(path, np.moveaxis(arr, 0, -1))
                    else:
                        block = min(512, arr.shape[1])
                        with rasterio.open(path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1],
                                           count=arr.shape[0], dtype=arr.dtype, tiled=block % 16 == 0,
                                           blockxsize=block, blockysize=block, compress="deflate") as d:
                            d.write(arr)
            px += b.shape[1] * b.shape[2]
    return px


def child(code: str, *args: str) -> dict:
    """Run a Python snippet in a fresh process; its last stdout line as JSON, plus its wall time."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    if p.returncode not in (0, 1):
        raise SystemExit(p.stderr[-3000:])
    return {"child_wall_s": time.perf_counter() - t0, **json.loads(p.stdout.strip().splitlines()[-1])}


PEAK = """
def peak_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
"""

SCENE = PEAK + """
import json, sys, time
from clipscore_sr.scene import SceneSettings, evaluate_scenes
t0, c0 = time.perf_counter(), time.process_time()
r = evaluate_scenes([(sys.argv[1], sys.argv[2])], sys.argv[3], SceneSettings(tile=int(sys.argv[4])), progress=False)
print(json.dumps({"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "rss_mib": peak_mib(),
                  "errors": r["errors"]}))
"""

COMPARE = """
import json, shutil, sys, time, warnings
from clipscore_sr import io
from clipscore_sr.pipeline import score_pairs
from clipscore_sr.scene import SceneSettings, evaluate_scenes
lr, sr, out, tile, tiles, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
warnings.simplefilter("ignore")
pairs = {k: io.pair_lr_folders(f"{tiles}/{k}/lr", f"{tiles}/{k}/sr").pairs for k in ("deflate", "plain")}  # as score --lr
metrics = ["lr-l1", "lr-psnr", "lr-sam", "lr-shift"]
score_pairs(pairs["plain"][:1], metrics, progress=False, data_range=10000)  # warm-up (first call setup)
rows = []
for i in range(rounds):
    row = {}
    for k in ("deflate", "plain"):
        t0 = time.perf_counter()
        df = score_pairs(pairs[k], metrics, progress=False, data_range=10000)
        row[k] = time.perf_counter() - t0
        assert (df["error"] == "").all() and df["lr-psnr"].notna().all(), df["error"].iloc[0]  # scored, not refused
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    evaluate_scenes([(lr, sr)], out, SceneSettings(tile=tile, data_range=10000), progress=False)
    row["scene"] = time.perf_counter() - t0
    rows.append(row)
print(json.dumps({"rounds": rows}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default=f"{FULL // 4},{FULL // 2},{FULL}", help="LR sizes (N x N)")
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--score-tiles", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of the throughput comparison")
    ap.add_argument("--root", default=None, help="folder for the scenes (kept and reused)")
    a = ap.parse_args()
    root = Path(a.root or tempfile.mkdtemp(prefix="bench_scene."))
    root.mkdir(parents=True, exist_ok=True)
    print(f"folder {root}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f} at start")
    rows = []
    for n in (int(s) for s in a.sizes.split(",")):
        t0 = time.perf_counter()
        lr, sr = make_scene(root, n)
        made = time.perf_counter() - t0
        res = child(SCENE, str(lr), str(sr), str(root / f"out_{n}"), str(a.tile))
        mpx = (SCALE * n) ** 2 / 1e6
        rows.append((n, mpx, res))
        print(f"LR {n}x{n} / SR {SCALE * n}x{SCALE * n} ({mpx:.1f} Mpx, made/found in {made:.0f} s): "
              f"{res['wall_s']:.1f} s, {mpx / res['wall_s']:.2f} Mpx/s end to end, cpu {res['cpu_s']:.1f} s, "
              f"peak RSS {res['rss_mib']:.0f} MiB, errors {res['errors']}", flush=True)
    if len(rows) > 1:
        print(f"peak RSS {rows[-1][2]['rss_mib'] / rows[0][2]['rss_mib']:.2f}x from {rows[0][0]}^2 to "
              f"{rows[-1][0]}^2 ({rows[-1][1] / rows[0][1]:.0f}x the pixels)")
    n, mpx, _ = rows[-1]
    tiles = root / f"tiles_{n}"
    px = write_tiles(*make_scene(root, n), tiles, a.tile, a.score_tiles) / 1e6
    runs = child(COMPARE, *map(str, (*make_scene(root, n), root / f"cmp_{n}", a.tile, tiles, a.rounds)))["rounds"]
    print(f"same process, {len(runs)} round(s) (score --lr on {a.score_tiles} full tiles = {px:.1f} SR Mpx, "
          f"decode included; scene: LR {n}^2, every output):")
    for kind, what in (("deflate", "deflate GeoTIFFs like the scene (fair)"), ("plain", "uncompressed TIFFs")):
        ratios = [(mpx / r["scene"]) / (px / r[kind]) for r in runs]
        print(f"  score --lr on {what}: {statistics.median(px / r[kind] for r in runs):.2f} Mpx/s; scene "
              f"{statistics.median(mpx / r['scene'] for r in runs):.2f} Mpx/s; ratio scene/score "
              f"{statistics.median(ratios):.2f} (rounds: {', '.join(f'{x:.2f}' for x in ratios)})")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
