"""Correctness of the added detail (reference: HR and LR): improvement, omission and hallucination maps and
fractions, after Aybar et al., "A comprehensive benchmark for optical remote sensing image super-resolution"
(opensr-test, IEEE GRSL 2024), computed batched on the device.

Steps, per image
----------------
1. Harmonise SR to HR: per-band histogram matching (the same mapping as ``skimage.exposure.match_histograms``:
   each SR value goes to the HR value at the same empirical quantile, linear between HR's distinct values);
   optional ``register``: remove the global SR->HR shift found by phase correlation (Fourier shift).
2. ``LR_up``: LR brought to the HR grid by bilinear interpolation (``align_corners=False``; opensr-test does
   the same but names this helper ``apply_downsampling``, and its SR->LR helper ``apply_upsampling``: the
   names are swapped, the operations are the ones described here).
3. Distances per location (a pixel, or a ``patch_size`` x ``patch_size`` block), over the bands:
   ``d_im = d(SR', HR)``, ``d_om = d(SR', LR_up)``, ``d_ref = d(LR_up, HR)``. ``d`` is ``l1`` (mean absolute
   difference, default), ``l2`` (mean squared difference) or ``ipsnr`` (``1/PSNR`` in 1/dB with the MSE
   floored at 1e-10, opensr-test's PSNR-like distance) or ``lpips`` (LPIPS v0.1, AlexNet trunk, per
   ``patch_size`` block >= 32 px, 1 or 3 bands, where its weights are on disk) or ``clip`` (``1 - cosine`` of
   the CLIP image embeddings of each ``patch_size`` block >= 16 px, each block resized to the model input
   with the weights' own preprocessing; option ``clip`` = a CLIP spec as for ``clipscore``, default the
   paper's model; opensr-test's CLIP distance is the L1 between unnormalised SigLIP embeddings instead).
4. Locations where LR_up is already close to HR are left out (the paper's rule): ``d_ref <= threshold``,
   ``threshold`` a number or ``"qNN"``, the NN-th percentile of the image's ``d_ref`` (default ``q75``, as
   opensr-test's ``gradient_threshold="auto"``). opensr-test's code instead keeps a location when any of
   ``d_ref``, ``d_im``, ``d_om`` exceeds the threshold: ``mask_rule="any"``.
5. ``x = d_im/d_ref``, ``y = d_om/d_ref``; with ``H = x + y - 1``: improvement ``x + y(1 - exp(-g_im H))``,
   omission ``y + x(1 - exp(-g_om H))``, hallucination ``exp(-g_ha x y)`` (the paper's equations;
   ``g = (0.8, 0.8, 0.4)``, the defaults of opensr-test's ``tc_*`` functions). Each location is classified
   as the class with the lowest score (ties: improvement, then omission), which is what opensr-test's
   softmin + argmax does; the metric values are the fractions of kept locations in each class.

On the CPU with numba installed (the ``fast`` extra) the default case (``l1``, ``patch_size`` 1, no
``register``, up to 16 bands) runs fused kernels (:mod:`._correctness_cpu`), about 2.5x faster, with the same
arithmetic: histogram matching, distances, mask and fractions are bit-identical on the tested data; numba's
``exp`` and torch's may differ by 1 ulp, so a location whose two lowest scores are within ~1e-16 of each other
can take the other class (none in 2.1M kept pixels of 8-bit data; a constructed tie shows it).
``CLIPSCORE_SR_NO_NUMBA=1`` forces the torch code.

The three fractions are the columns ``<id>-improvement`` (higher is better), ``<id>-omission`` and
``<id>-hallucination`` (lower is better); NaN when no location is kept.
"""

from __future__ import annotations

import functools
import math
import os
import re
import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError, InputMismatchError
from .base import Column, Metric, register_metric
from .consistency import integer_scale, phase_correlation
from .pixel import check_pair

__all__ = ["CLASS_NAMES", "CorrectnessMaps", "correctness", "histogram_match", "location_distance",
           "upsample_lr", "write_class_map"]

CLASS_NAMES = ("improvement", "omission", "hallucination")
DISTANCES = ("l1", "l2", "ipsnr", "lpips", "clip")
#: smallest patch_size of the learned distances, and why
MIN_PATCH = {"lpips": (32, "the AlexNet trunk"), "clip": (16, "a CLIP view of a block")}
DEFAULT_GAMMAS = (0.8, 0.8, 0.4)
#: map colours (RGB, 0-255): improvement, omission, hallucination; masked locations are grey
CLASS_COLOURS = ((85, 168, 104), (76, 114, 176), (196, 78, 82))
MASKED_COLOUR = (200, 200, 200)


