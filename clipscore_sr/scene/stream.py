"""Reading a shard's tiles ahead of the detectors: one background thread decodes windows (GDAL releases the
GIL) and runs the detectors' first pass over them (``prepare``: torch releases the GIL too) while the main
thread finishes the tile before, with at most ``ahead`` tiles waiting in memory.

Each tile is read as the detectors take it (:class:`~.detectors.TileInput`): the LR window with a halo of
:data:`~.detectors.HALO` LR pixels (replicated past the scene's edge), the SR window of the tile only (no halo:
each SR block is decoded once when tiles are aligned with the SR's blocks), validity from the rasters' nodata,
masks and saturation and from ``--mask``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from ..errors import SRMetricsError
from . import grid as G
from .detectors import HALO, TileInput
from .read import MaskRaster, SceneRaster, gdal_env


def read_tile(plan: Any, t: G.Tile, lr: SceneRaster, sr: SceneRaster, mask: MaskRaster | None,
              offset: float) -> TileInput:
    """One tile's LR (haloed) and SR windows; :class:`SRMetricsError` when a window is unreadable."""
    s = plan.scale
    r0, c0, h, w, top, left = G.window_with_halo(t, HALO, plan.lr_h, plan.lr_w)
    lr_data, lr_valid = lr.read(r0, c0, h, w, plan.indexes, data_range=plan.data_range, offset=offset)
    sr_data, sr_valid = sr.read(t.row_off * s, t.col_off * s, t.height * s, t.width * s, plan.indexes,
                                data_range=plan.data_range, offset=offset, saturation=plan.saturation)
    if mask is not None:
        keep_lr, keep_sr = mask.keep(r0, c0, h, w)
        keep_lr &= keep_sr.reshape(h, s, w, s).all(axis=(1, 3))
        lr_valid = keep_lr if lr_valid is None else lr_valid & keep_lr
        # an excluded SR pixel is not a new hole; it is left out through the LR mask
        out = ~keep_sr[s * top:s * (top + t.height), s * left:s * (left + t.width)]
        if sr_valid is not None:
            sr_valid = sr_valid | out
        lr_valid = None if lr_valid.all() else lr_valid
    pad = ((HALO - top, HALO - (h - top - t.height)), (HALO - left, HALO - (w - left - t.width)))
    if any(p for pp in pad for p in pp):
        lr_data = np.pad(lr_data, ((0, 0), *pad), mode="edge")
        lr_valid = None if lr_valid is None else np.pad(lr_valid, pad, mode="edge")
    return TileInput(lr_data, lr_valid, sr_data, sr_valid, t.row_off, t.col_off)


class TileReader:
    """Iterate ``(tile, prepare(plan, TileInput) or SRMetricsError)`` over ``tiles`` in order, read and prepared
    in a background thread. Use as a context manager: leaving it stops the thread."""

    _END = object()

    def __init__(self, plans: Sequence[Any], tiles: Sequence[G.Tile], mask: str | None, offset: float,
                 prepare: Callable[[Any, TileInput], Any] = lambda plan, x: x, ahead: int = 2) -> None:
        self.by_name = {p.name: p for p in plans}
        self.tiles, self.mask, self.offset, self.prepare = list(tiles), mask, offset, prepare
        self.q: queue.Queue = queue.Queue(maxsize=max(1, ahead))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="scene-reader", daemon=True)

    def __enter__(self) -> TileReader:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        while self.thread.is_alive():
            try:
                self.q.get(timeout=0.05)
            except queue.Empty:
                pass
        self.thread.join()

    def _put(self, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                self.q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        opened: dict[str, Any] = {}
        try:
            with gdal_env():
                for t in self.tiles:
                    plan = self.by_name[t.scene]
                    if opened.get("name") != plan.name:
                        _close(opened)
                        rasters = [SceneRaster(plan.lr, "LR"), SceneRaster(plan.sr, "SR")]
                        opened = {"name": plan.name, "rasters": rasters}
                        if self.mask:
                            rasters.append(MaskRaster(self.mask, rasters[0].grid, rasters[1].grid, plan.scale))
                    lr, sr, *rest = opened["rasters"]
                    try:
                        x = read_tile(plan, t, lr, sr, rest[0] if rest else None, self.offset)
                    except SRMetricsError as exc:
                        item: Any = exc
                    else:
                        item = self.prepare(plan, x)
                    if not self._put((t, item)):
                        return
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which raises it
            self._put((None, exc))
        finally:
            _close(opened)
        self._put(self._END)

    def __iter__(self) -> Iterator[tuple[G.Tile, Any]]:
        while True:
            item = self.q.get()
            if item is self._END:
                return
            t, value = item
            if t is None:
                raise value
            yield t, value


def _close(opened: dict[str, Any]) -> None:
    for r in opened.get("rasters", ()):
        (r.raster if isinstance(r, MaskRaster) else r).close()


__all__ = ["TileReader", "read_tile"]
