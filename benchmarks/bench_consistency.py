"""Batched LR-consistency + correctness versus per-triplet loops: opensr-test's ``Metrics`` and a NumPy loop.

Usage::

    python benchmarks/bench_consistency.py [--n 100] [--size 128] [--scale 4] [--batch 20] [--repeats 3] [--threads N]

Both sides compute, for ``n`` 8-bit (LR, SR, HR) triplets of ``size`` x ``size`` RGB (LR ``size/scale``; values
``k/255`` as the pipeline decodes PNGs, so the batched histogram matching counts levels): lr-l1, lr-psnr,
lr-sam, lr-shift (magnitude, dy, dx) and the three correctness fractions (L1 per pixel, q75 mask).

Baselines, each checked to give the same numbers and timed in this process:

1. **opensr-test** (in the ``test`` extra, or ``pip install opensr-test``; skipped with a note when it is not
   installed): its ``Metrics.correctness`` + ``Metrics.consistency`` per triplet, configured as in
   ``tests/opensr_support.py`` (no border crop, no spatial harmonisation, per-pixel L1, counted classes, the
   paper's gammas); our side then runs with its mask rule (``any``) and its phase-correlation step (1/50 px).
   ``Metrics.compute`` runs these two plus a synthesis distance we do not compute; its time is printed too.
   Both sides are timed at the current torch thread count and on 1 thread (its many small per-image torch ops
   are several times faster on 1 thread on a 2-core machine, and very noisy on 2), and each side at its
   faster setting is compared too.
2. **NumPy loop**: the float64 computation one writes per triplet from the definitions (a triangle-filter
   matrix for the antialiased bilinear reduction, ``skimage.registration.phase_cross_correlation``,
   ``skimage.exposure.match_histograms``, NumPy bilinear upsampling, vectorised NumPy scores), against our
   defaults (paper's mask rule, 1/100 px). Already vectorised per image, it is the stricter baseline.

Our side uses the fused numba kernels for correctness when numba is installed (the ``fast`` extra; set
``CLIPSCORE_SR_NO_NUMBA=1`` to time the torch code). Target: >= 10x the per-triplet loop on CPU (see the
README's benchmark table for measured figures).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from skimage.exposure import match_histograms
from skimage.registration import phase_cross_correlation

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clipscore_sr.metrics.consistency import lr_consistency  # noqa: E402
from clipscore_sr.metrics.correctness import correctness  # noqa: E402
from tests.opensr_support import KEYS, OUR_SETTINGS, make_triplets, opensr_metrics, opensr_values  # noqa: E402

COLUMNS = ("lr-l1", "lr-psnr", "lr-sam", "lr-shift", "lr-shift-dy", "lr-shift-dx", "improvement", "omission",
           "hallucination")
#: the columns opensr-test reports, in ``KEYS`` order
OPENSR_COLUMNS = [COLUMNS.index(ours) for _, ours in KEYS]
#: opensr-test divides its class counts in float32 and stores its shift in float32
OPENSR_TOLERANCE = {"lr-l1": 1e-12, "lr-sam": 1e-9, "lr-shift": 1e-6, "improvement": 1e-7, "omission": 1e-7,
                    "hallucination": 1e-7}


def _triangle(n_in: int, s: int) -> np.ndarray:
    x = np.arange(n_in) + 0.5
    m = np.maximum(0.0, 1.0 - np.abs(x[None, :] - (np.arange(n_in // s)[:, None] + 0.5) * s) / s)
    return m / m.sum(axis=1, keepdims=True)


def _bilinear_up(n: int, s: int) -> np.ndarray:
    src = np.maximum((np.arange(n * s) + 0.5) / s - 0.5, 0)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, n - 1)
    m = np.zeros((n * s, n))
    m[np.arange(n * s), i0] += 1 - (src - i0)
    m[np.arange(n * s), i1] += src - i0
    return m


def reference_triplet(lr: np.ndarray, sr: np.ndarray, hr: np.ndarray, s: int) -> list[float]:
    """One triplet ``[C,h,w], [C,H,W], [C,H,W]`` float64 -> the nine values."""
    mh, mw = _triangle(sr.shape[1], s), _triangle(sr.shape[2], s)
    down = mh @ sr @ mw.T
    l1 = np.abs(down - lr).mean()
    psnr = 10 * np.log10(1.0 / np.mean((down - lr) ** 2))
    cos = (down * lr).sum(0) / (np.linalg.norm(down, axis=0) * np.linalg.norm(lr, axis=0))
    sam = np.degrees(np.arccos(np.clip(cos, -1, 1))).mean()
    dy, dx = -phase_cross_correlation(lr.mean(0), down.mean(0), upsample_factor=100, normalization="phase")[0]
    # correctness
    sr_h = np.moveaxis(match_histograms(np.moveaxis(sr, 0, -1), np.moveaxis(hr, 0, -1), channel_axis=-1), -1, 0)
    uh, uw = _bilinear_up(lr.shape[1], s), _bilinear_up(lr.shape[2], s)
    up = uh @ lr @ uw.T
    d_ref, d_im, d_om = (np.abs(a - b).mean(0) for a, b in ((up, hr), (sr_h, hr), (sr_h, up)))
    flat = np.sort(d_ref.ravel())
    keep = (d_ref > flat[int(0.75 * flat.size) - 1]) & (d_ref > 0)
    x, y = d_im[keep] / d_ref[keep], d_om[keep] / d_ref[keep]
    h = x + y - 1
    scores = np.stack([x + y * (1 - np.exp(-0.8 * h)), y + x * (1 - np.exp(-0.8 * h)), np.exp(-0.4 * x * y)])
    counts = np.bincount(scores.argmin(0), minlength=3) / keep.sum()
    return [l1, psnr, sam, float(np.hypot(dy, dx)), dy, dx, *counts]


def batched(lr: torch.Tensor, sr: torch.Tensor, hr: torch.Tensor, batch: int, *, mask_rule: str = "ref",
            upsample_factor: int = 100) -> np.ndarray:
    rows = []
    for i in range(0, len(sr), batch):
        a, b, c = lr[i:i + batch], sr[i:i + batch], hr[i:i + batch]
        rows.append(torch.cat([lr_consistency(b, a, upsample_factor=upsample_factor),
                               correctness(b, c, a, levels=255, mask_rule=mask_rule).fractions], dim=1))
    return torch.cat(rows).numpy()


def _best_of(repeats: int, fn) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _report_diff(label: str, ours: np.ndarray, ref: np.ndarray, columns: list[int], tol: dict[str, float]) -> None:
    print(f"  same numbers as {label}:")
    for j_ref, j in enumerate(columns):
        col = COLUMNS[j]
        finite = np.isfinite(ref[:, j_ref])
        assert np.array_equal(finite, np.isfinite(ours[:, j])), f"{col}: NaN/inf in different rows than {label}"
        worst = float(np.abs(ours[finite, j] - ref[finite, j_ref]).max())
        print(f"    {col:<14} max |batched - loop| = {worst:.2e}")
        assert worst <= tol.get(col, 1e-9), f"{col}: batched and {label} disagree by {worst}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    lr, sr, hr = make_triplets(args.n, args.size, args.scale)
    t_lr, t_sr, t_hr = (torch.from_numpy(x) for x in (lr, sr, hr))
    n = args.n
    print(f"{n} triplets, HR {args.size}x{args.size} RGB, x{args.scale}; batch {args.batch}; torch threads "
          f"{torch.get_num_threads()}; best of {args.repeats}")
    batched(t_lr[:2], t_sr[:2], t_hr[:2], args.batch)  # warm-up

    try:
        metrics = opensr_metrics()
    except ImportError:
        metrics = None
        print("opensr-test is not installed (pip install opensr-test): its baseline is skipped")
    if metrics is not None:
        import warnings

        opts = dict(mask_rule=OUR_SETTINGS["mask_rule"], upsample_factor=OUR_SETTINGS["upsample_factor"])
        threads = torch.get_num_threads()
        ours_t, loop_t, full_t = {}, {}, {}
        for th in sorted({threads, 1}, reverse=True):  # its many small per-image ops may run faster on 1 thread
            torch.set_num_threads(th)
            ours_t[th], ours = _best_of(args.repeats, lambda: batched(t_lr, t_sr, t_hr, args.batch, **opts))
            opensr_values(metrics, t_lr[0], t_sr[0], t_hr[0])  # warm-up
            loop_t[th], ref = _best_of(args.repeats, lambda: np.array(
                [opensr_values(metrics, t_lr[k], t_sr[k], t_hr[k]) for k in range(n)]))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                full_t[th], _ = _best_of(args.repeats, lambda: [metrics.compute(t_lr[k], t_sr[k], t_hr[k])
                                                                for k in range(n)])
        torch.set_num_threads(threads)
        print(f"\nopensr-test {_version('opensr-test')} Metrics, per triplet (its mask rule, 1/50 px shift):")
        _report_diff("opensr-test", ours, ref, OPENSR_COLUMNS, OPENSR_TOLERANCE)
        print("  threads   batched   opensr-test correctness+consistency   Metrics.compute (+ synthesis)")
        for th in ours_t:
            print(f"  {th:>7}   {ours_t[th]:6.3f} s   {loop_t[th]:6.3f} s -> {loop_t[th] / ours_t[th]:5.1f}x"
                  f"                  {full_t[th]:6.3f} s -> {full_t[th] / ours_t[th]:5.1f}x")
        best = min(ours_t.values())
        print(f"  each at its faster thread count: {min(loop_t.values()) / best:.1f}x over correctness + consistency "
              f"(target >= 10x), {min(full_t.values()) / best:.1f}x over Metrics.compute")

    ours_t, ours = _best_of(args.repeats, lambda: batched(t_lr, t_sr, t_hr, args.batch))
    ref_t, ref = _best_of(args.repeats, lambda: np.array(
        [reference_triplet(lr[k], sr[k], hr[k], args.scale) for k in range(n)]))
    print("\nNumPy/skimage loop, per triplet (our defaults: the paper's mask rule, 1/100 px shift):")
    _report_diff("the NumPy loop", ours, ref, list(range(len(COLUMNS))), {})
    print(f"  batched ({torch.get_num_threads()} threads): {ours_t:.3f} s ({n / ours_t:.0f} triplets/s)   NumPy loop: "
          f"{ref_t:.3f} s ({n / ref_t:.0f}/s)")
    print(f"  speed-up: {ref_t / ours_t:.1f}x")


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


if __name__ == "__main__":
    main()
