"""Training losses of the reference generators (all differentiable, inputs ``[B,C,H,W]`` in [0, 1]).

* :func:`ssim_map_mean` / :func:`ssim_loss` - SSIM with an 11x11 Gaussian window (sigma 1.5), K1 0.01,
  K2 0.03, data range 1, over the valid region (no padding), averaged over channels and pixels: the same
  convention as the ``ssim`` metric, but in the input's dtype and differentiable. ``ssim_loss = (1 - SSIM) / 2``.
* :func:`authors_ssim_loss` - the authors' SSIM term (kornia ``ssim_loss(window_size=5)``): a 5x5 Gaussian
  window (sigma 1.5), reflect padding to the input size ("same"), ``clamp((1 - SSIM map) / 2, 0, 1)``
  averaged over channels and pixels.
* :class:`L2ModelLoss` - the remote-sensing baseline recipe for SRCNN / HighRes-net:
  ``0.3 * MSE + 0.4 * MAE + 0.3 * SSIM term`` (weights configurable); ``ssim_style="authors"`` (default)
  uses :func:`authors_ssim_loss`, ``"metric"`` uses :func:`ssim_loss` (11x11, valid region).
* :func:`unsharp_mask` - Real-ESRGAN's USM sharpening of targets (Gaussian blur kernel 51, sigma 8,
  weight 0.5, threshold 10/255, soft mask), reflect-101 borders as OpenCV.
* :func:`gan_loss` - the vanilla (non-saturating BCE-with-logits) GAN loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from clipscore_sr.errors import InputMismatchError

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5


def gaussian_kernel1d(size: int, sigma: float, *, dtype: torch.dtype = torch.float32,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """Normalised 1-D Gaussian of odd ``size``; ``sigma <= 0`` uses OpenCV's rule
    ``0.3 * ((size - 1) / 2 - 1) + 0.8``."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"gaussian kernel size must be odd and >= 1, got {size}")
    if sigma <= 0:
        sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    k = torch.exp(-(x * x) / (2 * sigma * sigma))
    return (k / k.sum()).to(dtype=dtype, device=device)


def _separable(x: torch.Tensor, k: torch.Tensor, pad_mode: str | None) -> torch.Tensor:
    """Depthwise separable filtering of ``[B,C,H,W]`` with 1-D kernel ``k``; ``pad_mode=None`` = valid."""
    c, n = x.shape[1], k.numel()
    if pad_mode is not None:
        p = n // 2
        mode = pad_mode if (pad_mode != "reflect" or min(x.shape[-2:]) > p) else "replicate"
        x = F.pad(x, (p, p, p, p), mode=mode)
    kh = k.view(1, 1, n, 1).expand(c, 1, n, 1)
    kw = k.view(1, 1, 1, n).expand(c, 1, 1, n)
    return F.conv2d(F.conv2d(x, kh, groups=c), kw, groups=c)


def _check(sr: torch.Tensor, gt: torch.Tensor, who: str) -> None:
    if sr.ndim != 4 or sr.shape != gt.shape:
        raise InputMismatchError(f"{who}: expected sr and target of the same [B,C,H,W] shape, got "
                                 f"{tuple(sr.shape)} and {tuple(gt.shape)}")


AUTHORS_SSIM_WINDOW = 5
SSIM_STYLES = ("authors", "metric")


def ssim_map(sr: torch.Tensor, gt: torch.Tensor, window: int = SSIM_WINDOW, pad_mode: str | None = None,
             eps: float = 0.0) -> torch.Tensor:
    """SSIM map ``[B,C,h,w]`` (data range 1, Gaussian sigma 1.5, K 0.01/0.03), differentiable, in ``sr``'s
    dtype; ``pad_mode=None``: valid region only, ``"reflect"``: same size as the input (kornia's "same")."""
    _check(sr, gt, "ssim loss")
    if pad_mode is None and min(sr.shape[-2:]) < window:
        raise InputMismatchError(f"ssim loss: images must be at least {window}x{window}, "
                                 f"got {tuple(sr.shape[-2:])}")
    gt = gt.to(sr.dtype)
    k = gaussian_kernel1d(window, SSIM_SIGMA, dtype=sr.dtype, device=sr.device)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    stacked = torch.cat([sr, gt, sr * sr, gt * gt, sr * gt], 1)
    mu_x, mu_y, xx, yy, xy = _separable(stacked, k, pad_mode).chunk(5, dim=1)
    vx, vy, cxy = xx - mu_x * mu_x, yy - mu_y * mu_y, xy - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * cxy + c2)) / ((mu_x * mu_x + mu_y * mu_y + c1) * (vx + vy + c2) + eps)


