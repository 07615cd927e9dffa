"""Per-tile metrics without HR: LR consistency (from :mod:`clipscore_sr.metrics.consistency`), no-data
propagation, seams/stripes, colour cast and NDVI drift, added detail, consistency by construction.

Every function works on one tile: ``lr`` ``[C,h,w]`` and ``sr`` ``[C,s*h,s*w]`` in [0, 1] with their validity
masks, read with a halo (the tile grown by ``halo`` LR pixels, clipped to the scene) so that the bicubic
reference and the steps at the tile's first row/column are the same as on the whole scene. Besides the
per-tile values each tile returns the sums and counts the scene summary is made of (``n-*``, ``sum-*``), so a
merge of shards is exact (sums of sums, never means of means).

Definitions (SR pixels, data-range units unless said):

* Invalid pixels are filled before the consistency metrics: an SR pixel that is invalid where the LR is valid
  by the LR value beneath it (nearest), LR no-data by 0 in both. A tile whose LR and SR are fully valid gets
  exactly what ``score --lr`` gives for the same windows written as files.
* ``nodata-new-px``/``-frac``: SR pixels invalid (NaN/inf, nodata, masked, saturated) where the LR is valid,
  as a count and a fraction of the LR-valid SR pixels. ``nodata-spread-px``: the largest distance (SR pixels)
  of a new invalid pixel from the LR's own no-data (tile and halo); where the LR has none, from the nearest
  pixel that is not newly invalid (the hole's depth). NaN when there is no new invalid pixel.
* Seams: ``g[c]`` = mean over rows and bands of ``|x[:, c] - x[:, c-1]|`` (global SR column ``c``; rows
  likewise), divided by its mean at ``c mod scale`` (the interpolation/block pattern of the scale). Folding ``g`` modulo a period ``P`` (the comb of the harmonics ``k/P`` of its spectrum) gives the
  mean step at each phase. ``seam-step`` = max over phases and both axes of ``step_SR/mean_SR -
  step_bicubic/mean_bicubic`` (0 for the bicubic upsampling of the LR itself; 1 = a boundary with twice the
  usual gradient); ``seam-energy`` = the fraction of the profile's variance at the harmonics of ``1/P``, SR
  minus bicubic. ``P`` is ``--seam-period`` or, detected, the smallest candidate (16..512 SR px, at most half
  the tile) whose ``seam-step`` is >= 0.8 of the largest; ``seam-period`` records it.
* Colour: ``bias-bN`` = mean(down(SR) - LR), ``ratio-bN`` = sum(down(SR)) / sum(LR) per file band N over
  valid LR pixels; ``cast`` = max |ratio - 1|; ``ndvi-drift`` = mean(NDVI(down(SR)) - NDVI(LR)) when red and
  NIR bands are named.
* Detail: ``hf(x) = x - bicubic(down(x))`` (what lies above the LR's band); ``detail-rms`` = RMS of hf(SR),
  ``detail-gain`` = RMS hf(SR) / RMS hf(bicubic(LR)) (about 1: the SR adds nothing beyond interpolation).
* ``lr-maxdiff`` / ``lr-maxdiff-box``: max |down(SR) - LR| with the metric's antialiased bilinear reduction and
  with the ``s x s`` block mean; ``by-construction`` = 1 when either is <= ``tol`` (1e-5, plus half a quantum
  for integer SR) on a tile with structure (LR std > 1e-3) and enough valid pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..metrics.consistency import downsample, lr_consistency
from ..metrics.correctness import upsample_lr

#: candidate inference-window periods (SR pixels) when --seam-period is not given
SEAM_CANDIDATES = (16, 32, 64, 128, 256, 512)
CONSISTENCY = ("lr-l1", "lr-psnr", "lr-sam", "lr-shift", "lr-shift-dy", "lr-shift-dx")


@dataclass
class DetectorOptions:
    scale: int
    band_labels: Sequence[str]
    red: int | None = None  # channel index (0-based, after band selection)
    nir: int | None = None
    seam_period: int | None = None
    min_valid: float = 0.5
    construction_tol: float = 1e-5


def metric_columns(band_labels: Sequence[str], ndvi: bool) -> list[str]:
    cols = [*CONSISTENCY, "seam-step", "seam-energy", "seam-period", "nodata-new-px", "nodata-new-frac",
            "nodata-spread-px"]
    cols += [f"bias-{b}" for b in band_labels] + [f"ratio-{b}" for b in band_labels] + ["cast"]
    cols += ["ndvi-drift"] if ndvi else []
    return cols + ["detail-rms", "detail-gain", "lr-maxdiff", "lr-maxdiff-box", "by-construction"]


def sum_columns(band_labels: Sequence[str], ndvi: bool) -> list[str]:
    cols = ["n-lr", "sum-abs", "sum-sq", "n-lrvalid-sr", "n-sr", "sum-hf2-sr", "sum-hf2-bi"]
    cols += [f"sum-lr-{b}" for b in band_labels] + [f"sum-sr-{b}" for b in band_labels]
    return cols + (["n-ndvi", "sum-ndvi-diff"] if ndvi else [])


def _up_nn(x: np.ndarray, s: int) -> np.ndarray:
    return np.repeat(np.repeat(x, s, axis=-2), s, axis=-1)


def _profile(x: torch.Tensor, valid: torch.Tensor, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean |step| between neighbours along ``axis`` (-1: columns, -2: rows) over the other axis and the
    bands, where both pixels are valid ``[n-1]``, and its count of valid steps."""
    d = (x.diff(dim=axis).abs().mean(dim=0))
    v = valid[1:, :] & valid[:-1, :] if axis == -2 else valid[:, 1:] & valid[:, :-1]
    other = 1 if axis == -2 else 0
    num = torch.where(v, d, torch.zeros_like(d)).sum(dim=other)
    cnt = v.sum(dim=other)
    g = torch.where(cnt > 0, num / cnt.clamp_min(1), torch.full_like(num, math.nan))
    return g.numpy(), cnt.numpy()


