"""Spectral and multi-band metrics (reference: HR): ``sam``, ``ergas``, ``ndvi-error``, and per-band columns.

Conventions
-----------
* ``sam``: mean spectral angle in degrees between the per-pixel band vectors of SR and HR (zero vectors
  left out; needs >= 2 bands), computed as in :func:`clipscore_sr.metrics.consistency.spectral_angle`.
* ``ergas``: Wald (2000), ``100 * (h/l) * sqrt(mean_b RMSE_b^2 / mean(HR_b)^2)`` with ``h/l`` the ratio of
  the HR to the LR pixel size, i.e. ``1/scale`` for an SR scale (``scale`` = 4 for 10 m -> 2.5 m). The scale
  comes from the LR input's size (``--lr``) or the ``scale`` option (``--scale N``). torchmetrics before
  1.4 (issue #2497) multiplied by the scale instead, inflating ERGAS by ``scale^2``. NaN when a band of HR
  has mean 0.
* ``ndvi-error``: mean over pixels of ``|NDVI(SR) - NDVI(HR)|`` with ``NDVI = (NIR - Red)/(NIR + Red)``;
  ``red_band``/``nir_band`` are 1-based channel numbers of the tensor (the CLI maps file band numbers
  through ``--bands``); pixels where ``NIR + Red`` is 0 in either image are left out.
* Per band (``--per-band``): :class:`PerBand` wraps a metric (psnr, ssim, cpsnr, ...) and writes one column per
  band, ``<id>-b<N>`` with N the file's 1-based band number, each band scored alone (cPSNR: its own shift).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..errors import ConfigError, InputMismatchError
from .base import Column, Metric, register_metric
from .consistency import integer_scale, mean_spectral_angle
from .pixel import check_pair

__all__ = ["PerBand", "ergas", "ndvi", "ndvi_error", "sam"]


def sam(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """Mean spectral angle (degrees) between SR and HR per image."""
    sr64, hr64 = check_pair(sr, hr, "sam")
    if sr64.shape[1] < 2:
        raise InputMismatchError(f"sam: needs at least 2 bands, got {sr64.shape[1]}")
    return mean_spectral_angle(sr64, hr64)


def ergas(sr: torch.Tensor, hr: torch.Tensor, scale: float) -> torch.Tensor:
    """Wald's ERGAS per image: ``100/scale * sqrt(mean over bands of RMSE_b^2 / mean(HR_b)^2)``."""
    sr64, hr64 = check_pair(sr, hr, "ergas")
    if not scale > 0:
        raise ConfigError(f"ergas: scale={scale!r}: expected a positive SR scale (e.g. 4)")
    mse = (sr64 - hr64).square().flatten(2).mean(dim=2)  # [B,C]
    mu = hr64.flatten(2).mean(dim=2)
    ratio = torch.where(mu != 0, mse / mu.square(), torch.full_like(mu, float("nan")))
    return 100.0 / scale * ratio.mean(dim=1).sqrt()


def ndvi(x: torch.Tensor, red: int, nir: int) -> torch.Tensor:
    """NDVI ``[B,H,W]`` from 1-based channel numbers; NaN where NIR + Red is 0."""
    r, n = x[:, red - 1], x[:, nir - 1]
    s = n + r
    return torch.where(s != 0, (n - r) / s, torch.full_like(s, float("nan")))


def ndvi_error(sr: torch.Tensor, hr: torch.Tensor, red_band: int, nir_band: int) -> torch.Tensor:
    """Mean absolute NDVI difference per image (pixels with an undefined NDVI left out)."""
    sr64, hr64 = check_pair(sr, hr, "ndvi-error")
    c = sr64.shape[1]
    for label, b in (("red_band", red_band), ("nir_band", nir_band)):
        if not 1 <= b <= c:
            raise InputMismatchError(f"ndvi-error: {label}={b} but the images have {c} band(s)")
    return (ndvi(sr64, red_band, nir_band) - ndvi(hr64, red_band, nir_band)).abs().flatten(1).nanmean(dim=1)


