"""Pixel metrics: ``psnr``, ``ssim`` and ``ssim-gray``, plus small helpers other metrics reuse.

Every metric is a functional core (``psnr(sr, gt) -> Tensor[B]``) and a thin registered class.
Inputs are float tensors ``[B, C, H, W]`` (values in ``[0, 1]`` after dividing by the file's data range,
see :mod:`clipscore_sr.metrics.base`); everything is computed in float64 and one value per image is returned.

Conventions
-----------
* ``psnr``: ``10*log10(R^2 / MSE)`` with the MSE over all channels and pixels, identical to
  ``skimage.metrics.peak_signal_noise_ratio(gt, sr, data_range=R)``. Identical images give ``+inf``.
* ``ssim``: per-channel SSIM (Wang et al. 2004) with an 11x11 Gaussian window (sigma 1.5), K1=0.01,
  K2=0.03, population (co)variances, averaged over the valid region (the filtered maps cropped by 5 pixels
  on every side, which is exactly skimage's crop) and then over channels. Identical to
  ``structural_similarity(gt, sr, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=R, channel_axis=-1)``.
* ``ssim-gray``: Wang et al.'s reference MATLAB ``ssim_index.m`` applied to ``rgb2gray`` output: MATLAB's
  luminance weights (0.298936021293775, 0.587043074451121, 0.114020904255103); for integer files
  (``data_range`` an integer > 1, e.g. 255 for 8-bit) the gray image is rounded to integer levels like
  MATLAB's ``uint8(...)`` conversion (round half away from zero); then ``filter2(window, x, 'valid')`` with the
  normalised ``fspecial('gaussian', 11, 1.5)`` window, K=(0.01, 0.03), ``L`` = data range, mean of the SSIM
  map. No automatic downsampling. Single-channel input skips ``rgb2gray``.

Bad inputs (shape mismatch, NaN/inf, integer tensors, crops that leave too little) raise
:class:`~clipscore_sr.errors.InputMismatchError` with a one-line message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..errors import ConfigError, InputMismatchError
from .base import Metric, register_metric

__all__ = [
    "MATLAB_RGB2GRAY_WEIGHTS",
    "PixelMetric",
    "as_float64",
    "check_pair",
    "crop_border",
    "filter_valid",
    "gaussian_window",
    "psnr",
    "rgb_to_gray_matlab",
    "ssim",
    "ssim_gray",
    "validate_crop_border",
]

#: MATLAB ``rgb2gray`` coefficients (first row of the inverse NTSC transform), in R, G, B order.
MATLAB_RGB2GRAY_WEIGHTS = (0.298936021293775, 0.587043074451121, 0.114020904255103)

SSIM_WIN_SIZE = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


# ----------------------------------------------------------------------------------------------------------
# shared helpers
# ----------------------------------------------------------------------------------------------------------
def validate_crop_border(value: Any, name: str = "crop_border") -> int:
    """Check a border option: an integer >= 0 (bools and non-integral floats are rejected)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < 0:
        raise ConfigError(f"{name}={value!r}: expected an integer number of pixels >= 0")
    return int(value)


def as_float64(x: torch.Tensor) -> torch.Tensor:
    """``x`` as float64 on a device that supports it (MPS has no float64: such tensors go to the CPU)."""
    if x.device.type == "mps":
        x = x.cpu()
    return x.to(torch.float64)


def crop_border(x: torch.Tensor, n: int, *, what: str = "image") -> torch.Tensor:
    """Remove ``n`` pixels from every side of the last two axes. Raises when nothing (or less) is left."""
    n = validate_crop_border(n)
    if n == 0:
        return x
    h, w = x.shape[-2], x.shape[-1]
    if 2 * n >= h or 2 * n >= w:
        raise InputMismatchError(
            f"crop_border={n} removes the whole {what} of size {h}x{w} (needs more than {2 * n} pixels per side)"
        )
    return x[..., n : h - n, n : w - n]


def _bad_items(ok: torch.Tensor) -> str:
    idx = (~ok).nonzero().flatten().tolist()
    shown = ", ".join(str(i) for i in idx[:5]) + (", ..." if len(idx) > 5 else "")
    return f"batch item(s) {shown}"