def _fold(g: np.ndarray, idx: np.ndarray, period: int) -> tuple[np.ndarray, float, float] | None:
    """(mean step per phase ``[P]``, periodic energy fraction, mean) of profile ``g`` at global indices ``idx``;
    None for a profile too short or flat."""
    ok = np.isfinite(g)
    g, idx = g[ok], idx[ok]
    if g.size < 2 or not g.mean() > 0:
        return None
    mean = g.mean()
    phase = idx % period
    cnt = np.bincount(phase, minlength=period)
    f = np.bincount(phase, weights=g, minlength=period)
    with np.errstate(invalid="ignore", divide="ignore"):
        f = f / cnt
    total = np.square(g - mean).sum()
    per = np.nansum(cnt * np.square(f - mean))
    return f, (per / total if total > 0 else 0.0), mean


def _unscale(g: np.ndarray, idx: np.ndarray, scale: int) -> np.ndarray:
    """``g`` divided by its own mean profile at the scale's period (``g[c] / mean(g[c' = c mod s])``): the
    interpolation pattern of the upsampling (and block structure at the LR pixel size) is factored out."""
    if scale <= 1:
        return g
    folded = _fold(g, idx, scale)
    if folded is None:
        return g
    f, _, _ = folded
    with np.errstate(invalid="ignore", divide="ignore"):
        return g / f[idx % scale]


