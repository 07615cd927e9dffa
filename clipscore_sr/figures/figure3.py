"""Figure 3 of the paper (agreement of each metric with human judgements), drawn with matplotlib's Agg canvas (no display, no global pyplot state).

Output is deterministic: the same input gives the same bytes for ``.png``, ``.pdf`` and ``.svg``
(no creation dates or software stamps, a fixed SVG id salt).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import SRMetricsError
from ..human.judgements import OVERALL
from .style import PALETTE, figure_format, label, save_figure


def _read_agreement(agreement: pd.DataFrame | str | os.PathLike) -> pd.DataFrame:
    if isinstance(agreement, pd.DataFrame):
        return agreement.copy()
    path = Path(agreement)
    if not path.is_file():
        raise SRMetricsError(f"{path}: agreement table not found")
    try:
        if path.suffix.lower() == ".json":
            return pd.read_json(path)
        if path.suffix.lower() == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        raise SRMetricsError(f"{path}: agreement table is empty (no header, no rows)") from None
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SRMetricsError(f"{path}: cannot read the agreement table ({first})") from None


def figure3_order(table: pd.DataFrame) -> tuple[list[str], list[str], dict[str, float]]:
    """Metric order of Figure 3 (worst to best), datasets drawn, and each metric's average accuracy.

    The average is the unweighted mean of the metric's per-dataset accuracies (the bars drawn); a table
    that only has pooled rows uses those. Equal averages keep the table's metric order.
    """
    datasets = [d for d in dict.fromkeys(table["dataset"].astype(str)) if d != OVERALL]
    rows = table[table["dataset"].astype(str).isin(datasets)] if datasets else table
    if not datasets:
        datasets = [OVERALL]
    metrics = list(dict.fromkeys(table["metric"].astype(str)))
    avg = {m: float(np.nanmean(rows.loc[rows["metric"].astype(str) == m, "accuracy"].to_numpy(dtype=float)))
           if (rows["metric"].astype(str) == m).any() else math.nan for m in metrics}
    ranked = sorted(metrics, key=lambda m: (math.inf if math.isnan(avg[m]) else avg[m], metrics.index(m)))
    return ranked, datasets, avg


def figure3(
    agreement: pd.DataFrame | str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    title: str | None = None,
    dpi: int = 150,
    ylim: tuple[float, float] = (40.0, 90.0),
    ylabel: str = "agreement with human judgements (%)",
) -> dict[str, Any]:
    """Draw the paper's Figure 3 from an agreement table (a DataFrame or a CSV/JSON/Parquet file).

    One bar per dataset for every metric, metrics ordered left to right from worst to best average
    accuracy (see :func:`figure3_order`), bootstrap CIs as error bars, a dashed line at 50% (chance), the
    human ceiling of each dataset as a dotted line when the table has one, y axis in percent from
    ``ylim`` (40-90%) extended in steps of 5 to include every bar, CI and ceiling; ``ylabel`` names what the
    labels are (constructed labels are not human judgements). Returns metadata: ``metric_order``, ``datasets``, ``average``, ``ylim``, ``bars`` (one dict per bar: metric, dataset,
    x, height, ci) and ``path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure_format(out_path)
    table = _read_agreement(agreement)
    need = {"metric", "dataset", "accuracy"}
    missing = need - set(table.columns)
    if missing:
        raise SRMetricsError(f"agreement table lacks column(s) {', '.join(sorted(missing))}")
    if table.empty:
        raise SRMetricsError("agreement table is empty")
    table["metric"] = table["metric"].astype(str)
    table["dataset"] = table["dataset"].astype(str)
    order, datasets, avg = figure3_order(table)
    has_ci = {"ci_low", "ci_high"} <= set(table.columns)
    n_d = len(datasets)
    width = 0.8 / n_d
    fig = Figure(figsize=(max(7.0, 0.35 * len(order) * max(2, n_d) + 4.0), 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    bars: list[dict[str, Any]] = []
    values: list[float] = []
    for k, d in enumerate(datasets):
        xs, hs, errs = [], [], [[], []]
        for i, m in enumerate(order):
            row = table[(table["metric"] == m) & (table["dataset"] == d)]
            if row.empty:
                continue
            acc = float(row["accuracy"].iat[0]) * 100
            x = i + (k - (n_d - 1) / 2) * width
            lo = hi = math.nan
            if has_ci:
                lo, hi = float(row["ci_low"].iat[0]) * 100, float(row["ci_high"].iat[0]) * 100
            xs.append(x)
            hs.append(acc)
            errs[0].append(0.0 if math.isnan(lo) else max(acc - lo, 0.0))
            errs[1].append(0.0 if math.isnan(hi) else max(hi - acc, 0.0))
            values += [v for v in (acc, lo, hi) if not math.isnan(v)]
            bars.append({"metric": m, "dataset": d, "x": x, "height": acc, "ci": (lo, hi)})
        color = PALETTE[k % len(PALETTE)]
        ax.bar(xs, hs, width=width * 0.95, color=color, label=label(d if d != OVERALL else "all pairs"), zorder=2,
               yerr=np.array(errs) if has_ci else None, capsize=2.5 if has_ci else 0,
               error_kw={"elinewidth": 0.9, "ecolor": "#222222"})
    ceilings: dict[str, float] = {}
    if "human_ceiling" in table.columns:
        for k, d in enumerate(datasets):
            vals = table.loc[table["dataset"] == d, "human_ceiling"].to_numpy(dtype=float)
            vals = vals[~np.isnan(vals)]
            if len(vals):
                ceilings[d] = float(vals[0]) * 100
                values.append(ceilings[d])
                ax.axhline(ceilings[d], color=PALETTE[k % len(PALETTE)], linestyle=":", linewidth=1.4, zorder=3,
                           label=label(f"human ceiling ({d if d != OVERALL else 'all pairs'})"))
    ax.axhline(50.0, color="#444444", linestyle="--", linewidth=1.0, zorder=3, label="chance (50%)")
    lo_lim, hi_lim = float(ylim[0]), float(ylim[1])
    if values:
        lo_lim = min(lo_lim, 5 * math.floor(min(values) / 5))
        hi_lim = max(hi_lim, 5 * math.ceil(max(values) / 5))
    lo_lim, hi_lim = max(lo_lim, 0.0), min(hi_lim, 100.0)
    ax.set_ylim(lo_lim, hi_lim)
    ax.set_xlim(-0.6, len(order) - 0.4)
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels([label(m) for m in order], rotation=35, ha="right", fontsize=8)
    ax.set_ylabel(label(ylabel))
    ax.grid(axis="y", color="#dddddd", linewidth=0.6, zorder=0)
    ax.set_axisbelow(True)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, borderaxespad=0.0)
    if title:
        import textwrap

        ax.set_title(label(textwrap.fill(title, 80)), fontsize=9)
    fig.tight_layout()
    path = save_figure(fig, out_path, dpi=dpi)
    return {"metric_order": order, "datasets": datasets, "average": avg, "ylim": (lo_lim, hi_lim),
            "bars": bars, "ceilings": ceilings, "path": str(path), "axes": ax}


__all__ = ["figure3", "figure3_order"]
