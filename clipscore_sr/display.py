"""Pictures of image data: one display stretch computed from the reference (GT) and applied identically to
every image shown beside it (LR, each method), so that the pictures stay comparable and never favour one.

Images are read with :func:`clipscore_sr.io.read_image` (``bands`` 1-based, ``data_range`` as in ``score``),
so values are in [0, 1]. The stretch maps ``[lo, hi]`` of each displayed band to [0, 255] (clipped):
``percentile`` takes ``lo``/``hi`` as percentiles of the reference's band (default 2nd/98th), ``none`` uses
[0, 1], ``auto`` is ``none`` for 8-bit inputs and ``percentile`` otherwise (12/16-bit, reflectance, float),
which is what keeps 12-bit or reflectance data from rendering black.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from .errors import SRMetricsError

STRETCHES = ("auto", "percentile", "none")
DEFAULT_PERCENTILES = (2.0, 98.0)


def stretch_limits(ref: np.ndarray, *, dtype: str, stretch: str = "auto",
                   percentiles: Sequence[float] = DEFAULT_PERCENTILES) -> tuple[np.ndarray, np.ndarray]:
    """Per-band ``(lo, hi)`` ``[C]`` from a reference ``[C,H,W]`` in [0, 1] (see the module docstring)."""
    if stretch not in STRETCHES:
        raise SRMetricsError(f"--stretch {stretch}: expected one of {', '.join(STRETCHES)}")
    c = ref.shape[0]
    if stretch == "none" or (stretch == "auto" and dtype == "uint8"):
        return np.zeros(c), np.ones(c)
    flat = ref.reshape(c, -1).astype(np.float64)
    finite = [b[np.isfinite(b)] for b in flat]
    lims = np.array([np.percentile(b, tuple(percentiles)) if b.size else (0.0, 1.0) for b in finite]).reshape(c, 2)
    lo, hi = lims[:, 0], lims[:, 1]
    hi = np.where(hi > lo, hi, lo + 1e-6)
    return lo, hi


def to_display(chw: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``[C,H,W]`` -> 8-bit ``[H,W,C]`` (C = 1 or 3) with the given per-band limits; NaN/inf -> 0."""
    x = (np.nan_to_num(chw.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0) - lo[:, None, None])
    x = x / (hi - lo)[:, None, None]
    return np.ascontiguousarray(np.rint(np.clip(x, 0.0, 1.0) * 255).astype(np.uint8).transpose(1, 2, 0))


def describe_stretch(stretch: str, dtype: str, percentiles: Sequence[float] = DEFAULT_PERCENTILES) -> str:
    """What :func:`stretch_limits` does for these settings, in words (for figure captions)."""
    if stretch == "none" or (stretch == "auto" and dtype == "uint8"):
        return "no stretch (values 0..full scale)"
    return (f"each band stretched between percentiles {percentiles[0]:g} and {percentiles[1]:g} of the row's GT, "
            "the same for every column")


class Displayed:
    """One image read for display: ``data`` ``[C,H,W]`` in [0, 1] (C = 1 or 3 shown bands), the storage
    ``dtype``, the file's band count ``n_bands`` and ``note`` (bands chosen for the caller when none were given)."""

    def __init__(self, path: str | os.PathLike, *, bands: Sequence[int] | None = None,
                 data_range: float | None = None) -> None:
        from .io import read_image

        img = read_image(path, bands=bands, data_range=data_range)
        data, self.n_bands, self.note = img.data, img.data.shape[0], ""
        if bands is None and data.shape[0] not in (1, 3):
            self.note = f"bands 1-3 of {data.shape[0]} shown (pass --bands, e.g. --bands 3,2,1)"
            data = data[:3] if data.shape[0] >= 3 else data[:1]
        elif data.shape[0] not in (1, 3):
            raise SRMetricsError(f"{path}: {data.shape[0]} bands cannot be displayed; choose 3 (or 1) with --bands")
        self.data, self.dtype, self.path = data, img.dtype, str(path)

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` in pixels."""
        return int(self.data.shape[2]), int(self.data.shape[1])


__all__ = ["DEFAULT_PERCENTILES", "Displayed", "STRETCHES", "describe_stretch", "stretch_limits", "to_display"]
