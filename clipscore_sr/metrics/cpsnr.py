"""Shift- and brightness-tolerant PSNR: ``cpsnr`` (PROBA-V clear PSNR) and ``cpsnr-satlas``.

``cpsnr`` -- the ESA Kelvins PROBA-V challenge score
    Both images in ``[0, 1]`` (file values / data range). The SR image loses a ``border`` = 3 pixel frame,
    leaving ``(H-6) x (W-6)``. For every shift ``(u, v)`` in ``0..6 x 0..6`` the HR window
    ``HR[u:u+H-6, v:v+W-6]`` and its clear mask are compared with the cropped SR:
    ``b = mean_clear(HR - SR)`` (one bias per channel), ``cMSE = mean over clear pixels and channels of
    (HR - (SR + b))^2``, ``cPSNR = -10*log10(cMSE)``. The score is the maximum over the 49 shifts.
    Masks are ``[B,1,H,W]`` bool aligned with GT (True = clear, PROBA-V ``SM.png``); no mask = all clear.
    GT pixels that are *not* clear may hold NaN/inf (they are never used); non-finite SR or clear GT values
    are an error. A window needs at least ``MIN_VALID_PIXELS`` = 16 clear pixels (fewer, and the bias absorbs
    any difference: a 7x7 image, or one clear pixel, would score +inf against anything): an image whose
    window is smaller is an error; a shift whose HR window has fewer clear pixels is skipped, and an image
    for which every window is skipped scores **NaN** (documented, tested): the pipeline reports such a pair
    as an error. Both rules hold for ``cpsnr-satlas`` too (its window is ``(H-16) x (W-16)``).
    ``cMSE == 0`` gives ``+inf``. PROBA-V's normalised score is ``baseline / cPSNR``
    (:func:`normalize_to_baseline`, baselines from a ``norm.csv`` via :func:`read_baseline_csv`).

``cpsnr-satlas`` -- the variant in the "Zooming Out on Zooming In" authors' code (``ssr/metrics/cpsnr.py``)
    Differences from ``cpsnr``:

    * 8-bit: values are clamped to ``[0, 1]``, multiplied by 255 and rounded (BasicSR ``tensor2img``, as the
      authors' validation feeds ``uint8`` images; option ``quantize=False`` keeps full precision), and
      the peak is 255;
    * both images lose 4 pixels per side (the authors' ``crop_border`` setting; cpsnr crops only SR, by 3).
      The shared ``crop_border`` option (default 0) is an extra crop applied before, as for every metric;
    * *relative* shifts: image 1 (SR) is cut at ``(r, c)`` and image 2 (GT) at ``(8-r, 8-c)``, both to
      ``(H-8) x (W-8)``, for ``r, c`` in ``0..8`` -- 81 shifts, relative displacements ``-8..8`` in steps
      of 2 in each axis (cpsnr: 49 shifts, displacements ``-3..3`` in steps of 1);
    * no clear masks; one brightness bias per channel over the whole window; MSE over all channels;
      ``10*log10(255^2 / MSE)`` at the best shift.

Implementation: both are batched in torch and return float64. The ``cpsnr`` shift search never makes one
full pass per shift: window sums come from cumulative sums over the few edge rows/columns, the cross terms
from float32 FFT cross-correlations evaluated at the 49 valid lags only (two small DFT matrix products).
Images are centred per channel first (cMSE is invariant to a constant added to either image, since the
bias absorbs it). Every shift whose fast cMSE lies within a bound on the float32 rounding of the best one
(about 15x the worst error measured) is then re-scored exactly with the direct two-pass float64 formula,
so results equal a plain per-shift loop to ~1e-12 dB and identical images give exactly ``+inf``.
``cpsnr-satlas`` uses the same window sums and one fused float64 product-sum per shift for the cross term
(its two windows move in opposite directions, so the cross term is not a single correlation). On the CPU
batches are processed in chunks of ~4M values.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from typing import Any

import torch

from ..errors import ConfigError, InputMismatchError
from .base import register_metric
from .pixel import PixelMetric, _all_finite, as_float64, check_pair, validate_crop_border
from .pixel import crop_border as _crop

__all__ = [
    "CPSNR",
    "CPSNRSatlas",
    "cpsnr",
    "cpsnr_satlas",
    "normalize_to_baseline",
    "read_baseline_csv",
]

#: fewest valid (clear) pixels a comparison window must have. Fewer, and the per-channel bias absorbs
#: almost everything (a 1-pixel window always matches exactly: +inf for unrelated images), so such a window
#: is skipped (``cpsnr`` with a mask) or the image is too small (an error naming the pair).
MIN_VALID_PIXELS = 16

_MAX_REFINE = 8  # at most this many near-best candidate shifts are re-scored exactly
_SEARCH_DTYPE = torch.float32  # the FFT cross terms of the shift search (final values are float64)
_SEARCH_EPS = float(torch.finfo(_SEARCH_DTYPE).eps)
_CHUNK_ELEMENTS = 1 << 22  # CPU: values per chunk (float64 planes ~32 MB: few ops, reused allocations)


# ----------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------
def _band_sums(x: torch.Tensor, n: int, dim: int) -> torch.Tensor:
    """Sums of every run of ``n`` consecutive entries along ``dim`` (``L - n + 1`` offsets).

    Computed as ``total - head - tail`` with cumulative sums over the few leading/trailing entries only,
    so the cost is one reduction pass when the number of offsets is small (the shift searches here).
    """
    length = x.shape[dim]
    k = length - n + 1
    total = x.sum(dim=dim, keepdim=True)
    if k == 1:
        return total
    head = x.narrow(dim, 0, k - 1).cumsum(dim)  # head[u-1] = sum_{i<u} x_i, u = 1..k-1
    tail = x.narrow(dim, n, k - 1).flip(dim).cumsum(dim).flip(dim)  # tail[u] = sum_{i>=u+n} x_i
    zero = torch.zeros_like(total)
    return total - torch.cat((zero, head), dim=dim) - torch.cat((tail, zero), dim=dim)


def _window_sums(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Sums of every ``h x w`` window of ``x [..., H, W]`` -> ``[..., H-h+1, W-w+1]``."""
    return _band_sums(_band_sums(x, h, x.ndim - 2), w, x.ndim - 1)


