"""Metric maps (Cloud-Optimized GeoTIFF on the LR grid, one float32 band per metric, NaN = no value) and the
quick-look PNG (the LR scene as block means of valid pixels, one display stretch, flagged or worst tiles
outlined).

A map's pixels carry their tile's value. The values are written once per tile into a small raster (one pixel
per tile); a VRT spreads it onto the LR grid (nearest, ``tile`` LR pixels per value), with the overviews
declared in the VRT (computed from the small raster, not from the full grid), and GDAL's COG driver copies it
(ZSTD level 1, 256-px blocks: about 3x faster than DEFLATE on these constant blocks). Memory stays bounded and
no full-size intermediate is written: the full-size scene's 30 maps take ~1.5 s, against ~5 s through a
temporary full-size GeoTIFF. Maps are in the LR's CRS and transform (pixel coordinates for rasters without georeferencing) and
appear atomically (temporary name + rename).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
import pandas as pd

#: longest side of a quick-look (pixels)
QUICKLOOK_SIZE = 1024
#: COG creation options of the maps
COG_OPTIONS = {"compress": "ZSTD", "level": 1, "blocksize": 256, "overview_resampling": "NEAREST"}


def tile_grid(part: pd.DataFrame, columns: Sequence[str], tile: int, lr_h: int, lr_w: int) -> np.ndarray:
    """``[len(columns), ceil(lr_h/tile), ceil(lr_w/tile)]`` float32: each tile's values at its place (NaN where
    a tile has none)."""
    grid = np.full((len(columns), -(-lr_h // tile), -(-lr_w // tile)), np.nan, np.float32)
    if len(part):
        r = part["row_off"].to_numpy(dtype=np.int64) // tile
        c = part["col_off"].to_numpy(dtype=np.int64) // tile
        for i, col in enumerate(columns):
            grid[i, r, c] = pd.to_numeric(part[col], errors="coerce").to_numpy(dtype=np.float32)
    return grid


def _vrt(small: Path, grid: np.ndarray, columns: Sequence[str], tile: int, scene: dict[str, Any]) -> str:
    _, ny, nx = grid.shape
    head = ""
    if scene["georeferenced"]:
        a, b, c, d, e, f = scene["transform"]
        head = f"<SRS>{escape(scene['crs'])}</SRS><GeoTransform>{c!r}, {a!r}, {b!r}, {f!r}, {d!r}, {e!r}</GeoTransform>"
    bands = "".join(
        f'<VRTRasterBand dataType="Float32" band="{i}"><Description>{escape(col)}</Description>'
        f"<NoDataValue>nan</NoDataValue><SimpleSource resampling=\"nearest\">"
        f'<SourceFilename relativeToVRT="0">{escape(str(small))}</SourceFilename><SourceBand>{i}</SourceBand>'
        f'<SrcRect xOff="0" yOff="0" xSize="{nx}" ySize="{ny}"/>'
        f'<DstRect xOff="0" yOff="0" xSize="{nx * tile}" ySize="{ny * tile}"/></SimpleSource></VRTRasterBand>'
        for i, col in enumerate(columns, start=1))
    levels, f = [], 2  # the COG driver's own rule: halve until the overview fits one block
    while -(-max(scene["lr_w"], scene["lr_h"]) // (f // 2)) > COG_OPTIONS["blocksize"]:
        levels.append(str(f))
        f *= 2
    overviews = f'<OverviewList resampling="nearest">{" ".join(levels)}</OverviewList>' if levels else ""
    return (f'<VRTDataset rasterXSize="{scene["lr_w"]}" rasterYSize="{scene["lr_h"]}">{head}{bands}{overviews}'
            "</VRTDataset>")


def write_metric_cog(part: pd.DataFrame, scene: dict[str, Any], columns: Sequence[str], path: Path, tile: int
                     ) -> None:
    """The COG of one scene's tile values ``part`` (one band per metric in ``columns``) at ``path``."""
    import rasterio
    from rasterio.shutil import copy as rio_copy

    from .read import gdal_env

    path.parent.mkdir(parents=True, exist_ok=True)
    stem = f".{path.stem}.{os.getpid()}"
    small, vrt, tmp_cog = (path.with_name(f"{stem}.{x}") for x in ("tiles.tif", "vrt", "cog.tmp.tif"))
    grid = tile_grid(part, columns, tile, scene["lr_h"], scene["lr_w"])
    try:
        with gdal_env(), warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with rasterio.open(small, "w", driver="GTiff", width=grid.shape[2], height=grid.shape[1],
                               count=len(columns), dtype="float32", nodata=float("nan")) as dst:
                dst.write(grid)
            vrt.write_text(_vrt(small, grid, columns, tile, scene))
            rio_copy(str(vrt), str(tmp_cog), driver="COG", **COG_OPTIONS)
        os.replace(tmp_cog, path)
    finally:
        for p in (small, vrt, tmp_cog):
            if p.exists():
                p.unlink()


