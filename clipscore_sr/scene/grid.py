"""Grids, tiles and shards as plain values (no I/O): the LR/SR grid check, the tiling of the LR grid and the
deterministic assignment of tiles to shards.

Conventions
-----------
* A :class:`Grid` is a raster's size, CRS (WKT or ``None``) and affine transform ``(a, b, c, d, e, f)`` (GDAL
  order as in rasterio's ``Affine``: ``x = a*col + b*row + c``, ``y = d*col + e*row + f``).
* The SR grid refines the LR grid by the integer scale ``s`` when both have the same CRS, ``W_sr = s*W_lr``,
  ``H_sr = s*H_lr``, the same origin and pixel vectors ``s`` times shorter (to 1e-6 of an SR pixel).
* Tiles cover the LR grid row-major with ``tile x tile`` LR pixels (the last row/column may be smaller); tile
  ``i`` of the global list (scenes in the order given, tiles row-major within a scene) belongs to shard
  ``i mod N``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ..errors import ConfigError, InputMismatchError

#: tolerance of the transform check, as a fraction of an SR pixel
ALIGN_TOL = 1e-6


@dataclass(frozen=True)
class Grid:
    width: int
    height: int
    crs: str | None
    transform: tuple[float, float, float, float, float, float]
    georeferenced: bool = True

    def describe(self) -> str:
        a, b, c, d, e, f = self.transform
        crs = _short_crs(self.crs) if self.georeferenced else "no georeferencing"
        return f"{self.width}x{self.height} px, {crs}, origin ({c:.6g}, {f:.6g}), pixel ({a:.6g}, {e:.6g})"

    def xy(self, row: float, col: float) -> tuple[float, float]:
        """Map coordinates of the pixel corner (row, col)."""
        a, b, c, d, e, f = self.transform
        return a * col + b * row + c, d * col + e * row + f


def _short_crs(crs: str | None) -> str:
    if not crs:
        return "no CRS"
    m = re.search(r'AUTHORITY\["EPSG","(\d+)"\]\]\s*$', crs) or re.match(r"EPSG:(\d+)$", crs)
    return f"EPSG:{m.group(1)}" if m else crs[:40]


def check_refinement(lr: Grid, sr: Grid, lr_name: str = "LR", sr_name: str = "SR") -> int:
    """The integer scale by which ``sr`` refines ``lr``; one-line :class:`InputMismatchError` naming both grids
    otherwise. Rasters without georeferencing are compared by size only (the caller warns)."""
    def fail(why: str) -> InputMismatchError:
        return InputMismatchError(f"{sr_name} ({sr.describe()}) is not the grid of {lr_name} ({lr.describe()}) "
                                  f"refined by an integer scale: {why}")

    if lr.width < 1 or lr.height < 1 or sr.width % lr.width or sr.height % lr.height \
            or sr.width // lr.width != sr.height // lr.height:
        raise fail("the sizes are not the same integer multiple in both axes")
    scale = sr.width // lr.width
    if not (lr.georeferenced and sr.georeferenced):
        return scale
    if (lr.crs or "") != (sr.crs or ""):
        raise fail("the CRS differ")
    la, lb, lc, ld, le, lf = lr.transform
    sa, sb, sc, sd, se, sf = sr.transform
    px = math.hypot(sa, sd) or 1.0
    for name, want, got in (("pixel width", la / scale, sa), ("pixel height", le / scale, se),
                            ("rotation", lb / scale, sb), ("rotation", ld / scale, sd)):
        if abs(want - got) > ALIGN_TOL * px:
            raise fail(f"the {name} is {got:.9g}, expected {want:.9g}")
    if abs(lc - sc) > ALIGN_TOL * px * 10 or abs(lf - sf) > ALIGN_TOL * px * 10:
        raise fail(f"the origins differ by ({sc - lc:.6g}, {sf - lf:.6g}) map units")
    return scale


@dataclass(frozen=True)
class Tile:
    """One tile of one scene, in LR pixels: ``index`` within the scene, ``gindex`` in the whole run."""
    scene: str
    index: int
    gindex: int
    row_off: int
    col_off: int
    height: int
    width: int

    @property
    def key(self) -> str:
        return f"{self.scene}/{self.index:07d}"


def tile_windows(height: int, width: int, tile: int) -> Iterator[tuple[int, int, int, int]]:
    """``(row_off, col_off, height, width)`` covering an ``height x width`` grid row-major."""
    if tile < 1:
        raise ConfigError(f"--tile {tile}: expected a positive number of LR pixels")
    for r in range(0, height, tile):
        for c in range(0, width, tile):
            yield r, c, min(tile, height - r), min(tile, width - c)


def plan_tiles(scenes: Sequence[tuple[str, int, int]], tile: int) -> list[Tile]:
    """Every tile of every scene ``(name, lr_height, lr_width)``, in the run's global order."""
    out: list[Tile] = []
    for name, h, w in scenes:
        for i, (r, c, th, tw) in enumerate(tile_windows(h, w, tile)):
            out.append(Tile(name, i, len(out), r, c, th, tw))
    return out


def parse_shard(text: str | None) -> tuple[int, int]:
    """``'I/N'`` (0-based I) -> ``(I, N)``; ``None`` -> ``(0, 1)``."""
    if text is None:
        return 0, 1
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m or int(m.group(2)) < 1 or int(m.group(1)) >= int(m.group(2)):
        raise ConfigError(f"--shard {text}: expected I/N with 0 <= I < N, e.g. 0/4")
    return int(m.group(1)), int(m.group(2))


def shard_tiles(tiles: Sequence[Tile], shard: int, nshards: int) -> list[Tile]:
    """The tiles of shard ``shard`` of ``nshards`` (global index mod N)."""
    return [t for t in tiles if t.gindex % nshards == shard]


def window_with_halo(t: Tile, halo: int, lr_h: int, lr_w: int) -> tuple[int, int, int, int, int, int]:
    """The tile grown by ``halo`` LR pixels, clipped to the scene: ``(row, col, h, w, top, left)`` where
    ``top``/``left`` are the halo actually present above/left of the tile."""
    r0, c0 = max(0, t.row_off - halo), max(0, t.col_off - halo)
    r1, c1 = min(lr_h, t.row_off + t.height + halo), min(lr_w, t.col_off + t.width + halo)
    return r0, c0, r1 - r0, c1 - c0, t.row_off - r0, t.col_off - c0


__all__ = ["ALIGN_TOL", "Grid", "Tile", "check_refinement", "parse_shard", "plan_tiles", "shard_tiles",
           "tile_windows", "window_with_halo"]
