"""The scene loop: plan (grids checked before any work), tiles of this shard read window by window, per-tile
rows journaled (resume per tile), then the merge into the final outputs.

Layout of ``OUT`` (``-o``)::

    shards/tiles.I-of-N.parquet (+ .journal.jsonl while running) and shards/meta.I-of-N.json   one per shard
    tiles.parquet, tiles.csv       every tile of every scene (written by the merge)
    summary.json                   per scene: exact aggregates (sums and counts), flags, worst tiles
    maps/<scene>.tif               Cloud-Optimized GeoTIFF on the LR grid, one band per metric
    quicklook/<scene>.png          the LR scene (display stretch) with flagged/worst tiles outlined

A run without ``--shard`` is shard 0/1 and merges at the end; under ``torchrun`` rank r is shard r/WORLD_SIZE
and rank 0 merges once every rank has finished.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ImageReadError, SRMetricsError
from . import grid as G
from .detectors import (
    DetectorOptions,
    Reduced,
    TileInput,
    finish_tile,
    metric_columns,
    reduce_tile,
    sum_columns,
)
from .read import MaskRaster, NotGeoreferencedWarning, SceneRaster, default_saturation

#: finished rows are journaled (one fsync) at least this often (seconds) or every JOURNAL_TILES tiles: what a
#: kill can lose
JOURNAL_SECONDS = 1.0
JOURNAL_TILES = 32
TILE_COLUMNS = ["key", "scene", "tile", "row_off", "col_off", "height", "width", "x_min", "y_min", "x_max", "y_max",
                "valid_frac"]


@dataclass
class SceneSettings:
    """Everything that defines the rows (recorded in the shard metas; ``--resume`` and the merge compare it)."""
    tile: int = 256
    bands: list[str | int] | None = None
    data_range: float | None = None
    offset: float = 0.0
    saturation: float | str | None = "auto"
    mask: str | None = None
    red: str | int | None = None
    nir: str | int | None = None
    seam_period: int | None = None
    min_valid: float = 0.5
    construction_tol: float = 1e-5
    thresholds: dict[str, float] = field(default_factory=lambda: {"seam": 2.5, "cast": 0.03, "shift": 0.5})


@dataclass
class ScenePlan:
    name: str
    lr: str
    sr: str
    scale: int
    lr_h: int
    lr_w: int
    georeferenced: bool
    transform: list[float]
    crs: str | None
    indexes: list[int]
    labels: list[str]
    red: int | None
    nir: int | None
    data_range: float
    saturation: float | None
    sr_integer: bool
    n_tiles: int = 0
    identity: list[Any] = field(default_factory=list)


def scene_name(sr: str | os.PathLike, used: set[str]) -> str:
    name = Path(sr).stem
    base, i = name, 1
    while name in used:
        i += 1
        name = f"{base}-{i}"
    used.add(name)
    return name


def _channel(lr: SceneRaster, indexes: list[int], spec: str | int | None, what: str) -> int | None:
    """The 0-based channel (among the compared bands) of a band given by number or name."""
    if spec is None:
        return None
    band = lr.band_indexes([spec])[0]
    if band not in indexes:
        raise ConfigError(f"{what} {spec}: band {band} is not among the bands compared ({indexes})")
    return indexes.index(band)


def plan_scenes(pairs: Sequence[tuple[str, str]], settings: SceneSettings) -> list[ScenePlan]:
    """Open every LR/SR pair, check the grids, bands and options: every input error before any work."""
    from .. import io

    plans, used = [], set()
    for lr_path, sr_path in pairs:
        lr, sr = SceneRaster(lr_path, "LR"), SceneRaster(sr_path, "SR")
        try:
            scale = G.check_refinement(lr.grid, sr.grid, f"LR {lr_path}", f"SR {sr_path}")
            if not (lr.grid.georeferenced and sr.grid.georeferenced):
                missing = [p for p, r in ((lr_path, lr), (sr_path, sr)) if not r.grid.georeferenced]
                warnings.warn(NotGeoreferencedWarning(
                    f"{', '.join(missing)} not georeferenced: grids compared by size only, tiles and maps in "
                    "pixel coordinates"), stacklevel=2)
            indexes = lr.band_indexes(settings.bands)
            sr_indexes = sr.band_indexes(settings.bands)
            if lr.ds.count != sr.ds.count and settings.bands is None:
                raise ImageReadError(f"LR {lr_path} has {lr.ds.count} bands and SR {sr_path} {sr.ds.count}: "
                                     "choose the bands to compare with --bands")
            if any(isinstance(b, str) for b in settings.bands or []) and sr_indexes != indexes:
                raise ImageReadError(f"--bands {settings.bands}: the named bands are at {indexes} in LR but at "
                                     f"{sr_indexes} in SR")

            red = _channel(lr, indexes, settings.red, "--red-band")
            nir = _channel(lr, indexes, settings.nir, "--nir-band")
            if (red is None) != (nir is None):
                raise ConfigError("--red-band and --nir-band go together (NDVI drift needs both)")
            rng = settings.data_range if settings.data_range is not None else io.default_data_range(lr.dtype, lr_path)
            sat = settings.saturation
            sat = default_saturation(sr.dtype) if sat == "auto" else (None if sat in (None, "none") else float(sat))
            georef = lr.grid.georeferenced and sr.grid.georeferenced
            if settings.mask:
                MaskRaster(settings.mask, lr.grid, sr.grid, scale).raster.close()
            ident = [[str(Path(p).resolve()), os.stat(p).st_size, os.stat(p).st_mtime_ns] for p in (lr_path, sr_path)]
            plans.append(ScenePlan(scene_name(sr_path, used), str(lr_path), str(sr_path), scale, lr.grid.height,
                                   lr.grid.width, georef, list(lr.grid.transform), lr.grid.crs if georef else None,
                                   indexes, [f"b{i}" for i in indexes], red, nir, float(rng), sat,
                                   sr.dtype.kind in "ui", identity=ident))
        finally:
            lr.close()
            sr.close()
    for p in plans:
        p.n_tiles = sum(1 for _ in G.tile_windows(p.lr_h, p.lr_w, settings.tile))
    return plans


def table_columns(plans: Sequence[ScenePlan]) -> tuple[list[str], list[str], list[str]]:
    """(all columns, metric columns, sum columns) of the tile table (union over the scenes' bands)."""
    labels = list(dict.fromkeys(lab for p in plans for lab in p.labels))
    ndvi = any(p.red is not None for p in plans)
    metrics, sums = metric_columns(labels, ndvi), sum_columns(labels, ndvi)
    return [*TILE_COLUMNS, *metrics, "flags", *sums, "error"], metrics, sums


def fingerprint(plans: Sequence[ScenePlan], settings: SceneSettings) -> dict[str, Any]:
    return {"settings": asdict(settings), "scenes": [asdict(p) for p in plans]}


def tile_flags(row: dict[str, Any], thresholds: dict[str, float]) -> str:
    def gt(key: str, limit: float) -> bool:
        v = row.get(key)
        return v is not None and isinstance(v, (int, float)) and math.isfinite(v) and v > limit

    flags = [name for name, hit in (
        ("seam", gt("seam-step", thresholds["seam"])), ("nodata", gt("nodata-new-px", 0)),
        ("cast", gt("cast", thresholds["cast"])), ("by-construction", gt("by-construction", 0.5)),
        ("shift", gt("lr-shift", thresholds["shift"]))) if hit]
    return ";".join(flags)


def tile_row(plan: ScenePlan, t: G.Tile) -> dict[str, Any]:
    """The table row of a tile before its metrics: key, bounds in LR pixels and in map coordinates."""
    g = G.Grid(plan.lr_w, plan.lr_h, plan.crs, tuple(plan.transform), plan.georeferenced)
    corners = [g.xy(r, c) if plan.georeferenced else (c, r)
               for r in (t.row_off, t.row_off + t.height) for c in (t.col_off, t.col_off + t.width)]
    xs, ys = [p[0] for p in corners], [p[1] for p in corners]
    return {"key": t.key, "scene": t.scene, "tile": t.index, "row_off": t.row_off, "col_off": t.col_off,
            "height": t.height, "width": t.width, "x_min": min(xs), "y_min": min(ys), "x_max": max(xs),
            "y_max": max(ys), "error": ""}


def detector_options(plan: ScenePlan, settings: SceneSettings) -> DetectorOptions:
    return DetectorOptions(scale=plan.scale, band_labels=plan.labels, red=plan.red, nir=plan.nir,
                           seam_period=settings.seam_period, min_valid=settings.min_valid,
                           construction_tol=settings.construction_tol)


def evaluate_one(plan: ScenePlan, t: G.Tile, r: Reduced, settings: SceneSettings) -> dict[str, Any]:
    """The table row of one tile after its first pass (:func:`~.detectors.reduce_tile`). Tiles are evaluated
    one at a time on one thread each: a tile's values then do not depend on which other tiles a process
    evaluates (shards, torchrun ranks and one process give the same bits; batching tiles measured no faster on
    the CPU, and BLAS results may change with a batch's size)."""
    row = tile_row(plan, t)
    row.update(finish_tile(r, detector_options(plan, settings), sr_integer=plan.sr_integer,
                           data_range=plan.data_range))
    row["flags"] = tile_flags(row, settings.thresholds)
    return row


def shard_paths(out_dir: str | os.PathLike, shard: int, nshards: int) -> tuple[Path, Path]:
    base = Path(out_dir) / "shards"
    return base / f"tiles.{shard}-of-{nshards}.parquet", base / f"meta.{shard}-of-{nshards}.json"


def write_json(path: Path, obj: Any) -> None:
    """Atomic JSON write (temporary file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        json.dump(obj, fh, indent=1, default=str, allow_nan=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def run_shard(plans: Sequence[ScenePlan], settings: SceneSettings, out_dir: str | os.PathLike, *, shard: int = 0,
              nshards: int = 1, resume: bool = False, progress: bool = True, device: Any = "cpu") -> int:
    """Evaluate this shard's tiles into ``shards/tiles.I-of-N.parquet``; returns the number of tile errors."""
    import pandas as pd
    from tqdm import tqdm

    from ..results import ResultWriter, load_previous, read_journal_header
    from .stream import TileReader

    out, meta_path = shard_paths(out_dir, shard, nshards)
    columns, _, _ = table_columns(plans)
    fp = fingerprint(plans, settings)
    fp_json = json.loads(json.dumps(fp, default=str))
    journal = out.with_name(out.name + ".journal.jsonl")
    previous = None
    if resume:
        stored = []
        if meta_path.exists():
            stored.append(json.loads(meta_path.read_text()).get("fingerprint"))
        header = read_journal_header(journal)
        if header is not None:
            stored.append(header)
        if any(s != fp_json for s in stored if s is not None):
            raise ConfigError(f"{out_dir}: --resume needs the same inputs and settings as the run that made it "
                              "(inputs or options changed); use another -o or drop --resume")
        previous = load_previous(out, columns)
        previous = previous[previous["error"].fillna("") == ""]
    else:
        for p in (out, journal):
            if p.exists():
                p.unlink()
    write_json(meta_path, {"shard": shard, "nshards": nshards, "fingerprint": fp_json, "columns": columns})
    done = set(previous["key"]) if previous is not None else set()
    tiles = G.plan_tiles([(p.name, p.lr_h, p.lr_w) for p in plans], settings.tile)
    mine = [t for t in G.shard_tiles(tiles, shard, nshards) if t.key not in done]
    writer = ResultWriter(out, columns, previous=previous, header=fp_json, snapshot_every=30.0)
    by_name = {p.name: p for p in plans}
    errors = 0
    bar = tqdm(total=len(mine), desc="tiles", unit="tile", disable=not progress, dynamic_ncols=True)
    rows: list[dict[str, Any]] = []
    last = time.monotonic()
    try:
        def prepare(plan: ScenePlan, x: TileInput) -> Reduced:  # in the reader thread
            return reduce_tile(x, detector_options(plan, settings), device)

        with compute_threads(), TileReader(plans, mine, settings.mask, settings.offset, prepare) as reader:
            for t, item in reader:
                if isinstance(item, SRMetricsError):
                    errors += 1
                    rows.append({**tile_row(by_name[t.scene], t), "error": str(item)})
                else:
                    rows.append(evaluate_one(by_name[t.scene], t, item, settings))
                bar.update(1)
                if len(rows) >= JOURNAL_TILES or time.monotonic() - last >= JOURNAL_SECONDS:
                    writer.add(rows)
                    rows, last = [], time.monotonic()
            writer.add(rows)
    except BaseException:
        writer.add(rows)  # every finished tile goes to the journal for --resume
        writer.close(final=False)
        raise
    finally:
        bar.close()
    df = writer.close()
    errors = int((df["error"].fillna("") != "").sum()) if isinstance(df, pd.DataFrame) else errors
    return errors


@contextlib.contextmanager
def compute_threads() -> Iterator[None]:
    """One torch thread for the detectors while the reader thread decodes: results then do not depend on the
    machine's core count (a multi-threaded reduction sums in another order), and on 2 cores two OpenMP threads
    beside the reader wait on each other (2-5x slower, measured). More cores: more shards (--shard, torchrun)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def dist_shard() -> tuple[int, int]:
    """(rank, world size) under torchrun (the process group is initialised), else (0, 1)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    from ..pipeline import _dist_info

    rank, world, _ = _dist_info()
    return rank, world


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


__all__ = ["ScenePlan", "SceneSettings", "barrier", "compute_threads", "detector_options", "dist_shard",
           "evaluate_one", "plan_scenes", "run_shard", "shard_paths", "table_columns", "tile_flags", "write_json"]
