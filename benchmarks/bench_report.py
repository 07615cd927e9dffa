"""Benchmark `srmetrics report`: build time and page size for N pairs x M methods, and how quickly the page's
per-image table sorts and scrolls in Chromium. Everything is measured in this run.

Data: N GT tiles (64x64 RGB PNG: the bundled Landsat 8 demo tiles, randomly flipped, rotated and shifted) and,
per method, an SR-like tile (the GT downsampled x4, upsampled by nearest, bilinear, bicubic, Lanczos + noise); a
`score --methods`-style table with 4 metric columns (random values: the benchmark times the report, not scoring)
and a meta file. ``--bits 12`` writes the same tiles as 4-band 12-bit TIFFs (uint16, deflate; bands 3,2,1 and
data range 4095 in the meta file: the stretched, non-8-bit path).

Reported: build seconds (thumbnails in worker processes, default count) against a baseline measured in the same
run: reading every image once with the toolkit's reader (``clipscore_sr.io.read_image``, one process; timed on a
sample of up to 4,000 images and scaled), so the ratio says what the report costs beyond reading its inputs;
page MB, thumbnail cap; in the browser (playwright + /usr/bin/chromium, from file://): page ready, each
header-click sort (3 columns) and each scroll-and-render (3 positions), max of each. Targets (the issue):
build < 30 s, page < 50 MB, sort/scroll < 200 ms.

Usage: python benchmarks/bench_report.py [--pairs 10000] [--methods 4] [--bits 8|12] [--workers N] [--keep DIR]
       [--skip-browser]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from clipscore_sr.demo import DATA_DIR
from clipscore_sr.report.build import write_report

CHROMIUM = "/usr/bin/chromium"
RESAMPLE = (Image.Resampling.NEAREST, Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS)


def _save(path: Path, hwc: np.ndarray, bits: int) -> None:
    """An 8-bit RGB PNG, or (12 bits) a 4-band uint16 TIFF: the RGB scaled to 12 bits and their mean as band 4."""
    if bits == 8:
        Image.fromarray(hwc).save(path, compress_level=1)
        return
    import tifffile

    x = hwc.astype(np.uint16) * 16
    tifffile.imwrite(path, np.dstack([x[..., ::-1], x.mean(axis=2, keepdims=True).astype(np.uint16)]),
                     compression="zlib")


def make_data(root: Path, n: int, methods: list[str], bits: int = 8) -> Path:
    rng = np.random.default_rng(0)
    ext = ".png" if bits == 8 else ".tif"
    tiles = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((DATA_DIR / "scene" / "gt").glob("*.png"))]
    rows = []
    for d in ["gt", *[f"sr/{m}" for m in methods]]:
        (root / d).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        t = np.rot90(tiles[i % len(tiles)], k=int(rng.integers(4)))
        t = np.roll(t[:, ::-1] if rng.random() < 0.5 else t, int(rng.integers(64)), axis=int(rng.integers(2)))
        _save(root / "gt" / f"t{i:05d}{ext}", np.ascontiguousarray(t), bits)
        lr = Image.fromarray(np.ascontiguousarray(t)).resize((16, 16), Image.Resampling.BICUBIC)
        for k, m in enumerate(methods):  # SR-like outputs: the x4 LR upsampled 4 ways, the last with noise
            up = np.asarray(lr.resize((64, 64), RESAMPLE[k % len(RESAMPLE)]), dtype=float)
            sr = np.clip(up + (rng.normal(0, 3, up.shape) if k == 3 else 0), 0, 255).astype(np.uint8)
            _save(root / "sr" / m / f"t{i:05d}{ext}", sr, bits)
            rows.append({"key": f"{m}/t{i:05d}", "gt": f"gt/t{i:05d}{ext}", "sr": f"sr/{m}/t{i:05d}{ext}",
                         "psnr": 30 - 2 * k + rng.normal(), "ssim": rng.random(), "lpips": rng.random(),
                         "sam": rng.random() * 5, "error": ""})
    scores = root / "scores.csv"
    pd.DataFrame(rows).to_csv(scores, index=False)
    meta = {"clipscore_sr_version": "bench", "metrics": [{"id": m, "higher_is_better": m in ("psnr", "ssim")}
                                                         for m in ("psnr", "ssim", "lpips", "sam")],
            "n_pairs": len(rows), "n_failed": 0,
            "settings": {"bands": None, "data_range": 255.0} if bits == 8 else {"bands": [3, 2, 1], "data_range": 4095.0}}
    Path(str(scores) + ".meta.json").write_text(json.dumps(meta))
    return scores


def read_baseline(root: Path, bits: int, sample: int = 4000) -> tuple[float, int]:
    """Seconds to read every image of ``root`` once with :func:`clipscore_sr.io.read_image` in this process (the
    meta file's bands and data range), timed on an evenly spaced sample and scaled; and the image count."""
    from clipscore_sr.io import read_image

    files = sorted((root / "gt").iterdir()) + sorted(p for d in sorted((root / "sr").iterdir()) for p in d.iterdir())
    pick = files[::max(1, len(files) // sample)]
    kw = {"data_range": 255.0} if bits == 8 else {"bands": (3, 2, 1), "data_range": 4095.0}
    t0 = time.perf_counter()
    for p in pick:
        read_image(p, **kw)
    return (time.perf_counter() - t0) * len(files) / len(pick), len(files)


def browser_timings(path: Path) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu",
                                                                "--disable-background-networking"])
        page = b.new_page(viewport={"width": 1280, "height": 800})
        t0 = time.perf_counter()
        page.goto(path.resolve().as_uri())
        page.wait_for_selector("body[data-ready='1']", timeout=120_000)
        ready = time.perf_counter() - t0
        page.click("#tab-images")
        ms = page.evaluate("""() => { const sort = [], scroll = [];
            for (const col of ['psnr', 'key', 'ssim']) { const t0 = performance.now();
              document.querySelector(`#thead [data-sort='${col}']`).click(); sort.push(performance.now() - t0); }
            const body = document.getElementById('tbody');
            for (const y of [100000, 700000, 1400000]) { const t0 = performance.now();
              body.scrollTop = y; window.__report.render(false); scroll.push(performance.now() - t0); }
            return {sort, scroll}; }""")
        b.close()
    return {"ready_s": ready, "sort_ms": ms["sort"], "scroll_ms": ms["scroll"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=10_000)
    ap.add_argument("--methods", type=int, default=4)
    ap.add_argument("--bits", type=int, choices=(8, 12), default=8, help="8-bit RGB PNG or 12-bit 4-band TIFF")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--skip-browser", action="store_true", help="build only")
    ap.add_argument("--keep", type=Path, default=None, help="write the data and report here (kept)")
    args = ap.parse_args()
    methods = [f"m{k}" for k in range(args.methods)]
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        t0 = time.perf_counter()
        scores = make_data(root, args.pairs, methods, args.bits)
        kind = "RGB PNGs" if args.bits == 8 else "4-band 12-bit TIFFs"
        print(f"data: {args.pairs} GT + {args.pairs * args.methods} SR 64x64 {kind} in {time.perf_counter() - t0:.1f} s")
        base, n_files = read_baseline(root, args.bits)
        res = write_report([scores], root / "report.html", workers=args.workers)
        print(f"baseline: read_image of all {n_files} images, one process: {base:.1f} s ({base / n_files * 1e3:.2f} ms each)")
        print(f"build: {res.seconds:.1f} s (target < 30 s) = {res.seconds / base:.2f}x the baseline; page "
              f"{res.size_bytes / 1e6:.1f} MB (target < 50 MB); {res.n_rows} rows, {res.n_images} images, "
              f"{res.n_sheets} thumbnail sheets (cap 48 px); {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
        if args.skip_browser:
            return
        t = browser_timings(res.path)
        print(f"browser: ready {t['ready_s']:.2f} s; sort {', '.join(f'{v:.0f}' for v in t['sort_ms'])} ms; "
              f"scroll {', '.join(f'{v:.1f}' for v in t['scroll_ms'])} ms; max "
              f"{max(t['sort_ms'] + t['scroll_ms']):.0f} ms (target < 200 ms)")


if __name__ == "__main__":
    main()
