"""Thumbnails for the report: every image read with :class:`clipscore_sr.display.Displayed` (the table's
bands and data range), stretched with the limits of its row's reference (the GT; the LR where there is no GT)
by :func:`clipscore_sr.display.stretch_limits`/:func:`~clipscore_sr.display.to_display`, fitted into a
``cap`` x ``cap`` cell (default 48 px) and packed 16 to a row into JPEG sprite sheets (one sheet per task of at
most 256 images). Sheets are built in worker processes; the order of the output does not depend on them.

With ``full=True`` every image's full-resolution display render (same stretch) comes back as PNG bytes too.
"""

from __future__ import annotations

import io as _bytesio
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import SRMetricsError

THUMB_CAP = 48  # px, longest side of an embedded thumbnail
SHEET_COLUMNS = 16
SHEET_CELLS = 256
JPEG_QUALITY = 75
#: suffixes a browser shows as stored (8-bit PNG/JPEG/...); other files are shown only as renders
BROWSER_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


@dataclass
class Group:
    """Images shown side by side: ``ref`` (the stretch reference, or None) and ``images`` as
    ``(image id, path, kind)``, kind ``"gt" | "lr" | "sr" | "map"`` (maps are drawn without stretch)."""

    ref: str | None
    images: list[tuple[int, str, str]] = field(default_factory=list)


@dataclass
class Sheet:
    jpeg: bytes
    #: image id -> (cell index, thumb w, thumb h, full w, full h, native, dtype, note)
    cells: dict[int, tuple] = field(default_factory=dict)
    full: dict[int, bytes] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    ref_errors: list[str] = field(default_factory=list)


def plan_tasks(groups: Sequence[Group], cells: int = SHEET_CELLS) -> list[list[Group]]:
    """Consecutive groups packed into tasks of at most ``cells`` images (a larger group gets a task alone)."""
    tasks: list[list[Group]] = []
    cur: list[Group] = []
    n = 0
    for g in groups:
        if cur and n + len(g.images) > cells:
            tasks.append(cur)
            cur, n = [], 0
        cur.append(g)
        n += len(g.images)
    if cur:
        tasks.append(cur)
    return tasks


def _plain_settings(bands, data_range, stretch: str) -> bool:
    """Settings under which an 8-bit grey or RGB file is displayed as stored (no band choice, full scale 255, no
    stretch: what :func:`~clipscore_sr.display.stretch_limits` gives 8-bit data under ``auto``/``none``)."""
    return bands is None and data_range in (None, 255, 255.0) and stretch != "percentile"


_PLAIN_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def _png_header(head: bytes) -> tuple[int, int, bool] | None:
    """``(width, height, plain)`` from a PNG's first 26 bytes (its IHDR chunk), plain meaning 8-bit grey or RGB;
    None when they are not a PNG header."""
    from ..io import png_ihdr

    ihdr = png_ihdr(head)
    if ihdr is None:
        return None
    w, h, depth, colour = ihdr
    return w, h, depth == 8 and colour in (0, 2)


def _is_plain(path: str) -> bool:
    """``path`` is an 8-bit grey or RGB PNG/JPEG/BMP file (its header only)."""
    from PIL import Image

    suffix = os.path.splitext(path)[1].lower()
    if suffix not in _PLAIN_SUFFIXES:
        return False
    try:
        if suffix == ".png":
            with open(path, "rb") as f:
                hdr = _png_header(f.read(26))
            return hdr is not None and hdr[2]
        with Image.open(path) as im:
            return im.mode in ("RGB", "L")
    except (OSError, ValueError, Image.DecompressionBombError):
        return False


def _decode_plain(path: str, max_px: int | None) -> np.ndarray | None:
    """The pixels ``[H,W]`` or ``[H,W,3]`` uint8 of an 8-bit grey or RGB PNG/JPEG/BMP file; None when the file is
    another kind or cannot be decoded this way (the general path reads it). PNGs are decoded by imagecodecs
    (libpng: 30-50% less time than Pillow's open + load for a 64 px tile) when their header is within the
    decompression-bomb cap ``max_px`` (:func:`clipscore_sr.io.max_pixels`); the pixels are Pillow's."""
    from PIL import Image

    suffix = os.path.splitext(path)[1].lower()
    if suffix not in _PLAIN_SUFFIXES:
        return None
    try:
        if suffix == ".png":
            import imagecodecs

            with open(path, "rb") as f:
                data = f.read()
            hdr = _png_header(data[:26])
            if hdr is not None and max_px is not None and hdr[0] * hdr[1] > max_px:
                return None  # over the cap: the general path says so
            if hdr is not None and hdr[2]:
                a = imagecodecs.png_decode(data)
                if a.dtype == np.uint8 and a.shape[:2] == (hdr[1], hdr[0]) and (a.ndim == 2 or a.shape[2] == 3):
                    return a
            # a transparency chunk (decoded as alpha), another kind: as Pillow reads it
        with Image.open(path) as im:
            if im.mode not in ("RGB", "L"):
                return None
            return np.asarray(im)
    except (OSError, ValueError, RuntimeError, Image.DecompressionBombError):  # imagecodecs.PngError: RuntimeError
        return None


def _thumb(im, cap: int, nearest: bool):
    """``im`` (``L`` or ``RGB``, in memory) fitted into ``cap`` x ``cap`` (box filter; nearest for maps), as RGB."""
    from PIL import Image

    im.thumbnail((cap, cap), Image.Resampling.NEAREST if nearest else Image.Resampling.BOX)
    return im if im.mode == "RGB" else im.convert("RGB")


