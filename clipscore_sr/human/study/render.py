"""Display renders of a study: one stretch per scene, computed from the GT and applied identically to every
candidate (:mod:`clipscore_sr.display`), so the rendering never favours a candidate."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...display import STRETCHES, stretch_limits, to_display
from ...io import read_image
from .manifest import StudyError

__all__ = ["STRETCHES", "STUDY_MAX_PIXELS", "check_display_size", "degrade", "render_scene", "save_png",
           "stretch_limits", "to_display"]


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


#: largest image a study shows (pixels; ``CLIPSCORE_SR_STUDY_MAX_PIXELS``): a person judges tiles, not scenes,
#: and rendering a scene of this size takes about 1 GB
STUDY_MAX_PIXELS = 16_000_000


def check_display_size(path: str | os.PathLike) -> None:
    """Refuse (one line, from the header alone) an image too large to be shown in a study."""
    from ...io import check_pixel_cap

    cap = int(os.environ.get("CLIPSCORE_SR_STUDY_MAX_PIXELS", STUDY_MAX_PIXELS))
    h, w, _c, _planes = check_pixel_cap(path)
    if h * w > cap:
        raise StudyError(f"{path}: {w}x{h} px ({h * w / 1e6:.0f} Mpx) is too large to show in a study (at most "
                         f"{cap / 1e6:g} Mpx, CLIPSCORE_SR_STUDY_MAX_PIXELS): cut the scenes into tiles first, "
                         "e.g. 512x512 px")


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
    check_display_size(gt_path)
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
