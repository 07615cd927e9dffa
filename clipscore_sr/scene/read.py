"""Windowed reading of LR/SR scenes with rasterio: grids, band selection (numbers or names), scaling (data range
and offset, with the Sentinel-2 conventions as explicit options) and validity masks.

Scaling: a stored value ``v`` becomes ``(v - offset) / data_range`` (float32, as ``score`` reads files). The data
range defaults to the LR's type (255 for uint8, 65535 for uint16, 1.0 for float) and applies to both rasters:
SR and LR must be in the same units. Sentinel-2 L1C/L2A store reflectance x10000 (``--data-range 10000``); from
processing baseline 04.00 on, stored values carry a +1000 offset (``--offset 1000``). ``--s2-baseline X.YY`` sets
both (offset 1000 from 04.00, else 0); nothing is guessed from the data.

Validity: a pixel is invalid when any selected band is masked by the raster (its nodata value, internal mask
or alpha, as GDAL's ``read_masks`` reports), is NaN/inf, or is excluded by ``--mask`` (a raster on the LR or
the SR grid, 0 = excluded). SR pixels at or above ``saturation`` (stored value; default: the integer type's
maximum, none for float) are invalid too.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError, ImageReadError, SRMetricsWarning
from .grid import Grid

#: GDAL block cache for scene reading and map writing (MiB): keeps peak memory flat in the scene size. Tiles read
#: no SR halo, so SR blocks are decoded once; the cache serves the LR halos. 32 MiB: as fast as 64 on the
#: full-size benchmark, 1.04x (not 1.13x) the 1/16-size peak RSS.
GDAL_CACHE_MB = 32


class NotGeoreferencedWarning(SRMetricsWarning):
    """A raster has no CRS/transform: tiles are reported in pixel coordinates."""


def _rasterio():
    try:
        import rasterio
    except ImportError as exc:  # pragma: no cover - a dependency
        raise ImageReadError(f"scene evaluation needs rasterio (pip install rasterio): {exc}") from None
    return rasterio


def gdal_env():
    """The rasterio environment scene reading runs in (bounded block cache)."""
    return _rasterio().Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 1024 * 1024)


def s2_offset(baseline: str | None) -> float | None:
    """The stored-value offset of a Sentinel-2 processing baseline ``'04.00'`` (1000 from 04.00 on, else 0)."""
    if baseline is None:
        return None
    try:
        major, _, minor = str(baseline).partition(".")
        value = (int(major), int(minor or 0))
    except ValueError:
        raise ConfigError(f"--s2-baseline {baseline}: expected a processing baseline like 04.00 or 03.01") from None
    return 1000.0 if value >= (4, 0) else 0.0


def parse_band_list(text: str | None) -> list[str | int] | None:
    """``'3,2,1'`` -> ``[3, 2, 1]``; ``'B04,B08'`` -> names; ``None`` -> all bands."""
    if text is None or str(text).strip() == "":
        return None
    out: list[str | int] = []
    for t in str(text).split(","):
        t = t.strip()
        if not t:
            continue
        out.append(int(t) if t.isdigit() else t)
    if any(isinstance(b, int) and b < 1 for b in out):
        raise ConfigError(f"--bands {text}: band numbers are 1-based")
    return out


class SceneRaster:
    """An open raster (LR or SR) read window by window."""

    def __init__(self, path: str | os.PathLike, role: str) -> None:
        rasterio = _rasterio()
        self.path, self.role = str(path), role
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
                self.ds = rasterio.open(self.path)
        except (rasterio.errors.RasterioIOError, OSError) as exc:
            raise ImageReadError(f"{role} {self.path}: cannot open as a raster ({_one_line(exc)})") from None
        ds = self.ds
        georef = ds.crs is not None and not ds.transform.is_identity
        t = ds.transform
        self.grid = Grid(ds.width, ds.height, ds.crs.to_wkt() if ds.crs else None,
                         (t.a, t.b, t.c, t.d, t.e, t.f), georef)
        self.dtype = np.dtype(ds.dtypes[0])
        self.descriptions = [d or "" for d in ds.descriptions]

    def close(self) -> None:
        self.ds.close()

    def band_indexes(self, bands: Sequence[str | int] | None) -> list[int]:
        """1-based band numbers for ``bands`` (numbers, or names matched against the band descriptions)."""
        if bands is None:
            return list(range(1, self.ds.count + 1))
        out = []
        for b in bands:
            if isinstance(b, int):
                if b > self.ds.count:
                    raise ImageReadError(f"{self.role} {self.path}: band {b} asked for but it has {self.ds.count}")
                out.append(b)
                continue
            names = [d.lower() for d in self.descriptions]
            if b.lower() not in names:
                have = ", ".join(d for d in self.descriptions if d) or "none"
                raise ImageReadError(f"{self.role} {self.path}: no band named '{b}' (band names: {have})")
            out.append(names.index(b.lower()) + 1)
        return out

    def _mask_plan(self, indexes: Sequence[int]) -> tuple[bool, list[float | None]]:
        """(read GDAL's masks?, per-band nodata values to compare with) for these bands: bands whose only mask is
        their nodata value (or none) are checked on the data itself, without a second read."""
        from rasterio.enums import MaskFlags

        flags = [set(self.ds.mask_flag_enums[i - 1]) for i in indexes]
        if all(f <= {MaskFlags.all_valid, MaskFlags.nodata} for f in flags):
            return False, [self.ds.nodatavals[i - 1] if MaskFlags.nodata in f else None
                           for i, f in zip(indexes, flags)]
        return True, [None] * len(indexes)

    def read(self, row: int, col: int, height: int, width: int, indexes: Sequence[int], *, data_range: float,
             offset: float = 0.0, saturation: float | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """``(data float32 [C,h,w] scaled, valid bool [h,w] or None when every pixel is valid)`` of one window;
        one-line error if unreadable."""
        rasterio = _rasterio()
        from rasterio.windows import Window

        win = Window(col, row, width, height)
        read_masks, nodata = self._mask_plan(indexes)
        try:
            raw = self.ds.read(list(indexes), window=win)
            masks = self.ds.read_masks(list(indexes), window=win) if read_masks else None
        except (rasterio.errors.RasterioIOError, OSError, ValueError) as exc:
            raise ImageReadError(f"{self.role} {self.path}: window rows {row}-{row + height}, cols {col}-"
                                 f"{col + width} unreadable ({_one_line(exc)})") from None
        invalid = invalid_pixels(raw, nodata, saturation)
        if masks is not None:
            bad = ~(masks > 0).all(axis=0)
            invalid = bad if invalid is None else invalid | bad
        data = raw.astype(np.float32)
        if offset:
            data -= np.float32(offset)
        data /= np.float32(data_range)
        return data, (None if invalid is None or not invalid.any() else ~invalid)


def invalid_pixels(raw: np.ndarray, nodata: Sequence[float | None], saturation: float | None
                   ) -> np.ndarray | None:
    """``[h, w]`` True where any band is non-finite, equals its ``nodata`` value or reaches ``saturation``;
    None when no pixel is (integer data are first checked by their minimum and maximum, a cheap pass)."""
    bad = None

    def add(b: np.ndarray) -> None:
        nonlocal bad
        bad = b if bad is None else bad | b

    if raw.dtype.kind == "f":
        finite = np.isfinite(raw)
        if not finite.all():
            add(~finite.all(axis=0))
        lo, hi = -np.inf, np.inf
    elif raw.size:
        lo, hi = raw.min(), raw.max()
    else:
        return None
    for k, nd in enumerate(nodata):
        if nd is not None and not np.isnan(nd) and lo <= nd <= hi:
            add(raw[k] == nd)
    if saturation is not None and hi >= saturation:
        add((raw >= saturation).any(axis=0))
    return bad


def default_saturation(dtype: np.dtype) -> float | None:
    """The stored value that counts as saturated: the integer type's maximum (none for float types)."""
    dtype = np.dtype(dtype)
    return float(np.iinfo(dtype).max) if dtype.kind in "ui" else None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class MaskRaster:
    """``--mask FILE``: a raster on the LR or the SR grid; 0 = excluded (both rasters), anything else kept."""

    def __init__(self, path: str | os.PathLike, lr: Grid, sr: Grid, scale: int) -> None:
        self.raster = SceneRaster(path, "mask")
        g = self.raster.grid
        if (g.width, g.height) == (lr.width, lr.height):
            self.on_lr = True
        elif (g.width, g.height) == (sr.width, sr.height):
            self.on_lr = False
        else:
            raise ImageReadError(f"mask {path}: {g.width}x{g.height} px is neither the LR grid "
                                 f"({lr.width}x{lr.height}) nor the SR grid ({sr.width}x{sr.height})")
        self.scale = scale

    def keep(self, row: int, col: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """``(keep_lr [h,w], keep_sr [s*h, s*w])`` for an LR window (an LR pixel is kept when all of its SR
        pixels are)."""
        s = self.scale
        if self.on_lr:
            raw = self._read(row, col, height, width)
            return raw, np.repeat(np.repeat(raw, s, axis=0), s, axis=1)
        raw = self._read(row * s, col * s, height * s, width * s)
        return raw.reshape(height, s, width, s).all(axis=(1, 3)), raw

    def _read(self, row: int, col: int, height: int, width: int) -> np.ndarray:
        from rasterio.windows import Window

        try:
            return self.raster.ds.read(1, window=Window(col, row, width, height)) != 0
        except Exception as exc:
            raise ImageReadError(f"mask {self.raster.path}: window unreadable ({_one_line(exc)})") from None


__all__ = ["GDAL_CACHE_MB", "MaskRaster", "NotGeoreferencedWarning", "SceneRaster", "default_saturation",
           "gdal_env", "invalid_pixels", "parse_band_list", "s2_offset"]
