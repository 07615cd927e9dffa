"""Benchmark `srmetrics score` (psnr, ssim, cpsnr) against the loop a user would write by hand.

Prints, from one process (ratios are what count; machines are noisy):
* pairs/s of the pipeline and of the hand-written loop (PIL decode, skimage PSNR/SSIM, plain NumPy 49-shift
  cPSNR, one pair at a time), their ratio (target >= 2x on 2 cores), and that both give the same values;
* the split between decoding and metric compute inside the pipeline;
* peak RSS for N vs 10*N pairs (each in a fresh subprocess): streaming keeps it flat.

Usage: python benchmarks/bench_score.py [--pairs 200] [--size 512] [--memory-pairs 200]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_pairs(root: Path, n: int, size: int, seed: int = 0) -> tuple[Path, Path]:
    gt_dir, sr_dir = root / "gt", root / "sr"
    gt_dir.mkdir(parents=True, exist_ok=True)
    sr_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    # smooth-ish content (more realistic PNG sizes than white noise), SR = shifted + noisy + offset GT
    base = rng.integers(0, 256, (size // 8 + 2, size // 8 + 2, 3), dtype=np.uint8)
    big = np.asarray(Image.fromarray(base).resize((size + 16, size + 16), Image.BICUBIC))
    for i in range(n):
        dy, dx = rng.integers(0, 8, 2)
        gt = big[dy:dy + size, dx:dx + size]
        sy, sx = rng.integers(0, 4, 2)
        sr = big[dy + sy:dy + sy + size, dx + sx:dx + sx + size].astype(np.int16) + 3
        sr = np.clip(sr + rng.normal(0, 4, sr.shape), 0, 255).astype(np.uint8)
        if not (gt_dir / f"{i:05d}.png").exists():
            Image.fromarray(gt).save(gt_dir / f"{i:05d}.png", compress_level=1)
            Image.fromarray(sr).save(sr_dir / f"{i:05d}.png", compress_level=1)
    return gt_dir, sr_dir


def numpy_cpsnr(sr: np.ndarray, hr: np.ndarray, border: int = 3) -> float:
    """Plain PROBA-V cPSNR: 49 shifts, per-channel bias, no mask. sr/hr float64 [H,W,C] in [0,1]."""
    h, w = hr.shape[:2]
    crop = sr[border:h - border, border:w - border]
    ch, cw = crop.shape[:2]
    best = -np.inf
    for u in range(2 * border + 1):
        for v in range(2 * border + 1):
            win = hr[u:u + ch, v:v + cw]
            bias = (win - crop).reshape(-1, crop.shape[2]).mean(0)
            mse = np.mean((win - (crop + bias)) ** 2)
            best = max(best, -10 * np.log10(mse))
    return float(best)


def hand_loop(gt_dir: Path, sr_dir: Path) -> list[dict]:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    rows = []
    for gt_path in sorted(gt_dir.glob("*.png")):
        gt = np.asarray(Image.open(gt_path))
        sr = np.asarray(Image.open(sr_dir / gt_path.name))
        rows.append({
            "key": gt_path.stem,
            "psnr": peak_signal_noise_ratio(gt, sr, data_range=255),
            "ssim": structural_similarity(gt, sr, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                          data_range=255, channel_axis=2),
            "cpsnr": numpy_cpsnr(sr / 255.0, gt / 255.0),
        })
    return rows


def peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM; unlike ru_maxrss it is not inherited from the parent across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_child(n: int, size: int) -> None:
    """Run in a subprocess: score n pairs, print peak RSS (MiB)."""
    from clipscore_sr.pipeline import score_folders

    with tempfile.TemporaryDirectory() as tmp:
        gt_dir, sr_dir = make_pairs(Path(tmp), n, size, seed=1)
        score_folders(gt_dir, sr_dir, ["psnr", "ssim", "cpsnr"], out=Path(tmp) / "r.csv", progress=False,
                      device="cpu", batch_size=16)
        print(json.dumps({"n": n, "peak_rss_mib": peak_rss_mib()}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=200)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--memory-pairs", type=int, default=200, help="N for the N vs 10N memory check (0 = skip)")
    ap.add_argument("--memory-size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--torch-threads", type=int, default=0, help="torch.set_num_threads (0 = torch's default)")
    ap.add_argument("--_memory-child", dest="memory_child", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.memory_size)
        return

    import torch

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    from clipscore_sr import io
    from clipscore_sr.pipeline import _decode, build_metrics, score_folders

    print(f"torch threads: {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        gt_dir, sr_dir = make_pairs(Path(tmp), args.pairs, args.size)
        metrics = ["psnr", "ssim", "cpsnr"]

        t0 = time.perf_counter()
        df = score_folders(gt_dir, sr_dir, metrics, progress=False, device="cpu", batch_size=args.batch_size)
        t_pipeline = time.perf_counter() - t0

        t0 = time.perf_counter()
        ref = hand_loop(gt_dir, sr_dir)
        t_hand = time.perf_counter() - t0

        # where the pipeline's time goes: decoding alone (one thread) and metrics alone on decoded batches
        pairs = io.pair_folders(gt_dir, sr_dir).pairs
        t0 = time.perf_counter()
        decoded = [_decode(p, bands=None, data_range=None, want_ids=False) for p in pairs[:64]]
        t_decode = (time.perf_counter() - t0) / len(decoded) * len(pairs)
        objs = build_metrics(metrics, device=torch.device("cpu"))
        gt = torch.from_numpy(np.stack([d.gt for d in decoded]))
        sr = torch.from_numpy(np.stack([d.sr for d in decoded]))
        t_metric = {}
        for m in objs:
            t0 = time.perf_counter()
            with torch.inference_mode():
                for i in range(0, len(decoded), args.batch_size):
                    m.compute(sr[i:i + args.batch_size], gt[i:i + args.batch_size])
            t_metric[m.id] = (time.perf_counter() - t0) / len(decoded) * len(pairs)

    ref_by_key = {r["key"]: r for r in ref}
    diffs = {m: max(abs(float(row[m]) - ref_by_key[row["key"]][m]) for _, row in df.iterrows()) for m in metrics}
    n = args.pairs
    print(f"\n{n} pairs of {args.size}x{args.size} RGB PNG, metrics psnr,ssim,cpsnr, batch {args.batch_size}")
    print(f"  pipeline (srmetrics score): {t_pipeline:7.2f} s  {n / t_pipeline:7.2f} pairs/s")
    print(f"  hand-written loop         : {t_hand:7.2f} s  {n / t_hand:7.2f} pairs/s")
    print(f"  speed-up pipeline / hand loop: {t_hand / t_pipeline:.2f}x  (target >= 2x)")
    print("  max |difference| vs hand loop: " + ", ".join(f"{m} {d:.2e}" for m, d in diffs.items()))
    total_serial = t_decode + sum(t_metric.values())
    print(f"  serial split (single thread, extrapolated to {n} pairs): decode {t_decode:.2f} s "
          f"({100 * t_decode / total_serial:.0f}%), " +
          ", ".join(f"{k} {v:.2f} s ({100 * v / total_serial:.0f}%)" for k, v in t_metric.items()))

    if args.memory_pairs:
        print(f"\npeak RSS, {args.memory_size}x{args.memory_size} pairs, each count in a fresh process:")
        peaks = []
        for count in (args.memory_pairs, 10 * args.memory_pairs):
            out = subprocess.run([sys.executable, __file__, "--_memory-child", str(count),
                                  "--memory-size", str(args.memory_size)], capture_output=True, text=True, check=True)
            rec = json.loads(out.stdout.strip().splitlines()[-1])
            peaks.append(rec["peak_rss_mib"])
            print(f"  {count:6d} pairs: {rec['peak_rss_mib']:.0f} MiB")
        print(f"  ratio {10 * args.memory_pairs} / {args.memory_pairs} pairs: {peaks[1] / peaks[0]:.2f} (flat = 1.0)")


if __name__ == "__main__":
    main()
