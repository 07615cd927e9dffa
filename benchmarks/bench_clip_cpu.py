"""The CPU forward pass of CLIP's image tower, which bounds CLIPScore on machines without a GPU: eager fp32
against bf16 autocast, ``torch.compile`` and channels_last (convolutional towers), in one process.

Usage::

    python benchmarks/bench_clip_cpu.py [--models ViT-B-32,RN50] [--batch 16] [--repeats 3] [--threads 0]
                                         [--no-compile]

Random weights (``open_clip.create_model(NAME)``, no download; speed does not depend on the values, and the
cosine check compares two ways of computing the same random network). Inputs are "real-like": the bundled
Landsat demo tiles and their SR outputs, preprocessed as CLIPScore does (:mod:`clipscore_sr.metrics.clip`).
For each variant: images/s (best of ``repeats`` after a warm-up; ``torch.compile`` also reports its one-off
compile time), the ratio to eager fp32, and the largest difference in cosine similarity between an SR and its
GT embedding (the number CLIPScore reports) against eager fp32. The toolkit adopts a variant only where it is
>= 1.3x faster with cosine differences <= 1e-3 (see ``--precision``'s help); the script says which qualify.
No assertion: the numbers are for the README's benchmark table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

DEMO = Path(__file__).resolve().parents[1] / "clipscore_sr" / "data" / "demo" / "scene"


def demo_batch(size: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sr, gt)`` ``[batch, 3, size, size]`` normalised as CLIP expects, from the demo tiles (cycled)."""
    from PIL import Image

    from clipscore_sr.metrics.clip.preprocess import OPENAI_MEAN, OPENAI_STD

    gts = sorted((DEMO / "gt").glob("*.png"))
    srs = [DEMO / "sr" / m / p.name for m in ("bicubic", "nearest", "srcnn-tiny") for p in gts]
    pairs = [(s, DEMO / "gt" / s.name) for s in srs]

    def load(p: Path) -> np.ndarray:
        return np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.BICUBIC), np.float32) / 255

    mean, std = torch.tensor(OPENAI_MEAN)[:, None, None], torch.tensor(OPENAI_STD)[:, None, None]
    sr = torch.stack([torch.from_numpy(load(pairs[i % len(pairs)][0])).permute(2, 0, 1) for i in range(batch)])
    gt = torch.stack([torch.from_numpy(load(pairs[i % len(pairs)][1])).permute(2, 0, 1) for i in range(batch)])
    return (sr - mean) / std, (gt - mean) / std


def cosines(model, sr: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    a, b = model(sr).float(), model(gt).float()
    return torch.nn.functional.cosine_similarity(a, b, dim=-1)


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    import open_clip

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="ViT-B-32,RN50")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile (needs a C++ compiler; slow)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}")
    for name in args.models.split(","):
        torch.manual_seed(0)
        model = open_clip.create_model(name, pretrained=None).visual.eval()
        size = model.image_size[0] if isinstance(model.image_size, tuple) else int(model.image_size)
        sr, gt = demo_batch(size, args.batch)
        variants: dict[str, tuple] = {}

        def eager(x, m=model):
            with torch.inference_mode():
                return m(x)

        def bf16(x, m=model):
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                return m(x)

        variants["eager fp32"] = (eager, 0.0)
        variants["bf16 autocast"] = (bf16, 0.0)
        if "RN" in name:
            cl = open_clip.create_model(name, pretrained=None).visual.eval()
            cl.load_state_dict(model.state_dict())
            cl = cl.to(memory_format=torch.channels_last)

            def channels_last(x, m=cl):
                with torch.inference_mode():
                    return m(x.contiguous(memory_format=torch.channels_last))

            variants["channels_last fp32"] = (channels_last, 0.0)
        if not args.no_compile:
            try:
                compiled = torch.compile(model)
                t0 = time.perf_counter()
                with torch.inference_mode():
                    compiled(sr)
                ct = time.perf_counter() - t0

                def comp(x, m=compiled):
                    with torch.inference_mode():
                        return m(x)

                variants["torch.compile fp32"] = (comp, ct)
            except Exception as exc:  # no compiler, unsupported op: say so, time the rest
                print(f"{name}: torch.compile unavailable ({type(exc).__name__}: {str(exc).splitlines()[0][:100]})")
        ref = cosines(variants["eager fp32"][0], sr, gt)
        base = best_time(lambda fn=variants["eager fp32"][0], x=sr: fn(x), args.repeats)
        print(f"\n{name} @ {size}px (random weights): eager fp32 {args.batch / base:.1f} images/s")
        for label, (fn, compile_s) in variants.items():
            t = base if label == "eager fp32" else best_time(lambda fn=fn, x=sr: fn(x), args.repeats)
            diff = float((cosines(fn, sr, gt) - ref).abs().max())
            ok = t * 1.3 <= base and diff <= 1e-3
            extra = f", compile {compile_s:.0f} s once" if compile_s else ""
            print(f"  {label:<20} {args.batch / t:7.1f} images/s  {base / t:5.2f}x  max |cos diff| {diff:.1e}"
                  f"{extra}{'  <- qualifies (>= 1.3x, <= 1e-3)' if ok and label != 'eager fp32' else ''}")


if __name__ == "__main__":
    main()