def _lags_from_spectrum(p: torch.Tensor, hh: int, ww: int, n_u: int, n_v: int) -> torch.Tensor:
    """The first ``n_u x n_v`` values of ``irfft2(p, s=(hh, ww))`` by two small DFT matrix products
    (in ``p``'s precision; float64 result). Much cheaper than a full inverse FFT for a handful of lags.
    """
    dev = p.device
    k = torch.arange(hh, dtype=torch.float64, device=dev)
    u = torch.arange(n_u, dtype=torch.float64, device=dev)
    e_h = torch.polar(torch.ones(n_u, hh, dtype=torch.float64, device=dev), 2 * math.pi * u[:, None] * k / hh)
    wr = ww // 2 + 1
    lcol = torch.arange(wr, dtype=torch.float64, device=dev)
    v = torch.arange(n_v, dtype=torch.float64, device=dev)
    weight = torch.full((wr,), 2.0, dtype=torch.float64, device=dev)  # Hermitian half-spectrum weights
    weight[0] = 1.0
    if ww % 2 == 0:
        weight[-1] = 1.0
    e_w = torch.polar(weight[:, None].expand(wr, n_v).contiguous(), 2 * math.pi * lcol[:, None] * v / ww)
    e_h, e_w = e_h.to(p.dtype), e_w.to(p.dtype)
    return (e_h @ p @ e_w).real.to(torch.float64) / (hh * ww)


