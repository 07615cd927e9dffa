"""Display renders: one stretch per scene, computed from the GT and applied identically to every candidate.

Images are read with :func:`clipscore_sr.io.read_image` (``bands`` 1-based, ``data_range`` as in ``score``),
so values are in [0, 1]. The stretch maps ``[lo, hi]`` of each displayed band to [0, 255] (clipped):
``percentile`` takes ``lo``/``hi`` as percentiles of the GT's band, ``none`` uses [0, 1], ``auto`` is ``none``
for 8-bit inputs and ``percentile`` otherwise (16-bit, float, multispectral). Because ``lo``/``hi`` come
from the GT alone, the rendering never favours a candidate.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...io import read_image
from .manifest import StudyError

STRETCHES = ("auto", "percentile", "none")


def stretch_limits(gt: np.ndarray, *, dtype: str, stretch: str = "auto",
                   percentiles: Sequence[float] = (2.0, 98.0)) -> tuple[np.ndarray, np.ndarray]:
    """Per-band ``(lo, hi)`` ``[C]`` from a GT ``[C,H,W]`` in [0, 1] (see the module docstring)."""
    if stretch not in STRETCHES:
        raise StudyError(f"--stretch {stretch}: expected one of {', '.join(STRETCHES)}")
    c = gt.shape[0]
    if stretch == "none" or (stretch == "auto" and dtype == "uint8"):
        return np.zeros(c), np.ones(c)
    p_lo, p_hi = percentiles
    flat = gt.reshape(c, -1).astype(np.float64)
    lo = np.array([np.nanpercentile(b[np.isfinite(b)], p_lo) if np.isfinite(b).any() else 0.0 for b in flat])
    hi = np.array([np.nanpercentile(b[np.isfinite(b)], p_hi) if np.isfinite(b).any() else 1.0 for b in flat])
    hi = np.where(hi > lo, hi, lo + 1e-6)
    return lo, hi


def to_display(chw: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``[C,H,W]`` -> 8-bit ``[H,W,C]`` (C = 1 or 3) with the given per-band limits; NaN/inf -> 0."""
    x = (np.nan_to_num(chw.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0) - lo[:, None, None])
    x = x / (hi - lo)[:, None, None]
    return np.ascontiguousarray(np.rint(np.clip(x, 0.0, 1.0) * 255).astype(np.uint8).transpose(1, 2, 0))


def degrade(display: np.ndarray) -> np.ndarray:
    """A strongly degraded copy of an 8-bit ``[H,W,C]`` image for sentinels: box-downsampled 8x, then
    nearest-upsampled back (large blocks; nobody who looks can prefer it to the GT)."""
    from PIL import Image

    h, w = display.shape[:2]
    f = max(2, min(8, min(h, w) // 2))
    im = Image.fromarray(display[..., 0] if display.shape[2] == 1 else display)
    small = im.resize((max(1, w // f), max(1, h // f)), Image.BOX)
    out = np.asarray(small.resize((w, h), Image.NEAREST))
    return out[..., None] if out.ndim == 2 else out


def save_png(path: Path, hwc: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    Image.fromarray(hwc[..., 0] if hwc.shape[2] == 1 else hwc).save(tmp, format="PNG", compress_level=1)
    os.replace(tmp, path)


def render_scene(gt_path: str, outputs: dict[str, str], dest: Path, *, bands: Sequence[int] | None = None,
                 data_range: float | None = None, stretch: str = "auto",
                 percentiles: Sequence[float] = (2.0, 98.0), sentinel: bool = False) -> dict[str, str]:
    """Render one scene's GT and outputs (``{method: path}``) into ``dest``; returns ``{name: file}`` with
    names ``gt``, every method, and with ``sentinel`` also ``sentinel-gt`` (a copy of the GT render) and
    ``sentinel-degraded``. Raises :class:`StudyError` for unreadable files, sizes that differ from the GT and
    band counts that cannot be displayed."""
    gt = read_image(gt_path, bands=bands, data_range=data_range)
    c = gt.data.shape[0]
    if c not in (1, 3):
        raise StudyError(f"{gt_path}: {c} bands cannot be displayed; choose 3 (or 1) with --bands, e.g. --bands 3,2,1")
    lo, hi = stretch_limits(gt.data, dtype=gt.dtype, stretch=stretch, percentiles=percentiles)
    gt_disp = to_display(gt.data, lo, hi)
    files = {"gt": dest / "gt.png"}
    save_png(files["gt"], gt_disp)
    for method, path in outputs.items():
        img = read_image(path, bands=bands, data_range=data_range)
        if img.data.shape != gt.data.shape:
            raise StudyError(f"{path}: shape {tuple(img.data.shape)} (C,H,W) differs from the GT "
                             f"{tuple(gt.data.shape)} ({gt_path})")
        files[method] = dest / f"{method}.png"
        save_png(files[method], to_display(img.data, lo, hi))
    if sentinel:
        files["sentinel-gt"] = dest / "sentinel-gt.png"
        save_png(files["sentinel-gt"], gt_disp)
        files["sentinel-degraded"] = dest / "sentinel-degraded.png"
        save_png(files["sentinel-degraded"], degrade(gt_disp))
    return {k: str(v) for k, v in files.items()}
