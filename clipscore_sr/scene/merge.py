"""The exact merge of shard tables into the final outputs, and the scene summary from sums and counts.

Every shard's meta must carry the same fingerprint (inputs and settings) and together the shards must hold
each tile of each scene exactly once. Scene aggregates are ratios of sums over tiles (``n-*``, ``sum-*``
columns), never means of per-tile means: ``lr-l1 = sum(sum-abs)/sum(n-lr)``, ``lr-psnr = -10 log10(sum(sum-sq)
/sum(n-lr))``, ``bias-bN = (sum(sum-sr-bN) - sum(sum-lr-bN)) / (sum(n-lr)/bands)``, ``ratio-bN`` = the ratio of
the sums, ``nodata-new-frac = sum(nodata-new-px)/sum(n-lrvalid-sr)``, ``detail-gain = sqrt(sum(sum-hf2-sr)/
sum(sum-hf2-bi))``; ``lr-sam`` and ``lr-shift`` are tile means weighted by ``n-lr``; maxima are maxima.
Tables are sorted by key, so a merged sharded run is identical to a one-process run.
"""

from __future__ import annotations

import json
import math
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import SRMetricsError
from .evaluate import write_json

#: (column, worst end) of the rankings in the summary
RANKINGS = (("lr-l1", "max"), ("seam-step", "max"), ("nodata-new-frac", "max"), ("cast", "max"),
            ("lr-shift", "max"), ("detail-gain", "min"))
WORST_N = 5


def _shards(out_dir: Path) -> tuple[int, list[dict[str, Any]]]:
    metas = sorted((out_dir / "shards").glob("meta.*-of-*.json"))
    if not metas:
        raise SRMetricsError(f"{out_dir}: no shard results (shards/meta.I-of-N.json) to merge")
    by_n: dict[int, list[dict[str, Any]]] = {}
    for m in metas:
        i, n = (int(v) for v in re.match(r"meta\.(\d+)-of-(\d+)\.json", m.name).groups())
        by_n.setdefault(n, []).append(json.loads(m.read_text()))
    if len(by_n) > 1:
        raise SRMetricsError(f"{out_dir}: shards of different splits ({', '.join(f'N={n}' for n in by_n)}) in "
                             "shards/: keep one split")
    n, items = next(iter(by_n.items()))
    have = {m["shard"] for m in items}
    missing = sorted(set(range(n)) - have)
    if missing:
        raise SRMetricsError(f"{out_dir}: shard(s) {', '.join(f'{i}/{n}' for i in missing)} not run yet")
    if any(m["fingerprint"] != items[0]["fingerprint"] for m in items):
        raise SRMetricsError(f"{out_dir}: the shards were run on different inputs or settings; rerun them alike")
    return n, sorted(items, key=lambda m: m["shard"])


