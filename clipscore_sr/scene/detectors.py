"""Per-tile metrics without HR: LR consistency (from :mod:`clipscore_sr.metrics.consistency`), no-data
propagation, seams/stripes, colour cast and NDVI drift, added detail, consistency by construction.

:func:`tile_metrics` (:func:`reduce_tile`, then :func:`finish_tile`) evaluates one tile: ``lr``
``[C, h+4, w+4]`` (the tile with a :data:`HALO` of 2 LR pixels on each side, the bicubic support; replicated
past the scene's edge, which is what PyTorch's clamped bicubic does there) and ``sr`` ``[C, s*h, s*w]`` (the
tile only) in [0, 1], with their validity masks (``None`` = all valid). Besides the per-tile values each tile
returns the sums and counts the scene summary is made of (``n-*``, ``sum-*``), so a merge of shards is exact
(sums of sums, never means of means).

Definitions (SR pixels, data-range units unless said):

* Invalid pixels are filled before the consistency metrics: an SR pixel that is invalid where the LR is valid
  by the LR value beneath it (nearest), LR no-data by 0 in both. A tile whose LR and SR are fully valid gets
  what ``score --lr`` gives for the same windows written as files (to float32 rounding of the reduction, below).
* ``nodata-new-px``/``-frac``: SR pixels invalid (NaN/inf, nodata, masked, saturated) where the LR is valid,
  as a count and a fraction of the LR-valid SR pixels. ``nodata-spread-px``: the largest distance (SR pixels)
  of a new invalid pixel from the LR's own no-data (tile and halo); where the LR has none, from the nearest
  pixel that is not newly invalid (the hole's depth). NaN when there is no new invalid pixel.
* Seams, from what a seam is: a step across a window boundary that its neighbourhood does not predict. Signed
  steps of the band sum across each column ``c`` (global SR index; rows likewise) are averaged over each
  boundary segment (the rows of one window's edge: between multiples of ``P``); ``u`` = that mean minus its
  prediction from the means at ``c +- 1, 2, 3`` (:data:`PREDICTOR`, the 6-point interpolation at ``c``).
  ``z`` = ``u`` at the boundaries (``c mod P = 0``) over the RMS spread of ``u`` at the other columns of the
  same phase modulo the scale (the upsampling pattern; columns within 3 of a boundary left out).
  ``seam-step`` = RMS ``z`` over the tile's boundary segments of both axes, SR minus the bicubic upsampling of
  the LR (about 0 for a clean SR; flagged above 2.5, chosen from measured rates: README). Only boundaries inside
  the tile count: a tile needs an SR size > ``P`` (aligned tiles: >= ``2P``). ``seam-energy`` (mean absolute
  steps ``g[c]`` over rows and bands, divided by their mean at ``c mod scale``, folded modulo ``P``) = the
  fraction of the profile's variance at the harmonics of ``1/P``, SR minus bicubic. ``P`` is
  ``--seam-period`` or, detected, the smallest candidate (16..512 SR px, at most half the tile) whose
  ``seam-step`` is >= 0.8 of the largest; ``seam-period`` records it.
* Colour: ``bias-bN`` = mean(down(SR) - LR), ``ratio-bN`` = sum(down(SR)) / sum(LR) per file band N over
  valid LR pixels; ``cast`` = max |ratio - 1|; ``ndvi-drift`` = mean(NDVI(down(SR)) - NDVI(LR)) when red and
  NIR bands are named.
* Detail: ``hf(x) = x - bicubic(down(x))`` (what lies above the LR's band); ``detail-rms`` = RMS of hf(SR),
  ``detail-gain`` = RMS hf(SR) / RMS hf(bicubic(LR)) (about 1: the SR adds nothing beyond interpolation).
* ``lr-maxdiff`` / ``lr-maxdiff-box``: max |down(SR) - LR| with the metric's antialiased bilinear reduction and
  with the ``s x s`` block mean; ``by-construction`` = 1 when either is <= ``tol`` (1e-5, plus half a quantum
  for integer SR) on a tile with structure (LR std > 1e-3) and enough valid pixels.

Precision: the SR-sized work (the reduction to the LR grid, bicubic upsamplings, steps, energies) runs in
float32 with the operators of :mod:`.kernels`, streamed in bands of rows; everything on the LR grid
(consistency, colour, NDVI, maxima) in float64 on the CPU. Against the float64 definition
(``tests/scene_reference.py``, real Landsat tiles at x2/x3/x4 with NaN holes and LR no-data) the tested
differences are at most 2e-7 in lr-l1, lr-maxdiff(-box), bias and cast (data-range units; measured <= 7e-8),
1e-5 dB in lr-psnr (measured 5e-7), 1e-5 degrees in lr-sam (1e-7), 1e-6 relative in ratios, sums and detail
(2e-7), 1e-5 in seam-step (z units, tested) and seam-energy (2e-7); counts, fractions, flags, periods and lr-shift are equal (lr-shift
is a 0.01-px step of the upsampled DFT: a near-tie could move it by one step).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..metrics.consistency import consistency_from_down
from .kernels import Down, StepSums, Up, row_bands

#: halo (LR pixels) around each tile's LR: the bicubic support
HALO = 2
#: candidate inference-window periods (SR pixels) when --seam-period is not given
SEAM_CANDIDATES = (16, 32, 64, 128, 256, 512)
#: weights of the mean steps at +-1, +-2, +-3 pixels predicting the one across a window boundary (6-point Lagrange
#: interpolation; measured on Landsat: 4 points leave 1.5x more residual at x2, +-scale points miss nearest SRs)
PREDICTOR = (3 / 4, -3 / 10, 1 / 20)
#: values (float32) per band of rows in the streamed passes over a tile's SR (1 MiB: smaller bands cost more in
#: per-operation overhead than they gain in cache, measured)
BAND_ELEMENTS = 1 << 18
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


@dataclass
class TileInput:
    """One tile as read: ``lr`` ``[C, h+2*HALO, w+2*HALO]`` and ``sr`` ``[C, s*h, s*w]`` float32 in [0, 1],
    validity masks of the same sizes (``None`` = all valid), the tile's LR offset in the scene."""
    lr: np.ndarray
    lr_valid: np.ndarray | None
    sr: np.ndarray
    sr_valid: np.ndarray | None
    row0: int
    col0: int


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