def _chunk_size(batch: int, per_item: int, device: torch.device) -> int:
    """Images per chunk: the whole batch on accelerators, ~16 MB float64 working planes on the CPU."""
    if device.type != "cpu":
        return max(1, batch)
    return max(1, min(batch, _CHUNK_ELEMENTS // max(1, per_item)))


def _check_mask(mask: torch.Tensor, gt: torch.Tensor, metric: str) -> torch.Tensor:
    if not isinstance(mask, torch.Tensor):
        raise InputMismatchError(f"{metric}: mask must be a torch.Tensor, got {type(mask).__name__}")
    if mask.ndim == 3:
        mask = mask.unsqueeze(1)
    b, _, h, w = gt.shape
    if mask.ndim != 4 or mask.shape[0] != b or mask.shape[1] != 1 or mask.shape[-2:] != (h, w):
        raise InputMismatchError(
            f"{metric}: mask shape {list(mask.shape)} does not match GT {list(gt.shape)} (expected [B,1,H,W])"
        )
    if mask.dtype != torch.bool:
        if not bool(torch.isfinite(mask.double()).all()):
            raise InputMismatchError(f"{metric}: mask contains NaN or inf values")
        mask = mask != 0
    return mask.to(gt.device)


def _check_size(h: int, w: int, need: int, metric: str, detail: str) -> None:
    if h <= need or w <= need:
        raise InputMismatchError(f"{metric}: image {h}x{w} is too small ({detail} needs more than {need} pixels)")


def _check_window(h: int, w: int, min_valid: int, metric: str, detail: str) -> None:
    if h * w < min_valid:
        raise InputMismatchError(f"{metric}: the comparison window is {h}x{w} = {h * w} pixel(s) ({detail}); at "
                                 f"least {min_valid} are needed, or the brightness bias absorbs any difference")


def _gather_windows(x: torch.Tensor, items: torch.Tensor, us: torch.Tensor, vs: torch.Tensor, h: int, w: int
                    ) -> torch.Tensor:
    """``x[items[j], ..., us[j]:us[j]+h, vs[j]:vs[j]+w]`` stacked over ``j``."""
    return torch.stack([x[i, ..., u : u + h, v : v + w]
                        for i, u, v in zip(items.tolist(), us.tolist(), vs.tolist())])


# ----------------------------------------------------------------------------------------------------------
# cpsnr (PROBA-V)
# ----------------------------------------------------------------------------------------------------------
def _exact_cmse(hr_win: torch.Tensor, sr: torch.Tensor, m_win: torch.Tensor | None) -> torch.Tensor:
    """Direct PROBA-V cMSE of aligned windows ``[B,C,h,w]`` (mask ``[B,1,h,w]`` float or None) -> ``[B]``."""
    c = sr.shape[1]
    d = hr_win - sr
    if m_win is None:
        d -= d.mean(dim=(-2, -1), keepdim=True)  # remove the per-channel brightness bias
        return (d * d).flatten(1).mean(dim=1)
    n = m_win.sum(dim=(1, 2, 3))
    d *= m_win
    d -= (d.sum(dim=(-2, -1), keepdim=True) / n.clamp(min=1).view(-1, 1, 1, 1)) * m_win
    sq = (d * d).sum(dim=(1, 2, 3))
    cmse = sq / (n * c)
    return torch.where(n > 0, cmse, torch.full_like(cmse, math.inf))


def _spectrum(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Float32 real 2-D FFT of ``x`` zero-padded to ``size`` (the fast search only; see _refine)."""
    return torch.fft.rfft2(x.to(_SEARCH_DTYPE), s=size)


def _refine(fast: torch.Tensor, tol: torch.Tensor, exact_at: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Re-score exactly every shift whose fast value is within ``tol`` of the fast minimum.

    ``fast``: ``[B, S]`` approximate costs (inf = unusable shift); ``tol``: ``[B]`` bound on their error;
    ``exact_at(items, flat_idx) -> [len(items)]`` computes the exact cost. Returns the exact best cost and
    its index per image (at most ``_MAX_REFINE`` candidates; beyond that the candidates are exact ties
    up to rounding). The fast minimum itself is always re-scored, so results equal a direct loop.
    """
    B = fast.shape[0]
    k = min(_MAX_REFINE, fast.shape[1])
    vals, cand = fast.topk(k, dim=1, largest=False)  # ascending
    best = torch.full((B,), math.inf, dtype=torch.float64, device=fast.device)
    best_idx = torch.full((B,), -1, dtype=torch.long, device=fast.device)
    limit = vals[:, 0] + tol
    for j in range(k):
        need = torch.isfinite(vals[:, j]) & ((vals[:, j] <= limit) if j else torch.ones_like(limit, dtype=torch.bool))
        items = need.nonzero().flatten()
        if items.numel() == 0:
            break
        exact = exact_at(items, cand[items, j])
        better = exact < best[items]
        best[items] = torch.where(better, exact, best[items])
        best_idx[items] = torch.where(better, cand[items, j], best_idx[items])
    return best, best_idx


def _cpsnr_chunk(s: torch.Tensor, g: torch.Tensor, m: torch.Tensor | None, border: int,
                 min_valid: int = MIN_VALID_PIXELS) -> tuple[torch.Tensor, torch.Tensor]:
    """Best cMSE ``[B]`` (inf when no window has a clear pixel) and its flat shift index ``[B]``.

    ``s``: cropped SR ``[B,C,h,w]``; ``g``: GT ``[B,C,H,W]`` (zero where not clear); ``m``: float mask
    ``[B,1,H,W]`` or None.
    """
    B, C, H, W = g.shape
    h, w = s.shape[-2:]
    n_shift = 2 * border + 1
    size = (H, W)
    # Centre: cMSE is invariant to per-channel constants added to either image, and centred data keep
    # the cancellation in E[d^2] - E[d]^2 and the FFT rounding small.
    sc = s - s.mean(dim=(-2, -1), keepdim=True)
    if m is None:
        gc = g - g.mean(dim=(-2, -1), keepdim=True)
    else:
        g0 = (g * m).sum(dim=(-2, -1), keepdim=True) / m.sum(dim=(-2, -1), keepdim=True).clamp(min=1)
        gc = (g - g0) * m
    sc2 = sc * sc
    f_s = _spectrum(sc, size).conj()
    a1 = _window_sums(gc, h, w)  # sum over the window of M*G  [B,C,7,7]  (float64, exact-ish)
    a2 = _window_sums(gc * gc, h, w)  # sum of M*G^2
    y = _lags_from_spectrum(_spectrum(gc, size) * f_s, H, W, n_shift, n_shift)  # sum of M*G*S
    norm_s = sc.flatten(2).norm(dim=-1)  # [B,C]
    norm_g = gc.flatten(2).norm(dim=-1)
    if m is None:
        n = torch.full((B, 1, 1, 1), float(h * w), dtype=torch.float64, device=g.device)
        x1 = sc.sum(dim=(-2, -1), keepdim=True)
        x2 = sc2.sum(dim=(-2, -1), keepdim=True)
        err = 2.0 * norm_g * norm_s  # error scale of the float32 terms (only y here)
    else:
        n = torch.round(_window_sums(m, h, w))  # [B,1,7,7] clear-pixel counts (exact integers)
        f_m = _spectrum(m, size)
        x1 = _lags_from_spectrum(f_m * f_s, H, W, n_shift, n_shift)  # sum of M*S
        x2 = _lags_from_spectrum(f_m * _spectrum(sc2, size).conj(), H, W, n_shift, n_shift)  # M*S^2
        norm_m = m.flatten(1).norm(dim=-1)[:, None]
        bias_max = ((a1 - x1).abs() / n.clamp(min=1)).flatten(2).amax(dim=-1)
        err = 2.0 * norm_g * norm_s + norm_m * sc2.flatten(2).norm(dim=-1) + 2.0 * bias_max * norm_m * norm_s
    nz = n.clamp(min=1)
    bias = (a1 - x1) / nz
    cmse = ((a2 - 2.0 * y + x2) / nz - bias * bias).mean(dim=1)  # [B,7,7]
    empty = (n[:, 0] < max(1, min_valid)).expand_as(cmse)  # too few clear pixels: the window is skipped
    cmse = torch.where(empty, torch.full_like(cmse, math.inf), cmse).flatten(1)
    n_min = torch.where(empty, torch.full_like(cmse.view_as(empty), math.inf), n[:, 0].expand_as(empty))
    n_min = n_min.flatten(1).amin(dim=1).clamp(min=1)
    # The float32 FFT error is ~0.1 * eps * log2(HW) * (norm products); 2x for a difference, 4x margin.
    tol = 8.0 * _SEARCH_EPS * math.log2(H * W) * err.mean(dim=1) / n_min

    def exact_at(items: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        us, vs = idx // n_shift, idx % n_shift
        hr_win = _gather_windows(g, items, us, vs, h, w)
        m_win = None if m is None else _gather_windows(m, items, us, vs, h, w)
        return _exact_cmse(hr_win, s if items.numel() == B else s[items], m_win)

    return _refine(cmse, tol, exact_at)


def cpsnr(sr: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor | None = None, *, border: int = 3,
          crop_border: int = 0, return_shift: bool = False, min_valid: int = MIN_VALID_PIXELS
          ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """PROBA-V clear PSNR in dB per image (see the module docstring for the exact convention).

    ``sr``, ``gt``: ``[B,C,H,W]`` in [0,1]; ``mask``: ``[B,1,H,W]`` bool aligned with ``gt`` (True = clear)
    or None (all clear). ``border`` is PROBA-V's 3 (shifts ``0..2*border`` per axis); ``crop_border``
    first removes that many pixels from every side of SR, GT and mask. With ``return_shift`` also returns
    ``[B,2]`` (u, v): the top-left of the best HR window (SR is displaced by ``(u-border, v-border)``
    relative to GT); ``(-1, -1)`` for NaN scores. A window needs at least ``min_valid`` clear pixels
    (:data:`MIN_VALID_PIXELS`); smaller windows are an :class:`InputMismatchError`, and with a mask, shifts
    with fewer clear pixels are skipped (NaN when none is left).
    """
    metric = "cpsnr"
    border = validate_crop_border(border, "border")
    sr, gt = check_pair(sr, gt, metric, finite=False, convert=False)
    if mask is not None:
        mask = _check_mask(mask, gt, metric)
    sr, gt = _crop(sr, crop_border, what="SR"), _crop(gt, crop_border, what="GT")
    if mask is not None:
        mask = _crop(mask, crop_border, what="mask")
    B, C, H, W = gt.shape
    n_shift = 2 * border + 1
    _check_size(H, W, 2 * border, metric, f"border={border}")
    h, w = H - 2 * border, W - 2 * border
    _check_window(h, w, min_valid, metric, f"{H}x{W} less the {border}-pixel border")

    if not _all_finite(sr):
        ok = torch.isfinite(sr).flatten(1).all(dim=1)
        raise InputMismatchError(f"{metric}: SR contains NaN or inf values (batch items {_items(ok)})")
    if not _all_finite(gt):
        gt_ok = torch.isfinite(gt) if mask is None else (torch.isfinite(gt) | ~mask)
        ok = gt_ok.flatten(1).all(dim=1)
        if not bool(ok.all()):
            where = "" if mask is None else " at clear pixels"
            raise InputMismatchError(f"{metric}: GT contains NaN or inf values{where} (batch items {_items(ok)})")

    s = sr[..., border : border + h, border : border + w]
    if mask is None:
        m = None
        g = gt
    else:
        m = mask
        g = torch.where(mask, gt, torch.zeros((), dtype=gt.dtype, device=gt.device))
    step = _chunk_size(B, C * H * W, gt.device)
    parts = [
        _cpsnr_chunk(as_float64(s[i : i + step]), as_float64(g[i : i + step]),
                     None if m is None else as_float64(m[i : i + step]), border, min_valid)
        for i in range(0, B, step)
    ]
    best = torch.cat([p[0] for p in parts])
    best_idx = torch.cat([p[1] for p in parts])

    no_window = torch.isinf(best)
    score = -10.0 * torch.log10(best)  # cMSE == 0 -> +inf
    score = torch.where(no_window, torch.full_like(score, math.nan), score)
    if not return_shift:
        return score
    shift = torch.stack((best_idx // n_shift, best_idx % n_shift), dim=1)
    shift = torch.where(no_window[:, None], torch.full_like(shift, -1), shift)
    return score, shift


def _items(ok: torch.Tensor) -> str:
    idx = (~ok).nonzero().flatten().tolist()
    return ", ".join(str(i) for i in idx[:5]) + (", ..." if len(idx) > 5 else "")


def normalize_to_baseline(cpsnr_db: torch.Tensor | float, baseline: torch.Tensor | float) -> torch.Tensor:
    """PROBA-V normalised score ``baseline / cPSNR`` (lower is better; 1.0 = as good as the baseline).

    ``baseline`` is the per-image baseline cPSNR in dB (``norm.csv``); a cPSNR of ``+inf`` gives 0.
    """
    c = torch.as_tensor(cpsnr_db, dtype=torch.float64)
    b = torch.as_tensor(baseline, dtype=torch.float64, device=c.device)
    if not bool(torch.isfinite(b).all()) or bool((b <= 0).any()):
        raise InputMismatchError(f"baseline cPSNR must be finite and > 0 dB, got {b.flatten().tolist()[:5]}")
    return b / c


def read_baseline_csv(path: str | os.PathLike) -> dict[str, float]:
    """Read a PROBA-V ``norm.csv`` (``imgsetNNNN <baseline dB>`` per line, space or comma separated).

    Returns ``{key: baseline_db}``. Malformed lines raise :class:`ConfigError` naming the file and line.
    """
    out: dict[str, float] = {}
    try:
        with open(path, newline="") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read baseline file ({exc.strerror or exc})") from None
    dialect_rows = csv.reader(line.replace(",", " ") for line in lines)
    for lineno, row in enumerate(dialect_rows, start=1):
        fields = " ".join(row).split()
        if not fields:
            continue
        if len(fields) != 2:
            raise ConfigError(f"{path}:{lineno}: expected '<key> <baseline dB>', got {' '.join(fields)!r}")
        key, value = fields
        try:
            val = float(value)
        except ValueError:
            if lineno == 1 and not out:  # a header line
                continue
            raise ConfigError(f"{path}:{lineno}: baseline {value!r} is not a number") from None
        if not math.isfinite(val) or val <= 0:
            raise ConfigError(f"{path}:{lineno}: baseline {val} must be finite and > 0 dB")
        if key in out:
            raise ConfigError(f"{path}:{lineno}: key {key!r} appears twice")
        out[key] = val
    if not out:
        raise ConfigError(f"{path}: no baseline values found")
    return out


# ----------------------------------------------------------------------------------------------------------
# cpsnr-satlas (the paper authors' variant)
# ----------------------------------------------------------------------------------------------------------
def _to_8bit_scale(x: torch.Tensor, quantize: bool) -> torch.Tensor:
    """``[0,1]`` values -> float64 in the 0..255 scale; ``quantize``: clamp and round like BasicSR tensor2img."""
    x = as_float64(x)
    return torch.round(x.clamp(0, 1) * 255.0) if quantize else x * 255.0


def _satlas_chunk(sr: torch.Tensor, gt: torch.Tensor, max_offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Best MSE ``[B]`` (255 scale) and flat ``(r, c)`` index ``[B]`` for cropped, scaled images."""
    B, C, Hc, Wc = gt.shape
    h, w = Hc - max_offset, Wc - max_offset
    n_off = max_offset + 1
    npix = float(h * w)

    # Centre (per-channel constants cancel in the bias-corrected MSE), window sums via integral images.
    sc = sr - sr.mean(dim=(-2, -1), keepdim=True)
    gc = gt - gt.mean(dim=(-2, -1), keepdim=True)
    s1, s2 = _window_sums(sc, h, w), _window_sums(sc * sc, h, w)  # [B,C,9,9], index (r, c)
    g1, g2 = _window_sums(gc, h, w), _window_sums(gc * gc, h, w)  # index (r', c') = GT window corner
    idx = torch.arange(n_off, device=gt.device)
    rev = max_offset - idx
    g1 = g1[..., rev, :][..., :, rev]  # GT window at (max_offset - r, max_offset - c)
    g2 = g2[..., rev, :][..., :, rev]
    cross = torch.empty(B, C, n_off, n_off, dtype=torch.float64, device=gt.device)
    for r in range(n_off):
        for c in range(n_off):
            a = sc[..., r : r + h, c : c + w]
            b = gc[..., max_offset - r : max_offset - r + h, max_offset - c : max_offset - c + w]
            cross[..., r, c] = (a * b).sum(dim=(-2, -1))
    bias = (s1 - g1) / npix
    mse = ((s2 - 2.0 * cross + g2) / npix - bias * bias).mean(dim=1).flatten(1)  # [B,81]

    # Cross terms are float64 here; the tolerance only covers rounding in the E[d^2] - E[d]^2 form.
    tol = 64.0 * float(torch.finfo(torch.float64).eps) * ((s2 + g2) / npix).flatten(1).amax(dim=1) * 4.0

    def exact_at(items: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        rs, cs = idx // n_off, idx % n_off
        d = _gather_windows(sr, items, rs, cs, h, w) - _gather_windows(gt, items, max_offset - rs,
                                                                         max_offset - cs, h, w)
        d -= d.mean(dim=(-2, -1), keepdim=True)  # the authors add this per-channel bias to image 2
        return (d * d).flatten(1).mean(dim=1)

    return _refine(mse, tol, exact_at)


def cpsnr_satlas(sr: torch.Tensor, gt: torch.Tensor, *, crop_border: int = 0, crop: int = 4, max_offset: int = 8,
                 quantize: bool = True, return_shift: bool = False, min_valid: int = MIN_VALID_PIXELS
                 ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The authors' cPSNR in dB per image (peak 255; see the module docstring).

    ``sr``, ``gt``: ``[B,C,H,W]`` in [0,1]. ``crop_border`` (the option shared by all pixel metrics, default
    0) is removed first; ``crop`` = 4 is the authors' own crop of both images. ``quantize`` rounds ``clamp(x,0,1)*255`` to integers (8-bit
    images as in the authors' pipeline). With ``return_shift`` also returns ``[B,2]`` (r, c): SR is cut at
    ``(r, c)`` and GT at ``(max_offset-r, max_offset-c)``, i.e. SR content at ``y`` matches GT at
    ``y + max_offset - 2r``.
    """
    metric = "cpsnr-satlas"
    crop = validate_crop_border(crop, "crop")
    max_offset = validate_crop_border(max_offset, "max_offset")
    sr, gt = check_pair(sr, gt, metric, convert=False)
    sr, gt = _crop(sr, crop_border, what="SR"), _crop(gt, crop_border, what="GT")
    H, W = gt.shape[-2:]
    _check_size(H, W, 2 * crop + max_offset, metric, f"the authors' {crop}-pixel crop and max_offset={max_offset}")
    sr = sr[..., crop : H - crop, crop : W - crop]
    gt = gt[..., crop : H - crop, crop : W - crop]
    B, C, Hc, Wc = gt.shape
    _check_window(Hc - max_offset, Wc - max_offset, min_valid, metric,
                  f"{H}x{W} less the {crop}-pixel crop and max_offset={max_offset}")
    step = _chunk_size(B, C * Hc * Wc, gt.device)
    parts = [_satlas_chunk(_to_8bit_scale(sr[i : i + step], quantize), _to_8bit_scale(gt[i : i + step], quantize),
                           max_offset) for i in range(0, B, step)]
    best = torch.cat([p[0] for p in parts])
    best_idx = torch.cat([p[1] for p in parts])
    n_off = max_offset + 1
    score = 10.0 * torch.log10(255.0 * 255.0 / best)  # MSE == 0 -> +inf
    if not return_shift:
        return score
    return score, torch.stack((best_idx // n_off, best_idx % n_off), dim=1)


# ----------------------------------------------------------------------------------------------------------
# registered classes
# ----------------------------------------------------------------------------------------------------------
@register_metric
class CPSNR(PixelMetric):
    name = "cpsnr"
    higher_is_better = True
    uses_mask = True
    units = "dB"
    value_range = "(-inf, +inf]; +inf for a perfect match at some shift; NaN when no shift has a clear pixel"
    description = (
        "PROBA-V clear PSNR: SR cropped by 3 px, best of 49 HR shifts (0..6), per-channel brightness bias "
        "and MSE over clear pixels (optional mask, True = clear), -10*log10(cMSE) on [0,1] data"
    )

    def compute(self, sr: torch.Tensor, gt: torch.Tensor, *, mask: torch.Tensor | None = None,
                data_range: torch.Tensor | None = None, sr_ids: Sequence[str] | None = None,
                gt_ids: Sequence[str] | None = None) -> torch.Tensor:
        return cpsnr(sr, gt, mask, crop_border=self.crop)


@register_metric
class CPSNRSatlas(PixelMetric):
    name = "cpsnr-satlas"
    higher_is_better = True
    units = "dB"
    value_range = "(-inf, +inf]; +inf for a perfect match at some shift"
    description = (
        "paper authors' cPSNR: 8-bit (x255, rounded), crop 4 px from both, relative shifts -8..8 step 2, "
        "per-channel bias, MSE over all channels, peak 255, best shift; options crop_border (extra), quantize"
    )

    def __init__(self, spec: str | None = None, *, device: str | torch.device = "cpu", crop_border: int = 0,
                 quantize: bool = True, **options: Any) -> None:
        super().__init__(spec, device=device, crop_border=crop_border, **options)
        if not isinstance(quantize, bool):
            raise ConfigError(f"cpsnr-satlas: quantize={quantize!r}: expected true or false")
        self.options["quantize"] = quantize

    def _extra_option_names(self) -> str:
        return ", quantize"

    def compute(self, sr: torch.Tensor, gt: torch.Tensor, *, mask: torch.Tensor | None = None,
                data_range: torch.Tensor | None = None, sr_ids: Sequence[str] | None = None,
                gt_ids: Sequence[str] | None = None) -> torch.Tensor:
        return cpsnr_satlas(sr, gt, crop_border=self.crop, quantize=bool(self.options["quantize"]))
