"""A picture of SR outputs: one row per tile, columns GT | LR (optional) | each method, every method's cell
annotated with each metric's value; the best method per metric is marked on each row (bold, coloured) and
named for the whole set in the title (best mean). One display stretch per row, from the row's GT and the same
for every column (:mod:`clipscore_sr.display`); tiles of different sizes carry their size."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..display import DEFAULT_PERCENTILES, Displayed, describe_stretch, stretch_limits, to_display
from ..errors import SRMetricsError
from .style import PALETTE, figure_format, label, save_figure

_FONT_PT = 5.5


def _read(path: str | os.PathLike | None, bands: Sequence[int] | None, data_range: float | None) -> Displayed | None:
    """The image at ``path`` for display, or None when there is none (a missing LR, an unreadable file)."""
    if path is None or not isinstance(path, str | os.PathLike) or not Path(path).is_file():
        return None
    return Displayed(path, bands=bands, data_range=data_range)


def _fmt(value: float) -> str:
    if not np.isfinite(value):
        return "inf" if value > 0 else "nan"
    return f"{value:.2f}" if abs(value) >= 10 else f"{value:.3f}"


def montage(scores: Mapping[str, pd.DataFrame], metric_ids: Sequence[str], out_path: str | os.PathLike, *,
            higher_is_better: Mapping[str, bool], lr: Mapping[str, str | os.PathLike] | None = None,
            max_rows: int = 8, title: str | None = None, dpi: int = 150, bands: Sequence[int] | None = None,
            data_range: float | None = None, stretch: str = "auto",
            percentiles: Sequence[float] = DEFAULT_PERCENTILES) -> dict[str, Any]:
    """Draw the grid from per-method score tables (columns ``key, gt, sr`` and one per metric id).

    Rows are the keys every method has (sorted, at most ``max_rows``); ``lr`` maps keys to LR files.
    ``bands`` (1-based, 1 or 3) and ``data_range`` read the images as ``score`` does; ``stretch`` and
    ``percentiles`` set the display stretch (:func:`clipscore_sr.display.stretch_limits`), computed per row
    from the GT and applied to every column; the caption says which.
    Returns ``path``, ``keys`` (rows drawn), ``best`` (``{metric: [methods]}`` by mean over all common keys)
    and ``best_per_row`` (``{key: {metric: [methods]}}``).
    """
    from matplotlib.figure import Figure

    from ..results import best_per_metric

    figure_format(out_path)
    if not scores:
        raise SRMetricsError("montage: no SR method to draw")
    methods = list(scores)
    tables = {m: df[df.get("error", pd.Series("", index=df.index)).fillna("") == ""].set_index("key")
              for m, df in scores.items()}
    common = sorted(set.intersection(*(set(t.index) for t in tables.values())))
    if not common:
        raise SRMetricsError("montage: the methods share no scored pair (key)")
    metric_ids = [m for m in metric_ids if all(m in t.columns for t in tables.values())]
    means = pd.DataFrame({mid: [float(pd.to_numeric(tables[m].loc[common, mid], errors="coerce").mean())
                                for m in methods] for mid in metric_ids}, index=methods)
    best = best_per_metric(means, dict(higher_is_better))
    keys = common[:max_rows]
    lead = ["GT"] + (["LR"] if lr else [])
    ncols = len(lead) + len(methods)
    line_pt = _FONT_PT * 1.45  # one metric line under a tile, in points; the space below is reserved from it
    cell, text_h = 1.6, (3 + line_pt * max(1, len(metric_ids))) / 72 + 0.06
    # the caption (best methods, value scale, display) above the grid: room for its wrapped lines (7 pt each)
    summary = "; ".join(f"{m}: {'='.join(v)}" for m, v in best.items())
    est = len(summary) + 330 + (len(title) if title else 0)
    head, foot = 0.35 + 0.125 * -(-est // int(22 * ncols)), 0.12
    height = (cell + text_h) * len(keys) + head + foot
    fig = Figure(figsize=(cell * ncols, height))
    grid = fig.add_gridspec(len(keys), ncols, hspace=text_h / cell, wspace=0.05,
                            top=1 - head / height, bottom=(text_h + foot) / height, left=0.05, right=0.98)
    notes: set[str] = set()
    dtypes: set[str] = set()
    best_rows: dict[str, dict[str, list[str]]] = {}
    for r, key in enumerate(keys):
        values = pd.DataFrame({mid: [float(pd.to_numeric(tables[m].at[key, mid], errors="coerce"))
                                     for m in methods] for mid in metric_ids}, index=methods)
        row_best = best_per_metric(values, dict(higher_is_better))
        best_rows[key] = row_best
        images = [("GT", tables[methods[0]].at[key, "gt"])]
        if lr:
            images.append(("LR", lr.get(key)))
        images += [(m, tables[m].at[key, "sr"]) for m in methods]
        shown = [_read(p, bands, data_range) for _, p in images]
        ref = next((d for d in shown if d is not None), None)  # the GT, or the first readable image
        if ref is not None:
            lo, hi = stretch_limits(ref.data, dtype=ref.dtype, stretch=stretch, percentiles=percentiles)
            dtypes.add(ref.dtype)
        sizes = {d.size for d in shown if d is not None}
        for c, ((name, _path), img) in enumerate(zip(images, shown)):
            ax = fig.add_subplot(grid[r, c])
            ax.set_xticks([])
            ax.set_yticks([])
            if img is not None:
                pixels = to_display(img.data, lo, hi)
                ax.imshow(pixels[..., 0] if pixels.shape[2] == 1 else pixels, interpolation="nearest",
                          cmap="gray", vmin=0, vmax=255)
                notes.add(img.note)
                if len(sizes) > 1:  # drawn at one cell size: say how large each really is
                    ax.text(0.02, 0.98, "{}x{}".format(*img.size), transform=ax.transAxes, ha="left", va="top",
                            fontsize=5, color="white", bbox={"fc": "black", "alpha": 0.55, "lw": 0, "pad": 1})
            if r == 0:
                ax.set_title(label(name), fontsize=8)
            if c == 0:
                ax.set_ylabel(label(key), fontsize=6)
            if name in methods:
                for i, mid in enumerate(metric_ids):
                    is_best = len(methods) > 1 and name in row_best.get(mid, [])
                    ax.annotate(label(f"{mid} {_fmt(values.at[name, mid])}" + (" *" if is_best else "")),
                                xy=(0.5, 0.0), xycoords="axes fraction", xytext=(0, -2 - i * line_pt),
                                textcoords="offset points", ha="center", va="top", fontsize=_FONT_PT,
                                fontweight="bold" if is_best else "normal",
                                color=PALETTE[3] if is_best else "black")
    import textwrap

    shown_bands = f"bands {','.join(map(str, bands))}" if bands else "bands as stored"
    how = "; ".join(sorted(describe_stretch(stretch, dt, percentiles) for dt in dtypes)) or "no image readable"
    extra = "".join(f" {n}." for n in sorted(notes) if n)
    scale = f"data range {data_range:g}" if data_range is not None else "data range from the pixel type (255, 65535, 1.0)"
    head = (f"best (mean over {len(common)} tiles, * = best on the row): {summary}. " if len(methods) > 1
            else f"{methods[0]}: mean over {len(common)} tiles. ")
    text = f"{head}Values: {scale}. Display: {shown_bands}, {how}.{extra}"
    fig.suptitle(label("\n".join([*([title] if title else []), *textwrap.wrap(text, width=int(22 * ncols))])),
                 fontsize=7, y=1 - 0.1 / height, va="top")
    path = save_figure(fig, out_path, dpi=dpi)
    return {"path": path, "keys": keys, "best": best, "best_per_row": best_rows}