@register_metric
class SAM(Metric):
    name = "sam"
    higher_is_better = False
    best_value = 0.0
    units = "degrees"
    value_range = "[0, 180]; needs >= 2 bands"
    description = "mean spectral angle between SR and HR band vectors per pixel"

    def compute(self, sr: torch.Tensor, gt: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return sam(sr, gt)


@register_metric
class ERGAS(Metric):
    name = "ergas"
    higher_is_better = False
    best_value = 0.0
    units = "dimensionless"
    value_range = ">= 0"
    description = ("Wald's ERGAS, 100/scale * sqrt(mean_b RMSE_b^2/mean(HR_b)^2); scale from the LR size "
                   "(--lr) or option scale (--scale)")

    def __init__(self, spec: str | None = None, *, device: str | torch.device = "cpu", scale: float | None = None,
                 **options: Any) -> None:
        super().__init__(spec, device=device, **options)
        if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0):
            raise ConfigError(f"ergas: scale={scale!r}: expected a positive number (the SR scale, e.g. 4)")
        self.scale = scale
        self.options["scale"] = scale

    def compute(self, sr: torch.Tensor, gt: torch.Tensor, *, lr: torch.Tensor | None = None,
                **kwargs: Any) -> torch.Tensor:
        scale = self.scale
        if scale is None:
            if lr is None:
                raise ConfigError("ergas needs the SR scale: pass --lr LR_DIR or --scale N")
            scale = integer_scale(sr.shape, lr.shape)
        return ergas(sr, gt, float(scale))


@register_metric
class NDVIError(Metric):
    name = "ndvi-error"
    higher_is_better = False
    best_value = 0.0
    units = "NDVI units"
    value_range = "[0, 2]"
    description = "mean |NDVI(SR) - NDVI(HR)|; options red_band, nir_band (1-based; --red-band/--nir-band)"

    def __init__(self, spec: str | None = None, *, device: str | torch.device = "cpu", red_band: int | None = None,
                 nir_band: int | None = None, **options: Any) -> None:
        super().__init__(spec, device=device, **options)
        for label, b in (("red_band", red_band), ("nir_band", nir_band)):
            if b is None:
                raise ConfigError(f"ndvi-error needs {label} (--{label.replace('_', '-')} N, 1-based)")
            if isinstance(b, bool) or not isinstance(b, int) or b < 1:
                raise ConfigError(f"ndvi-error: {label}={b!r}: expected a 1-based band number")
        if red_band == nir_band:
            raise ConfigError(f"ndvi-error: red_band and nir_band are both {red_band}")
        self.red_band, self.nir_band = int(red_band), int(nir_band)
        self.options.update(red_band=self.red_band, nir_band=self.nir_band)

    def compute(self, sr: torch.Tensor, gt: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return ndvi_error(sr, gt, self.red_band, self.nir_band)


class PerBand(Metric):
    """Wraps a metric and writes one column per band: ``<id>-b<N>`` (``band_numbers``: 1-based file bands)."""

    def __init__(self, inner: Metric, band_numbers: Sequence[int]) -> None:
        self.inner = inner
        self.band_numbers = [int(b) for b in band_numbers]
        self.name = inner.name
        self.higher_is_better = inner.higher_is_better
        self.best_value = inner.best_value
        self.reference = inner.reference
        self.uses_mask = inner.uses_mask
        super().__init__(None, device=inner.device)
        self.spec = inner.spec
        self.options = {"per_band": self.band_numbers}

    @property
    def id(self) -> str:
        return f"{self.inner.id}[per-band]"

    def to(self, device: str | torch.device) -> Metric:
        self.inner.to(device)
        return super().to(device)

    def columns(self) -> list[Column]:
        return [Column(f"{self.inner.id}-b{n}", bool(self.higher_is_better), self.best_value)
                for n in self.band_numbers]

    def provenance(self) -> dict[str, Any]:
        return {**self.inner.provenance(), "id": self.id, "per_band": self.band_numbers}

    def compute(self, sr: torch.Tensor, gt: torch.Tensor, **kwargs: Any) -> dict[str, torch.Tensor]:
        if sr.shape[1] != len(self.band_numbers):
            raise InputMismatchError(
                f"{self.inner.id} per band: images have {sr.shape[1]} bands, expected {len(self.band_numbers)}")
        kwargs = {k: v for k, v in kwargs.items() if k != "lr"}
        out = {}
        for i, col in enumerate(self.columns()):
            out[col.name] = self.inner.compute(sr[:, i:i + 1], gt[:, i:i + 1], **kwargs)
        return out