def ssim_map_mean(sr: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM ``[B]`` (data range 1, 11x11 window, valid region), differentiable, in ``sr``'s dtype."""
    return ssim_map(sr, gt).flatten(1).mean(1)


def authors_ssim_loss(sr: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """The authors' SSIM loss (kornia ``ssim_loss(sr, gt, window_size=5)``, then the mean over the batch)."""
    m = ssim_map(sr, gt, AUTHORS_SSIM_WINDOW, "reflect", eps=1e-12)
    return ((1.0 - m) / 2).clamp(0, 1).mean()


def ssim_loss(sr: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """``(1 - SSIM) / 2`` averaged over the batch (0 for identical images, at most 1)."""
    return (1.0 - ssim_map_mean(sr, gt)).mean() / 2.0


class L2ModelLoss(nn.Module):
    """``mse * MSE + mae * MAE + ssim * SSIM term``; :meth:`terms` returns each weighted term.

    ``ssim_style``: ``"authors"`` (:func:`authors_ssim_loss`, 5x5) or ``"metric"`` (:func:`ssim_loss`, 11x11).
    """

    def __init__(self, mse: float = 0.3, mae: float = 0.4, ssim: float = 0.3, ssim_style: str = "authors") -> None:
        super().__init__()
        if ssim_style not in SSIM_STYLES:
            raise ValueError(f"ssim_style must be one of {', '.join(SSIM_STYLES)}, got {ssim_style!r}")
        self.weights = {"mse": float(mse), "mae": float(mae), "ssim": float(ssim)}
        self.ssim_fn = authors_ssim_loss if ssim_style == "authors" else ssim_loss

    def terms(self, sr: torch.Tensor, gt: torch.Tensor) -> dict[str, torch.Tensor]:
        _check(sr, gt, "L2 model loss")
        out: dict[str, torch.Tensor] = {}
        if self.weights["mse"]:
            out["mse"] = self.weights["mse"] * F.mse_loss(sr, gt)
        if self.weights["mae"]:
            out["mae"] = self.weights["mae"] * F.l1_loss(sr, gt)
        if self.weights["ssim"]:
            out["ssim"] = self.weights["ssim"] * self.ssim_fn(sr, gt)
        return out

    def forward(self, sr: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        return sum(self.terms(sr, gt).values(), sr.new_zeros(()))


def unsharp_mask(img: torch.Tensor, weight: float = 0.5, radius: int = 50, threshold: float = 10.0 / 255.0
                 ) -> torch.Tensor:
    """Real-ESRGAN's USM sharpening of ``img`` ``[B,C,H,W]`` in [0, 1].

    ``blur = G(img)`` (kernel ``radius`` rounded up to odd, OpenCV sigma rule, reflect-101 borders);
    ``residual = img - blur``; ``mask = |residual| > threshold`` softened by the same blur;
    ``out = soft_mask * clip(img + weight * residual, 0, 1) + (1 - soft_mask) * img``.
    """
    if img.ndim != 4:
        raise InputMismatchError(f"unsharp_mask: expected [B,C,H,W], got {tuple(img.shape)}")
    size = radius + 1 if radius % 2 == 0 else radius
    k = gaussian_kernel1d(size, 0.0, dtype=img.dtype, device=img.device)
    blur = _separable(img, k, "reflect")
    residual = img - blur
    mask = (residual.abs() > threshold).to(img.dtype)
    soft = _separable(mask, k, "reflect")
    sharp = (img + weight * residual).clamp(0, 1)
    return soft * sharp + (1 - soft) * img


def gan_loss(logits: torch.Tensor, target_is_real: bool) -> torch.Tensor:
    """Vanilla GAN loss: BCE-with-logits against all-ones (real) or all-zeros (fake), mean over pixels."""
    target = torch.ones_like(logits) if target_is_real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


def finite_or_name(terms: dict[str, torch.Tensor]) -> str | None:
    """The name of the first non-finite loss term, or None when all are finite."""
    for name, value in terms.items():
        v = float(value.detach())
        if not math.isfinite(v):
            return name
    return None
