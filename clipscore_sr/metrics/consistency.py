"""LR-consistency metrics (reference: the LR input only): ``lr-l1``, ``lr-psnr``, ``lr-sam``, ``lr-shift``.

They need no high-resolution image: the SR output is brought back to the LR grid and compared with the LR
input it was made from, so they work where SR is deployed (Sentinel-2 worldwide, no HR).

Conventions
-----------
* Scale: the integer ratio of the SR and LR sizes (same in both axes); anything else is an error per pair.
* Downsampling (SR -> LR grid): antialiased bilinear (PyTorch ``interpolate(mode="bilinear", antialias=True,
  align_corners=False)``: a triangle filter stretched by the scale, centred on each LR pixel, the same
  filter as Pillow's ``BILINEAR`` reduction). Option ``psf_sigma`` (in LR pixels): a Gaussian sensor PSF of
  standard deviation ``psf_sigma * scale`` HR pixels (truncated at 4 sigma, mirror padding as
  ``scipy.ndimage`` ``mode="mirror"``) followed by the mean over each ``scale x scale`` block (detector
  integration).
* ``lr-l1``: mean absolute difference over channels and pixels, in data-range units ([0, 1]).
* ``lr-psnr``: ``10*log10(1/MSE)`` dB on [0, 1] data; ``+inf`` when equal.
* ``lr-sam``: mean spectral angle in degrees between the per-pixel band vectors of SR-downsampled and LR,
  ``2*atan2(|a/|a| - b/|b||, |a/|a| + b/|b||)`` (equal to ``arccos`` of the cosine, stable near 0); pixels
  where either vector is zero are left out. Needs at least 2 bands.
* ``lr-shift``: misregistration of SR relative to LR in LR pixels by phase correlation of the band means
  (Guizar-Sicairos upsampled DFT, ``upsample_factor`` 100 by default: 0.01 px steps), as
  ``skimage.registration.phase_cross_correlation(lr, sr_down, normalization="phase")`` but with the sign of a
  displacement: ``lr-shift-dy`` > 0 means SR content sits lower (larger row) than in LR, ``lr-shift-dx`` > 0
  further right. The row gets the magnitude ``lr-shift`` and both components; NaN (undefined) where the LR or
  SR downsampled is flat (band-mean std <= :data:`FLAT_STD`): the correlation has no peak.

opensr-test (Aybar et al., 2024) calls its SR -> LR helper ``apply_upsampling`` (and LR -> HR
``apply_downsampling``): the names are swapped; both are antialiased bilinear, as used here for SR -> LR.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import ConfigError, InputMismatchError
from .base import Column, Metric, register_metric

__all__ = [
    "consistency_from_down", "downsample", "integer_scale", "lr_consistency", "lr_l1", "lr_psnr", "lr_sam", "lr_shift", "mean_spectral_angle",
    "phase_correlation", "spectral_angle",
]


# ----------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------
def integer_scale(sr_hw: Sequence[int], lr_hw: Sequence[int], *, what: str = "LR") -> int:
    """The integer scale between an SR size and an LR size ``(H, W)``; raises for anything else."""
    (h, w), (lh, lw) = tuple(sr_hw)[-2:], tuple(lr_hw)[-2:]
    if lh < 1 or lw < 1 or h % lh or w % lw or h // lh != w // lw:
        raise InputMismatchError(
            f"{what} is {lw}x{lh} but SR is {w}x{h}: the scale must be the same integer in both axes")
    return h // lh


def _check_float4(x: torch.Tensor, label: str, metric: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        got = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise InputMismatchError(f"{metric}: {label} must be a float tensor [B,C,H,W] in [0, 1], got {got}")
    if not bool(torch.isfinite(x.sum())) and not bool(torch.isfinite(x).all()):  # one cheap reduction first
        raise InputMismatchError(f"{metric}: {label} contains NaN or inf values")
    return x.double() if x.device.type != "mps" else x.cpu().double()


def _check_sr_lr(sr: torch.Tensor, lr: torch.Tensor, metric: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    sr64, lr64 = _check_float4(sr, "SR", metric), _check_float4(lr, "LR", metric)
    lr64 = lr64.to(sr64.device)
    if sr64.shape[:2] != lr64.shape[:2]:
        raise InputMismatchError(
            f"{metric}: SR {list(sr64.shape)} and LR {list(lr64.shape)} differ in batch or band count")
    scale = integer_scale(sr64.shape, lr64.shape)
    return sr64, lr64, scale


def validate_psf_sigma(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
        raise ConfigError(f"psf_sigma={value!r}: expected a positive number of LR pixels (or none)")
    return float(value)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (``sigma`` in pixels, truncated at 4 sigma, mirror padding)."""
    radius = int(4.0 * sigma + 0.5)
    if radius == 0:
        return x
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    g = g / g.sum()
    b, c, h, w = x.shape
    if radius >= h or radius >= w:
        raise InputMismatchError(f"psf_sigma: the {2 * radius + 1}-pixel PSF is larger than the {w}x{h} image")
    y = x.reshape(b * c, 1, h, w)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="reflect"), g.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), g.view(1, 1, -1, 1))
    return y.reshape(b, c, h, w)


