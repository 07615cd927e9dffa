"""Correctness-maps figure: LR input, SR output, HR reference and the improvement / omission / hallucination
map of :func:`clipscore_sr.metrics.correctness.correctness`, with the three fractions in the title.

Regenerate the WorldStrat figure (``reports/worldstrat-correctness.png``) from the repository root::

    python -m clipscore_sr.figures.correctness_maps ../shared/samples/worldstrat/HR.png \\
        ../shared/samples/worldstrat/SR.png ../shared/samples/worldstrat/L1.png -o reports/worldstrat-correctness.png
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np

from .style import figure_format, save_figure


def draw_correctness_maps(lr: np.ndarray, sr: np.ndarray, hr: np.ndarray, classes: np.ndarray,
                          fractions: tuple[float, float, float], out_path: str | os.PathLike, *,
                          title: str = "", lr_stats: dict[str, float] | None = None) -> Path:
    """Four panels from ``[C,H,W]`` images in [0,1] (first 3 bands shown) and a ``[h,w]`` class map (-1 left out)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    from ..metrics.correctness import CLASS_COLOURS, CLASS_NAMES, MASKED_COLOUR, class_map_rgb

    figure_format(out_path)

    def rgb(x: np.ndarray) -> np.ndarray:
        x = x[:3] if x.shape[0] >= 3 else np.repeat(x[:1], 3, axis=0)
        return np.clip(np.moveaxis(x, 0, -1), 0, 1)

    fig = Figure(figsize=(13, 4.4))
    axes = fig.subplots(1, 4)
    lr_title = f"LR input {lr.shape[2]}x{lr.shape[1]}"
    if lr_stats:
        lr_title += "\n" + "\n".join(f"{k} {v:.2f}" for k, v in lr_stats.items())
    panels: list[tuple[Any, str]] = [(rgb(lr), lr_title), (rgb(sr), f"SR {sr.shape[2]}x{sr.shape[1]}"),
                                     (rgb(hr), "HR reference"), (class_map_rgb(classes), "correctness map")]
    for ax, (img, name) in zip(axes, panels):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [Patch(color=np.array(c) / 255, label=f"{n} {100 * f:.1f}%")
               for c, n, f in zip(CLASS_COLOURS, CLASS_NAMES, fractions)]
    handles.append(Patch(color=np.array(MASKED_COLOUR) / 255, label="left out (LR_up close to HR)"))
    fig.legend(handles=handles, loc="lower center", fontsize=8, ncol=4, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.78, bottom=0.08, wspace=0.04)
    return save_figure(fig, out_path, dpi=100)


def main(argv: list[str] | None = None) -> None:
    from .. import io
    from ..metrics import get_metric
    from ..metrics.correctness import correctness

    ap = argparse.ArgumentParser(description="Correctness-maps figure for one HR/SR/LR triplet.")
    ap.add_argument("hr")
    ap.add_argument("sr")
    ap.add_argument("lr")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--patch-size", type=int, default=1)
    args = ap.parse_args(argv)
    import torch

    hr, sr, lr = (io.read_image(p) for p in (args.hr, args.sr, args.lr))
    t = [torch.from_numpy(x.data[None]) for x in (sr, hr, lr)]
    maps = correctness(*t, patch_size=args.patch_size, levels=int(hr.data_range))
    stats = {m: float(v[m] if isinstance(v, dict) else v) for m in ("lr-psnr", "lr-sam", "lr-shift")
             for v in [get_metric(m)(t[0], t[2])]}
    stats = {"lr-psnr (dB)": stats["lr-psnr"], "lr-sam (deg)": stats["lr-sam"], "lr-shift (LR px)": stats["lr-shift"]}
    classes = maps.classes[0].numpy()
    if args.patch_size > 1:
        classes = np.repeat(np.repeat(classes, args.patch_size, 0), args.patch_size, 1)
    fr = tuple(float(f) for f in maps.fractions[0])
    title = (f"{Path(args.sr).parent.name}: correctness of SR vs HR with LR (L1, per pixel, d_ref > q75); "
             f"improvement {100 * fr[0]:.1f}%, omission {100 * fr[1]:.1f}%, hallucination {100 * fr[2]:.1f}%")
    draw_correctness_maps(lr.data, sr.data, hr.data, classes, fr, args.out, title=title, lr_stats=stats)
    print(f"wrote {args.out}: improvement {fr[0]:.4f}, omission {fr[1]:.4f}, hallucination {fr[2]:.4f}; "
          + ", ".join(f"{k} {v:.3f}" for k, v in stats.items()))


if __name__ == "__main__":
    main()
