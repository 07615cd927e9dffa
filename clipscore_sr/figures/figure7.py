"""Figure 7: validation CLIPScore during training, for runs with and without the CLIP loss.

Reads the run folders written by the trainer (``log.csv`` + ``config.yaml``), draws one curve per run
against the training step or the wall-clock time (``time_s``, seconds summed over resumed sessions), and
summarises when each run first reaches a target score:

* ``first_step`` / ``first_time_s``: the first validation point whose value is ``>= target`` (no
  interpolation between validation points; NaN when never reached);
* ``speedup_steps`` / ``speedup_time``: the first run's ``first_step`` (``first_time_s``) divided by this run's,
  i.e. how many times sooner this run gets there than the first run given (the paper's "18x"); NaN when
  either run never reaches the target;
* ``final`` / ``best``: the last and the highest validation value, and ``final_gain`` in ``gain_unit``:
  ``final - final of the first run`` in the metric's own units for unbounded metrics (``dB`` for PSNR/cPSNR),
  or ``100 * (final - final of the first run)`` ``points`` for bounded [0, 1] / cosine metrics (CLIPScore,
  SSIM, LPIPS; the paper's "9 points higher").
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import SRMetricsError
from ..yamlsafe import read_yaml
from .style import PALETTE, figure_format, label, save_figure


@dataclass
class RunCurve:
    """One run's validation curve."""

    run_dir: Path
    label: str
    column: str
    steps: np.ndarray
    times: np.ndarray
    values: np.ndarray


def _read_config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "config.yaml"
    if not path.is_file():
        return {}
    cfg = read_yaml(path)
    return cfg if isinstance(cfg, dict) else {}


def _pick_column(columns: Sequence[str], metric: str | None, where: Path) -> str:
    vals = [c for c in columns if c.startswith("val_")]
    if metric is not None:
        want = metric if metric.startswith("val_") else f"val_{metric}"
        if want in vals:
            return want
        raise SRMetricsError(f"{where}: no validation column '{want}' (has: {', '.join(vals) or 'none'})")
    clip = [c for c in vals if c.startswith("val_clipscore")]
    if not clip:
        raise SRMetricsError(f"{where}: no validation CLIPScore column (has: {', '.join(vals) or 'none'}); "
                             "validate with a clipscore metric or pass --metric")
    return clip[0]


def read_run(run_dir: str | os.PathLike, metric: str | None = None, label: str | None = None) -> RunCurve:
    """The validation curve of a trainer run folder (``metric``: a metric id or ``val_`` column name;
    default: the first CLIPScore column)."""
    from clipscore_sr.baselines.train_config import run_label

    run_dir = Path(run_dir)
    log = run_dir / "log.csv"
    if not log.is_file():
        raise SRMetricsError(f"{run_dir}: not a training run folder (no log.csv)")
    table = pd.read_csv(log)
    for need in ("step", "time_s"):
        if need not in table.columns:
            raise SRMetricsError(f"{log}: lacks the '{need}' column")
    column = _pick_column(list(table.columns), metric, log)
    rows = table[table[column].notna()].sort_values("step", kind="stable")
    if rows.empty:
        raise SRMetricsError(f"{log}: no validation values in '{column}' yet")
    if label is None:
        cfg = _read_config(run_dir)
        label = run_label(cfg) if cfg.get("model") else run_dir.name
    return RunCurve(run_dir, label, column, rows["step"].to_numpy(dtype=np.int64),
                    rows["time_s"].to_numpy(dtype=np.float64), rows[column].to_numpy(dtype=np.float64))


def first_reaching(x: np.ndarray, values: np.ndarray, target: float) -> float:
    """The first ``x`` whose value is ``>= target`` (NaN if none)."""
    hit = np.nonzero(values >= target)[0]
    return float(x[hit[0]]) if len(hit) else math.nan


def gain_unit(metric_id: str) -> tuple[float, str]:
    """``(factor, unit)`` for differences of a metric: ``(1, "dB")`` for metrics in dB, ``(100, "points")`` for
    bounded ones (cosine, SSIM, LPIPS...), ``(1, "")`` for ids the registry does not know."""
    from ..errors import UnknownMetricError
    from ..metrics.base import get_metric_class, split_metric_id

    try:
        units = get_metric_class(split_metric_id(metric_id)[0]).units
    except UnknownMetricError:
        return 1.0, ""
    return (1.0, units) if units == "dB" else (100.0, "points")


