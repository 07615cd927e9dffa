"""Metric maps (Cloud-Optimized GeoTIFF on the LR grid, one float32 band per metric, NaN = no value) and the
quick-look PNG (the LR scene with one display stretch, flagged or worst tiles outlined).

Maps are written tile by tile into a temporary tiled GeoTIFF and copied with GDAL's COG driver, so memory
stays bounded by a tile; every pixel of a tile carries the tile's value, in the LR's CRS and transform (pixel
coordinates for rasters without georeferencing). Both files appear atomically (temporary name + rename).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: longest side of a quick-look (pixels)
QUICKLOOK_SIZE = 1024


def write_metric_cog(part: pd.DataFrame, scene: dict[str, Any], columns: Sequence[str], path: Path) -> None:
    import rasterio
    from rasterio.shutil import copy as rio_copy
    from rasterio.transform import Affine
    from rasterio.windows import Window

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.tif")
    tmp_cog = path.with_name(f".{path.stem}.{os.getpid()}.cog.tmp.tif")
    profile = {"driver": "GTiff", "width": scene["lr_w"], "height": scene["lr_h"], "count": len(columns),
               "dtype": "float32", "nodata": float("nan"), "tiled": True, "blockxsize": 256, "blockysize": 256,
               "compress": "deflate"}
    if scene["georeferenced"]:
        profile.update(crs=scene["crs"], transform=Affine(*scene["transform"]))
    from .read import gdal_env

    try:
        with gdal_env(), warnings.catch_warnings():  # GDAL's block cache bounded here too (default: 5% of RAM)
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with rasterio.open(tmp, "w", **profile) as dst:
                for i, c in enumerate(columns, start=1):
                    dst.set_band_description(i, c)
                values = np.stack([pd.to_numeric(part[c], errors="coerce").to_numpy(dtype=np.float32)
                                   for c in columns], axis=1) if len(part) else np.zeros((0, len(columns)))
                for r, v in zip(part.itertuples(), values):
                    block = np.broadcast_to(v[:, None, None], (len(columns), int(r.height), int(r.width)))
                    dst.write(np.ascontiguousarray(block), window=Window(int(r.col_off), int(r.row_off),
                                                                         int(r.width), int(r.height)))
            rio_copy(str(tmp), str(tmp_cog), driver="COG", compress="DEFLATE")
        os.replace(tmp_cog, path)
    finally:
        for p in (tmp, tmp_cog):
            if p.exists():
                p.unlink()


def quicklook(scene: dict[str, Any], settings: dict[str, Any], outline: Sequence[tuple[int, int, int, int, bool]],
              path: Path) -> None:
    """The LR scene reduced to at most :data:`QUICKLOOK_SIZE` px, tiles in ``outline`` (row, col, h, w,
    flagged) drawn in red (flagged) or yellow (worst by lr-l1, when nothing is flagged)."""
    import rasterio
    from PIL import Image, ImageDraw
    from rasterio.enums import Resampling

    from ..display import stretch_limits, to_display
    from .read import gdal_env

    h, w = scene["lr_h"], scene["lr_w"]
    f = min(1.0, QUICKLOOK_SIZE / max(h, w))
    oh, ow = max(1, round(h * f)), max(1, round(w * f))
    idx = scene["indexes"][:3] if len(scene["indexes"]) >= 3 else scene["indexes"][:1]
    with gdal_env(), warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(scene["lr"]) as ds:
            raw = ds.read(idx, out_shape=(len(idx), oh, ow), resampling=Resampling.average, masked=True)
            dtype = ds.dtypes[0]
    data = (raw.astype(np.float64).filled(np.nan) - float(settings.get("offset") or 0)) / scene["data_range"]
    lo, hi = stretch_limits(data, dtype=dtype, stretch="auto")
    img = Image.fromarray(to_display(data, lo, hi).squeeze(-1) if data.shape[0] == 1 else to_display(data, lo, hi))
    img = img.convert("RGB")
    draw = ImageDraw.Draw(img)
    sy, sx = oh / h, ow / w
    for r, c, th, tw, flagged in outline:
        draw.rectangle([c * sx, r * sy, (c + tw) * sx - 1, (r + th) * sy - 1],
                       outline=(255, 0, 0) if flagged else (255, 215, 0), width=2 if max(oh, ow) > 200 else 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    img.save(tmp)
    os.replace(tmp, path)


__all__ = ["QUICKLOOK_SIZE", "quicklook", "write_metric_cog"]