def seam_scores(sr: torch.Tensor, bi: torch.Tensor, valid: torch.Tensor, row0: int, col0: int, period: int | None,
                scale: int = 1) -> tuple[float, float, float]:
    """(seam-step, seam-energy, period) of an SR region ``[C,H,W]`` whose first row/col is global ``row0``/
    ``col0``, against its bicubic reference ``bi``; steps are assigned to the second pixel of each pair, and
    each profile is first divided by its own pattern at the scale's period (:func:`_unscale`)."""
    profiles = []
    for axis, start in ((-1, col0), (-2, row0)):
        gs, _ = _profile(sr, valid, axis)
        gb, _ = _profile(bi, valid, axis)
        idx = np.arange(start + 1, start + 1 + gs.size)
        profiles.append((_unscale(gs, idx, scale), _unscale(gb, idx, scale), idx))
    n = min(p[0].size for p in profiles)
    cands = [period] if period else [p for p in SEAM_CANDIDATES if p <= max(n // 2, 1)]
    best: list[tuple[int, float, float]] = []
    for p in cands:
        step, energy = -math.inf, -math.inf
        for gs, gb, idx in profiles:
            a, b = _fold(gs, idx, p), _fold(gb, idx, p)
            if a is None or b is None:
                continue
            (fs, es, ms), (fb, eb, mb) = a, b
            with np.errstate(invalid="ignore"):
                diff = fs / ms - fb / mb
            if np.isfinite(diff).any():
                step = max(step, float(np.nanmax(diff)))
                energy = max(energy, float(es - eb))
        if math.isfinite(step):
            best.append((p, step, energy))
    if not best:
        return math.nan, math.nan, math.nan
    top = max(b[1] for b in best)
    p, step, energy = next(b for b in best if b[1] >= 0.8 * top) if top > 0 else max(best, key=lambda b: b[1])
    return step, energy, float(p)


def nodata_scores(sr_valid: np.ndarray, lr_valid_up: np.ndarray, core: tuple[slice, slice]
                  ) -> tuple[int, int, float]:
    """(new invalid SR px, LR-valid SR px, spread in SR px) for the core region of haloed masks."""
    from scipy import ndimage

    new_h = ~sr_valid & lr_valid_up
    new = new_h[core]
    n_new, n_den = int(new.sum()), int(lr_valid_up[core].sum())
    if n_new == 0:
        return 0, n_den, math.nan
    if not lr_valid_up.all():
        dist = ndimage.distance_transform_edt(lr_valid_up)[core]
    else:
        dist = ndimage.distance_transform_edt(new)
    return n_new, n_den, float(dist[new].max())


def tile_metrics(lr: np.ndarray, lr_valid: np.ndarray, sr: np.ndarray, sr_valid: np.ndarray, *, top: int,
                 left: int, height: int, width: int, row0: int, col0: int, opts: DetectorOptions,
                 sr_integer: bool = False, data_range: float = 1.0) -> dict[str, float]:
    """Every metric and sum of one tile (haloed inputs; ``top``/``left`` the halo above/left, ``row0``/``col0``
    the tile's LR offset in the scene)."""
    s = opts.scale
    labels = list(opts.band_labels)
    ndvi = opts.red is not None and opts.nir is not None
    out: dict[str, float] = dict.fromkeys(metric_columns(labels, ndvi) + sum_columns(labels, ndvi), math.nan)
    lr_valid_up = _up_nn(lr_valid, s)
    lrf = np.where(lr_valid[None], lr, np.float32(0))
    srf = np.where((sr_valid & lr_valid_up)[None], sr, _up_nn(lrf, s))
    lc = (slice(top, top + height), slice(left, left + width))
    sc = (slice(s * top, s * (top + height)), slice(s * left, s * (left + width)))

    n_new, n_den, spread = nodata_scores(sr_valid, lr_valid_up, sc)
    out.update({"nodata-new-px": n_new, "nodata-new-frac": n_new / n_den if n_den else math.nan,
                "nodata-spread-px": spread, "n-lrvalid-sr": n_den})

    lr_c = torch.from_numpy(np.ascontiguousarray(lrf[(slice(None), *lc)]))[None]
    sr_c = torch.from_numpy(np.ascontiguousarray(srf[(slice(None), *sc)]))[None]
    both = sr_valid & lr_valid_up
    block_ok = both[sc].reshape(height, s, width, s).all(axis=(1, 3)) & lr_valid[lc]
    valid_frac = float(block_ok.mean())
    out["valid_frac"] = valid_frac
    if valid_frac < opts.min_valid or valid_frac == 0:
        return out

    cons = lr_consistency(sr_c, lr_c)[0].tolist()
    out.update(dict(zip(CONSISTENCY, cons)))
    sr64, lr64 = sr_c.double(), lr_c.double()
    down = downsample(sr64, s)
    m = torch.from_numpy(block_ok)
    diff = (down - lr64)[0][:, m]
    n = int(m.sum())
    out.update({"n-lr": n * diff.shape[0], "sum-abs": float(diff.abs().sum()), "sum-sq": float(diff.square().sum())})
    d_sr, d_lr = down[0][:, m], lr64[0][:, m]
    for i, b in enumerate(labels):
        sl, ss = float(d_lr[i].sum()), float(d_sr[i].sum())
        out.update({f"sum-lr-{b}": sl, f"sum-sr-{b}": ss, f"bias-{b}": (ss - sl) / n,
                    f"ratio-{b}": ss / sl if sl != 0 else math.nan})
    ratios = [out[f"ratio-{b}"] for b in labels]
    out["cast"] = max((abs(r - 1) for r in ratios if math.isfinite(r)), default=math.nan)
    if ndvi:
        def index(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            num, den = x[opts.nir] - x[opts.red], x[opts.nir] + x[opts.red]
            return num / torch.where(den > 0, den, torch.ones_like(den)), den > 0
        (v_sr, ok_sr), (v_lr, ok_lr) = index(d_sr), index(d_lr)
        ok = ok_sr & ok_lr
        nd = int(ok.sum())
        out.update({"n-ndvi": nd, "sum-ndvi-diff": float((v_sr - v_lr)[ok].sum()),
                    "ndvi-drift": float((v_sr - v_lr)[ok].mean()) if nd else math.nan})

    # by construction: the bilinear reduction or the block mean reproduce the LR
    box = F.avg_pool2d(sr64, s) if s > 1 else sr64
    maxdiff = float(diff.abs().max())
    maxbox = float((box - lr64)[0][:, m].abs().max())
    tol = opts.construction_tol + (0.5 / data_range if sr_integer else 0.0)
    structured = float(lr64[0][:, m].std()) > 1e-3 if n > 1 else False
    out.update({"lr-maxdiff": maxdiff, "lr-maxdiff-box": maxbox,
                "by-construction": float(structured and min(maxdiff, maxbox) <= tol)})

    # bicubic reference on the haloed LR; seams on the core plus one SR pixel above/left where there is one.
    # SR pixels within the bicubic support (2 LR px) of LR no-data are left out of seams and detail.
    if not lr_valid.all():
        near = F.max_pool2d(torch.from_numpy(~lr_valid)[None, None].float(), 5, stride=1, padding=2)[0, 0] > 0
        both = both & _up_nn((~near).numpy(), s)
    lr_h = torch.from_numpy(lrf).double()[None]
    bi_h = upsample_lr(lr_h, (lr.shape[-2] * s, lr.shape[-1] * s), mode="bicubic")[0]
    et, el = min(1, s * top), min(1, s * left)
    reg = (slice(s * top - et, s * (top + height)), slice(s * left - el, s * (left + width)))
    step, energy, period = seam_scores(torch.from_numpy(srf[(slice(None), *reg)]).double(), bi_h[(slice(None), *reg)],
                                       torch.from_numpy(both[reg]), s * row0 - et, s * col0 - el, opts.seam_period, s)
    out.update({"seam-step": step, "seam-energy": energy, "seam-period": period})

    # added detail: energy above the LR band, SR vs the bicubic upsampling
    bi_c = bi_h[(slice(None), *sc)][None]
    size = (s * height, s * width)
    hf_sr = sr64 - upsample_lr(down, size, mode="bicubic")
    hf_bi = bi_c - upsample_lr(downsample(bi_c, s), size, mode="bicubic")
    msr = torch.from_numpy(both[sc])
    e_sr, e_bi = float(hf_sr[0][:, msr].square().sum()), float(hf_bi[0][:, msr].square().sum())
    n_sr = int(msr.sum()) * hf_sr.shape[1]
    out.update({"n-sr": n_sr, "sum-hf2-sr": e_sr, "sum-hf2-bi": e_bi,
                "detail-rms": math.sqrt(e_sr / n_sr) if n_sr else math.nan,
                "detail-gain": math.sqrt(e_sr / e_bi) if e_bi > 0 else math.nan})
    return out


__all__ = ["CONSISTENCY", "DetectorOptions", "SEAM_CANDIDATES", "metric_columns", "nodata_scores", "seam_scores",
           "sum_columns", "tile_metrics"]
