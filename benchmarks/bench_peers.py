"""Our psnr/ssim against torchmetrics and piq on the same tensors, in one process.

Usage::

    pip install -e '.[bench]'     # torchmetrics and piq: benchmark-only, not dependencies
    python benchmarks/bench_peers.py                 # quick (default): under 2 minutes and 2 GB
    python benchmarks/bench_peers.py --full          # also the peers' float64 SSIM (minutes, GBs of RAM)
    python benchmarks/bench_peers.py [--pairs 40] [--size 256] [--repeats 3] [--threads 1,2] [--dtype float32,float64]

Quick mode skips the peers' float64 SSIM (torchmetrics and piq run it through a float64 conv2d that took most of
a 19-minute, 14 GB run) and says so, and gives the peers' batched calls 10 pairs at a time (their whole-batch
SSIM needs ~3 GB); everything else is measured as in ``--full``. For float32 inputs
ours is timed on its default float32 SSIM path and on the float64 reference path, with the difference between
the two.

For each dtype, every implementation scores the same ``pairs`` RGB pairs (GT smooth random, SR = GT + noise,
values in [0, 1], data range 1). A peer is timed both with the whole batch (per-image results,
``reduction='none'``) and with one call per pair, and its faster way is kept; ours is timed with the batch
(its interface). The script prints pairs/s, ours/peer ratios (> 1: ours is faster) and the largest value
difference from ours, with the convention that explains it:

* torchmetrics PSNR accumulates in the input dtype (float32 sums are ~1e-6 dB off; ours is float64);
* piq PSNR adds 1e-8 to the MSE (``10*log10(R^2 / (MSE + 1e-8))``) and computes in the input dtype;
* torchmetrics SSIM reflect-pads the images by 5 px and averages the whole same-size SSIM map, borders
  included (ours and skimage: the valid region only); same Gaussian 11x11 sigma 1.5, population statistics;
* piq SSIM uses a valid Gaussian 11x11 sigma 1.5 convolution and population statistics like ours; it would
  average-pool by ``round(min(H, W) / 256)`` first (``downsample=True``), which is 1 (none) at 256x256.

No assertion: the numbers are for the README's benchmark table.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from clipscore_sr.metrics.pixel import psnr, ssim


def make_pairs(n: int, size: int, dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, size // 8, size // 8, generator=g, dtype=torch.float64)
    gt = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    sr = (gt + 0.05 * torch.randn(n, 3, size, size, generator=g, dtype=torch.float64)).clamp(0, 1)
    return sr.to(dtype), gt.to(dtype)


def best_times(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Fastest of ``repeats`` runs of each function, the functions interleaved round by round so that a
    busy machine slows all of them alike; one warm-up round first (allocator, lazy imports)."""
    best = {k: float("inf") for k in fns}
    for r in range(repeats + 1):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if r:
                best[k] = min(best[k], time.perf_counter() - t0)
    return best


def chunked(fn: Callable, sr: torch.Tensor, gt: torch.Tensor, size: int) -> Callable[[], torch.Tensor]:
    """``fn`` over batches of at most ``size`` pairs (bounded memory), results concatenated."""
    return lambda: torch.cat([fn(sr[i:i + size], gt[i:i + size]) for i in range(0, sr.shape[0], size)])


def peers(sr: torch.Tensor, gt: torch.Tensor, batch: int = 0) -> dict[str, dict[str, tuple[Callable, Callable]]]:
    """metric -> peer -> (batched call, one call per pair); each returns per-image values [B]. ``batch``: the
    batched calls take at most this many pairs at a time (0: all at once)."""
    out: dict[str, dict[str, tuple[Callable, Callable]]] = {"psnr": {}, "ssim": {}}
    n = sr.shape[0]
    batch = batch or n
    try:
        from torchmetrics.functional.image import peak_signal_noise_ratio as tm_psnr
        from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

        out["psnr"]["torchmetrics"] = (
            chunked(lambda a, b: tm_psnr(a, b, data_range=1.0, reduction="none", dim=(1, 2, 3)), sr, gt, batch),
            lambda: torch.stack([tm_psnr(sr[i:i + 1], gt[i:i + 1], data_range=1.0) for i in range(n)]))
        out["ssim"]["torchmetrics"] = (
            chunked(lambda a, b: tm_ssim(a, b, data_range=1.0, reduction="none"), sr, gt, batch),
            lambda: torch.stack([tm_ssim(sr[i:i + 1], gt[i:i + 1], data_range=1.0) for i in range(n)]))
    except ImportError:
        print("torchmetrics not installed: pip install -e '.[bench]'")
    try:
        import piq

        out["psnr"]["piq"] = (
            chunked(lambda a, b: piq.psnr(a, b, data_range=1.0, reduction="none"), sr, gt, batch),
            lambda: torch.stack([piq.psnr(sr[i:i + 1], gt[i:i + 1], data_range=1.0, reduction="none")[0]
                                 for i in range(n)]))
        out["ssim"]["piq"] = (
            chunked(lambda a, b: piq.ssim(a, b, data_range=1.0, reduction="none"), sr, gt, batch),
            lambda: torch.stack([piq.ssim(sr[i:i + 1], gt[i:i + 1], data_range=1.0, reduction="none")[0]
                                 for i in range(n)]))
    except ImportError:
        print("piq not installed: pip install -e '.[bench]'")
    return out


