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


def _fit(hwc: np.ndarray, cap: int, nearest: bool):
    from PIL import Image

    if hwc.shape[2] == 1:
        hwc = np.repeat(hwc, 3, axis=2)
    im = Image.fromarray(hwc)
    im.thumbnail((cap, cap), Image.Resampling.NEAREST if nearest else Image.Resampling.BOX)
    return im


def _plain_uint8(path: str, bands, data_range, stretch: str) -> np.ndarray | None:
    """An 8-bit grey or RGB PNG/JPEG/BMP file whose display is its stored pixels (no band choice, full scale 255,
    no stretch: what :func:`~clipscore_sr.display.stretch_limits` gives 8-bit data under ``auto``/``none``) as
    ``[H,W,C]`` uint8; None when the general path is needed (or the file cannot be read that way)."""
    from PIL import Image

    if (bands is not None or data_range not in (None, 255, 255.0) or stretch == "percentile"
            or os.path.splitext(path)[1].lower() not in (".png", ".jpg", ".jpeg", ".bmp")):
        return None
    try:
        with Image.open(path) as im:
            if im.mode not in ("RGB", "L"):
                return None
            arr = np.asarray(im)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return arr[..., None] if arr.ndim == 2 else arr


def render_task(task: Sequence[Group], bands: Sequence[int] | None, data_range: float | None, stretch: str = "auto",
                cap: int = THUMB_CAP, full: bool = False) -> Sheet:
    """One sprite sheet for the images of ``task`` (see the module docstring)."""
    from PIL import Image

    from ..display import Displayed, stretch_limits, to_display

    n = sum(len(g.images) for g in task)
    rows = max(1, -(-n // SHEET_COLUMNS))
    canvas = Image.new("RGB", (SHEET_COLUMNS * cap, rows * cap))
    sheet = Sheet(jpeg=b"")
    cell = 0
    for group in task:
        limits: list = []  # the reference's (lo, hi), computed when a slow-path image needs it

        def ref_limits(group=group, limits=limits):
            if not limits:
                limits.append(None)
                if group.ref is not None:
                    try:
                        ref = Displayed(group.ref, bands=bands, data_range=data_range)
                        limits[0] = stretch_limits(ref.data, dtype=ref.dtype, stretch=stretch)
                    except (SRMetricsError, OSError, ValueError) as exc:
                        sheet.ref_errors.append(str(exc).splitlines()[0])
            return limits[0]

        ref_plain = group.ref is not None and _plain_uint8(group.ref, bands, data_range, stretch) is not None
        for img_id, path, kind in group.images:
            plain = _plain_uint8(path, bands, data_range, stretch) if (ref_plain or kind == "map") else None
            if plain is not None:  # 8-bit shown as stored: to_display with limits [0, 1] is the identity
                hwc, (w, h), dtype, note, native = plain, plain.shape[1::-1], "uint8", "", True
            else:
                try:
                    d = Displayed(path, bands=None if kind == "map" else bands,
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
                buf = _bytesio.BytesIO()
                Image.fromarray(hwc if hwc.shape[2] == 3 else hwc[..., 0]).save(buf, format="PNG", compress_level=3)
                sheet.full[img_id] = buf.getvalue()
            thumb = _fit(hwc, cap, nearest=kind == "map")
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


def render_all(tasks: Sequence[Sequence[Group]], bands: Sequence[int] | None, data_range: float | None, *,
               stretch: str = "auto", cap: int = THUMB_CAP, full: bool = False, workers: int | None = None) -> list[Sheet]:
    """:func:`render_task` for every task, in order; ``workers`` processes (default: up to 4 CPUs)."""
    args = [(t, bands, data_range, stretch, cap, full) for t in tasks]
    workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    if workers <= 1 or len(args) <= 1:
        return [render_task(*a) for a in args]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        return list(pool.map(_render_star, args, chunksize=2))


__all__ = ["BROWSER_SUFFIXES", "Group", "Sheet", "THUMB_CAP", "plan_tasks", "render_all", "render_task"]