def histogram_match(src: torch.Tensor, ref: torch.Tensor, levels: int | None = None) -> torch.Tensor:
    """Per image and band, map ``src`` values to ``ref``'s distribution (``skimage.exposure.match_histograms``
    semantics) ``[B,C,H,W]`` -> same shape; ``ref`` may have another size. ``levels`` (e.g. 255 for 8-bit
    files): count instead of sorting when every value is ``k / levels`` (checked; same result)."""
    src, ref = src.contiguous(), ref.contiguous()  # channels-last views: flat per-band rows below
    if levels is not None and 1 < levels <= 65535:
        out = _histogram_match_levels(src, ref, int(levels))
        if out is not None:
            return out
    b, c = src.shape[:2]
    s = src.reshape(b * c, -1)
    t = ref.reshape(b * c, -1)
    n, m = s.shape[1], t.shape[1]
    if m == 1:
        return t.expand(b * c, n).reshape(src.shape).clone()
    s_sorted = s.sort(dim=1).values
    q = torch.searchsorted(s_sorted, s.contiguous(), right=True).to(s.dtype) / n  # quantile of each value
    t_sorted = t.sort(dim=1).values
    # knots at the last occurrence of each distinct value; earlier duplicates repeat that knot (no effect)
    last = torch.ones_like(t_sorted, dtype=torch.bool)
    last[:, :-1] = t_sorted[:, 1:] != t_sorted[:, :-1]
    idx = torch.arange(m, device=t.device).expand(b * c, m)
    run_end = torch.where(last, idx, torch.full_like(idx, m)).flip(1).cummin(dim=1).values.flip(1)
    kq = (run_end + 1).to(t.dtype) / m
    j = torch.searchsorted(kq, q.contiguous(), right=True).clamp(1, m - 1)
    x0, x1 = kq.gather(1, j - 1), kq.gather(1, j)
    y0, y1 = t_sorted.gather(1, j - 1), t_sorted.gather(1, j)
    same = x1 == x0
    out = torch.where(same, y0, y0 + (y1 - y0) / torch.where(same, torch.ones_like(x1), x1 - x0) * (q - x0))
    out = torch.where(q <= kq[:, :1], t_sorted[:, :1], out)
    out = torch.where(q >= kq[:, -1:], t_sorted[:, -1:], out)
    return out.reshape(src.shape)