def _all_finite(x: torch.Tensor) -> bool:
    """True when every value is finite. One cheap reduction; only a NaN/inf (or a sum overflowing,
    which the caller then checks element-wise) makes the sum non-finite."""
    return bool(torch.isfinite(x.sum()))


def check_pair(sr: torch.Tensor, gt: torch.Tensor, metric: str, *, finite: bool = True, convert: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a ``[B,C,H,W]`` SR/GT pair and return both as float64 (``convert=False``: unconverted, for
    callers that convert chunk by chunk), GT on SR's device.

    Raises :class:`InputMismatchError` for non-tensors, wrong ranks, integer dtypes, shape mismatch and
    (when ``finite``) NaN/inf values, naming the offending batch items.
    """
    for label, x in (("SR", sr), ("GT", gt)):
        if not isinstance(x, torch.Tensor):
            raise InputMismatchError(f"{metric}: {label} must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 4:
            raise InputMismatchError(f"{metric}: {label} must be [B,C,H,W], got shape {list(x.shape)}")
        if not (x.is_floating_point()):
            raise InputMismatchError(
                f"{metric}: {label} has dtype {x.dtype}; expected a float tensor in [0, 1] (divide by the data range)"
            )
    if sr.shape != gt.shape:
        raise InputMismatchError(
            f"{metric}: SR shape {list(sr.shape)} does not match GT shape {list(gt.shape)} ([B,C,H,W])"
        )
    if sr.device.type == "mps":
        sr = sr.cpu()
    sr64, gt64 = (as_float64(sr), as_float64(gt.to(sr.device))) if convert else (sr, gt.to(sr.device))
    if finite:
        for label, x in (("SR", sr64), ("GT", gt64)):
            if _all_finite(x):
                continue
            ok = torch.isfinite(x).flatten(1).all(dim=1)
            if not bool(ok.all()):
                raise InputMismatchError(f"{metric}: {label} contains NaN or inf values ({_bad_items(ok)})")
    return sr64, gt64


def gaussian_window(size: int = SSIM_WIN_SIZE, sigma: float = SSIM_SIGMA, *, dtype: torch.dtype = torch.float64,
                    device: torch.device | str = "cpu", ndim: int = 1) -> torch.Tensor:
    """Normalised Gaussian window: 1-D ``[size]`` or 2-D ``[size, size]`` (``ndim=2``).

    The 2-D window equals MATLAB's ``fspecial('gaussian', size, sigma)`` (which is the outer product of the
    normalised 1-D window) and scipy/skimage's truncated Gaussian for ``size = 2*int(3.5*sigma+0.5)+1``.
    """
    if size < 1 or size % 2 == 0:
        raise ConfigError(f"gaussian window size {size}: expected an odd positive integer")
    r = (size - 1) // 2
    x = torch.arange(-r, r + 1, dtype=torch.float64, device=device)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    g = g / g.sum()
    if ndim == 2:
        g = torch.outer(g, g)
        g = g / g.sum()
    elif ndim != 1:
        raise ConfigError(f"gaussian window ndim={ndim}: expected 1 or 2")
    return g.to(dtype)


def filter_valid(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Correlate every ``[H, W]`` plane of ``x`` (any leading dims) with a separable window, 'valid' part only.

    ``window`` is the 1-D factor; the result has shape ``[..., H-k+1, W-k+1]`` (MATLAB ``filter2(w, x,
    'valid')`` for the symmetric window ``w = outer(window, window)``).
    """
    # Shift-and-add (k in-place multiply-adds per axis) is 3-6x faster on CPU than a single-channel float64
    # conv2d, which has no optimised kernel, and costs k small kernels on a GPU.
    k = window.numel()
    h, w = x.shape[-2:]
    if h < k or w < k:
        raise InputMismatchError(f"image {w}x{h} is smaller than the {k}x{k} window")
    taps = window.to(dtype=torch.float64).tolist()
    rows = torch.zeros(*x.shape[:-1], w - k + 1, dtype=x.dtype, device=x.device)
    for i, t in enumerate(taps):
        rows.add_(x[..., i:i + w - k + 1], alpha=t)
    out = torch.zeros(*x.shape[:-2], h - k + 1, w - k + 1, dtype=x.dtype, device=x.device)
    for i, t in enumerate(taps):
        out.add_(rows[..., i:i + h - k + 1, :], alpha=t)
    return out