def _png(hwc: np.ndarray) -> bytes:
    from PIL import Image

    buf = _bytesio.BytesIO()
    Image.fromarray(hwc if hwc.shape[2] == 3 else hwc[..., 0]).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def render_task(task: Sequence[Group], bands: Sequence[int] | None, data_range: float | None, stretch: str = "auto",
                cap: int = THUMB_CAP, full: bool = False) -> Sheet:
    """One sprite sheet for the images of ``task`` (see the module docstring). Each file is decoded once: an
    8-bit file shown as stored goes from its decoder to its thumbnail without a float copy (the reference's
    header decides); any other file is read by :class:`~clipscore_sr.display.Displayed` (the reference once,
    for its limits and its own panel)."""
    from PIL import Image

    from ..display import Displayed, stretch_limits, to_display
    from ..io import max_pixels

    n = sum(len(g.images) for g in task)
    rows = max(1, -(-n // SHEET_COLUMNS))
    canvas = Image.new("RGB", (SHEET_COLUMNS * cap, rows * cap))
    sheet = Sheet(jpeg=b"")
    plain_settings = _plain_settings(bands, data_range, stretch)
    max_px = max_pixels()
    cell = 0
    for group in task:
        ref: dict = {}  # the reference read by Displayed ("read") and its stretch ("limits"), when needed

        def ref_read(group=group, ref=ref):
            if "read" not in ref:
                ref["read"] = None
                if group.ref is not None:
                    try:
                        ref["read"] = Displayed(group.ref, bands=bands, data_range=data_range)
                    except (SRMetricsError, OSError, ValueError) as exc:
                        sheet.ref_errors.append(str(exc).splitlines()[0])
            return ref["read"]

        def ref_limits(ref=ref):
            if "limits" not in ref:
                d = ref_read()
                ref["limits"] = None if d is None else stretch_limits(d.data, dtype=d.dtype, stretch=stretch)
            return ref["limits"]

        ref_plain = plain_settings and group.ref is not None and _is_plain(group.ref)
        for img_id, path, kind in group.images:
            a = _decode_plain(path, max_px) if plain_settings and (ref_plain or kind == "map") else None
            if a is not None:  # 8-bit shown as stored: to_display with limits [0, 1] is the identity
                (h, w), dtype, note, native = a.shape[:2], "uint8", "", True
                if full:
                    sheet.full[img_id] = _png(a[..., None] if a.ndim == 2 else a)
                im = Image.fromarray(a)
            else:
                try:
                    d = ref_read() if path == group.ref and kind != "map" and ref_read() is not None else \
                        Displayed(path, bands=None if kind == "map" else bands,
                                  data_range=None if kind == "map" else data_range)
                except (SRMetricsError, OSError, ValueError) as exc:
                    sheet.errors[img_id] = str(exc).splitlines()[0]
                    continue
                c = d.data.shape[0]
                lim = None if kind == "map" else ref_limits()
                if kind == "map":
                    lo, hi = np.zeros(c), np.ones(c)
                elif lim is not None and len(lim[0]) == c:
                    lo, hi = lim
                else:  # no readable reference, or another band count: the image's own stretch
                    lo, hi = stretch_limits(d.data, dtype=d.dtype, stretch=stretch)
                hwc = to_display(d.data, lo, hi)
                (w, h), dtype, note = d.size, d.dtype, d.note
                native = (os.path.splitext(path)[1].lower() in BROWSER_SUFFIXES and d.dtype == "uint8"
                          and bands is None and not d.note and bool(np.all(lo == 0) and np.all(hi == 1)))
                if full:
                    sheet.full[img_id] = _png(hwc)
                im = Image.fromarray(hwc if hwc.shape[2] == 3 else hwc[..., 0])
            thumb = _thumb(im, cap, nearest=kind == "map")
            x, y = (cell % SHEET_COLUMNS) * cap, (cell // SHEET_COLUMNS) * cap
            canvas.paste(thumb, (x, y))
            sheet.cells[img_id] = (cell, thumb.width, thumb.height, int(w), int(h), native, dtype, note)
            cell += 1
    buf = _bytesio.BytesIO()
    canvas.save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    sheet.jpeg = buf.getvalue()
    return sheet


def _render_star(args: tuple) -> Sheet:
    return render_task(*args)


class Rendering:
    """:func:`render_task` for every ``(task, bands, data_range)`` job, started on creation in ``workers``
    processes (default: up to 4 CPUs) so that the caller can work meanwhile; :meth:`sheets` waits for them and
    gives them in job order (the order does not depend on the workers). With one worker (or one job) the
    sheets are rendered in :meth:`sheets`, in this process."""

    def __init__(self, jobs: Sequence[tuple[Sequence[Group], Sequence[int] | None, float | None]], *,
                 stretch: str = "auto", cap: int = THUMB_CAP, full: bool = False, workers: int | None = None) -> None:
        self._args = [(t, bands, dr, stretch, cap, full) for t, bands, dr in jobs]
        workers = workers if workers is not None else min(4, os.cpu_count() or 1)
        self._pool = self._results = None
        if workers > 1 and len(self._args) > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
            self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
            self._results = self._pool.map(_render_star, self._args, chunksize=2)  # submitted now

    def sheets(self) -> list[Sheet]:
        """The sheets, in job order."""
        if self._pool is None:
            return [render_task(*a) for a in self._args]
        try:
            return list(self._results)
        finally:
            self.close()

    def close(self) -> None:
        """Stop: jobs not started are dropped (the caller failed meanwhile), the workers end."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def __enter__(self) -> Rendering:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["BROWSER_SUFFIXES", "Group", "Rendering", "Sheet", "THUMB_CAP", "plan_tasks", "render_task"]
