"""Benchmark the agreement step. Everything is measured in this run; ratios against the baseline are what count.

1. Statistics only (metric values already computed): 11,524 judgements, 10 metrics, 2 datasets,
   1,000 bootstrap resamples: vote aggregation + 2AFC + per-dataset and pooled CIs + human ceiling + paired
   comparison (what ``agreement_from_scores`` does), vs the same statistics with a plain Python loop over
   resamples (one ``per_pair[idx].mean()`` per resample and dataset). Target: < 2 s.
2. End to end on a synthetic study: 11,524 judgements over 3,000 unique images (500 GT tiles x 5 SR outputs,
   every output pair of a tile judged by 2-3 people), scored with psnr and a tiny randomly initialised CLIP
   (``clipscore:local-dir:...``, open_clip format): counts the images the CLIP model embedded and its forward
   passes. Must equal the unique images (3,000), not 2 x the judgements, nor 2 x the unique (gt, image) pairs.

Usage: python benchmarks/bench_agreement.py [--judgements 11524] [--metrics 10] [--bootstrap 1000]
                                            [--images 3000] [--skip-e2e] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from clipscore_sr.human.agreement import agreement_from_scores, metric_preference, pair_agreement
from clipscore_sr.human.agreement_run import run_agreement
from clipscore_sr.human.vote_tables import vote_table


def synthetic_judgements(n_judgements: int, n_metrics: int, seed: int = 0):
    """A judgements frame (one vote per pair, the worst case for n_pairs) and per-pair metric values."""
    rng = np.random.default_rng(seed)
    n = n_judgements
    d = rng.normal(size=n)
    choice = np.where(rng.random(n) < 1 / (1 + np.exp(-d / 0.6)), "a", "b")
    choice[rng.random(n) < 0.05] = "tie"
    df = pd.DataFrame({"pair_id": [f"p{i:06d}" for i in range(n)],
                       "dataset": np.where(np.arange(n) % 3 == 0, "worldstrat", "s2naip"),
                       "gt": "gt.png", "a": "a.png", "b": "b.png", "choice": choice})
    noise = np.linspace(0.3, 4.0, n_metrics)
    va = {f"m{j}": d + rng.normal(scale=noise[j], size=n) for j in range(n_metrics)}
    vb = {f"m{j}": np.zeros(n) for j in range(n_metrics)}
    return df, va, vb


def vectorised(df: pd.DataFrame, va: dict, vb: dict, bootstrap: int) -> pd.DataFrame:
    votes = vote_table(df)
    pos = pd.Series(np.arange(len(df)), index=df["pair_id"]).loc[votes["pair_id"]].to_numpy()
    names = list(va)
    return agreement_from_scores({m: va[m][pos] for m in names}, {m: vb[m][pos] for m in names},
                                 votes["n_a"], votes["n_b"], n_tie=votes["n_tie"], datasets=votes["dataset"],
                                 higher_is_better=True, bootstrap=bootstrap, seed=0)


def naive(df: pd.DataFrame, va: dict, vb: dict, bootstrap: int) -> dict:
    """Same statistics with a Python loop over resamples (the usual way bootstrap code is written)."""
    votes = vote_table(df)
    pos = pd.Series(np.arange(len(df)), index=df["pair_id"]).loc[votes["pair_id"]].to_numpy()
    names = list(va)
    a = np.column_stack([va[m][pos] for m in names])
    b = np.column_stack([vb[m][pos] for m in names])
    na, nb = votes["n_a"].to_numpy(), votes["n_b"].to_numpy()
    per = pair_agreement(metric_preference(a, b, True), na, nb)
    keep = (na + nb) > 0
    h = na / np.maximum(na + nb, 1)
    ceil = np.maximum(h, 1 - h)
    two = (na + nb) >= 2
    ds = votes["dataset"].to_numpy()
    warnings.simplefilter("ignore", RuntimeWarning)  # no pair has 2 votes here: all-NaN ceiling samples
    rng = np.random.default_rng(0)
    out = {}
    groups = {g: np.flatnonzero((ds == g) & keep) for g in sorted(set(ds))}
    pooled = np.zeros((bootstrap, len(names)))
    pooled_ceil_num = np.zeros(bootstrap)
    pooled_ceil_den = np.zeros(bootstrap)
    total = sum(len(ix) for ix in groups.values())
    for g, ix in groups.items():
        boot = np.empty((bootstrap, len(names)))
        ceil_b = np.empty(bootstrap)
        for r in range(bootstrap):
            sample = ix[rng.integers(0, len(ix), len(ix))]
            boot[r] = per[sample].mean(axis=0)
            pooled[r] += per[sample].sum(axis=0)
            m = two[sample]
            ceil_b[r] = ceil[sample][m].mean() if m.any() else np.nan
            pooled_ceil_num[r] += ceil[sample][m].sum()
            pooled_ceil_den[r] += m.sum()
        acc = per[ix].mean(axis=0)
        best = int(np.argmax(acc))
        diff = boot[:, [best]] - boot
        out[g] = (np.percentile(boot, [2.5, 97.5], axis=0), np.nanpercentile(ceil_b, [2.5, 97.5]),
                  np.percentile(diff, [2.5, 97.5], axis=0), (diff <= 0).mean(0), (diff >= 0).mean(0))
    pooled /= total
    out["all"] = np.percentile(pooled, [2.5, 97.5], axis=0)
    return out


def bench_stats(n_judgements: int, n_metrics: int, bootstrap: int) -> None:
    df, va, vb = synthetic_judgements(n_judgements, n_metrics)
    vectorised(df, va, vb, 20)  # warm-up (imports, allocations)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        table = vectorised(df, va, vb, bootstrap)
        times.append(time.perf_counter() - t0)
    t_vec = min(times)
    t0 = time.perf_counter()
    naive(df, va, vb, bootstrap)
    t_naive = time.perf_counter() - t0
    pooled = table[table["dataset"] == "all"]
    print(f"[stats] {n_judgements} judgements, {n_metrics} metrics, {bootstrap} resamples, 2 datasets")
    print(f"  vectorised (vote table + agreement_from_scores): {t_vec:.3f} s (best of 3)   target < 2 s: "
          f"{'OK' if t_vec < 2 else 'MISSED'}")
    print(f"  plain per-resample loop:                         {t_naive:.3f} s")
    print(f"  speed-up vs loop: {t_naive / t_vec:.1f}x")
    print(f"  pooled accuracy range {pooled['accuracy'].min():.3f}..{pooled['accuracy'].max():.3f}, "
          f"best {pooled['best_metric'].iat[0]}")


# ----------------------------------------------------------------------------------------------------------

TINY_CLIP = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8,
                                             "head_width": 32},
             "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}}
TINY_PREP = {"mean": [0.48, 0.46, 0.41], "std": [0.27, 0.26, 0.28], "interpolation": "bicubic",
             "resize_mode": "shortest"}


def tiny_clip_dir(root: Path) -> Path:
    from open_clip.model import CLIP
    from safetensors.torch import save_file

    d = root / "tiny-clip"
    d.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = CLIP(**TINY_CLIP)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, d / "open_clip_model.safetensors")
    (d / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP, "preprocess_cfg": TINY_PREP}))
    return d


def synthetic_study(root: Path, n_images: int, n_judgements: int, outputs_per_gt: int = 5, size: int = 32,
                    seed: int = 0) -> Path:
    """GT tiles with ``outputs_per_gt`` noisy outputs each; judgements spread over the output pairs."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    n_gt = n_images // (outputs_per_gt + 1)
    pairs = []
    for t in range(n_gt):
        gt = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        folder = root / "img" / f"t{t:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(gt).save(folder / "gt.png", compress_level=1)
        outs = []
        for k in range(outputs_per_gt):
            o = np.clip(gt + rng.normal(0, 4 + 6 * k, gt.shape), 0, 255).astype(np.uint8)
            Image.fromarray(o).save(folder / f"o{k}.png", compress_level=1)
            outs.append(f"img/t{t:04d}/o{k}.png")
        for i, j in combinations(range(outputs_per_gt), 2):
            pairs.append((f"t{t:04d}-{i}{j}", f"img/t{t:04d}/gt.png", outs[i], outs[j]))
    votes_per_pair = np.full(len(pairs), n_judgements // len(pairs))
    votes_per_pair[: n_judgements - votes_per_pair.sum()] += 1
    rows = []
    for (pid, gt, a, b), k in zip(pairs, votes_per_pair):
        for w in range(k):
            rows.append((pid, "study", gt, a, b, ["a", "b", "tie"][rng.integers(0, 3)], f"w{w}"))
    pd.DataFrame(rows, columns=["pair_id", "dataset", "gt", "a", "b", "choice", "annotator"]).to_csv(
        root / "judgements.csv", index=False)
    return root / "judgements.csv"


def bench_e2e(n_images: int, n_judgements: int, bootstrap: int) -> None:
    from clipscore_sr.metrics.clip import ClipScore

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        csv = synthetic_study(root, n_images, n_judgements)
        t_make = time.perf_counter() - t0
        clip = ClipScore(f"local-dir:{tiny_clip_dir(root)}", device="cpu")
        model = clip.load()
        calls = {"forward": 0, "images": 0}

        def hook(_module, args, _out):
            calls["forward"] += 1
            calls["images"] += int(args[0].shape[0])

        handle = model.visual.register_forward_hook(hook)
        t0 = time.perf_counter()
        res = run_agreement(csv, ["psnr", clip], bootstrap=bootstrap, device="cpu", batch_size=64, workers=2)
        t_run = time.perf_counter() - t0
        handle.remove()
        n_rows = res.n_rows
        n_pairs = len(res.pairs)
        print(f"[end to end] {n_rows} judgements on {n_pairs} pairs, {res.n_unique_images} unique images, "
              f"{res.n_image_pairs} unique (gt, image) combinations (study written in {t_make:.1f} s)")
        print(f"  run_agreement(psnr + tiny CLIP, bootstrap {bootstrap}): {t_run:.1f} s")
        print(f"  CLIP images embedded: {clip.images_embedded} (model saw {calls['images']} images in "
              f"{calls['forward']} forward passes)")
        print(f"  unique images: {res.n_unique_images}; 2 x judgements would be {2 * n_rows}; 2 x unique "
              f"(gt, image) pairs would be {2 * res.n_image_pairs}")
        ok = clip.images_embedded == calls["images"] == res.n_unique_images
        print(f"  embedded once per unique image: {'OK' if ok else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--judgements", type=int, default=11524)
    parser.add_argument("--metrics", type=int, default=10)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bench_stats(args.judgements, args.metrics, args.bootstrap)
    if not args.skip_e2e:
        bench_e2e(args.images, args.judgements, args.bootstrap)


if __name__ == "__main__":
    main()
