"""Correctness-maps figure: LR input, SR output, HR reference and the improvement / omission / hallucination
map of :func:`clipscore_sr.metrics.correctness.correctness`, with the three fractions in the title.

From the command line: ``srmetrics maps HR SR LR -o fig.png`` (one triplet), or ``srmetrics score ... --lr LR_DIR
-m correctness --maps DIR`` (a figure per pair beside the class maps). Regenerate the WorldStrat figure
(``reports/worldstrat-correctness.png``) from the repository root::

    srmetrics maps ../shared/samples/worldstrat/HR.png ../shared/samples/worldstrat/SR.png \\
        ../shared/samples/worldstrat/L1.png -o reports/worldstrat-correctness.png
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..display import DEFAULT_PERCENTILES, describe_stretch, stretch_limits, to_display
from .style import figure_format, label, save_figure


def draw_correctness_maps(lr: np.ndarray, sr: np.ndarray, hr: np.ndarray, classes: np.ndarray,
                          fractions: tuple[float, float, float], out_path: str | os.PathLike, *,
                          title: str = "", lr_stats: dict[str, float] | None = None, stretch: str = "auto",
                          dtype: str = "", percentiles: Sequence[float] = DEFAULT_PERCENTILES) -> Path:
    """Four panels from ``[C,H,W]`` images in [0,1] (first 3 bands shown) and a ``[h,w]`` class map (-1 left out).
    LR, SR and HR share one display stretch computed from the HR (``stretch``/``dtype``/``percentiles`` as in
    :func:`clipscore_sr.display.stretch_limits`; ``dtype`` is the files' storage type, 'uint8' shows 8-bit data
    unstretched under ``auto``); the legend says which."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    from ..metrics.correctness import CLASS_COLOURS, CLASS_NAMES, MASKED_COLOUR, class_map_rgb

    figure_format(out_path)

    def shown(x: np.ndarray) -> np.ndarray:
        return x[:3] if x.shape[0] >= 3 else np.repeat(x[:1], 3, axis=0)

    lo, hi = stretch_limits(shown(hr), dtype=dtype, stretch=stretch, percentiles=percentiles)

    def rgb(x: np.ndarray) -> np.ndarray:
        return to_display(shown(x), lo, hi)

    fig = Figure(figsize=(13, 4.4))
    axes = fig.subplots(1, 4)
    lr_title = f"LR input {lr.shape[2]}x{lr.shape[1]}"
    if lr_stats:
        lr_title += "\n" + "\n".join(f"{k} {v:.2f}" for k, v in lr_stats.items())
    panels: list[tuple[Any, str]] = [(rgb(lr), label(lr_title)), (rgb(sr), f"SR {sr.shape[2]}x{sr.shape[1]}"),
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
    fig.text(0.01, 0.005, f"display: {describe_stretch(stretch, dtype, percentiles).replace('row', 'HR')}",
             fontsize=8, color="#555555", va="bottom")
    if title:
        fig.suptitle(label(title), fontsize=10)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.78, bottom=0.08, wspace=0.04)
    return save_figure(fig, out_path, dpi=100)


def correctness_figure(hr_path: str | os.PathLike, sr_path: str | os.PathLike, lr_path: str | os.PathLike,
                       out_path: str | os.PathLike, *, patch_size: int = 1, bands: Sequence[int] | None = None,
                       data_range: float | None = None, stretch: str = "auto") -> dict[str, Any]:
    """Read one HR/SR/LR triplet (``bands`` 1-based, ``data_range`` as in ``score``), compute its correctness
    (L1 per pixel, d_ref > q75) and the LR-consistency numbers, and draw the captioned figure. Returns the
    fractions and the numbers."""
    import torch

    from .. import io
    from ..metrics import get_metric
    from ..metrics.correctness import correctness

    hr, sr, lr = (io.read_image(p, bands=bands, data_range=data_range) for p in (hr_path, sr_path, lr_path))
    hint = io.small_range_hint(hr.dtype, hr.data_range, max(x.max_value for x in (hr, sr, lr)),
                               requested=data_range is not None)
    if hint:  # the same warning as `score`: lr-psnr would read ~24 dB too high for 12-bit data
        import warnings

        from ..errors import DataRangeWarning

        warnings.warn(hint, DataRangeWarning, stacklevel=2)
    t = [torch.from_numpy(x.data[None]) for x in (sr, hr, lr)]
    maps = correctness(*t, patch_size=patch_size, levels=int(hr.data_range) if hr.dtype != "float32" else 256)
    raw = {m: float(v[m] if isinstance(v, dict) else v) for m in ("lr-psnr", "lr-sam", "lr-shift")
           for v in [get_metric(m)(t[0], t[2])]}
    stats = {"lr-psnr (dB)": raw["lr-psnr"], "lr-sam (deg)": raw["lr-sam"], "lr-shift (LR px)": raw["lr-shift"]}
    classes = maps.classes[0].numpy()
    if patch_size > 1:
        classes = np.repeat(np.repeat(classes, patch_size, 0), patch_size, 1)
    fr = tuple(float(f) for f in maps.fractions[0])
    title = (f"{Path(sr_path).parent.name}: correctness of SR vs HR with LR (L1, per pixel, d_ref > q75); "
             f"improvement {100 * fr[0]:.1f}%, omission {100 * fr[1]:.1f}%, hallucination {100 * fr[2]:.1f}%; "
             f"data range {hr.data_range:g} ({hr.dtype})")
    path = draw_correctness_maps(lr.data, sr.data, hr.data, classes, fr, out_path, title=title, lr_stats=stats,
                                 stretch=stretch, dtype=hr.dtype)
    return {"path": str(path), "fractions": fr, "stats": stats}
