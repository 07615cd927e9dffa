"""The report's data model: the tables the toolkit writes (per-image scores with their ``.meta.json``,
agreement and rank tables) read back and assembled into one JSON-able dict, plus the thumbnail sheets.

* A per-image table (``key``, ``gt``/``sr`` columns) gives the rows. The method of a row is its ``method``
  column, else the first component of ``METHOD/KEY`` keys (``score --methods``, the demo), else the file's stem
  (one table per method). Its image key is the key without the method; its dataset the ``dataset`` column, if any.
* Metric columns are the numeric columns other than the bookkeeping ones; directions come from the registry
  (derived columns: ``@baseline`` as the base, ``-gain``/``-gap-closed`` higher, ``-b<N>`` as the base; a
  multi-column metric's columns from the metric itself); signed columns have no direction and no "best".
* Means and 95% CIs per method come from :func:`clipscore_sr.results.summarize_by_method`, the best method
  per metric from :func:`clipscore_sr.results.best_per_metric`: the same numbers ``score --summary`` writes.
* ``disagree`` of a row: over the metrics with a direction, the spread (max - min) of the row's percentile rank
  among the rows of its method, each metric oriented so that 1 is best. 1: best image for one metric, worst
  for another.
* Numbers are stored as JSON numbers; NaN as null, +-inf as ``"inf"``/``"-inf"`` (as in ``score``'s JSON).
"""

from __future__ import annotations

import base64
import json
import math
import os
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import __version__
from ..errors import ReportError, SRMetricsError
from . import thumbs as T

BOOKKEEPING = ("key", "gt", "sr", "lr", "mask", "method", "dataset", "error", "scene", "image")
KINDS = ("scores", "agreement", "rank", "ranking-agreement", "summary", "agreement-pairs")


def kind_of(df: pd.DataFrame) -> str | None:
    """Which table this is (see :data:`KINDS`), from its columns; None when unknown."""
    cols = set(df.columns)
    if {"key", "sr"} <= cols:
        return "scores"
    if {"metric", "accuracy", "ci_low", "ci_high"} <= cols:
        return "agreement"
    if {"method", "score", "rank", "n_votes"} <= cols:
        return "rank"
    if {"metric", "tau_b"} <= cols:
        return "ranking-agreement"
    if {"metric", "mean", "ci95_low"} <= cols:
        return "summary"
    if {"pair_id", "n_a", "n_b"} <= cols:
        return "agreement-pairs"
    return None