# ------------------------------------------------------------------------------------------------ seams
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


@dataclass
class SeamAxis:
    """One axis of a tile's seam inputs: the mean absolute step profiles ``gs`` (SR) and ``gb`` (bicubic) ``[n]``
    (NaN where no valid pair) at the global index ``idx`` ``[n]`` of each pair's second pixel; the signed steps
    of the band sum summed over chunks of the other axis (runs between global multiples of ``chunk``; the first
    is chunk ``chunk0`` of the scene) ``ds``, ``db`` ``[n, K]``, and their counts of valid pairs ``count``."""
    gs: np.ndarray
    gb: np.ndarray
    idx: np.ndarray
    ds: np.ndarray
    db: np.ndarray
    count: np.ndarray
    chunk: int
    chunk0: int


def seam_chunk(period: int | None) -> int:
    """The chunk (SR px) the signed steps are summed over: ``period``, or what every candidate is a multiple of."""
    return period or math.gcd(*SEAM_CANDIDATES)


def _segment_means(d: np.ndarray, ax: SeamAxis, period: int) -> np.ndarray:
    """``[..., n, K']``: the mean signed step of each pair line over each run of the other axis between multiples of
    ``period`` (one window's edge), from the chunk sums ``d``; NaN where no valid pair."""
    seg = (np.arange(ax.chunk0, ax.chunk0 + d.shape[-1]) * ax.chunk) // period
    starts = np.concatenate([[0], np.flatnonzero(np.diff(seg)) + 1])  # (no BLAS product here: its threads would
    sums = np.add.reduceat(d, starts, axis=-1)  # spin beside torch's)
    counts = np.add.reduceat(ax.count, starts, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _seam_z(d: np.ndarray, ax: SeamAxis, period: int, scale: int) -> np.ndarray | None:
    """``[I, m]``: ``z`` of every boundary segment (``idx % period == 0``) of the signed step sums ``d``
    ``[I, n, K]`` of ``I`` images: its mean step minus the :data:`PREDICTOR` prediction from its neighbours, over
    the RMS spread of the same at the other pairs of its phase modulo ``scale`` (pairs within
    ``len(PREDICTOR)`` of a boundary left out); None without a boundary segment or >= 4 noise samples."""
    o = len(PREDICTOR)
    n = d.shape[1]
    if n <= 2 * o:
        return None
    m = _segment_means(d, ax, period)
    u = m[:, o:n - o].copy()
    for k, wk in enumerate(PREDICTOR, 1):
        u -= wk * (m[:, o - k:n - o - k] + m[:, o + k:n - o + k])
    idx = ax.idx[o:n - o]
    bound = idx % period == 0
    near = np.zeros_like(bound)
    for k in range(1, o + 1):
        near |= ((idx - k) % period == 0) | ((idx + k) % period == 0)
    s = max(scale, 1)
    z = []
    for ph in np.unique(idx[bound] % s):
        noise = u[:, (idx % s == ph) & ~bound & ~near].reshape(len(u), -1)
        noise = noise[:, np.isfinite(noise[0])]  # NaN (no valid pair) alike in every image
        if noise.shape[1] < 4:
            continue
        spread = np.sqrt(np.mean(np.square(noise - noise.mean(axis=1, keepdims=True)), axis=1))
        if not (spread > 0).all():
            continue
        zb = u[:, bound & (idx % s == ph)].reshape(len(u), -1) / spread[:, None]
        z.append(zb[:, np.isfinite(zb[0])])
    z = np.concatenate(z, axis=1) if z else np.empty((len(d), 0))
    return z if z.size else None


def seam_scores(axes: Sequence[SeamAxis], period: int | None, scale: int = 1) -> tuple[float, float, float]:
    """(seam-step, seam-energy, period) of a tile from its :class:`SeamAxis` of columns and rows."""
    n = min(ax.gs.size for ax in axes) + 1  # pixels along the shorter axis
    cands = [period] if period else [p for p in SEAM_CANDIDATES if p <= max(n // 2, 1)]
    unscaled = [(_unscale(ax.gs, ax.idx, scale), _unscale(ax.gb, ax.idx, scale), ax.idx) for ax in axes]
    best: list[tuple[int, float, float]] = []
    pairs = [np.stack([ax.ds, ax.db]) for ax in axes]
    for p in cands:
        zs, energy = [], -math.inf
        for ax, pair in zip(axes, pairs):
            z = _seam_z(pair, ax, p, scale)
            if z is not None:
                zs.append(z)
        for gs, gb, idx in unscaled:
            fa, fb = _fold(gs, idx, p), _fold(gb, idx, p)
            if fa is not None and fb is not None:
                energy = max(energy, float(fa[1] - fb[1]))
        if zs:
            rms = np.sqrt(np.mean(np.square(np.concatenate(zs, axis=1)), axis=1))
            best.append((p, float(rms[0] - rms[1]), energy))
    if not best:
        return math.nan, math.nan, math.nan
    top = max(b[1] for b in best)
    p, step, energy = next(b for b in best if b[1] >= 0.8 * top) if top > 0 else max(best, key=lambda b: b[1])
    return step, energy, float(p)


# ------------------------------------------------------------------------------------------------ no-data
def nodata_spread(new: np.ndarray, lr_valid_up: np.ndarray | None, halo: int) -> float:
    """Largest distance (SR px) of a new invalid pixel (``new`` ``[H, W]``, the tile) from the LR's no-data
    (``lr_valid_up``: LR validity on the SR grid, with ``halo`` SR px around the tile; None = all valid), or,
    without LR no-data, from the nearest pixel that is not newly invalid."""
    from scipy import ndimage

    if lr_valid_up is not None and not lr_valid_up.all():
        dist = ndimage.distance_transform_edt(lr_valid_up)[halo:halo + new.shape[0], halo:halo + new.shape[1]]
    else:
        dist = ndimage.distance_transform_edt(new)
    return float(dist[new].max())


# ------------------------------------------------------------------------------------------------ tiles
@functools.lru_cache(maxsize=16)
def _down(n: int, s: int) -> Down:
    return Down(n, s)


@functools.lru_cache(maxsize=16)
def _up(n: int, s: int) -> Up:
    return Up(n, s)


def _nn(x: torch.Tensor, s: int) -> torch.Tensor:
    """Nearest upsampling of the last two axes by ``s``."""
    return x if s == 1 else x.repeat_interleave(s, dim=-2).repeat_interleave(s, dim=-1)


def _core(x: torch.Tensor) -> torch.Tensor:
    return x[..., HALO:x.shape[-2] - HALO, HALO:x.shape[-1] - HALO]


@dataclass
class Reduced:
    """A tile after :func:`reduce_tile` (its first pass): the values so far and, when the tile has enough valid
    pixels, what :func:`finish_tile` needs (tensors with a leading axis of 1)."""
    tile: TileInput
    values: dict[str, float]
    lr: torch.Tensor | None = None  # [1, C, h+4, w+4], LR no-data filled with 0
    sr: torch.Tensor | None = None  # [1, C, s*h, s*w], new invalid pixels filled from the LR
    down: torch.Tensor | None = None  # [1, C, h, w]: the SR reduced to the LR grid (antialiased bilinear)
    box: torch.Tensor | None = None  # [1, C, h, w]: its s x s block means
    block_ok: torch.Tensor | None = None  # [1, h, w] LR pixels whose LR and SR are all valid (None: all)
    bicubic_ok: torch.Tensor | None = None  # [1, s*h, s*w] SR pixels for seams and detail (None: all)
    steps: StepSums | None = None  # the SR's step profiles


def reduce_tile(x: TileInput, opts: DetectorOptions, device: torch.device | str = "cpu") -> Reduced:
    """The first pass over a tile's SR: validity and no-data propagation, the reduction to the LR grid and the
    SR's seam profiles (run in the reader thread, beside :func:`finish_tile` on the tile before)."""
    s = opts.scale
    labels = list(opts.band_labels)
    ndvi = opts.red is not None and opts.nir is not None
    out = dict.fromkeys(metric_columns(labels, ndvi) + sum_columns(labels, ndvi), math.nan)
    dev = torch.device(device)
    c, sh, sw = x.sr.shape
    h, w = sh // s, sw // s
    lr_p, sr = torch.from_numpy(x.lr)[None].to(dev), torch.from_numpy(x.sr)[None].to(dev)
    block_ok = bicubic_ok = None
    if x.lr_valid is not None or x.sr_valid is not None:
        lv = torch.from_numpy(x.lr_valid if x.lr_valid is not None else np.ones(x.lr.shape[1:], bool))[None].to(dev)
        sv = torch.from_numpy(x.sr_valid if x.sr_valid is not None else np.ones((sh, sw), bool))[None].to(dev)
        lv_up = _nn(_core(lv), s)
        lr_p = lr_p.masked_fill(~lv[:, None], 0.0)
        both = sv & lv_up
        new = ~sv & lv_up
        n_new, n_den = int(new.sum()), int(lv_up.sum())
        sr = torch.where(both[:, None], sr, _nn(_core(lr_p), s))
        block_ok = both.view(1, h, s, w, s).all(dim=4).all(dim=2) & _core(lv)
        spread = math.nan
        if n_new:
            lvu = _nn(lv[0], s).cpu().numpy() if x.lr_valid is not None else None
            spread = nodata_spread(new[0].cpu().numpy(), lvu, HALO * s)
        out.update({"nodata-new-px": n_new, "nodata-new-frac": n_new / n_den if n_den else math.nan,
                    "nodata-spread-px": spread, "n-lrvalid-sr": n_den,
                    "valid_frac": float(block_ok.double().mean())})
        bicubic_ok = both
        if not bool(lv.all()):  # SR pixels within the bicubic support (2 LR px) of LR no-data: left out of
            near = F.max_pool2d((~lv).float()[:, None], 5, stride=1, padding=2)[:, 0] > 0  # seams and detail
            bicubic_ok = both & _nn(~_core(near), s)
    else:
        out.update({"nodata-new-px": 0, "nodata-new-frac": 0.0, "nodata-spread-px": math.nan,
                    "n-lrvalid-sr": sh * sw, "valid_frac": 1.0})
    if not (out["valid_frac"] >= opts.min_valid and out["valid_frac"] > 0):
        return Reduced(x, out)
    # band of rows by band of rows: the reduction along the columns, and the steps
    dn_w, dn_h = _down(w, s), _down(h, s)
    yw, bw = sr.new_empty(1, c, sh, w), sr.new_empty(1, c, sh, w)
    steps = StepSums(1, sh, sw, dev, seam_chunk(opts.seam_period), s * x.row0, s * x.col0)
    for lo, r0, r1 in row_bands(sh, _band_rows(c * sw)):
        yw[:, :, r0:r1], bw[:, :, r0:r1] = dn_w(sr[:, :, r0:r1])
        steps.add(sr[:, :, lo:r1], lo, r0, bicubic_ok)
    down, box = dn_w.finish(yw, bw, dn_h)  # the reduction to the LR grid, shared by every detector
    return Reduced(x, out, lr_p, sr, down, box, block_ok, bicubic_ok, steps)


def finish_tile(r: Reduced, opts: DetectorOptions, *, sr_integer: bool = False, data_range: float = 1.0
                ) -> dict[str, float]:
    """Every metric and sum of a reduced tile: consistency, colour and construction on the LR grid, then the
    bicubic reference band by band (seams) and the detail energies."""
    out = dict(r.values)
    if r.sr is None:
        return out
    s, t = opts.scale, r.tile
    _, c, sh, sw = r.sr.shape
    h, w = sh // s, sw // s
    sr, ok = r.sr, r.bicubic_ok
    down64, box64, lr64 = r.down.cpu().double(), r.box.cpu().double(), _core(r.lr).cpu().double()
    out.update(dict(zip(CONSISTENCY, consistency_from_down(down64, lr64)[0].tolist())))
    out.update(_lr_grid(down64[0], box64[0], lr64[0], r.block_ok[0].cpu() if r.block_ok is not None else None,
                        list(opts.band_labels), opts, sr_integer, data_range))

    # pass 2: the bicubic reference band by band (its steps, its reduction) and hf(SR) = SR - bicubic(down(SR))
    dn_w, dn_h, up_w, up_h = _down(w, s), _down(h, s), _up(w, s), _up(h, s)
    rows = _band_rows(c * sw)
    bi_rows = Up.first(r.lr, up_h)
    low_rows = Up.first(F.pad(r.down, (HALO,) * 4, mode="replicate"), up_h)
    ch = seam_chunk(opts.seam_period)
    steps_bi = StepSums(1, sh, sw, sr.device, ch, s * t.row0, s * t.col0)
    yw = sr.new_empty(1, c, sh, w)
    e_sr = 0.0
    for lo, r0, r1 in row_bands(sh, rows):
        bic = up_w(bi_rows[:, :, lo:r1]).clamp_(0.0, 1.0)
        steps_bi.add(bic, lo, r0, ok)
        yw[:, :, r0:r1] = dn_w(bic[:, :, r0 - lo:], box=False)[0]
        e_sr += _sse(sr[:, :, r0:r1], up_w(low_rows[:, :, r0:r1]).clamp_(0.0, 1.0), ok, r0, r1)
    dbi, _ = dn_w.finish(yw, None, dn_h)
    del yw

    # pass 3: hf(bicubic) = bicubic - bicubic(down(bicubic)), the bicubic recomputed band by band
    low_rows = Up.first(F.pad(dbi, (HALO,) * 4, mode="replicate"), up_h)
    e_bi = 0.0
    for _, r0, r1 in row_bands(sh, rows):
        bic = up_w(bi_rows[:, :, r0:r1]).clamp_(0.0, 1.0)
        e_bi += _sse(bic, up_w(low_rows[:, :, r0:r1]).clamp_(0.0, 1.0), ok, r0, r1)

    n = sh * sw * c if ok is None else int(ok.sum()) * c
    (cs, rs), (cb, rb) = r.steps.profiles()[0], steps_bi.profiles()[0]
    ((dcs, nc), (drs, nr)), ((dcb, _), (drb, _)) = r.steps.signed(), steps_bi.signed()
    axes = [SeamAxis(cs, cb, np.arange(s * t.col0 + 1, s * t.col0 + sw), dcs, dcb, nc, ch, s * t.row0 // ch),
            SeamAxis(rs, rb, np.arange(s * t.row0 + 1, s * t.row0 + sh), drs, drb, nr, ch, s * t.col0 // ch)]
    step, energy, period = seam_scores(axes, opts.seam_period, s)
    out.update({"seam-step": step, "seam-energy": energy, "seam-period": period, "n-sr": n, "sum-hf2-sr": e_sr,
                "sum-hf2-bi": e_bi, "detail-rms": math.sqrt(e_sr / n) if n else math.nan,
                "detail-gain": math.sqrt(e_sr / e_bi) if e_bi > 0 else math.nan})
    return out


def tile_metrics(x: TileInput, opts: DetectorOptions, *, sr_integer: bool = False, data_range: float = 1.0,
                 device: torch.device | str = "cpu") -> dict[str, float]:
    """Every metric and sum of one tile (:func:`reduce_tile` then :func:`finish_tile`)."""
    return finish_tile(reduce_tile(x, opts, device), opts, sr_integer=sr_integer, data_range=data_range)


def _sse(a: torch.Tensor, b: torch.Tensor, valid: torch.Tensor | None, r0: int, r1: int) -> float:
    """The sum of ``(a - b)^2`` (``[1, C, rows, W]``) over bands and the valid pixels of rows ``[r0, r1)``."""
    if valid is None:
        return float(F.mse_loss(a, b, reduction="sum"))  # one fused pass
    d = (a - b).square_()
    d *= valid[:, None, r0:r1]
    return float(d.sum())


def _band_rows(row_size: int) -> int:
    """Rows per band of the streamed passes: about :data:`BAND_ELEMENTS` values."""
    return max(1, BAND_ELEMENTS // max(1, row_size))


def _lr_grid(down: torch.Tensor, box: torch.Tensor, lr: torch.Tensor, m: torch.Tensor | None,
             labels: Sequence[str], opts: DetectorOptions, sr_integer: bool, data_range: float) -> dict[str, float]:
    """Sums, colour, NDVI and construction of one tile on the LR grid (float64 ``[C, h, w]``, mask ``m``)."""
    pick = (lambda x: x.flatten(1)) if m is None else (lambda x: x[:, m])
    d_sr, d_lr = pick(down), pick(lr)
    diff = d_sr - d_lr
    n = d_lr.shape[1]
    out: dict[str, float] = {"n-lr": n * diff.shape[0], "sum-abs": float(diff.abs().sum()),
                             "sum-sq": float(diff.square().sum())}
    for i, b in enumerate(labels):
        sl, ss = float(d_lr[i].sum()), float(d_sr[i].sum())
        out.update({f"sum-lr-{b}": sl, f"sum-sr-{b}": ss, f"bias-{b}": (ss - sl) / n,
                    f"ratio-{b}": ss / sl if sl != 0 else math.nan})
    ratios = [out[f"ratio-{b}"] for b in labels]
    out["cast"] = max((abs(r - 1) for r in ratios if math.isfinite(r)), default=math.nan)
    if opts.red is not None and opts.nir is not None:
        def index(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            num, den = x[opts.nir] - x[opts.red], x[opts.nir] + x[opts.red]
            return num / torch.where(den > 0, den, torch.ones_like(den)), den > 0
        (v_sr, ok_sr), (v_lr, ok_lr) = index(d_sr), index(d_lr)
        ok = ok_sr & ok_lr
        nd = int(ok.sum())
        out.update({"n-ndvi": nd, "sum-ndvi-diff": float((v_sr - v_lr)[ok].sum()),
                    "ndvi-drift": float((v_sr - v_lr)[ok].mean()) if nd else math.nan})
    # by construction: the bilinear reduction or the block mean reproduce the LR
    maxdiff = float(diff.abs().max())
    maxbox = float((pick(box) - d_lr).abs().max())
    tol = opts.construction_tol + (0.5 / data_range if sr_integer else 0.0)
    structured = float(d_lr.std()) > 1e-3 if n > 1 else False
    out.update({"lr-maxdiff": maxdiff, "lr-maxdiff-box": maxbox,
                "by-construction": float(structured and min(maxdiff, maxbox) <= tol)})
    return out


__all__ = ["CONSISTENCY", "HALO", "DetectorOptions", "Reduced", "PREDICTOR", "SEAM_CANDIDATES", "TileInput", "finish_tile",
           "metric_columns", "nodata_spread", "reduce_tile", "SeamAxis", "seam_chunk", "seam_scores", "sum_columns", "tile_metrics"]
