"""Ranking figures: methods by score with CIs (and which neighbours differ significantly), and the human
ranking beside each metric's ranking. Agg canvas, deterministic bytes via :func:`.style.save_figure`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import SRMetricsError
from ..human.judgements import OVERALL
from .style import PALETTE, figure_format, label, save_figure


def ranking_figure(table: pd.DataFrame, pairs: pd.DataFrame | None, out_path: str | os.PathLike, *,
                   title: str | None = None, dpi: int = 150) -> dict[str, Any]:
    """One panel per dataset of ``table`` (:data:`~clipscore_sr.human.ranking.RANKING_COLUMNS`): methods
    ordered by score (best at the top) with their CIs; a ``*`` between two neighbours marks a significant
    difference (``pairs['significant']``), ``n.s.`` one that is not. Returns the path, the methods order per panel
    and the panels titled "no interval" (only where no method has one)."""
    from matplotlib.figure import Figure

    figure_format(out_path)
    if table.empty:
        raise SRMetricsError("empty ranking table: nothing to plot")
    datasets = list(dict.fromkeys(table["dataset"]))
    datasets = [d for d in datasets if d != OVERALL] + ([OVERALL] if OVERALL in datasets else [])
    n_max = max(int((table["dataset"] == d).sum()) for d in datasets)
    fig = Figure(figsize=(4.2 * len(datasets), 0.8 + 0.38 * n_max), layout="constrained")
    axes = fig.subplots(1, len(datasets), squeeze=False)[0]
    order_out: dict[str, list[str]] = {}
    no_interval: list[str] = []  # panels titled "no interval"
    marked = False
    for ax, ds, color in zip(axes, datasets, PALETTE * 8):
        sub = table[table["dataset"] == ds].sort_values("score", ascending=True, kind="stable")
        y = np.arange(len(sub))
        s = sub["score"].to_numpy(float)
        lo, hi = sub["ci_low"].to_numpy(float), sub["ci_high"].to_numpy(float)
        has_ci = np.isfinite(lo) & np.isfinite(hi)
        err = np.vstack([np.where(has_ci, s - lo, 0.0), np.where(has_ci, hi - s, 0.0)])
        ax.errorbar(s, y, xerr=err, fmt="o", color=color, ecolor=color, capsize=3, lw=1.2)
        ax.set_yticks(y, [label(m) for m in sub["method"].astype(str)])
        unit = str(sub["unit"].iat[0])
        ax.set_xlabel("score (JOD)" if unit == "jod" else "Bradley-Terry score (log-strength)")
        ax.axvline(0.0, color="#BBBBBB", lw=0.8, zorder=0)
        ax.set_title(label(ds if len(datasets) > 1 else (title or ds)), fontsize=10)
        notes = [str(n) for n in sub["ci_note"]] if "ci_note" in sub else []
        why = next((part for n in notes for part in n.split("; ") if part.startswith("no interval")), "")
        if not has_ci.any() and sub["bootstrap"].iat[0] > 0:  # no interval: say why instead of drawing none
            short = "every bootstrap resample gives the same votes" if "alike" in why else \
                "1 scene and 1 annotator: nothing to resample" if "nothing to resample" in why else "see ci_note"
            ax.set_title(ax.get_title() + f"\nno interval: {short}", fontsize=8, color="#AA3333")
            no_interval.append(ds)
        elif pairs is not None and len(pairs) and len(sub) > 1 and sub["bootstrap"].iat[0] > 0:
            p = pairs[pairs["dataset"] == ds].set_index(["row", "col"])
            names = sub["method"].tolist()
            x_right = np.nanmax(np.where(has_ci, hi, s))
            for k in range(len(names) - 1):
                key = (names[k + 1], names[k])
                if key in p.index:
                    mark = "*" if bool(p.loc[key, "significant"]) else "n.s."
                    ax.text(x_right, k + 0.5, f" {mark}", va="center", ha="left", fontsize=7, color="#555555")
                    marked = True
        ax.margins(x=0.18)
        order_out[ds] = sub["method"].tolist()[::-1]
    if title and len(datasets) > 1:
        fig.suptitle(label(title))
    if marked:
        fig.supxlabel("neighbours: * differ significantly, n.s. not significantly", fontsize=7, color="#555555")
    path = save_figure(fig, out_path, dpi=dpi)
    return {"path": str(path), "order": order_out, "no_interval": no_interval}


def ranking_agreement_figure(methods: pd.DataFrame, summary: pd.DataFrame, out_path: str | os.PathLike, *,
                             dataset: str = OVERALL, reference: str = "people", dpi: int = 150) -> dict[str, Any]:
    """The human ranking beside each metric's ranking (a bump chart): one column per ranking (human first),
    each method a line through its rank in every column; the header shows Kendall's tau-b with its CI.
    ``reference`` names the votes' column ("people"; "constructed labels" where no person voted).

    ``methods``: one row per (metric, dataset, method) with ``human_rank`` and ``metric_rank``; ``summary``:
    one row per (metric, dataset) with ``tau_b``, ``tau_ci_low``, ``tau_ci_high``.
    """
    from matplotlib.figure import Figure

    figure_format(out_path)
    sub = methods[methods["dataset"] == dataset]
    if sub.empty:
        raise SRMetricsError(f"no ranking-agreement rows for dataset '{dataset}'")
    metrics = list(dict.fromkeys(sub["metric"]))
    names = sub[sub["metric"] == metrics[0]].sort_values("human_rank")["method"].tolist()
    cols = [reference, *metrics]
    fig = Figure(figsize=(1.2 + 1.5 * len(cols), 0.9 + 0.35 * len(names)), layout="constrained")
    ax = fig.subplots()
    for i, name in enumerate(names):
        ranks = [int(sub[(sub["metric"] == metrics[0]) & (sub["method"] == name)]["human_rank"].iat[0])]
        for mname in metrics:
            r = sub[(sub["metric"] == mname) & (sub["method"] == name)]["metric_rank"]
            ranks.append(int(r.iat[0]) if len(r) else np.nan)
        color = PALETTE[i % len(PALETTE)]
        ax.plot(range(len(cols)), ranks, "-o", color=color, lw=1.5, ms=5)
        ax.text(-0.08, ranks[0], label(name), ha="right", va="center", fontsize=8, color=color)
    ax.set_xticks(range(len(cols)))
    labels = [reference]
    summ = summary[summary["dataset"] == dataset].set_index("metric")
    for mname in metrics:
        if mname in summ.index and np.isfinite(summ.loc[mname, "tau_b"]):
            r = summ.loc[mname]
            ci = "" if not np.isfinite(r["tau_ci_low"]) else f"\n[{r['tau_ci_low']:.2f}, {r['tau_ci_high']:.2f}]"
            labels.append(f"{mname}\ntau-b {r['tau_b']:.2f}{ci}")
        else:
            labels.append(mname)
    ax.set_xticklabels([label(t) for t in labels], fontsize=8)
    ax.xaxis.tick_top()
    ax.set_yticks(range(1, len(names) + 1))
    ax.set_ylim(len(names) + 0.5, 0.5)
    ax.set_ylabel("rank (1 = best)")
    ax.set_xlim(-0.9, len(cols) - 0.6)
    for side in ("right", "bottom"):
        ax.spines[side].set_visible(False)
    path = save_figure(fig, out_path, dpi=dpi)
    return {"path": str(Path(path)), "methods": names, "metrics": metrics}


__all__ = ["ranking_agreement_figure", "ranking_figure"]