@dataclass
class Inputs:
    scores: list[tuple[Path, pd.DataFrame, dict | None]] = field(default_factory=list)
    tables: dict[str, list[tuple[Path, pd.DataFrame]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def load_inputs(paths: Sequence[str | os.PathLike]) -> Inputs:
    """Read every table, classify it by its columns and read a per-image table's ``OUT.meta.json``."""
    from ..results import read_table

    inputs = Inputs()
    for p in map(Path, paths):
        if p.is_dir():
            raise ReportError(f"{p}: a folder; pass the tables it holds (scores.csv, agreement.csv, ranking.csv)")
        if not p.is_file():
            raise ReportError(f"{p}: no such file")
        if p.name.endswith(".meta.json"):
            continue  # read with its table
        try:
            df = read_table(p)
        except SRMetricsError as exc:
            raise ReportError(str(exc)) from None
        kind = kind_of(df)
        if kind is None:
            raise ReportError(f"{p}: not a table the report knows (expected a per-image score table, an agreement "
                              f"or a rank table); columns: {', '.join(map(str, df.columns[:8]))}")
        if kind in ("summary", "agreement-pairs"):
            inputs.notes.append(f"{p.name}: a {kind} table, not used (the report recomputes it from the rows)")
            continue
        if kind == "scores":
            meta_path = p.with_name(p.name + ".meta.json")
            meta = None
            if meta_path.is_file():
                try:
                    meta = json.loads(meta_path.read_text())
                except (OSError, ValueError) as exc:
                    raise ReportError(f"{meta_path}: cannot read meta file ({exc})") from None
            else:
                inputs.notes.append(f"{p.name}: no meta file {meta_path.name}: provenance unknown, default data range")
            inputs.scores.append((p, df, meta))
        else:
            inputs.tables.setdefault(kind, []).append((p, df))
    if not inputs.scores and not inputs.tables:
        raise ReportError("no tables given: pass a per-image score table (with its .meta.json), agreement or rank tables")
    return inputs


def column_direction(col: str, meta_metrics: Sequence[dict] = ()) -> bool | None:
    """``higher_is_better`` of a result column, None for signed columns (no better direction)."""
    import re

    from ..metrics.base import get_metric, metric_direction

    if "@" in col:
        return column_direction(col.split("@", 1)[0], meta_metrics)
    if col.endswith("-gain") or col.endswith("-gap-closed"):
        return True
    for m in meta_metrics:  # a multi-column metric knows its columns
        mid = m.get("id", "")
        if col.startswith(mid + "-"):
            try:
                for c in get_metric(mid).columns():
                    if c.name == col:
                        return None if getattr(c, "signed", False) else bool(c.higher_is_better)
            except Exception:  # noqa: BLE001 - a metric that cannot be built here: fall through
                pass
    try:
        return metric_direction(col)
    except SRMetricsError:
        base = re.sub(r"-b\d+$", "", col)
        if base != col:
            return column_direction(base, meta_metrics)
        for m in meta_metrics:
            if m.get("id") == col and "higher_is_better" in m:
                return bool(m["higher_is_better"])
        return True


def jv(v: Any) -> Any:
    """A JSON value: NaN -> None, +-inf -> "inf"/"-inf" (as ``score`` writes JSON)."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isnan(v):
            return None
        return ("inf" if v > 0 else "-inf") if math.isinf(v) else v
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return str(v) if not isinstance(v, str) else v


def _resolve(p: Any, table_dir: Path) -> str | None:
    """Absolute path of a file a table names: as written (relative to where the command ran), else relative
    to the table's folder (string operations and one stat: 100,000 paths take well under a second)."""
    if not isinstance(p, str) or not p:
        return None
    if os.path.isabs(p) or os.path.exists(p):
        return os.path.abspath(p)
    return os.path.abspath(os.path.join(table_dir, p))


def _rows(inputs: Inputs, lr_dir: str | None, maps_dir: str | None) -> pd.DataFrame:
    from .. import io

    lr_index = {k: os.path.abspath(v) for k, v in io.index_images(lr_dir).items()} if lr_dir else {}
    parts = []
    for t, (path, df, _meta) in enumerate(inputs.scores):
        df = df.reset_index(drop=True).copy()
        keys = df["key"].astype(str)
        if "method" in df:
            method = df["method"].astype(str)
            prefixed = pd.Series([k.startswith(m + "/") for k, m in zip(keys, method)], index=keys.index)
            image = keys.where(~prefixed, keys.str.split("/", n=1).str[-1])
        elif len(keys) and keys.str.contains("/").all() and keys.str.split("/", n=1).str[0].nunique() > 1:
            method, image = keys.str.split("/", n=1).str[0], keys.str.split("/", n=1).str[1]
        else:
            method, image = pd.Series([path.stem] * len(df)), keys
        d = pd.DataFrame({"table": t, "key": keys, "image": image, "method": method,
                          "dataset": df["dataset"].astype(str) if "dataset" in df else ""})
        for col in ("gt", "sr", "lr"):
            d[col] = [_resolve(v, path.parent) for v in (df[col] if col in df else [None] * len(df))]
        if lr_index:
            d["lr"] = [lr if lr else lr_index.get(k) for lr, k in zip(d["lr"], image)]
        d["map"] = None
        if maps_dir:
            md = Path(maps_dir)
            d["map"] = [next((os.path.abspath(c) for c in (md / f"{k}.correctness.png", md / f"{i}.correctness.png")
                              if c.is_file()), None) for k, i in zip(keys, image)]
        d["error"] = df["error"].fillna("").astype(str) if "error" in df else ""
        for col in df.columns:
            if col not in BOOKKEEPING and col not in d and pd.api.types.is_numeric_dtype(df[col]):
                d[col] = df[col].astype(float)
        parts.append(d)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def disagreement(rows: pd.DataFrame, metrics: Sequence[str], higher: dict[str, bool | None]) -> np.ndarray:
    """See the module docstring; NaN where fewer than two metrics have a value."""
    ranked = [m for m in metrics if higher.get(m) is not None]
    if len(ranked) < 2 or rows.empty:
        return np.full(len(rows), np.nan)
    g = rows.groupby("method", sort=False)
    pct = pd.concat([g[m].rank(pct=True, ascending=bool(higher[m])) for m in ranked], axis=1)
    out = (pct.max(axis=1) - pct.min(axis=1)).where(pct.notna().sum(axis=1) >= 2)
    return out.to_numpy(dtype=float)


def _table(df: pd.DataFrame, path: Path) -> dict:
    return {"file": path.name, "columns": [str(c) for c in df.columns],
            "rows": [[jv(v) for v in r] for r in df.itertuples(index=False, name=None)]}


def _provenance(path: Path, meta: dict | None, stretch: str) -> dict:
    from ..display import describe_stretch

    if meta is None:
        return {"file": path.name, "missing": True}
    s = meta.get("settings", {})
    dtypes = {d for v in (s.get("inputs_range") or {}).values() for d in (v.get("dtype") or [])}
    return {"file": path.name, "version": meta.get("clipscore_sr_version"), "written": meta.get("written"),
            "metrics": meta.get("metrics", []), "data_range": s.get("data_range"),
            "data_range_requested": s.get("data_range_requested"), "bands": s.get("bands"),
            "inputs_range": s.get("inputs_range"), "device": s.get("device"), "precision": s.get("precision"),
            "n_pairs": meta.get("n_pairs"), "n_failed": meta.get("n_failed"),
            "display": describe_stretch(stretch, "uint8" if dtypes == {"uint8"} else "other")}


def build_model(inputs: Inputs, report_path: str | os.PathLike, *, lr_dir: str | None = None,
                maps_dir: str | None = None, title: str = "SR evaluation report", stretch: str = "auto",
                cap: int = T.THUMB_CAP, embed_full: bool = False, embed_limit_mb: float = 200.0,
                workers: int | None = None) -> tuple[dict, list[str]]:
    """The JSON-able model of the page and its thumbnail sheets (base64 JPEG), see the module docstring."""
    from ..results import best_per_metric, summarize_by_method

    report_dir = os.path.dirname(os.path.abspath(report_path))  # no symlink resolution: as opened
    rows = _rows(inputs, lr_dir, maps_dir)
    meta_metrics = [m for _p, _d, meta in inputs.scores for m in ((meta or {}).get("metrics") or [])]
    fixed = {"table", "key", "image", "method", "dataset", "gt", "sr", "lr", "map", "error"}
    metrics = [c for c in rows.columns if c not in fixed]
    higher = {m: column_direction(m, meta_metrics) for m in metrics}
    methods = list(dict.fromkeys(rows["method"])) if len(rows) else []
    model: dict[str, Any] = {"title": title, "version": __version__, "thumb_cap": cap, "notes": list(inputs.notes),
                             "metrics": [{"id": m, "higher": higher[m]} for m in metrics], "methods": methods}
    if len(rows):
        summary, means = summarize_by_method(rows, metrics, methods)
        best = best_per_metric(means[[m for m in metrics if higher[m] is not None]],
                               {m: bool(v) for m, v in higher.items() if v is not None})
        model["summary"] = {"columns": [str(c) for c in summary.columns],
                            "rows": [[jv(v) for v in r] for r in summary.itertuples(index=False, name=None)]}
        model["best"] = best
    datasets = list(dict.fromkeys(rows["dataset"])) if len(rows) else []
    model["datasets"] = datasets
    model["provenance"] = [_provenance(p, meta, stretch) for p, _d, meta in inputs.scores]
    for kind, tables in inputs.tables.items():
        model[kind] = [_table(df, p) for p, df in tables]

    # images: one id per file; groups (GT + LR + each method + maps of one image) share the GT's stretch
    ids: dict[str, int] = {}
    kinds: list[str] = []
    groups: dict[int, dict[tuple, T.Group]] = {}

    def image_id(p: str | None, kind: str, table: int, gkey: tuple, ref: str | None) -> int:
        if p is None:
            return -1
        if p not in ids:
            ids[p] = len(kinds)
            kinds.append(kind)
            groups.setdefault(table, {}).setdefault(gkey, T.Group(ref)).images.append((ids[p], p, kind))
        return ids[p]

    cols = {c: [] for c in ("gt", "sr", "lr", "map")}
    for r in rows.itertuples(index=False):
        ref = r.gt or r.lr
        gkey = (r.dataset, r.gt or r.image)
        for c in cols:
            cols[c].append(image_id(getattr(r, c), c, r.table, gkey, ref))
    sheets, images = _render(groups, inputs, kinds, stretch, cap, embed_full, workers)
    paths = list(ids)
    full, total, rel_dirs = [], 0, {}
    for i, p in enumerate(paths):
        info = images[i]
        if info is None:
            full.append(None)
        elif embed_full:
            uri = "data:image/png;base64," + base64.b64encode(info.pop("png")).decode()
            total += len(uri)
            if total > embed_limit_mb * 1e6:
                raise ReportError(f"--embed-full: the full-resolution images exceed --embed-limit {embed_limit_mb:g} MB "
                                  f"(at image {i + 1} of {len(paths)}); drop --embed-full or raise the limit")
            full.append(uri)
        elif info["native"]:
            folder, name = os.path.split(p)
            if folder not in rel_dirs:  # one relpath per folder
                try:
                    rel_dirs[folder] = urllib.parse.quote(Path(os.path.relpath(folder, report_dir)).as_posix()) + "/"
                except ValueError:  # another drive (Windows)
                    rel_dirs[folder] = Path(folder).as_uri() + "/"
            full.append(rel_dirs[folder] + urllib.parse.quote(name))
        else:
            full.append(None)
    errors = [f"{paths[i]}: {info['error']}" for i, info in enumerate(images) if info and "error" in info]
    if errors:
        model["notes"].append(f"{len(errors)} image(s) could not be read (shown as blank): {errors[0]}")
    model["images"] = {
        "kind": kinds, "full": full,
        "thumb": [info["thumb"] if info and "thumb" in info else None for info in images],
        "size": [info["size"] if info and "size" in info else None for info in images],
        "dtype": [info.get("dtype") if info else None for info in images],
        "name": [Path(p).name for p in paths],
    }
    model["rows"] = {
        "key": [str(k) for k in rows["image"]] if len(rows) else [],
        "method": [methods.index(m) for m in rows["method"]] if len(rows) else [],
        "dataset": [datasets.index(d) for d in rows["dataset"]] if len(rows) else [],
        "values": {m: [jv(v) for v in rows[m]] for m in metrics},
        "disagree": [jv(v) for v in disagreement(rows, metrics, higher)] if len(rows) else [],
        "error": [str(e) for e in rows["error"]] if len(rows) else [],
        **cols,
    }
    return model, sheets


def _render(groups: dict[int, dict[tuple, T.Group]], inputs: Inputs, kinds: list[str], stretch: str, cap: int,
            embed_full: bool, workers: int | None) -> tuple[list[str], list[dict | None]]:
    from ..io import parse_bands

    images: list[dict | None] = [None] * len(kinds)
    sheets: list[str] = []
    for table, gs in groups.items():
        meta = inputs.scores[table][2] or {}
        s = meta.get("settings", {})
        bands = parse_bands(s.get("bands")) if s.get("bands") else None
        tasks = T.plan_tasks(list(gs.values()))
        for sheet in T.render_all(tasks, bands, s.get("data_range"), stretch=stretch, cap=cap, full=embed_full,
                                  workers=workers):
            n = len(sheets)
            sheets.append(base64.b64encode(sheet.jpeg).decode())
            for img_id, (cell, tw, th, w, h, native, dtype, note) in sheet.cells.items():
                x, y = (cell % T.SHEET_COLUMNS) * cap, (cell // T.SHEET_COLUMNS) * cap
                images[img_id] = {"thumb": [n, x, y, tw, th], "size": [w, h], "native": native, "dtype": dtype,
                                  "note": note}
                if embed_full:
                    images[img_id]["png"] = sheet.full[img_id]
            for img_id, err in sheet.errors.items():
                images[img_id] = {"error": err, "native": False}
    return sheets, images


__all__ = ["BOOKKEEPING", "Inputs", "build_model", "column_direction", "disagreement", "jv", "kind_of", "load_inputs"]
