"""Whole-scene evaluation of SR products without HR: streaming tiles of LR/SR rasters (rasterio windows),
per-tile no-HR metrics and artifact detectors, shards and their exact merge, COG maps and quick-looks.

Modules: :mod:`.grid` (grid check, tiles, shards as plain values), :mod:`.read` (windowed reading, masks,
bands, S2 options), :mod:`.stream` (the reader thread: windows decoded and first-passed ahead of the
detectors), :mod:`.kernels` (float32 resampling and step operators), :mod:`.detectors` (per-tile metrics),
:mod:`.evaluate` (the loop, journal, resume), :mod:`.merge` (exact merge, summary), :mod:`.maps` (COG maps,
quick-look).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .evaluate import SceneSettings, barrier, dist_shard, plan_scenes, run_shard


def scene_device(spec: str = "cpu") -> str:
    """``cpu``, ``cuda`` (``cuda:LOCAL_RANK`` under torchrun) or ``auto`` (cuda when available, else cpu)."""
    import torch

    from ..errors import ConfigError

    spec = (spec or "cpu").lower()
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda: CUDA is not available on this machine (use --device cpu or auto)")
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    if spec != "cpu":
        raise ConfigError(f"--device {spec}: expected cpu, cuda or auto")
    return spec


def find_pairs(lr: str | os.PathLike, sr: str | os.PathLike) -> list[tuple[str, str]]:
    """LR/SR files, or two folders paired by relative path without extension (``.tif``/``.tiff``)."""
    from ..errors import PairingError

    lr, sr = Path(lr), Path(sr)
    if lr.is_file() and sr.is_file():
        return [(str(lr), str(sr))]
    if not (lr.is_dir() and sr.is_dir()):
        raise PairingError(f"{lr} and {sr}: give two raster files or two folders")

    def index(root: Path) -> dict[str, Path]:
        return {str(p.relative_to(root).with_suffix("")): p for p in sorted(root.rglob("*"))
                if p.suffix.lower() in (".tif", ".tiff") and p.is_file()}

    a, b = index(lr), index(sr)
    keys = sorted(set(a) & set(b))
    if not keys:
        raise PairingError(f"{lr} and {sr}: no GeoTIFFs with the same relative name in both folders")
    return [(str(a[k]), str(b[k])) for k in keys]


def read_pair_list(path: str | os.PathLike) -> list[tuple[str, str]]:
    """A CSV with columns ``lr,sr`` (paths relative to the CSV's folder allowed)."""
    import pandas as pd

    from ..errors import PairingError

    df = pd.read_csv(path, dtype=str)
    if not {"lr", "sr"} <= set(df.columns):
        raise PairingError(f"{path}: expected columns lr,sr")
    base = Path(path).parent
    return [(str(base / lr), str(base / sr)) for lr, sr in zip(df["lr"], df["sr"])]


def evaluate_scenes(pairs: Sequence[tuple[str, str]], out_dir: str | os.PathLike, settings: SceneSettings | None = None,
                    *, shard: tuple[int, int] | None = None, resume: bool = False, progress: bool = True,
                    device: str = "cpu") -> dict[str, Any]:
    """Evaluate LR/SR scene pairs into ``out_dir``. Without ``shard`` (and outside torchrun) the run is one shard
    and is merged at once; under torchrun the ranks are the shards and rank 0 merges. ``device``: ``cpu``
    (default), ``cuda`` (each torchrun rank its ``LOCAL_RANK`` GPU) or ``auto``; shards merged together must use
    the same kind. Returns ``{"errors": n, "merged": bool, "summary": dict | None}``."""
    from ..errors import ConfigError
    from ..results import OutputLock, check_writable_dir
    from .evaluate import shard_paths
    from .merge import merge_shards

    settings = settings or SceneSettings()
    rank, world = dist_shard()
    if world > 1 and shard is not None:
        raise ConfigError("--shard and torchrun both split the tiles: use one of them")
    i, n = shard if shard is not None else (rank, world)
    device = scene_device(device)
    check_writable_dir(out_dir, "-o")
    plans = plan_scenes(pairs, settings)
    with OutputLock(shard_paths(out_dir, i, n)[0], "-o"):
        errors = run_shard(plans, settings, out_dir, shard=i, nshards=n, resume=resume,
                           progress=progress and rank == 0, device=device)
    merged, summary = False, None
    if shard is None:
        barrier()
        if rank == 0:
            with OutputLock(Path(out_dir) / "tiles.parquet", "-o"):
                df, summary = merge_shards(out_dir)
            errors = int((df["error"] != "").sum())
            merged = True
        barrier()
    return {"errors": errors, "merged": merged, "summary": summary, "shard": (i, n)}


__all__ = ["SceneSettings", "evaluate_scenes", "find_pairs", "read_pair_list", "scene_device"]