def decimated_lr(scene: dict[str, Any], offset: float, bands: Sequence[int], k: int) -> np.ndarray:
    """The scene's LR bands as means of ``k x k`` blocks of valid pixels (NaN where none), ``[C, ceil(h/k),
    ceil(w/k)]`` float32, read in strips of rows (a few MB at a time)."""
    from .read import SceneRaster, gdal_env

    h, w, c = scene["lr_h"], scene["lr_w"], len(bands)
    oh, ow = -(-h // k), -(-w // k)
    out = np.full((c, oh, ow), np.nan, np.float32)
    step = k * max(1, (1 << 20) // (k * w * c))
    with gdal_env(), warnings.catch_warnings():
        import rasterio

        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        lr = SceneRaster(scene["lr"], "LR")
        try:
            for r0 in range(0, h, step):
                hh = min(step, h - r0)
                data, valid = lr.read(r0, 0, hh, w, bands, data_range=scene["data_range"], offset=offset)
                ph = -(-hh // k) * k
                buf = np.zeros((c, ph, ow * k), np.float32)
                cnt = np.zeros((ph, ow * k), np.float32)
                buf[:, :hh, :w] = data if valid is None else np.where(valid, data, 0)
                cnt[:hh, :w] = 1 if valid is None else valid
                sums = buf.reshape(c, ph // k, k, ow, k).sum(axis=(2, 4))
                n = cnt.reshape(ph // k, k, ow, k).sum(axis=(1, 3))
                with np.errstate(invalid="ignore", divide="ignore"):
                    out[:, r0 // k:r0 // k + ph // k] = np.where(n > 0, sums / n, np.nan)
        finally:
            lr.close()
    return out


def quicklook(scene: dict[str, Any], settings: dict[str, Any], outline: Sequence[tuple[int, int, int, int, bool]],
              path: Path) -> None:
    """The LR scene as means of ``k x k`` blocks (the smallest ``k`` giving at most :data:`QUICKLOOK_SIZE` px),
    tiles in ``outline`` (row, col, h, w, flagged) drawn in red (flagged) or yellow (worst by lr-l1, when
    nothing is flagged)."""
    from PIL import Image, ImageDraw

    from ..display import stretch_limits, to_display
    from .read import SceneRaster

    h, w = scene["lr_h"], scene["lr_w"]
    k = max(1, -(-max(h, w) // QUICKLOOK_SIZE))
    idx = scene["indexes"][:3] if len(scene["indexes"]) >= 3 else scene["indexes"][:1]
    data = decimated_lr(scene, float(settings.get("offset") or 0), idx, k)
    lr = SceneRaster(scene["lr"], "LR")
    dtype = str(lr.dtype)
    lr.close()
    lo, hi = stretch_limits(data, dtype=dtype, stretch="auto")
    img = Image.fromarray(to_display(data, lo, hi).squeeze(-1) if data.shape[0] == 1 else to_display(data, lo, hi))
    img = img.convert("RGB")
    draw = ImageDraw.Draw(img)
    big = max(data.shape[1:]) > 200
    for r, c, th, tw, flagged in outline:
        draw.rectangle([c / k, r / k, (c + tw) / k - 1, (r + th) / k - 1],
                       outline=(255, 0, 0) if flagged else (255, 215, 0), width=2 if big else 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    img.save(tmp, compress_level=1)
    os.replace(tmp, path)


__all__ = ["COG_OPTIONS", "QUICKLOOK_SIZE", "decimated_lr", "quicklook", "tile_grid", "write_metric_cog"]
