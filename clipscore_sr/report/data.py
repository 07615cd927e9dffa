"""The report's data model: the tables the toolkit writes (per-image scores with their ``.meta.json``,
agreement and rank tables), study folders (:mod:`.study`) and scene evaluations (:mod:`.scene`) read back and
assembled into one JSON-able dict, plus the thumbnail sheets.

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
from .values import json_numbers, jv, table_json

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
    studies: list[Path] = field(default_factory=list)
    scenes: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def load_inputs(paths: Sequence[str | os.PathLike]) -> Inputs:
    """Read every table, classify it by its columns and read a per-image table's ``OUT.meta.json``; a folder is
    a study (``study.json``) or a scene evaluation (``summary.json``), told by what it holds."""
    from ..results import read_table
    from .scene import is_scene
    from .study import is_study

    inputs = Inputs()
    for p in map(Path, paths):
        if p.is_dir():
            if is_study(p):
                inputs.studies.append(p)
            elif is_scene(p):
                inputs.scenes.append(p)
            else:
                raise ReportError(f"{p}: a folder that is neither a study (no study.json: 'srmetrics study make' "
                                  "writes one) nor a scene evaluation (no summary.json: 'srmetrics scene' writes "
                                  "one); pass the tables it holds (scores.csv, agreement.csv, ranking.csv)")
            continue
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
            hint = (f"; a judgement file: pass its study folder ({p.parent}) or rank it with 'srmetrics rank'"
                    if {"pair_id", "choice"} <= set(df.columns) else "")
            raise ReportError(f"{p}: not a table the report knows (expected a per-image score table, an agreement "
                              f"or a rank table, or a study or scene folder); columns: "
                              f"{', '.join(map(str, df.columns[:8]))}{hint}")
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
    if not (inputs.scores or inputs.tables or inputs.studies or inputs.scenes):
        raise ReportError("no tables given: pass a per-image score table (with its .meta.json), agreement or rank "
                          "tables, a study folder or a scene evaluation folder")
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


def _resolve(p: Any, table_dir: str) -> str | None:
    """Absolute path of a file a table names: as written (relative to where the command ran), else relative
    to the table's folder (string operations and one stat: 100,000 paths take well under a second)."""
    if not isinstance(p, str) or not p:
        return None
    if os.path.isabs(p) or os.path.exists(p):
        return os.path.abspath(p)
    return os.path.abspath(os.path.join(table_dir, p))


def _resolve_all(values: Sequence[Any], table_dir: str) -> list[str | None]:
    """:func:`_resolve` of each value, once per distinct value (every method's row names the same GT)."""
    done: dict[str, str | None] = {}
    out = []
    for v in values:
        if isinstance(v, str) and v:
            if v not in done:
                done[v] = _resolve(v, table_dir)
            out.append(done[v])
        else:
            out.append(None)
    return out


def _strings(values: Sequence[Any]) -> pd.Series:
    """Python strings as an object column: iterating pandas' Arrow strings costs a microsecond a cell."""
    return pd.Series(values, dtype=object)


def _rows(inputs: Inputs, lr_dir: str | None, maps_dir: str | None) -> pd.DataFrame:
    lr_index: dict[str, str] = {}
    if lr_dir:
        from .. import io

        lr_index = {k: os.path.abspath(v) for k, v in io.index_images(lr_dir).items()}
    parts = []
    for t, (path, df, _meta) in enumerate(inputs.scores):
        df = df.reset_index(drop=True)
        keys = df["key"].astype(str).tolist()
        if "method" in df:
            method = df["method"].astype(str).tolist()
            image = [k[len(m) + 1:] if k.startswith(m + "/") else k for k, m in zip(keys, method)]
        elif keys and all("/" in k for k in keys) and len({k.split("/", 1)[0] for k in keys}) > 1:
            method, image = map(list, zip(*(k.split("/", 1) for k in keys)))
        else:
            method, image = [path.stem] * len(keys), keys
        table_dir = str(path.parent)
        files = {c: _resolve_all(df[c].tolist() if c in df else [None] * len(keys), table_dir)
                 for c in ("gt", "sr", "lr")}
        if lr_index:
            files["lr"] = [lr if lr else lr_index.get(k) for lr, k in zip(files["lr"], image)]
        maps: list[str | None] = [None] * len(keys)
        if maps_dir:
            md = os.path.abspath(maps_dir)
            maps = [next((c for c in (os.path.join(md, f"{k}.correctness.png"), os.path.join(md, f"{i}.correctness.png"))
                          if os.path.isfile(c)), None) for k, i in zip(keys, image)]
        d = pd.DataFrame({"table": t, "key": _strings(keys), "image": _strings(image), "method": _strings(method),
                          "dataset": _strings(df["dataset"].astype(str).tolist() if "dataset" in df else [""] * len(keys)),
                          **{c: _strings(v) for c, v in files.items()}, "map": _strings(maps),
                          "error": _strings(df["error"].fillna("").astype(str).tolist() if "error" in df
                                            else [""] * len(keys))})
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


def _images(rows: pd.DataFrame) -> tuple[dict[str, int], list[str], dict[int, dict[tuple, T.Group]], dict[str, list[int]]]:
    """One id per image file: ``(ids by path, kind by id, groups by table, the rows' id columns)``. A group
    (the GT, LR, each method's SR and maps of one image) shares its reference's (the GT's) stretch."""
    ids: dict[str, int] = {}
    kinds: list[str] = []
    groups: dict[int, dict[tuple, T.Group]] = {}
    cols: dict[str, list[int]] = {c: [] for c in ("gt", "sr", "lr", "map")}
    if rows.empty:
        return ids, kinds, groups, cols
    columns = [rows[c].tolist() for c in ("table", "dataset", "image", "gt", "sr", "lr", "map")]
    for table, dataset, image, *files in zip(*columns):
        gt, lr = files[0], files[2]
        ref, gkey = gt or lr, (dataset, gt or image)
        for c, p in zip(cols, files):
            if p is None:
                cols[c].append(-1)
                continue
            if p not in ids:
                ids[p] = len(kinds)
                kinds.append(c)
                groups.setdefault(table, {}).setdefault(gkey, T.Group(ref)).images.append((ids[p], p, c))
            cols[c].append(ids[p])
    return ids, kinds, groups, cols