def merge_shards(out_dir: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read every shard table, check completeness, write tiles.parquet/csv, summary.json, maps and quick-looks."""
    from ..results import read_table, write_table
    from .maps import quicklook, write_metric_cog

    out_dir = Path(out_dir)
    n, metas = _shards(out_dir)
    fp, columns = metas[0]["fingerprint"], metas[0]["columns"]
    frames = []
    for m in metas:
        path = out_dir / "shards" / f"tiles.{m['shard']}-of-{n}.parquet"
        if not path.exists():
            raise SRMetricsError(f"{path}: shard {m['shard']}/{n} has not finished (rerun it with --resume)")
        frames.append(read_table(path))
    df = pd.concat(frames, ignore_index=True).reindex(columns=columns)
    if df["key"].duplicated().any():
        raise SRMetricsError(f"{out_dir}: tile {df['key'][df['key'].duplicated()].iloc[0]} is in two shards")
    expected = sum(s["n_tiles"] for s in fp["scenes"])
    if len(df) != expected:
        raise SRMetricsError(f"{out_dir}: the shards hold {len(df)} of {expected} tiles; rerun the missing shards")
    df = df.sort_values("key", kind="stable").reset_index(drop=True)
    df["error"] = df["error"].fillna("").astype(str)
    df["flags"] = df["flags"].fillna("").astype(str)
    write_table(df, out_dir / "tiles.parquet")
    write_table(df, out_dir / "tiles.csv")
    summary = summarize_scenes(df, fp)
    metric_cols = [c for c in columns if c not in ("key", "scene", "tile", "row_off", "col_off", "height", "width",
                                                   "x_min", "y_min", "x_max", "y_max", "flags", "error")
                   and not c.startswith(("n-", "sum-"))]
    with ThreadPoolExecutor(1, thread_name_prefix="quicklook") as pool:  # beside the maps (GDAL frees the GIL)
        pending = []
        for scene in fp["scenes"]:
            part = df[df["scene"] == scene["name"]]
            outlined = set(summary["scenes"][scene["name"]]["outlined"])
            outline = [(int(r.row_off), int(r.col_off), int(r.height), int(r.width), bool(r.flags))
                       for r in part.itertuples() if r.key in outlined]
            pending.append(pool.submit(quicklook, scene, fp["settings"], outline,
                                       out_dir / "quicklook" / f"{scene['name']}.png"))
            write_metric_cog(part, scene, metric_cols, out_dir / "maps" / f"{scene['name']}.tif",
                             fp["settings"]["tile"])
        for f in pending:
            f.result()
    write_json(out_dir / "summary.json", summary)
    return df, summary


def _num(df: pd.DataFrame, col: str) -> np.ndarray:
    return pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float) if col in df else np.full(len(df), np.nan)


def _finite(v: float) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


def summarize_scenes(df: pd.DataFrame, fp: dict[str, Any]) -> dict[str, Any]:
    """Per scene: exact aggregates, flag counts, the worst tiles per ranking and the tiles to outline."""
    out: dict[str, Any] = {"scenes": {}, "settings": fp["settings"]}
    for scene in fp["scenes"]:
        part = df[df["scene"] == scene["name"]]
        labels = scene["labels"]
        s = {c: float(np.nansum(_num(part, c))) for c in part.columns if c.startswith(("n-", "sum-"))}
        n_lr = s.get("n-lr", 0.0)
        agg: dict[str, Any] = {"tiles": int(len(part)), "tiles_failed": int((part["error"] != "").sum())}
        if n_lr > 0:
            w = _num(part, "n-lr")
            agg["lr-l1"] = s["sum-abs"] / n_lr
            agg["lr-psnr"] = -10 * math.log10(s["sum-sq"] / n_lr) if s["sum-sq"] > 0 else math.inf
            for col in ("lr-sam", "lr-shift"):
                v = _num(part, col)
                ok = np.isfinite(v) & (w > 0)
                agg[col] = float((v[ok] * w[ok]).sum() / w[ok].sum()) if ok.any() else None
            per_band = n_lr / len(labels)
            for b in labels:
                agg[f"bias-{b}"] = (s[f"sum-sr-{b}"] - s[f"sum-lr-{b}"]) / per_band
                agg[f"ratio-{b}"] = s[f"sum-sr-{b}"] / s[f"sum-lr-{b}"] if s[f"sum-lr-{b}"] else None
            if s.get("n-ndvi"):
                agg["ndvi-drift"] = s["sum-ndvi-diff"] / s["n-ndvi"]
            if s.get("n-sr"):
                agg["detail-rms"] = math.sqrt(s["sum-hf2-sr"] / s["n-sr"])
                agg["detail-gain"] = math.sqrt(s["sum-hf2-sr"] / s["sum-hf2-bi"]) if s["sum-hf2-bi"] else None
        if s.get("n-lrvalid-sr"):
            agg["nodata-new-frac"] = float(np.nansum(_num(part, "nodata-new-px"))) / s["n-lrvalid-sr"]
        agg["nodata-new-px"] = int(np.nansum(_num(part, "nodata-new-px")))
        agg["nodata-spread-px"] = _finite(np.nanmax(_num(part, "nodata-spread-px"), initial=-np.inf))
        agg["seam-step-max"] = _finite(np.nanmax(_num(part, "seam-step"), initial=-np.inf))
        agg["by-construction-frac"] = float(np.nanmean(_num(part, "by-construction"))) if len(part) else None
        flags: dict[str, list[str]] = {}
        for key, f in zip(part["key"], part["flags"]):
            for name in filter(None, str(f).split(";")):
                flags.setdefault(name, []).append(key)
        worst: dict[str, list[dict[str, Any]]] = {}
        for col, end in RANKINGS:
            v = _num(part, col)
            ok = np.flatnonzero(np.isfinite(v))
            order = ok[np.argsort(-v[ok] if end == "max" else v[ok], kind="stable")][:WORST_N]
            worst[col] = [{"key": part["key"].iloc[i], "value": float(v[i])} for i in order]
        outlined = list(dict.fromkeys(k for ks in flags.values() for k in ks))
        if not outlined:
            outlined = [w["key"] for w in worst["lr-l1"]]
        out["scenes"][scene["name"]] = {
            "lr": scene["lr"], "sr": scene["sr"], "scale": scene["scale"], "aggregate": agg,
            "flagged": {k: len(v) for k, v in flags.items()}, "flagged_tiles": flags, "worst": worst,
            "outlined": outlined[:200], "errors": [e for e in part["error"] if e][:10]}
    return out


def format_summary(summary: dict[str, Any]) -> str:
    lines = []
    for name, s in summary["scenes"].items():
        a = s["aggregate"]
        parts = [f"{k} {a[k]:.4g}" for k in ("lr-l1", "lr-psnr", "lr-sam", "lr-shift", "nodata-new-frac",
                                              "seam-step-max", "detail-gain") if isinstance(a.get(k), float)]
        lines.append(f"{name}: {a['tiles']} tiles, " + ", ".join(parts))
        flags = ", ".join(f"{k} {v}" for k, v in s["flagged"].items()) or "none"
        lines.append(f"  flagged tiles: {flags}")
        for col, items in s["worst"].items():
            if items:
                lines.append(f"  worst {col}: " + ", ".join(f"{i['key']} ({i['value']:.4g})" for i in items[:3]))
    return "\n".join(lines)


__all__ = ["format_summary", "merge_shards", "summarize_scenes"]
