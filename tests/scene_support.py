"""Helpers for the scene tests: SR GeoTIFFs made from the real Landsat sample on the refined grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def read_landsat(shared: Path, name: str = "rmnp-rgb.tif"):
    import rasterio

    with rasterio.open(shared / "samples" / "landsat" / name) as src:
        return src.read(), src.profile


def write_sr(path: Path, arr: np.ndarray, profile: dict, scale: int, **over) -> Path:
    """``arr`` ``[C,H,W]`` as a tiled deflate GeoTIFF on the LR grid of ``profile`` refined by ``scale``."""
    import rasterio
    from rasterio.transform import Affine

    prof = dict(driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0], dtype=str(arr.dtype),
                crs=profile["crs"], transform=profile["transform"] @ Affine.scale(1 / scale), tiled=True,
                blockxsize=128, blockysize=128, compress="deflate",
                nodata=float("nan") if arr.dtype.kind == "f" else profile.get("nodata"))
    prof.update(over)
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(arr)
    return path


def bicubic_sr(lr: np.ndarray, scale: int, nodata: float | None = 255) -> np.ndarray:
    """float32 bicubic upsampling in stored units (PyTorch bicubic, clamped), NaN where the LR is no-data."""
    from clipscore_sr.metrics.correctness import upsample_lr

    x = torch.from_numpy(lr.astype(np.float64) / 255.0)[None]
    up = upsample_lr(x, (lr.shape[1] * scale, lr.shape[2] * scale), mode="bicubic")[0].numpy() * 255.0
    up = up.astype(np.float32)
    if nodata is not None:
        bad = np.repeat(np.repeat((lr == nodata).any(axis=0), scale, 0), scale, 1)
        up[:, bad] = np.nan
    return up


def nearest_sr(lr: np.ndarray, scale: int) -> np.ndarray:
    return np.repeat(np.repeat(lr, scale, axis=1), scale, axis=2)


def full_tiles(lr: np.ndarray, tile: int, nodata: float = 255) -> list[tuple[int, int]]:
    """(tile row, tile col) of tiles whose LR has no no-data pixel, in a halo of 2 px too."""
    bad = (lr == nodata).any(axis=0)
    out = []
    for r in range(0, lr.shape[1] // tile):
        for c in range(0, lr.shape[2] // tile):
            win = bad[max(0, r * tile - 2):(r + 1) * tile + 2, max(0, c * tile - 2):(c + 1) * tile + 2]
            if not win.any():
                out.append((r, c))
    return out