def _start_rendering(groups: dict[int, dict[tuple, T.Group]], inputs: Inputs, stretch: str, cap: int,
                     embed_full: bool, workers: int | None) -> T.Rendering:
    """The thumbnail sheets of every table's groups (its bands and data range), started in worker processes."""
    from ..io import parse_bands

    jobs = []
    for table, gs in groups.items():
        s = (inputs.scores[table][2] or {}).get("settings", {})
        bands = parse_bands(s.get("bands")) if s.get("bands") else None
        jobs += [(task, bands, s.get("data_range")) for task in T.plan_tasks(list(gs.values()))]
    return T.Rendering(jobs, stretch=stretch, cap=cap, full=embed_full, workers=workers)


def _assemble(inputs: Inputs, rows: pd.DataFrame, cols: dict[str, list[int]], *, title: str, cap: int, stretch: str,
              report_dir: str) -> dict[str, Any]:
    """The model without its images: metrics, summaries, the tables, studies and scenes, the rows."""
    from ..results import best_per_metric, summarize_by_method
    from .scene import scene_section
    from .study import study_section

    meta_metrics = [m for _p, _d, meta in inputs.scores for m in ((meta or {}).get("metrics") or [])]
    fixed = {"table", "key", "image", "method", "dataset", "gt", "sr", "lr", "map", "error"}
    metrics = [c for c in rows.columns if c not in fixed]
    higher = {m: column_direction(m, meta_metrics) for m in metrics}
    methods = list(dict.fromkeys(rows["method"].tolist())) if len(rows) else []
    model: dict[str, Any] = {"title": title, "version": __version__, "thumb_cap": cap, "notes": list(inputs.notes),
                             "metrics": [{"id": m, "higher": higher[m]} for m in metrics], "methods": methods}
    if len(rows):
        summary, means = summarize_by_method(rows, metrics, methods)
        best = best_per_metric(means[[m for m in metrics if higher[m] is not None]],
                               {m: bool(v) for m, v in higher.items() if v is not None})
        model["summary"] = {"columns": [str(c) for c in summary.columns],
                            "rows": [[jv(v) for v in r] for r in summary.itertuples(index=False, name=None)]}
        model["best"] = best
    datasets = list(dict.fromkeys(rows["dataset"].tolist())) if len(rows) else []
    model["datasets"] = datasets
    model["provenance"] = [_provenance(p, meta, stretch) for p, _d, meta in inputs.scores]
    for kind, tables in inputs.tables.items():
        model[kind] = [table_json(df, p.name) for p, df in tables]
    model["studies"] = [study_section(p) for p in inputs.studies]
    model["scenes"] = [scene_section(p, report_dir) for p in inputs.scenes]
    method_ix, dataset_ix = {m: i for i, m in enumerate(methods)}, {d: i for i, d in enumerate(datasets)}
    model["rows"] = {
        "key": rows["image"].tolist() if len(rows) else [],
        "method": [method_ix[m] for m in rows["method"].tolist()] if len(rows) else [],
        "dataset": [dataset_ix[d] for d in rows["dataset"].tolist()] if len(rows) else [],
        "values": {m: json_numbers(rows[m].to_numpy()) for m in metrics},
        "disagree": json_numbers(disagreement(rows, metrics, higher)) if len(rows) else [],
        "error": rows["error"].tolist() if len(rows) else [],
        **cols,
    }
    return model


def build_model(inputs: Inputs, report_path: str | os.PathLike, *, lr_dir: str | None = None,
                maps_dir: str | None = None, title: str = "SR evaluation report", stretch: str = "auto",
                cap: int = T.THUMB_CAP, embed_full: bool = False, embed_limit_mb: float = 200.0,
                workers: int | None = None) -> tuple[dict, list[str]]:
    """The JSON-able model of the page and its thumbnail sheets (base64 JPEG), see the module docstring. The
    thumbnails render in worker processes while this process assembles the rest of the model."""
    report_dir = os.path.dirname(os.path.abspath(report_path))  # no symlink resolution: as opened
    rows = _rows(inputs, lr_dir, maps_dir)
    ids, kinds, groups, cols = _images(rows)
    with _start_rendering(groups, inputs, stretch, cap, embed_full, workers) as rendering:
        model = _assemble(inputs, rows, cols, title=title, cap=cap, stretch=stretch, report_dir=report_dir)
        rendered = rendering.sheets()
    sheets, images = _collect(rendered, len(kinds), cap, embed_full)
    paths = list(ids)
    full, total, rel_dirs = [], 0, {}
    for i, p in enumerate(paths):
        info = images[i]
        if info is None or "error" in info:
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
        "name": [os.path.basename(p) for p in paths],
    }
    return model, sheets


def _collect(rendered: Sequence[T.Sheet], n_images: int, cap: int, embed_full: bool) -> tuple[list[str], list[dict | None]]:
    """The sheets as base64 text and each image's thumbnail cell, size and flags (by image id)."""
    images: list[dict | None] = [None] * n_images
    sheets: list[str] = []
    for sheet in rendered:
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
