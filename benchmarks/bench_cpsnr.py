"""Batched torch cPSNR versus the plain per-image NumPy loop over the 49 shifts.

Usage::

    python benchmarks/bench_cpsnr.py [--batch 32] [--size 384] [--repeats 3] [--mask] [--satlas] [--threads N]

Both compute the PROBA-V cPSNR on the same random images (a smooth scene, SR = shifted copy + brightness
offset + noise); the script checks the numbers agree to 1e-6 dB and prints the speed ratio measured in
this process (target: >= 5x for 32 RGB images of 384x384). ``--satlas`` does the same for cpsnr-satlas
against the authors' 81-shift loop.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from clipscore_sr.metrics.cpsnr import cpsnr, cpsnr_satlas


def numpy_cpsnr_loop(sr: np.ndarray, hr: np.ndarray, mask: np.ndarray | None = None, border: int = 3) -> float:
    """The loop a user writes by hand: one image ``[C,H,W]`` in [0,1], 49 shifts, float64."""
    sr = sr.astype(np.float64)
    hr = hr.astype(np.float64)
    c, hh, ww = hr.shape
    h, w = hh - 2 * border, ww - 2 * border
    s = sr[:, border : border + h, border : border + w]
    if mask is None:
        mask = np.ones((hh, ww), dtype=bool)
    best = -np.inf
    for u in range(2 * border + 1):
        for v in range(2 * border + 1):
            hr_w = hr[:, u : u + h, v : v + w]
            m_w = mask[u : u + h, v : v + w]
            n = m_w.sum()
            if n == 0:
                continue
            bias = ((hr_w - s) * m_w).sum(axis=(1, 2), keepdims=True) / n
            cmse = (((hr_w - (s + bias)) ** 2) * m_w).sum() / (n * c)
            best = max(best, -10.0 * np.log10(cmse))
    return float(best)


def numpy_satlas_loop(sr: np.ndarray, gt: np.ndarray, crop: int = 4, max_offset: int = 8) -> float:
    """The paper authors' loop on 8-bit ``[C,H,W]`` arrays (values 0..255)."""
    img1 = np.moveaxis(sr, 0, -1).astype(np.float64)[crop:-crop, crop:-crop]
    img2 = np.moveaxis(gt, 0, -1).astype(np.float64)[crop:-crop, crop:-crop]
    ch, cw = img1.shape[0] - max_offset, img1.shape[1] - max_offset
    best = None
    for r in range(max_offset + 1):
        for c in range(max_offset + 1):
            a = img1[r : r + ch, c : c + cw]
            b = img2[max_offset - r : max_offset - r + ch, max_offset - c : max_offset - c + cw].copy()
            for k in range(a.shape[2]):
                b[:, :, k] += np.mean(a[:, :, k] - b[:, :, k])
            mse = np.mean(np.square(a - b))
            if best is None or mse < best:
                best = mse
    return float("inf") if best == 0 else float(10.0 * np.log10(255.0 * 255.0 / best))


def make_batch(batch: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pad = 8
    base = rng.random((batch, 3, size + 2 * pad, size + 2 * pad))
    # smooth it a little so the best shift is well defined
    base = (base + np.roll(base, 1, -1) + np.roll(base, 1, -2) + np.roll(base, (1, 1), (-2, -1))) / 4
    hr = base[:, :, pad : pad + size, pad : pad + size]
    sr = np.empty_like(hr)
    for i in range(batch):
        dy, dx = rng.integers(-3, 4, size=2)
        sr[i] = base[i, :, pad + dy : pad + dy + size, pad + dx : pad + dx + size] + 0.05
    sr = np.clip(sr + 0.02 * rng.standard_normal(sr.shape), 0, 1)
    mask = rng.random((batch, 1, size, size)) > 0.1
    return np.ascontiguousarray(sr), np.ascontiguousarray(hr), mask


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--mask", action="store_true", help="also benchmark with clear-pixel masks")
    ap.add_argument("--satlas", action="store_true", help="also benchmark cpsnr-satlas")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sr, hr, mask = make_batch(args.batch, args.size)
    sr32, hr32 = torch.from_numpy(sr).float(), torch.from_numpy(hr).float()
    print(f"batch {args.batch} x 3 x {args.size} x {args.size}, torch threads {torch.get_num_threads()}")

    cases = [("cpsnr (no mask)", None)] + ([("cpsnr (mask)", mask)] if args.mask else [])
    for label, m in cases:
        mt = None if m is None else torch.from_numpy(m)
        sr_np, hr_np = sr32.double().numpy(), hr32.double().numpy()
        ref = np.array([numpy_cpsnr_loop(sr_np[i], hr_np[i], None if m is None else m[i, 0])
                        for i in range(args.batch)])
        got = cpsnr(sr32, hr32, mt).numpy()
        err = float(np.max(np.abs(got - ref)))
        t_np = best_time(lambda m=m, sr_np=sr_np, hr_np=hr_np: [  # noqa: B023
            numpy_cpsnr_loop(sr_np[i], hr_np[i], None if m is None else m[i, 0]) for i in range(args.batch)
        ], max(1, args.repeats - 2))
        t_torch = best_time(lambda mt=mt: cpsnr(sr32, hr32, mt), args.repeats)
        print(f"{label:<18} numpy loop {t_np:7.3f} s  torch batched {t_torch:7.3f} s  "
              f"speed-up {t_np / t_torch:6.1f}x  max |diff| {err:.2e} dB  "
              f"({'OK' if err <= 1e-6 else 'MISMATCH'} at 1e-6 dB)")

    if args.satlas:
        sr8 = np.round(np.clip(sr32.double().numpy(), 0, 1) * 255)
        hr8 = np.round(np.clip(hr32.double().numpy(), 0, 1) * 255)
        ref = np.array([numpy_satlas_loop(sr8[i], hr8[i]) for i in range(args.batch)])
        got = cpsnr_satlas(sr32, hr32).numpy()
        err = float(np.max(np.abs(got - ref)))
        t_np = best_time(lambda: [numpy_satlas_loop(sr8[i], hr8[i]) for i in range(args.batch)],
                         max(1, args.repeats - 2))
        t_torch = best_time(lambda: cpsnr_satlas(sr32, hr32), args.repeats)
        print(f"{'cpsnr-satlas':<18} numpy loop {t_np:7.3f} s  torch batched {t_torch:7.3f} s  "
              f"speed-up {t_np / t_torch:6.1f}x  max |diff| {err:.2e} dB  "
              f"({'OK' if err <= 1e-6 else 'MISMATCH'} at 1e-6 dB)")


if __name__ == "__main__":
    main()