def _level_codes(x: torch.Tensor, levels: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``x`` ``[P,N]`` -> (codes ``[P,N]`` int64, the nearest level ``0..levels``; the value of each code
    ``[P,levels+1]``) when each code holds one distinct value, else None. Codes are monotone in the value, so
    ordering codes orders values; the check makes the counting match exact."""
    codes = x.mul(levels).add_(0.5).clamp_(0, levels).long()
    value = torch.zeros((x.shape[0], levels + 1), dtype=x.dtype, device=x.device).scatter_(1, codes, x)
    if not torch.equal(value.gather(1, codes), x):  # some code holds two values: not quantised at `levels`
        return None
    return codes, value


def _level_counts(codes: torch.Tensor, nl: int, dtype: torch.dtype) -> torch.Tensor:
    """Per-row histogram of ``codes`` ``[P,N]`` -> ``[P,nl]`` (one ``bincount`` over the whole batch)."""
    p = codes.shape[0]
    offset = torch.arange(0, p * nl, nl, device=codes.device)[:, None]
    return torch.bincount(codes.add(offset).reshape(-1), minlength=p * nl).view(p, nl).to(dtype)


def _histogram_match_levels(src: torch.Tensor, ref: torch.Tensor, levels: int) -> torch.Tensor | None:
    """:func:`histogram_match` by counting when every value is one of ``levels + 1`` quantised levels
    (8/16-bit files: ``k / levels``): O(n) instead of a sort, same result. None when the data is not quantised."""
    b, c = src.shape[:2]
    p, nl = b * c, levels + 1
    s, t = src.reshape(p, -1), ref.reshape(p, -1)
    got_s, got_t = _level_codes(s, levels), _level_codes(t, levels)
    if got_s is None or got_t is None:
        return None
    (cs, _), (ct, value_t) = got_s, got_t
    count_s, count_t = _level_counts(cs, nl, s.dtype), _level_counts(ct, nl, t.dtype)
    q = count_s.cumsum(1) / s.shape[1]  # quantile of each source level
    present = count_t > 0
    idx = torch.arange(nl, device=t.device).expand(p, nl)
    nxt = torch.where(present, idx, torch.full_like(idx, nl)).flip(1).cummin(dim=1).values.flip(1)
    last_present = torch.where(present, idx, torch.full_like(idx, -1)).cummax(dim=1).values[:, -1:]
    nxt = torch.where(nxt >= nl, last_present.expand(p, nl), nxt)  # knots: each level -> next present level
    kq = (count_t.cumsum(1) / t.shape[1]).gather(1, nxt)
    kv = value_t.gather(1, nxt)
    m = nl
    j = torch.searchsorted(kq, q.contiguous(), right=True).clamp(1, m - 1)
    x0, x1, y0, y1 = kq.gather(1, j - 1), kq.gather(1, j), kv.gather(1, j - 1), kv.gather(1, j)
    same = x1 == x0
    lut = torch.where(same, y0, y0 + (y1 - y0) / torch.where(same, torch.ones_like(x1), x1 - x0) * (q - x0))
    lut = torch.where(q <= kq[:, :1], kv[:, :1], lut)
    lut = torch.where(q >= kq[:, -1:], kv[:, -1:], lut)
    return lut.gather(1, cs).reshape(src.shape)


def upsample_lr(lr: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """LR ``[B,C,h,w]`` -> ``size`` by bilinear (or ``"bicubic"``, clamped to [0, 1]) interpolation."""
    up = F.interpolate(lr, size=size, mode=mode, align_corners=False)
    return up.clamp(0.0, 1.0) if mode == "bicubic" else up


def _fourier_shift(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Move each image's content by ``shift`` ``[B,2]`` (dy, dx) pixels (periodic, sub-pixel)."""
    h, w = x.shape[-2:]
    ky = torch.fft.fftfreq(h, dtype=torch.float64, device=x.device)
    kx = torch.fft.fftfreq(w, dtype=torch.float64, device=x.device)
    phase = ky[None, :, None] * shift[:, 0, None, None] + kx[None, None, :] * shift[:, 1, None, None]
    f = torch.fft.fft2(x.to(torch.complex128)) * torch.exp(-2j * math.pi * phase)[:, None]
    return torch.fft.ifft2(f).real.to(x.dtype)


def _patches(x: torch.Tensor, p: int) -> torch.Tensor:
    """``[B,C,H,W]`` -> ``[B*(H//p)*(W//p), C, p, p]`` non-overlapping blocks, row-major per image."""
    b, c, h, w = x.shape
    nh, nw = h // p, w // p
    x = x[:, :, :nh * p, :nw * p].reshape(b, c, nh, p, nw, p)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(b * nh * nw, c, p, p)


def location_distance(x: torch.Tensor, y: torch.Tensor, distance: str = "l1", patch_size: int = 1,
                      lpips_model: Any = None, clip_model: Any = None) -> torch.Tensor:
    """Distance per location over the bands: ``[B,C,H,W]`` x2 -> ``[B,H//p,W//p]``."""
    if distance in MIN_PATCH:
        _check_patch(distance, patch_size)
        shape = (x.shape[0], x.shape[-2] // patch_size, x.shape[-1] // patch_size)
        if distance == "clip":
            if clip_model is None:
                raise ConfigError("location_distance(distance='clip') needs clip_model (a loaded ClipModel)")
            return _clip_cosine_distance(_clip_embed(x, patch_size, clip_model),
                                         _clip_embed(y, patch_size, clip_model)).to(x.dtype).reshape(shape)
        from .lpips import lpips_distance

        d = lpips_distance(_patches(x, patch_size), _patches(y, patch_size), lpips_model)
        return d.to(x.dtype).reshape(shape)
    diff = (x - y).abs_() if distance == "l1" else (x - y).square_()
    per_pixel = diff.mean(dim=1, keepdim=True)
    d = F.avg_pool2d(per_pixel, patch_size)[:, 0] if patch_size > 1 else per_pixel[:, 0]
    if distance == "ipsnr":
        d = 1.0 / (-10.0 * torch.log10(d.clamp_min(1e-10)))
    return d


def _check_patch(distance: str, patch_size: int) -> None:
    least, why = MIN_PATCH.get(distance, (1, ""))
    if patch_size < least:
        raise ConfigError(f"correctness:{distance} needs patch_size >= {least} ({why}), got {patch_size} "
                          f"(--metric-option correctness.patch_size={least})")


def _clip_embed(x: torch.Tensor, patch_size: int, clip_model: Any, precision: str = "fp32") -> torch.Tensor:
    """CLIP image embeddings ``[B*nh*nw, D]`` of the ``patch_size`` blocks of ``x`` (row-major per image),
    256 blocks per forward pass (``precision``: autocast on GPU, as for clipscore)."""
    blocks = _patches(x, patch_size).float()
    return clip_model.embed(blocks, batch_size=256, precision=precision)


def _clip_cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``1 - cosine`` per row, in float64 (``[N,D]`` x2 -> ``[N]``, in [0, 2])."""
    a, b = F.normalize(a.double(), dim=-1), F.normalize(b.double(), dim=-1)
    return 1.0 - (a * b).sum(dim=-1)


def _kth(threshold: str, n: int) -> int:
    """Rank (1-based) of the ``qNN`` threshold among ``n`` values: ``int(NN/100 * n)``, within 1..n."""
    return min(max(int(float(threshold[1:]) / 100.0 * n), 1), n)


def _threshold(d_ref: torch.Tensor, threshold: float | str) -> torch.Tensor:
    """Per-image threshold ``[B,1,1]``: a number, or ``qNN`` = the ``int(NN/100 * n)``-th smallest ``d_ref``."""
    if isinstance(threshold, str):
        flat = d_ref.flatten(1)
        return flat.kthvalue(_kth(threshold, flat.shape[1]), dim=1).values.view(-1, 1, 1)
    return torch.full((d_ref.shape[0], 1, 1), float(threshold), dtype=d_ref.dtype, device=d_ref.device)


@dataclass
class CorrectnessMaps:
    """Per-location results: distances ``d_ref``, ``d_im``, ``d_om`` ``[B,h,w]``, ``keep`` (bool, the locations
    scored), ``fractions`` ``[B,3]``; ``scores`` ``[B,3,h,w]`` (NaN where left out) and ``classes`` ``[B,h,w]``
    int64 (0 improvement, 1 omission, 2 hallucination, -1 left out) are computed on first access (the fractions
    need neither)."""

    d_ref: torch.Tensor
    d_im: torch.Tensor
    d_om: torch.Tensor
    keep: torch.Tensor
    fractions: torch.Tensor
    patch_size: int
    gammas: tuple[float, float, float] = DEFAULT_GAMMAS
    _first: torch.Tensor | None = field(default=None, repr=False)  # improvement wins (bool), see _classify
    _second: torch.Tensor | None = field(default=None, repr=False)  # else omission wins over hallucination

    @cached_property
    def scores(self) -> torch.Tensor:
        s = torch.stack(_scores(*_ratios(self.d_ref, self.d_im, self.d_om, self.keep), self.gammas), dim=1)
        return s.masked_fill_(~self.keep[:, None], math.nan)

    @cached_property
    def classes(self) -> torch.Tensor:
        first, second = self._first, self._second
        if first is None or second is None:
            first, second = _classify(*_scores(*_ratios(self.d_ref, self.d_im, self.d_om, self.keep), self.gammas))
        cls = torch.where(first, 0, torch.where(second, 1, 2))
        return cls.masked_fill_(~self.keep, -1)


def _ratios(d_ref: torch.Tensor, d_im: torch.Tensor, d_om: torch.Tensor, keep: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """``x = d_im / d_ref``, ``y = d_om / d_ref`` (divided by 1 where the location is left out)."""
    den = d_ref.where(keep, 1.0)
    return d_im / den, d_om / den


def _scores(x: torch.Tensor, y: torch.Tensor, gammas: tuple[float, float, float]
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The paper's improvement, omission and hallucination scores of the normalised distances ``x``, ``y``."""
    g_im, g_om, g_ha = gammas
    h = x + y - 1.0
    e_im = torch.exp(-g_im * h)
    e_om = e_im if g_om == g_im else torch.exp(-g_om * h)  # the paper's defaults share one exponential
    return x + y * (1.0 - e_im), y + x * (1.0 - e_om), torch.exp(-g_ha * x * y)


def _classify(s_im: torch.Tensor, s_om: torch.Tensor, s_ha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """argmin of the three scores with argmin's tie order (improvement, then omission) as two bool maps: class 0
    where ``first``, else 1 where ``second``, else 2 (no strided reduction, no int64 map)."""
    return (s_im <= s_om) & (s_im <= s_ha), s_om <= s_ha


def correctness(sr: torch.Tensor, hr: torch.Tensor, lr: torch.Tensor, *, distance: str = "l1",
                patch_size: int = 1, threshold: float | str = "q75", mask_rule: str = "ref",
                harmonize: bool = True, register: bool = False,
                gammas: tuple[float, float, float] = DEFAULT_GAMMAS, levels: int | None = None,
                lpips_model: Any = None, clip_model: Any = None, precision: str = "fp32") -> CorrectnessMaps:
    """Improvement / omission / hallucination per location and their fractions (see the module docstring).
    ``levels``: the data's quantisation (255 for 8-bit files) for the fast histogram matching;
    ``lpips_model``: an ``lpips.LPIPS`` for ``distance="lpips"`` (built from local weights when None);
    ``clip_model``: a :class:`~clipscore_sr.metrics.clip.ClipModel` for ``distance="clip"`` (default: the
    paper's CLIP, from local weights, when None)."""
    _check_patch(distance, patch_size)
    gammas = tuple(float(g) for g in gammas)
    if distance == "lpips" and lpips_model is None:
        from .lpips import build_lpips

        lpips_model = build_lpips("alex", sr.device)
    if distance == "clip" and clip_model is None:
        from .clip import load_clip

        clip_model = load_clip(None, device=sr.device)
    sr64, hr64 = check_pair(sr, hr, "correctness")
    if not isinstance(lr, torch.Tensor) or lr.ndim != 4 or lr.shape[:2] != sr64.shape[:2]:
        raise InputMismatchError(f"correctness: LR must be [B,C,h,w] matching SR's batch and bands, got "
                                 f"{list(lr.shape) if isinstance(lr, torch.Tensor) else type(lr).__name__}")
    integer_scale(sr64.shape, lr.shape)
    lr64 = lr.to(sr64.device, torch.float64)
    if not bool(torch.isfinite(lr64).all()):
        raise InputMismatchError("correctness: LR contains NaN or inf values")
    if patch_size > min(sr64.shape[-2:]):
        raise InputMismatchError(f"correctness: patch_size {patch_size} is larger than the {sr64.shape[-1]}x"
                                 f"{sr64.shape[-2]} image")
    kernels = _fused_kernels() if (sr64.device.type == "cpu" and distance == "l1" and patch_size == 1
                                   and not register and sr64.shape[1] <= FUSED_MAX_BANDS) else None
    sr_h = _fused_histogram_match(kernels, sr64, hr64, levels) if harmonize and kernels is not None else None
    if sr_h is None:
        sr_h = histogram_match(sr64, hr64, levels) if harmonize else sr64
    if register:
        shift = phase_correlation(hr64.mean(dim=1), sr_h.mean(dim=1), 10)
        sr_h = _fourier_shift(sr_h, -shift)
    lr_up = upsample_lr(lr64, tuple(sr64.shape[-2:]))
    if distance == "clip":  # embed each image's blocks once, then the three cosines
        e_up, e_hr, e_sr = (_clip_embed(x, patch_size, clip_model, precision) for x in (lr_up, hr64, sr_h))
        shape = (sr64.shape[0], sr64.shape[-2] // patch_size, sr64.shape[-1] // patch_size)
        d_ref, d_im, d_om = (_clip_cosine_distance(a, b).reshape(shape)
                             for a, b in ((e_up, e_hr), (e_sr, e_hr), (e_sr, e_up)))
    elif kernels is not None:
        return _fused_classes(kernels, sr_h, hr64, lr_up, threshold, mask_rule, gammas)
    else:
        d_ref = location_distance(lr_up, hr64, distance, patch_size, lpips_model)
        d_im = location_distance(sr_h, hr64, distance, patch_size, lpips_model)
        d_om = location_distance(sr_h, lr_up, distance, patch_size, lpips_model)
    t = _threshold(d_ref, threshold)
    keep = d_ref > t
    if mask_rule == "any":
        keep = keep | (d_im > t) | (d_om > t)
    keep = keep & (d_ref > 0)
    first, second = _classify(*_scores(*_ratios(d_ref, d_im, d_om, keep), gammas))
    fractions = _fractions(keep.flatten(1).sum(dim=1), (first & keep).flatten(1).sum(dim=1),
                           (second & keep & ~first).flatten(1).sum(dim=1))
    return CorrectnessMaps(d_ref, d_im, d_om, keep, fractions, patch_size, gammas, first, second)


def _fractions(n_keep: torch.Tensor, n_im: torch.Tensor, n_om: torch.Tensor) -> torch.Tensor:
    """Class counts per image ``[B]`` (kept, improvement, omission) -> fractions ``[B,3]``, NaN when none kept."""
    counts = torch.stack((n_im, n_om, n_keep - n_im - n_om), dim=1).to(torch.float64)
    return torch.where(n_keep[:, None] > 0, counts / n_keep.clamp_min(1)[:, None].to(torch.float64),
                       torch.full_like(counts, math.nan))


_KERNEL_LOCK = threading.Lock()  # numba's default threading layer is not re-entrant
#: torch's mean over more bands than this sums in another order (pairwise blocks): the kernels sum band after
#: band, so they serve only up to this many bands (then the torch code runs)
FUSED_MAX_BANDS = 16


@functools.lru_cache(maxsize=1)
def _fused_kernels() -> Any:
    """The numba kernels of :mod:`._correctness_cpu`, or None without numba (or with
    ``CLIPSCORE_SR_NO_NUMBA=1``): the torch code then runs."""
    if os.environ.get("CLIPSCORE_SR_NO_NUMBA", "") not in ("", "0"):
        return None
    try:
        from . import _correctness_cpu
    except ImportError:
        return None
    return _correctness_cpu


def _numba_threads() -> None:
    import numba

    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))


def _fused_histogram_match(kernels: Any, sr: torch.Tensor, hr: torch.Tensor, levels: int | None
                           ) -> torch.Tensor | None:
    """:func:`histogram_match` by the fused counting kernel; None when ``levels`` is unset or does not fit."""
    if levels is None or not 1 < levels <= 65535:
        return None
    p = sr.shape[0] * sr.shape[1]
    src, ref = sr.detach().contiguous().reshape(p, -1).numpy(), hr.detach().contiguous().reshape(p, -1).numpy()
    out = np.empty_like(src)
    with _KERNEL_LOCK:
        _numba_threads()
        ok = kernels.histogram_match_levels(src, ref, int(levels), out)
    return torch.from_numpy(out).view(sr.shape) if ok else None


def _fused_classes(kernels: Any, sr_h: torch.Tensor, hr: torch.Tensor, lr_up: torch.Tensor,
                   threshold: float | str, mask_rule: str, gammas: tuple[float, float, float]) -> CorrectnessMaps:
    """Distances, mask, scores and classes of ``correctness(distance="l1", patch_size=1)`` in two fused passes."""
    b, c, h, w = sr_h.shape
    flat = [x.detach().contiguous().reshape(b, c, h * w).numpy() for x in (sr_h, hr, lr_up)]
    d_ref, d_im, d_om = (np.empty((b, h * w)) for _ in range(3))
    keep, first, second = (np.empty((b, h * w), np.bool_) for _ in range(3))
    counts = np.empty((b, 4), np.int64)
    with _KERNEL_LOCK:
        _numba_threads()
        kernels.l1_distances(*flat, d_ref, d_im, d_om)
        if isinstance(threshold, str):  # qNN: the same order statistic as _threshold's kthvalue
            t = np.empty(b)
            kernels.kth_smallest(d_ref, _kth(threshold, h * w), t)
        else:
            t = np.full(b, float(threshold))
        kernels.classify(d_ref, d_im, d_om, t, mask_rule == "any", *gammas, keep, first,
                         second, counts)
    as_map = lambda a: torch.from_numpy(a).view(b, h, w)  # noqa: E731
    n = torch.from_numpy(counts)
    fractions = _fractions(n[:, 0], n[:, 1], n[:, 2])
    return CorrectnessMaps(as_map(d_ref), as_map(d_im), as_map(d_om), as_map(keep), fractions, 1, gammas,
                           as_map(first), as_map(second))


def class_map_rgb(classes: np.ndarray) -> np.ndarray:
    """``[h,w]`` class codes (-1 masked) -> ``[h,w,3]`` uint8 colours."""
    lut = np.array([*CLASS_COLOURS, MASKED_COLOUR], dtype=np.uint8)
    return lut[np.where(classes < 0, 3, classes)]


_GEO_TAGS = (33550, 33922, 34264, 34735, 34736, 34737)  # pixel scale, tiepoint, transform, GeoKeys, params


def _geotags(path: str | None) -> list[tuple] | None:
    if not path or Path(path).suffix.lower() not in (".tif", ".tiff"):
        return None
    import tifffile

    with tifffile.TiffFile(path) as tif:
        tags = tif.pages[0].tags
        out = [(t.code, t.dtype, t.count, t.value, False) for t in tags.values() if t.code in _GEO_TAGS]
    return out or None


def write_class_map(out_dir: str | Path, key: str, classes: np.ndarray, *, patch_size: int = 1,
                    geo_source: str | None = None) -> list[Path]:
    """Write ``<out_dir>/<key>.correctness.png`` (colours) and, when ``geo_source`` is a GeoTIFF, a
    ``.correctness.tif`` with codes 1 improvement, 2 omission, 3 hallucination, 0 left out (nodata) on the
    source's georeferencing. Patch maps are expanded to pixels. Paths stay inside ``out_dir``."""
    from PIL import Image

    out_dir = Path(out_dir)
    base = (out_dir / f"{key}.correctness").resolve()
    if not base.is_relative_to(out_dir.resolve()):
        raise ConfigError(f"--maps: key '{key}' would write outside {out_dir}")
    if patch_size > 1:
        classes = np.repeat(np.repeat(classes, patch_size, axis=0), patch_size, axis=1)
    base.parent.mkdir(parents=True, exist_ok=True)
    written = []
    png = base.with_name(base.name + ".png")
    tmp = png.with_name(png.name + ".tmp")
    Image.fromarray(class_map_rgb(classes)).save(tmp, format="PNG")
    tmp.replace(png)
    written.append(png)
    tags = _geotags(geo_source)
    if tags is not None:
        import tifffile

        tif = base.with_name(base.name + ".tif")
        tmp = tif.with_name(tif.name + ".tmp")
        codes = np.where(classes < 0, 0, classes + 1).astype(np.uint8)
        tifffile.imwrite(tmp, codes, compression="zlib", extratags=[*tags, (42113, "s", 0, "0", False)])
        tmp.replace(tif)
        written.append(tif)
    return written


def _common_levels(data_range: torch.Tensor | None) -> int | None:
    """The files' integer data range (255, 65535, 4095...) when the whole batch shares one, else None."""
    if data_range is None:
        return None
    r = torch.as_tensor(data_range).flatten()
    if r.numel() == 0 or not bool((r == r[0]).all()):
        return None
    v = float(r[0])
    return int(v) if v.is_integer() and 1 < v <= 65535 else None


def _parse_threshold(value: Any) -> float | str:
    if isinstance(value, str):
        if re.fullmatch(r"q(100|[0-9]{1,2}(\.[0-9]+)?)", value.strip()):
            return value.strip()
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"correctness: threshold={value!r}: expected a number >= 0 or qNN (a percentile of "
                              "d_ref, e.g. q75)") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ConfigError(f"correctness: threshold={value!r}: expected a number >= 0 or qNN (e.g. q75)")
    return float(value)


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"correctness: {name}={value!r}: expected true or false")
    return value