def _range_tensor(data_range: float | torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    r = torch.as_tensor(data_range, dtype=torch.float64, device=device).flatten()
    if r.numel() == 1:
        r = r.expand(batch)
    if r.numel() != batch:
        raise InputMismatchError(f"data_range has {r.numel()} values for a batch of {batch}")
    if not bool(torch.isfinite(r).all()) or bool((r <= 0).any()):
        raise InputMismatchError(f"data_range must be finite and > 0, got {r.tolist()}")
    return r


# ----------------------------------------------------------------------------------------------------------
# functional cores
# ----------------------------------------------------------------------------------------------------------
def psnr(sr: torch.Tensor, gt: torch.Tensor, data_range: float | torch.Tensor = 1.0, crop_border: int = 0
         ) -> torch.Tensor:
    """PSNR in dB per image: ``10*log10(R^2 / MSE)``, MSE over all channels and pixels; ``+inf`` when equal.

    ``data_range`` (scalar or ``[B]``) is the range of the given values (1.0 for the package's [0,1] tensors).
    """
    sr, gt = check_pair(sr, gt, "psnr", finite=False, convert=False)
    sr, gt = _crop_both(sr, gt, crop_border)
    r = _range_tensor(data_range, sr.shape[0], sr.device)
    mse = _mse64(sr, gt)
    if not bool(torch.isfinite(mse).all()):  # a NaN/inf input makes its MSE non-finite: name the items
        check_pair(sr, gt, "psnr")
    return 10.0 * torch.log10(r * r / mse)


def _mse64(sr: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per-image mean of ``(sr - gt)^2`` over C, H, W, the difference and the sum in float64.

    On CPU one image at a time through one reused float64 buffer (a cache-sized working set, no batch-sized
    float64 temporaries, no page faults of fresh allocations): 5-15x faster than converting whole batches,
    the same values up to float64 summation order (<= 3e-13 dB on 256x256 RGB). Elsewhere one
    batched expression.
    """
    if sr.device.type != "cpu":
        return (as_float64(sr) - as_float64(gt)).square().flatten(1).mean(dim=1)
    out = torch.empty(sr.shape[0], dtype=torch.float64)
    buf = torch.empty(sr.shape[1:], dtype=torch.float64)
    flat = buf.view(-1)
    for i in range(sr.shape[0]):
        buf.copy_(sr[i])
        buf.sub_(gt[i])  # float32 -> float64, then the difference in float64 (exact for float32 inputs)
        out[i] = torch.dot(flat, flat)
    return out / flat.numel()


def _ssim_planes(x: torch.Tensor, y: torch.Tensor, c1: torch.Tensor, c2: torch.Tensor, window: torch.Tensor
                 ) -> torch.Tensor:
    """Mean SSIM over the valid region of each ``[H,W]`` plane; ``c1``/``c2`` broadcast over ``x.shape[:-2]``.

    On CPU the planes are processed a few at a time so the working set stays in cache (the computation is
    memory-bound: about 1.7x faster than one pass over a whole 512x512 RGB batch).
    """
    lead, (h, w) = x.shape[:-2], x.shape[-2:]
    if x.device.type == "cpu" and x[..., 0, 0].numel() > 1:
        chunk = max(1, (1 << 19) // (h * w))  # about 4 MB of float64 (2 MB of float32) per map
        xf, yf = x.reshape(-1, h, w), y.reshape(-1, h, w)
        c1f, c2f = c1.expand(lead).reshape(-1), c2.expand(lead).reshape(-1)
        parts = [_ssim_block(xf[i:i + chunk], yf[i:i + chunk], c1f[i:i + chunk], c2f[i:i + chunk], window)
                 for i in range(0, xf.shape[0], chunk)]
        return torch.cat(parts).reshape(lead)
    return _ssim_block(x, y, c1, c2, window)


#: output rows per band of the float32 SSIM path (each band is centred on its own mean: local centering keeps the
#: variance terms free of cancellation where the image is locally far from its overall mean)
SSIM_F32_BAND = 16


def _ssim_block(x: torch.Tensor, y: torch.Tensor, c1: torch.Tensor, c2: torch.Tensor, window: torch.Tensor
                ) -> torch.Tensor:
    """Mean SSIM of each plane, in float64 or float32 (the planes' dtype). In float32 the valid map is computed
    in bands of :data:`SSIM_F32_BAND` output rows, each band's planes centred on their own mean (SSIM's moments
    from ``x - m``, the mean added back to the local means), which keeps ``E[x^2] - mu^2`` free of
    cancellation; the map is summed in float64."""
    if x.dtype == torch.float64:
        return _ssim_map_sum(x, y, c1, c2, window, centre=False) / float(
            (x.shape[-2] - window.numel() + 1) * (x.shape[-1] - window.numel() + 1))
    k, h = window.numel(), x.shape[-2]
    total = torch.zeros(x.shape[:-2], dtype=torch.float64, device=x.device)
    for r0 in range(0, h - k + 1, SSIM_F32_BAND):
        r1 = min(h, r0 + SSIM_F32_BAND + k - 1)
        total += _ssim_map_sum(x[..., r0:r1, :], y[..., r0:r1, :], c1, c2, window, centre=True)
    return total / float((h - k + 1) * (x.shape[-1] - k + 1))


def _ssim_map_sum(x: torch.Tensor, y: torch.Tensor, c1: torch.Tensor, c2: torch.Tensor, window: torch.Tensor, *,
                  centre: bool) -> torch.Tensor:
    """Sum (float64) of the valid SSIM map of each plane; ``centre``: moments of the mean-centred planes."""
    if centre:
        mx = x.mean(dim=(-2, -1), keepdim=True, dtype=torch.float64).to(x.dtype)
        my = y.mean(dim=(-2, -1), keepdim=True, dtype=torch.float64).to(x.dtype)
        x, y = x - mx, y - my
    else:
        mx = my = torch.zeros((), dtype=x.dtype, device=x.device)
    stacked = torch.stack((x, y, x * x, y * y, x * y), dim=0)
    fx, fy, e_xx, e_yy, e_xy = filter_valid(stacked, window).unbind(0)
    var_x = e_xx - fx * fx
    var_y = e_yy - fy * fy
    cov = e_xy - fx * fy
    mu_x, mu_y = fx + mx, fy + my
    c1 = c1[..., None, None].to(x.dtype)
    c2 = c2[..., None, None].to(x.dtype)
    num = (2.0 * mu_x * mu_y + c1) * (2.0 * cov + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return (num / den).flatten(-2).sum(dim=-1, dtype=torch.float64)


def _check_window_fits(h: int, w: int, metric: str) -> None:
    if h < SSIM_WIN_SIZE or w < SSIM_WIN_SIZE:
        raise InputMismatchError(
            f"{metric}: image {h}x{w} (after crop_border) is smaller than the {SSIM_WIN_SIZE}x{SSIM_WIN_SIZE} window"
        )


SSIM_PRECISIONS = ("auto", "float32", "float64")


def ssim(sr: torch.Tensor, gt: torch.Tensor, data_range: float | torch.Tensor = 1.0, crop_border: int = 0,
         precision: str = "auto") -> torch.Tensor:
    """Per-channel SSIM averaged over channels (skimage ``structural_similarity`` with Wang et al.'s settings),
    float64 ``[B]``.

    ``precision``: ``float64`` is the reference; ``float32`` computes the local moments in float32 on
    mean-centred planes (about twice as fast on CPU; within 1e-6 of float64 on 8- and 16-bit data, tested);
    ``auto`` (default) is float32 for float32 (or half) inputs and float64 for float64 inputs.
    """
    if precision not in SSIM_PRECISIONS:
        raise ConfigError(f"ssim precision '{precision}': expected one of {', '.join(SSIM_PRECISIONS)}")
    low = sr.dtype in (torch.float32, torch.float16, torch.bfloat16) and gt.dtype == sr.dtype
    use32 = precision == "float32" or (precision == "auto" and low)
    sr, gt = check_pair(sr, gt, "ssim", convert=not use32)
    if use32:
        sr, gt = sr.to(torch.float32), gt.to(torch.float32)
    sr, gt = _crop_both(sr, gt, crop_border)
    _check_window_fits(sr.shape[-2], sr.shape[-1], "ssim")
    r = _range_tensor(data_range, sr.shape[0], sr.device)[:, None]  # [B,1] broadcasts over channels
    window = gaussian_window(device=sr.device)
    per_channel = _ssim_planes(gt, sr, (SSIM_K1 * r) ** 2, (SSIM_K2 * r) ** 2, window)
    return per_channel.mean(dim=1)


def rgb_to_gray_matlab(x: torch.Tensor, levels: torch.Tensor | float | None = None) -> torch.Tensor:
    """MATLAB ``rgb2gray`` on ``[B,3,H,W]`` -> ``[B,1,H,W]``.

    ``levels`` (scalar or ``[B]``): when given, ``x`` is in ``[0, 1]`` and the file was integer-typed with
    this maximum (255 for uint8): the gray image is returned in that integer scale, rounded half away from
    zero and saturated to ``[0, levels]`` as MATLAB's ``uint8(...)``/``uint16(...)`` conversion does. Without
    ``levels`` the weighted sum is returned unrounded (MATLAB on ``double`` input).
    """
    wts = torch.tensor(MATLAB_RGB2GRAY_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    if levels is None:
        return (x * wts).sum(dim=1, keepdim=True)
    lv = torch.as_tensor(levels, dtype=x.dtype, device=x.device).flatten()
    lv = lv.expand(x.shape[0]) if lv.numel() == 1 else lv
    # The integer values the file held (x was divided by the range; float32 storage may leave ~1e-5 error).
    ints = torch.floor(x * lv.view(-1, 1, 1, 1) + 0.5)
    gray = (ints * wts).sum(dim=1, keepdim=True)
    return torch.floor(gray + 0.5).clamp(min=0).minimum(lv.view(-1, 1, 1, 1))


def _integer_levels(data_range: torch.Tensor | float | Sequence[float] | None, batch: int,
                    device: torch.device) -> torch.Tensor | None:
    """The file ranges that mean integer storage (integer-valued and > 1), else ``None``; all-or-nothing."""
    if data_range is None:
        return None
    r = _range_tensor(torch.as_tensor(data_range, dtype=torch.float64), batch, device)
    is_int = (r > 1) & (r == torch.round(r))
    if bool(is_int.all()):
        return r
    if bool(is_int.any()):
        raise InputMismatchError(
            f"ssim-gray: batch mixes integer and float data ranges {r.tolist()}; score them in separate batches"
        )
    return None


def ssim_gray(sr: torch.Tensor, gt: torch.Tensor, crop_border: int = 0,
              file_range: torch.Tensor | float | None = None) -> torch.Tensor:
    """SSIM on luminance as the reference MATLAB ``ssim_index(rgb2gray(gt), rgb2gray(sr))`` computes it.

    ``sr``/``gt`` are ``[B,C,H,W]`` in ``[0,1]`` with C = 1 or 3. ``file_range`` ([B] or scalar) is the
    original data range; integer ranges (255, 65535, 4095...) switch on MATLAB's integer rounding of the
    gray image. Returns the mean of the SSIM map over the 'valid' region, per image.
    """
    sr, gt = check_pair(sr, gt, "ssim-gray")
    sr, gt = _crop_both(sr, gt, crop_border)
    c = sr.shape[1]
    if c not in (1, 3):
        raise InputMismatchError(f"ssim-gray: expected 1 (gray) or 3 (RGB) channels, got {c}")
    _check_window_fits(sr.shape[-2], sr.shape[-1], "ssim-gray")
    levels = _integer_levels(file_range, sr.shape[0], sr.device)
    if levels is not None:
        scale = levels
        if c == 3:
            sr, gt = rgb_to_gray_matlab(sr, levels), rgb_to_gray_matlab(gt, levels)
        else:  # an integer gray image: recover its integer values exactly
            lv = levels.view(-1, 1, 1, 1)
            sr, gt = torch.floor(sr * lv + 0.5), torch.floor(gt * lv + 0.5)
    else:
        scale = torch.ones(sr.shape[0], dtype=torch.float64, device=sr.device)
        if c == 3:
            sr, gt = rgb_to_gray_matlab(sr), rgb_to_gray_matlab(gt)
    window = gaussian_window(device=sr.device)
    c1 = (SSIM_K1 * scale) ** 2
    c2 = (SSIM_K2 * scale) ** 2
    return _ssim_planes(gt[:, 0], sr[:, 0], c1, c2, window)


def _crop_both(sr: torch.Tensor, gt: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    return crop_border(sr, n, what="SR"), crop_border(gt, n, what="GT")


# ----------------------------------------------------------------------------------------------------------
# registered classes
# ----------------------------------------------------------------------------------------------------------
class PixelMetric(Metric):
    """Shared constructor for pixel metrics: ``crop_border`` (pixels removed from every side of SR, GT
    and mask before scoring, default 0). Options are named keyword arguments (the pipeline passes each
    metric only the options its constructor names); unknown options raise :class:`ConfigError`."""

    def __init__(self, spec: str | None = None, *, device: str | torch.device = "cpu", crop_border: int = 0,
                 **options: Any) -> None:
        super().__init__(spec, device=device)
        if options:
            raise ConfigError(
                f"metric '{self.name}' has no option {', '.join(repr(u) for u in sorted(options))} "
                f"(valid: crop_border{self._extra_option_names()})"
            )
        self.options = {"crop_border": validate_crop_border(crop_border)}

    def _extra_option_names(self) -> str:
        return ""

    @property
    def crop(self) -> int:
        return int(self.options["crop_border"])


@register_metric
class PSNR(PixelMetric):
    name = "psnr"
    higher_is_better = True
    units = "dB"
    value_range = "(-inf, +inf]; +inf for identical images"
    description = (
        "10*log10(R^2/MSE), MSE over all channels and pixels (= skimage peak_signal_noise_ratio); "
        "option crop_border"
    )

    def compute(self, sr: torch.Tensor, gt: torch.Tensor, *, mask: torch.Tensor | None = None,
                data_range: torch.Tensor | None = None, sr_ids: Sequence[str] | None = None,
                gt_ids: Sequence[str] | None = None) -> torch.Tensor:
        return psnr(sr, gt, 1.0, self.crop)


@register_metric
class SSIM(PixelMetric):
    name = "ssim"
    bounds = (-1.0, 1.0)
    best_value = 1.0
    higher_is_better = True
    units = "unitless"
    value_range = "[-1, 1]; 1 for identical images"
    description = (
        "per-channel SSIM, 11x11 Gaussian sigma 1.5, K=(0.01,0.03), population stats, valid region, "
        "mean over channels (= skimage structural_similarity, Wang et al. settings); option crop_border"
    )

    def compute(self, sr: torch.Tensor, gt: torch.Tensor, *, mask: torch.Tensor | None = None,
                data_range: torch.Tensor | None = None, sr_ids: Sequence[str] | None = None,
                gt_ids: Sequence[str] | None = None) -> torch.Tensor:
        return ssim(sr, gt, 1.0, self.crop)


@register_metric
class SSIMGray(PixelMetric):
    name = "ssim-gray"
    bounds = (-1.0, 1.0)
    best_value = 1.0
    higher_is_better = True
    units = "unitless"
    value_range = "[-1, 1]; 1 for identical images"
    description = (
        "SSIM of MATLAB rgb2gray luminance as Wang et al.'s ssim_index.m (8-bit rounding of the gray image "
        "for integer files, 11x11 Gaussian, 'valid', no downsampling); 1 or 3 channels; option crop_border"
    )

    def compute(self, sr: torch.Tensor, gt: torch.Tensor, *, mask: torch.Tensor | None = None,
                data_range: torch.Tensor | None = None, sr_ids: Sequence[str] | None = None,
                gt_ids: Sequence[str] | None = None) -> torch.Tensor:
        return ssim_gray(sr, gt, self.crop, data_range)