CONVENTION = {
    ("psnr", "torchmetrics"): "sums in the input dtype (ours: float64)",
    ("psnr", "piq"): "MSE + 1e-8, input dtype",
    ("ssim", "torchmetrics"): "mean over the reflect-padded full map (ours: valid region); input dtype",
    ("ssim", "piq"): "same definition (no downsampling at 256 px); input dtype",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=40)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", default="1,2", help="comma list of torch intra-op thread counts (0 = default)")
    ap.add_argument("--dtype", default="float32,float64")
    ap.add_argument("--full", action="store_true", help="also time the peers' float64 SSIM (slow, GBs of RAM), "
                    "and the peers' batched calls on all pairs at once")
    ap.add_argument("--peer-batch", type=int, default=10, help="quick mode: pairs per batched peer call (memory)")
    args = ap.parse_args()
    for threads in [int(t) for t in args.threads.split(",")]:
        if threads:
            torch.set_num_threads(threads)
        print(f"\n=== {args.pairs} pairs of 3x{args.size}x{args.size}, torch threads {torch.get_num_threads()}")
        run(args)


def run(args: argparse.Namespace) -> None:
    ours_fn = {"psnr": psnr, "ssim": ssim}
    for dname in args.dtype.split(","):
        dtype = getattr(torch, dname.strip())
        sr, gt = make_pairs(args.pairs, args.size, dtype)
        print(f"\n{dname}")
        print(f"{'metric':<6} {'impl':<13} {'pairs/s':>9} {'ours/peer':>10} {'max |diff|':>11}  convention")
        for metric, table in peers(sr, gt, batch=0 if args.full else args.peer_batch).items():
            if metric == "ssim" and dtype == torch.float64 and not args.full:
                print(f"{metric:<6} {'(peers)':<13} {'skipped':>9}  quick mode: the peers' float64 SSIM takes "
                      "minutes and GBs; --full runs it")
                table = {}
            fn = ours_fn[metric]
            ref = fn(sr.double(), gt.double())  # the float64 reference
            fns: dict[str, Callable[[], object]] = {"ours": lambda fn=fn, sr=sr, gt=gt: fn(sr, gt)}
            if metric == "ssim" and dtype == torch.float32:
                fns["ours float64"] = lambda sr=sr, gt=gt: ssim(sr, gt, precision="float64")
            for peer, (batched, looped) in table.items():
                fns[peer + " batch"], fns[peer + " loop"] = batched, looped
            times = best_times(fns, args.repeats)
            rate = args.pairs / times["ours"]
            how = "float32 moments on centred planes, float64 mean" if metric == "ssim" and dtype == torch.float32 \
                else "float64 throughout"
            own_diff = float((fn(sr, gt).double() - ref).abs().max())
            print(f"{metric:<6} {'clipscore-sr':<13} {rate:9.0f} {'':>10} {own_diff:11.1e}{'':3} {how} "
                  "(diff: vs our float64 reference)")
            if "ours float64" in times:
                r64 = args.pairs / times["ours float64"]
                print(f"{metric:<6} {'  float64 ref':<13} {r64:9.0f} {rate / r64:9.2f}x {0.0:11.1e}{'':3} "
                      "the reference path on the same float32 inputs")
            for peer, (batched, _) in table.items():
                diff = float((batched().double() - ref).abs().max())
                peer_rate = args.pairs / min(times[peer + " batch"], times[peer + " loop"])
                unit = " dB" if metric == "psnr" else ""
                print(f"{metric:<6} {peer:<13} {peer_rate:9.0f} {rate / peer_rate:9.2f}x {diff:11.1e}{unit:3}"
                      f" {CONVENTION[(metric, peer)]}")


if __name__ == "__main__":
    main()