def _parse_gammas(value: Any) -> tuple[float, float, float]:
    try:
        gammas = tuple(float(g) for g in value)
    except (TypeError, ValueError):
        gammas = ()
    if len(gammas) != 3 or not all(math.isfinite(g) and g >= 0 for g in gammas):
        raise ConfigError(f"correctness: gammas={value!r}: expected three finite numbers >= 0 (im, om, ha), "
                          "e.g. [0.8, 0.8, 0.4]")
    return gammas  # type: ignore[return-value]


@register_metric
class Correctness(Metric):
    name = "correctness"
    reference = "hr+lr"
    higher_is_better = True
    direction = "improvement higher, omission and hallucination lower"
    nan_reason = "no location kept (every d_ref at or below the threshold, or 0): lower the threshold"
    best_value = 1.0
    units = "fraction of locations"
    value_range = "[0, 1] each; columns <id>-improvement (higher better), -omission, -hallucination (lower)"
    description = ("Aybar et al. (opensr-test) improvement/omission/hallucination fractions: SR histogram-matched "
                   "to HR, distances to HR and bilinear LR_up normalised by d(LR_up, HR), locations with small "
                   "d_ref left out; options patch_size, threshold, mask_rule, harmonize, register, gammas, clip")
    spec_help = ("distance: l1 (default), l2, ipsnr, lpips (AlexNet, patch_size >= 32, weights on disk), clip "
                 "(1 - cosine of CLIP embeddings per block, patch_size >= 16; option clip = a clipscore SPEC)")

    def __init__(self, spec: str | None = None, *, device: str | torch.device = "cpu", patch_size: int = 1,
                 threshold: float | str = "q75", mask_rule: str = "ref", harmonize: bool = True,
                 register: bool = False, gammas: tuple[float, float, float] = DEFAULT_GAMMAS,
                 clip: str | None = None, precision: str = "fp32", **options: Any) -> None:
        super().__init__(spec, device=device, **options)
        from ..devices import resolve_precision

        self.precision = resolve_precision(precision, self.device)
        self.distance = (spec or "l1").lower()
        if self.distance not in DISTANCES:
            raise ConfigError(f"correctness:{spec}: unknown distance (choose from {', '.join(DISTANCES)})")
        if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
            raise ConfigError(f"correctness: patch_size={patch_size!r}: expected an integer >= 1")
        if mask_rule not in ("ref", "any"):
            raise ConfigError(f"correctness: mask_rule={mask_rule!r}: expected 'ref' or 'any'")
        self.settings = dict(distance=self.distance, patch_size=patch_size, threshold=_parse_threshold(threshold),
                             mask_rule=mask_rule, harmonize=_flag(harmonize, "harmonize"),
                             register=_flag(register, "register"), gammas=_parse_gammas(gammas))
        _check_patch(self.distance, patch_size)
        if clip is not None and not isinstance(clip, str):
            raise ConfigError(f"correctness: clip={clip!r}: expected a CLIP spec as for clipscore (e.g. clip-rn50)")
        if clip is not None and self.distance != "clip":
            raise ConfigError(f"correctness:{self.distance}: option clip={clip!r} is for correctness:clip only")
        self.options.update(self.settings)
        self.clip_spec = None
        if self.distance == "clip":
            from .clip import DEFAULT_ALIAS, parse_clip_spec

            self.clip_spec = parse_clip_spec(clip or DEFAULT_ALIAS)
            self.options.update(clip=self.clip_spec.text, precision=self.precision)
        self.last_maps: CorrectnessMaps | None = None
        self._model: Any = None

    def load(self) -> Any:
        """The learned distance's model (LPIPS AlexNet or CLIP), before any decoding, so missing weights fail
        fast; None for the pixel distances."""
        if self._model is None and self.distance == "lpips":
            from .lpips import build_lpips

            self._model = build_lpips("alex", self.device)
        elif self._model is None and self.distance == "clip":
            from .clip import load_clip

            self._model = load_clip(self.clip_spec, device=self.device)
        return self._model

    def provenance(self) -> dict[str, Any]:
        prov = super().provenance()
        if self.distance == "clip" and self._model is not None:
            prov["model"] = self._model.describe()
        return prov

    def columns(self) -> list[Column]:
        return [Column(f"{self.id}-improvement", True, 1.0), Column(f"{self.id}-omission", False, 0.0),
                Column(f"{self.id}-hallucination", False, 0.0)]

    def compute(self, sr: torch.Tensor, gt: torch.Tensor, *, lr: torch.Tensor | None = None,
                **kwargs: Any) -> dict[str, torch.Tensor]:
        if lr is None:
            raise InputMismatchError(f"{self.id} needs the LR input too (--lr LR_DIR)")
        if self.distance == "clip":
            from .clip import to_three_channels

            sr, gt, lr = (to_three_channels(x, f"{self.id} {what} input") for x, what in ((sr, "SR"), (gt, "HR"),
                                                                                     (lr, "LR")))
        model = self.load()
        maps = correctness(sr, gt, lr, **self.settings, levels=_common_levels(kwargs.get("data_range")),
                           lpips_model=model if self.distance == "lpips" else None,
                           clip_model=model if self.distance == "clip" else None, precision=self.precision)
        self.last_maps = maps
        return {c.name: maps.fractions[:, i] for i, c in enumerate(self.columns())}