def summarize(curves: Sequence[RunCurve], target: float) -> pd.DataFrame:
    """One row per run: first step/time reaching ``target``, speed-ups and final gain vs the first run."""
    rows = []
    for c in curves:
        rows.append({"run": c.label, "run_dir": str(c.run_dir), "metric": c.column[len("val_"):],
                     "target": target, "first_step": first_reaching(c.steps, c.values, target),
                     "first_time_s": first_reaching(c.times, c.values, target),
                     "final_step": int(c.steps[-1]), "final": float(c.values[-1]), "best": float(c.values.max())})
    table = pd.DataFrame(rows)
    ref = table.iloc[0]
    table["speedup_steps"] = ref["first_step"] / table["first_step"]
    table["speedup_time"] = ref["first_time_s"] / table["first_time_s"]
    factor, unit = gain_unit(str(ref["metric"]))
    table["final_gain"] = factor * (table["final"] - ref["final"])
    table["gain_unit"] = unit
    return table


def format_summary(table: pd.DataFrame) -> str:
    """Plain-text lines for the CLI: when each run reaches the target and how much sooner than the first."""
    ref = table.iloc[0]["run"]
    lines = []
    for _, r in table.iterrows():
        if math.isnan(r["first_step"]):
            reach = f"never reaches {r['target']:g} (best {r['best']:.4f})"
        else:
            reach = f"reaches {r['target']:g} at step {int(r['first_step'])} ({r['first_time_s']:.1f} s)"
        line = f"{r['run']}: {reach}; final {r['final']:.4f} at step {r['final_step']}"
        if r.name != table.index[0]:
            if not math.isnan(r["speedup_steps"]):
                line += f"; {r['speedup_steps']:.3g}x sooner in steps, {r['speedup_time']:.3g}x in time than {ref}"
            unit = f" {r['gain_unit']}" if r["gain_unit"] else ""
            line += f"; final {r['final_gain']:+.{4 if unit == ' dB' else 2}f}{unit} vs {ref}"
        lines.append(line)
    return "\n".join(lines)


def _time_unit(max_seconds: float) -> tuple[float, str]:
    if max_seconds >= 2 * 3600:
        return 3600.0, "h"
    if max_seconds >= 120:
        return 60.0, "min"
    return 1.0, "s"


def figure7(run_dirs: Sequence[str | os.PathLike], out_path: str | os.PathLike, *, x: str = "step",
            target: float | None = 0.8, metric: str | None = None, labels: Sequence[str] | None = None,
            title: str | None = None, dpi: int = 150) -> dict[str, Any]:
    """Draw Figure 7 (validation score vs training step or wall-clock time) and summarise the runs.

    Returns ``{"path", "summary" (DataFrame, see :func:`summarize`; empty without a target), "curves"}``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if x not in ("step", "time"):
        raise SRMetricsError(f"--x {x}: expected 'step' or 'time'")
    if not run_dirs:
        raise SRMetricsError("figure7: give at least one run folder")
    if labels is not None and len(labels) != len(run_dirs):
        raise SRMetricsError(f"--label: {len(labels)} labels for {len(run_dirs)} runs")
    figure_format(out_path)
    curves = [read_run(d, metric, labels[i] if labels else None) for i, d in enumerate(run_dirs)]
    metric_name = curves[0].column[len("val_"):]
    fig = Figure(figsize=(6.4, 4.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    scale, unit = _time_unit(max(float(c.times.max()) for c in curves)) if x == "time" else (1.0, "")
    summary = summarize(curves, target) if target is not None else pd.DataFrame()
    for i, c in enumerate(curves):
        xs = c.steps if x == "step" else c.times / scale
        color = PALETTE[i % len(PALETTE)]
        ax.plot(xs, c.values, marker="o", markersize=3, linewidth=1.4, color=color, label=label(c.label), zorder=3)
        if target is not None:
            hit = summary.iloc[i]["first_step" if x == "step" else "first_time_s"]
            if not math.isnan(hit):
                ax.axvline(hit / (1.0 if x == "step" else scale), color=color, linestyle=":", linewidth=1.0, zorder=2)
    if target is not None:
        ax.axhline(target, color="#444444", linestyle="--", linewidth=1.0, zorder=2, label=f"target {target:g}")
    ax.set_xlabel("training step" if x == "step" else f"wall-clock time ({unit})")
    ax.set_ylabel(label(f"validation {metric_name}"))
    ax.grid(color="#dddddd", linewidth=0.6, zorder=0)
    ax.set_axisbelow(True)
    ax.legend(fontsize=8, loc="lower right", frameon=False)
    ax.set_title(label(title or f"Validation {metric_name} during training"), fontsize=9)
    fig.tight_layout()
    path = save_figure(fig, out_path, dpi=dpi)
    return {"path": str(path), "summary": summary, "curves": curves}


__all__ = ["RunCurve", "figure7", "first_reaching", "format_summary", "gain_unit", "read_run", "summarize"]
