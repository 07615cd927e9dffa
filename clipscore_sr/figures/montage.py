"""A picture of SR outputs: one row per tile, columns GT | LR (optional) | each method, every method's cell
annotated with each metric's value; the best method per metric is marked on each row (bold, coloured) and
named for the whole set in the title (best mean)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import SRMetricsError
from .style import PALETTE, figure_format, save_figure


def _rgb(path: str | os.PathLike) -> np.ndarray:
    """``[H, W, 3]`` float in [0, 1] for display (first three bands; one band is shown grey)."""
    from ..io import read_image

    data = np.asarray(read_image(path).data, dtype=np.float64)
    data = np.repeat(data[:1], 3, axis=0) if data.shape[0] < 3 else data[:3]
    return np.clip(np.moveaxis(data, 0, -1), 0.0, 1.0)


def _fmt(value: float) -> str:
    if not np.isfinite(value):
        return "inf" if value > 0 else "nan"
    return f"{value:.2f}" if abs(value) >= 10 else f"{value:.3f}"


def montage(scores: Mapping[str, pd.DataFrame], metric_ids: Sequence[str], out_path: str | os.PathLike, *,
            higher_is_better: Mapping[str, bool], lr: Mapping[str, str | os.PathLike] | None = None,
            max_rows: int = 8, title: str | None = None, dpi: int = 150) -> dict[str, Any]:
    """Draw the grid from per-method score tables (columns ``key, gt, sr`` and one per metric id).

    Rows are the keys every method has (sorted, at most ``max_rows``); ``lr`` maps keys to LR files.
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
    cell, text_h = 1.6, 0.16 * max(1, len(metric_ids))
    height = (cell + text_h) * len(keys) + 0.8
    fig = Figure(figsize=(cell * ncols, height))
    grid = fig.add_gridspec(len(keys), ncols, hspace=0.15 + text_h / cell, wspace=0.05,
                            top=1 - 0.75 / height, bottom=(text_h + 0.05) / height, left=0.05, right=0.98)
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
        for c, (name, path) in enumerate(images):
            ax = fig.add_subplot(grid[r, c])
            ax.set_xticks([])
            ax.set_yticks([])
            if path is not None and Path(path).is_file():
                ax.imshow(_rgb(path), interpolation="nearest")
            if r == 0:
                ax.set_title(name, fontsize=8)
            if c == 0:
                ax.set_ylabel(str(key), fontsize=6)
            if name in methods:
                for i, mid in enumerate(metric_ids):
                    is_best = name in row_best.get(mid, [])
                    ax.text(0.5, -0.06 - i * 0.13, f"{mid} {_fmt(values.at[name, mid])}" + (" *" if is_best else ""),
                            transform=ax.transAxes, ha="center", va="top", fontsize=5.5,
                            fontweight="bold" if is_best else "normal", color=PALETTE[3] if is_best else "black")
    import textwrap

    summary = "; ".join(f"{m}: {'='.join(v)}" for m, v in best.items())
    text = f"best (mean over {len(common)} tiles, * = best on the row): {summary}"
    fig.suptitle("\n".join([*([title] if title else []), *textwrap.wrap(text, width=int(22 * ncols))]),
                 fontsize=7, y=1 - 0.1 / height, va="top")
    path = save_figure(fig, out_path, dpi=dpi)
    return {"path": path, "keys": keys, "best": best, "best_per_row": best_rows}