def downsample(sr: torch.Tensor, scale: int, *, psf_sigma: float | None = None) -> torch.Tensor:
    """SR ``[B,C,H,W]`` -> the LR grid ``[B,C,H/scale,W/scale]`` (antialiased bilinear, or PSF + block mean)."""
    if scale == 1:
        return sr
    h, w = sr.shape[-2] // scale, sr.shape[-1] // scale
    if psf_sigma is None:
        return F.interpolate(sr, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    blurred = _gaussian_blur(sr, psf_sigma * scale)
    return F.avg_pool2d(blurred, scale)


def _band_norm(x: torch.Tensor) -> torch.Tensor:
    """Euclidean norm over the bands, ``[B,C,H,W]`` -> ``[B,1,H,W]`` (sum of squares: ``linalg.vector_norm``
    over a strided dim is ~30x slower on CPU)."""
    return x.square().sum(dim=1, keepdim=True).sqrt()


def spectral_angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-pixel angle (degrees) between the band vectors of ``a`` and ``b`` ``[B,C,H,W]`` -> ``[B,H,W]``;
    NaN where either vector is zero."""
    if a.shape[1] < 2:
        raise InputMismatchError(f"spectral angle needs at least 2 bands, got {a.shape[1]}")
    na, nb = _band_norm(a), _band_norm(b)
    ua, ub = a / na, b / nb
    ang = 2.0 * torch.atan2(_band_norm(ua - ub)[:, 0], _band_norm(ua + ub)[:, 0])
    valid = (na[:, 0] > 0) & (nb[:, 0] > 0)
    return torch.where(valid, torch.rad2deg(ang), torch.full_like(ang, math.nan))


def mean_spectral_angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean spectral angle in degrees per image (zero vectors left out; NaN if no pixel is left)."""
    return spectral_angle(a, b).flatten(1).nanmean(dim=1)


def _upsampled_dft_power(data: torch.Tensor, region: int, factor: int, offsets: torch.Tensor) -> torch.Tensor:
    """``|DFT|^2`` of ``data`` ``[B,H,W]`` (complex) on a ``region x region`` grid ``factor`` times finer,
    starting at ``offsets`` ``[B,2]`` (Guizar-Sicairos et al. 2008's matrix-multiply DFT), ``[B,region,region]``.
    Done in real arithmetic: kernels from cos/sin, each complex product as one real ``bmm`` of stacked blocks."""
    b, h, w = data.shape
    dev = data.device
    u = torch.arange(region, dtype=torch.float64, device=dev)
    fw = torch.fft.fftfreq(w, d=factor, dtype=torch.float64, device=dev)
    fh = torch.fft.fftfreq(h, d=factor, dtype=torch.float64, device=dev)

    def kernel(off: torch.Tensor, f: torch.Tensor) -> torch.Tensor:  # [cos; sin] of -2 pi (u - off) f, [B,2U,N]
        angle = (-2.0 * math.pi) * ((u[None, :] - off)[:, :, None] * f[None, None, :])
        return torch.cat((angle.cos(), angle.sin()), dim=1)

    kw, kh = kernel(offsets[:, 1:2], fw), kernel(offsets[:, 0:1], fh)  # [B,2U,W], [B,2U,H]
    d = torch.cat((data.real, data.imag), dim=1).transpose(1, 2)  # [B,W,2H]: (re | im) of data^T
    q = torch.bmm(kw, d)  # [B,2U,2H]: (cos; sin) x (re | im)
    t_re = q[:, :region, :h] - q[:, region:, h:]  # tmp[b,u,h] = sum_w kw[b,u,w] data[b,h,w]
    t_im = q[:, :region, h:] + q[:, region:, :h]
    r = torch.bmm(kh, torch.cat((t_re, t_im), dim=1).transpose(1, 2))  # [B,2V,2U]
    re = r[:, :region, :region] - r[:, region:, region:]
    im = r[:, :region, region:] + r[:, region:, :region]
    return re.square() + im.square()


def phase_correlation(reference: torch.Tensor, moving: torch.Tensor, upsample_factor: int = 100) -> torch.Tensor:
    """Displacement ``(dy, dx)`` ``[B,2]`` of ``moving`` relative to ``reference`` (both ``[B,H,W]``), in pixels,
    to ``1/upsample_factor``; the negative of skimage's ``phase_cross_correlation(reference, moving)``.
    The normalised cross-power spectrum of real images is Hermitian, so its inverse is real (``irfft2`` of the
    half spectrum); peaks are found on ``|.|^2`` (same argmax as ``|.|``)."""
    b, h, w = reference.shape
    prod = torch.fft.fft2(reference.to(torch.float64)) * torch.fft.fft2(moving.to(torch.float64)).conj()
    eps = torch.finfo(torch.float64).eps
    prod = prod / prod.abs().clamp_min(100 * eps)
    cc = torch.fft.irfft2(prod[..., :w // 2 + 1], s=(h, w)).abs().flatten(1)
    idx = cc.argmax(dim=1)
    shifts = torch.stack((idx // w, idx % w), dim=1).to(torch.float64)
    size = torch.tensor([h, w], dtype=torch.float64, device=prod.device)
    shifts = torch.where(shifts > torch.floor(size / 2), shifts - size, shifts)
    if upsample_factor > 1:
        factor = float(upsample_factor)
        shifts = torch.round(shifts * factor) / factor
        region = math.ceil(factor * 1.5)
        dftshift = math.floor(region / 2.0)
        offsets = dftshift - shifts * factor
        up = _upsampled_dft_power(prod.conj(), region, upsample_factor, offsets).flatten(1)
        m = up.argmax(dim=1)
        peak = torch.stack((m // region, m % region), dim=1).to(torch.float64) - dftshift
        shifts = shifts + peak / factor
    shifts = torch.where(size == 1, torch.zeros_like(shifts), shifts)
    return -shifts


#: band-mean standard deviation (data-range units) at or below which an image is flat: no correlation peak
FLAT_STD = 1e-6


def _lr_displacement(lr64: torch.Tensor, down: torch.Tensor, upsample_factor: int) -> torch.Tensor:
    """Phase correlation of the band means ``[B,2]``; NaN where LR or SR downsampled is flat (no peak)."""
    ref, moving = lr64.mean(dim=1), down.mean(dim=1)
    d = phase_correlation(ref, moving, upsample_factor)
    flat = (ref.flatten(1).std(dim=1, correction=0) <= FLAT_STD) | (moving.flatten(1).std(dim=1, correction=0)
                                                                    <= FLAT_STD)
    return torch.where(flat[:, None], torch.full_like(d, math.nan), d)


# ----------------------------------------------------------------------------------------------------------
# functional cores
# ----------------------------------------------------------------------------------------------------------
def lr_l1(sr: torch.Tensor, lr: torch.Tensor, *, psf_sigma: float | None = None) -> torch.Tensor:
    """Mean |downsample(SR) - LR| per image (data-range units)."""
    sr64, lr64, scale = _check_sr_lr(sr, lr, "lr-l1")
    return (downsample(sr64, scale, psf_sigma=psf_sigma) - lr64).abs().flatten(1).mean(dim=1)


def lr_psnr(sr: torch.Tensor, lr: torch.Tensor, *, psf_sigma: float | None = None) -> torch.Tensor:
    """PSNR (dB, peak 1) of downsample(SR) against LR per image; ``+inf`` when equal."""
    sr64, lr64, scale = _check_sr_lr(sr, lr, "lr-psnr")
    mse = (downsample(sr64, scale, psf_sigma=psf_sigma) - lr64).square().flatten(1).mean(dim=1)
    return -10.0 * torch.log10(mse)


def lr_sam(sr: torch.Tensor, lr: torch.Tensor, *, psf_sigma: float | None = None) -> torch.Tensor:
    """Mean spectral angle (degrees) between downsample(SR) and LR per image."""
    sr64, lr64, scale = _check_sr_lr(sr, lr, "lr-sam")
    return mean_spectral_angle(downsample(sr64, scale, psf_sigma=psf_sigma), lr64)


def lr_shift(sr: torch.Tensor, lr: torch.Tensor, *, psf_sigma: float | None = None, upsample_factor: int = 100
             ) -> torch.Tensor:
    """``[B,3]``: (magnitude, dy, dx) of the displacement of downsample(SR) relative to LR, in LR pixels; NaN
    where either is flat (band mean with no variance: the shift is undefined)."""
    sr64, lr64, scale = _check_sr_lr(sr, lr, "lr-shift")
    down = downsample(sr64, scale, psf_sigma=psf_sigma)
    d = _lr_displacement(lr64, down, upsample_factor)
    return torch.cat((d.norm(dim=1, keepdim=True), d), dim=1)


def lr_consistency(sr: torch.Tensor, lr: torch.Tensor, *, psf_sigma: float | None = None,
                   upsample_factor: int = 100, sam: bool = True) -> torch.Tensor:
    """All four LR-consistency metrics from one check and one downsampling: ``[B,6]`` = lr-l1, lr-psnr,
    lr-sam (NaN when ``sam`` is False or there is one band), lr-shift magnitude, dy, dx; the same values as
    :func:`lr_l1`, :func:`lr_psnr`, :func:`lr_sam` and :func:`lr_shift` called one by one."""
    sr64, lr64, scale = _check_sr_lr(sr, lr, "lr-consistency")
    return consistency_from_down(downsample(sr64, scale, psf_sigma=psf_sigma), lr64,
                                 upsample_factor=upsample_factor, sam=sam)


def consistency_from_down(down: torch.Tensor, lr64: torch.Tensor, *, upsample_factor: int = 100, sam: bool = True
                          ) -> torch.Tensor:
    """:func:`lr_consistency` from the SR already brought to the LR grid (``down`` and ``lr64`` ``[B,C,h,w]``,
    float64): ``[B,6]`` = lr-l1, lr-psnr, lr-sam, lr-shift magnitude, dy, dx."""
    diff = (down - lr64).flatten(1)
    l1 = diff.abs().mean(dim=1)
    psnr = -10.0 * torch.log10(diff.square().mean(dim=1))
    if sam and down.shape[1] >= 2:
        angle = mean_spectral_angle(down, lr64)
    else:
        angle = torch.full_like(l1, math.nan)
    d = _lr_displacement(lr64, down, upsample_factor)
    return torch.cat((l1[:, None], psnr[:, None], angle[:, None], d.norm(dim=1, keepdim=True), d), dim=1)


# ----------------------------------------------------------------------------------------------------------
# registered classes
# ----------------------------------------------------------------------------------------------------------
class _LRMetric(Metric):
    """Shared options: ``psf_sigma`` (LR pixels; default: antialiased bilinear downsampling)."""

    reference = "lr"
    _fn: Any = None

    def __init__(self, spec: str | None = None, *, device: str | torch.device = "cpu",
                 psf_sigma: float | None = None, **options: Any) -> None:
        super().__init__(spec, device=device, **options)
        self.psf_sigma = validate_psf_sigma(psf_sigma)
        self.options["psf_sigma"] = self.psf_sigma

    def compute(self, sr: torch.Tensor, gt: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return type(self)._fn(sr, gt, psf_sigma=self.psf_sigma)


@register_metric
class LRL1(_LRMetric):
    name = "lr-l1"
    bounds = (0.0, 1.0)
    higher_is_better = False
    best_value = 0.0
    units = "data-range units"
    value_range = "[0, 1]; 0 = SR downsampled equals LR"
    description = "mean |SR downsampled to the LR grid - LR| (antialiased bilinear; option psf_sigma)"
    _fn = staticmethod(lr_l1)


@register_metric
class LRPSNR(_LRMetric):
    name = "lr-psnr"
    higher_is_better = True
    units = "dB"
    value_range = "(-inf, +inf]; +inf when SR downsampled equals LR"
    description = "PSNR (peak 1) of SR downsampled to the LR grid against LR (option psf_sigma)"
    _fn = staticmethod(lr_psnr)


@register_metric
class LRSAM(_LRMetric):
    name = "lr-sam"
    bounds = (0.0, 180.0)
    higher_is_better = False
    best_value = 0.0
    units = "degrees"
    value_range = "[0, 180]; needs >= 2 bands"
    description = "mean spectral angle between SR downsampled to the LR grid and LR (option psf_sigma)"
    _fn = staticmethod(lr_sam)


@register_metric
class LRShift(_LRMetric):
    name = "lr-shift"
    higher_is_better = False
    direction = "lower is better (magnitude; -dy/-dx signed)"
    best_value = 0.0
    units = "LR pixels"
    value_range = ">= 0; columns lr-shift (magnitude), lr-shift-dy, lr-shift-dx (signed)"
    description = ("misregistration of SR downsampled vs LR by phase correlation of the band means "
                   "(upsampled DFT, option upsample_factor=100, psf_sigma)")
    nan_reason = "the LR or the SR downsampled to it is flat (no variance): no correlation peak, no shift"

    def __init__(self, spec: str | None = None, *, device: str | torch.device = "cpu",
                 psf_sigma: float | None = None, upsample_factor: int = 100, **options: Any) -> None:
        super().__init__(spec, device=device, psf_sigma=psf_sigma, **options)
        if isinstance(upsample_factor, bool) or not isinstance(upsample_factor, int) or upsample_factor < 1:
            raise ConfigError(f"lr-shift: upsample_factor={upsample_factor!r}: expected an integer >= 1")
        self.upsample_factor = upsample_factor
        self.options["upsample_factor"] = upsample_factor

    def columns(self) -> list[Column]:
        return [Column(self.id, False, 0.0), Column(f"{self.id}-dy", False, None, signed=True),
                Column(f"{self.id}-dx", False, None, signed=True)]

    def compute(self, sr: torch.Tensor, gt: torch.Tensor, **kwargs: Any) -> dict[str, torch.Tensor]:
        v = lr_shift(sr, gt, psf_sigma=self.psf_sigma, upsample_factor=self.upsample_factor)
        return {c.name: v[:, i] for i, c in enumerate(self.columns())}
