"""The report's scene section: a folder ``srmetrics scene`` wrote (``summary.json``, ``tiles.parquet``/``.csv``,
``quicklook/<scene>.png``, ``maps/<scene>.tif``), per scene:

* the summary: the aggregates and flag counts of ``summary.json`` as written;
* the worst tiles: every tile of the summary's rankings (the 5 worst per score, :data:`clipscore_sr.scene.merge.
  RANKINGS`) and the flagged (outlined) tiles, with where they rank and their cells of the tile table (flags,
  bounds in LR pixels and in map coordinates, the ranked scores, ``lr-psnr``, ``valid_frac``) as written;
* the quick-look PNG (flagged tiles in red, else the worst by ``lr-l1`` in yellow) embedded, and the COG map's
  path relative to the report with its CRS and bands.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

from ..errors import ReportError
from .values import jv, table_json

SUMMARY = "summary.json"
#: tile-table columns of the worst-tiles table before the scores: bounds in LR pixels and in map coordinates
PLACE_COLUMNS = ("key", "row_off", "col_off", "height", "width", "x_min", "y_min", "x_max", "y_max")
#: scores shown besides the ranked ones
MORE_COLUMNS = ("lr-psnr", "valid_frac")


def is_scene(folder: Path) -> bool:
    """``folder`` holds a scene evaluation: its ``summary.json``, or only shards not merged yet."""
    return (folder / SUMMARY).is_file() or any((folder / "shards").glob("meta.*-of-*.json"))


def _map_info(path: Path) -> dict[str, Any]:
    """CRS (None when not georeferenced) and band names of a metric map."""
    import warnings

    import rasterio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path) as ds:
            return {"crs": ds.crs.to_string() if ds.crs else None, "bands": [d or "" for d in ds.descriptions],
                    "size": [ds.width, ds.height]}


def _plain(v: Any) -> Any:
    """JSON data with every number as :func:`jv` (a NaN in a settings file stays valid JSON)."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return jv(v)


def scene_section(folder: Path, report_dir: str) -> dict[str, Any]:
    """The JSON-able scene section of the report's model (see the module docstring)."""
    from ..errors import SRMetricsError
    from ..results import read_table
    from ..scene.merge import RANKINGS

    if not (folder / SUMMARY).is_file():
        raise ReportError(f"{folder}: a scene evaluation whose shards are not merged yet; run "
                          f"'srmetrics scene-merge {folder}' first")
    try:
        summary = json.loads((folder / SUMMARY).read_text())
        scenes = summary["scenes"]
        if not isinstance(scenes, dict):
            raise TypeError("'scenes' is not an object")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ReportError(f"{folder / SUMMARY}: not a scene summary ({exc})") from None
    table_path = next((p for p in (folder / "tiles.parquet", folder / "tiles.csv") if p.is_file()), None)
    if table_path is None:
        raise ReportError(f"{folder}: no tiles.parquet or tiles.csv beside {SUMMARY} (rerun 'srmetrics scene')")
    try:
        tiles = read_table(table_path)
    except SRMetricsError as exc:
        raise ReportError(str(exc)) from None
    if not {"key", "scene"} <= set(tiles.columns):
        raise ReportError(f"{table_path}: not a scene tile table (no key/scene columns)")
    out: list[dict[str, Any]] = []
    for name, s in scenes.items():
        part = tiles[tiles["scene"] == name].set_index("key", drop=False)
        ranks: dict[str, list[str]] = {}
        for col, items in (s.get("worst") or {}).items():
            for i, item in enumerate(items):
                ranks.setdefault(item["key"], []).append(f"{col} #{i + 1}")
        for key in s.get("outlined") or []:
            ranks.setdefault(key, [])
        missing = [k for k in ranks if k not in part.index]
        if missing:
            raise ReportError(f"{table_path}: tile {missing[0]} of {folder / SUMMARY} is not in the table "
                              "(the summary and the table come from different runs)")
        scored = [c for c, _end in RANKINGS if c in part.columns] + [c for c in MORE_COLUMNS if c in part.columns]
        cols = ["key", *(c for c in ("flags", *PLACE_COLUMNS[1:], *scored) if c in part.columns)]
        worst = part.loc[list(ranks), cols].reset_index(drop=True)
        worst.insert(1, "worst in", [", ".join(r) for r in ranks.values()])
        entry: dict[str, Any] = {
            "name": str(name), "lr": str(s.get("lr", "")), "sr": str(s.get("sr", "")), "scale": jv(s.get("scale")),
            "aggregate": _plain(s.get("aggregate") or {}), "flagged": _plain(s.get("flagged") or {}),
            "errors": [str(e) for e in s.get("errors") or []], "worst": table_json(worst, table_path.name),
            "rankings": [c for c, _end in RANKINGS], "quicklook": None, "map": None}
        ql = folder / "quicklook" / f"{name}.png"
        if ql.is_file():
            entry["quicklook"] = "data:image/png;base64," + base64.b64encode(ql.read_bytes()).decode()
        cog = folder / "maps" / f"{name}.tif"
        if cog.is_file():
            rel = Path(os.path.relpath(os.path.abspath(cog), report_dir)).as_posix()
            try:
                entry["map"] = {"file": rel, **_map_info(cog)}
            except Exception as exc:  # noqa: BLE001 - the map is optional on the page: say why it is not described
                entry["map"] = {"file": rel, "error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
        out.append(entry)
    return {"folder": os.fspath(folder), "settings": _plain(summary.get("settings", {})), "scenes": out,
            "table": table_path.name, "n_tiles": int(len(tiles))}


__all__ = ["is_scene", "scene_section"]
