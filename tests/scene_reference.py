"""The scene detectors' definitions in plain float64 (one tile at a time, PyTorch's own interpolations, numpy
masks): the reference the fast float32 :func:`clipscore_sr.scene.detectors.tile_metrics` is tested against."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from clipscore_sr.metrics.consistency import downsample, lr_consistency
from clipscore_sr.metrics.correctness import upsample_lr
from clipscore_sr.scene.detectors import (
    CONSISTENCY,
    HALO,
    DetectorOptions,
    SeamAxis,
    TileInput,
    metric_columns,
    nodata_spread,
    seam_chunk,
    seam_scores,
    sum_columns,
)


def _up_nn(x: np.ndarray, s: int) -> np.ndarray:
    return np.repeat(np.repeat(x, s, axis=-2), s, axis=-1)


def _profile(x: torch.Tensor, valid: torch.Tensor, axis: int) -> np.ndarray:
    d = x.diff(dim=axis).abs().mean(dim=0)
    v = valid[1:, :] & valid[:-1, :] if axis == -2 else valid[:, 1:] & valid[:, :-1]
    other = 1 if axis == -2 else 0
    num = torch.where(v, d, torch.zeros_like(d)).sum(dim=other)
    cnt = v.sum(dim=other)
    return torch.where(cnt > 0, num / cnt.clamp_min(1), torch.full_like(num, math.nan)).numpy()


def reference_metrics(t: TileInput, opts: DetectorOptions, sr_integer: bool = False, data_range: float = 1.0
                      ) -> dict[str, float]:
    s, labels = opts.scale, list(opts.band_labels)
    ndvi = opts.red is not None and opts.nir is not None
    out: dict[str, float] = dict.fromkeys(metric_columns(labels, ndvi) + sum_columns(labels, ndvi), math.nan)
    lr = t.lr.astype(np.float64)
    sr = t.sr.astype(np.float64)
    lv = t.lr_valid if t.lr_valid is not None else np.ones(lr.shape[1:], bool)
    sv = t.sr_valid if t.sr_valid is not None else np.ones(sr.shape[1:], bool)
    c, sh, sw = sr.shape
    h, w = sh // s, sw // s
    core = (slice(HALO, HALO + h), slice(HALO, HALO + w))
    lv_up = _up_nn(lv[core], s)
    lrf = np.where(lv[None], lr, 0.0)
    both = sv & lv_up
    srf = np.where(both[None], sr, _up_nn(lrf[(slice(None), *core)], s))
    new = ~sv & lv_up
    n_new, n_den = int(new.sum()), int(lv_up.sum())
    spread = nodata_spread(new, _up_nn(lv, s), HALO * s) if n_new else math.nan
    out.update({"nodata-new-px": n_new, "nodata-new-frac": n_new / n_den if n_den else math.nan,
                "nodata-spread-px": spread, "n-lrvalid-sr": n_den})
    block_ok = both.reshape(h, s, w, s).all(axis=(1, 3)) & lv[core]
    out["valid_frac"] = float(block_ok.mean())
    if out["valid_frac"] < opts.min_valid or out["valid_frac"] == 0:
        return out
    sr64 = torch.from_numpy(srf)[None]
    lr64 = torch.from_numpy(np.ascontiguousarray(lrf[(slice(None), *core)]))[None]
    out.update(dict(zip(CONSISTENCY, lr_consistency(sr64, lr64)[0].tolist())))
    down = downsample(sr64, s)
    m = torch.from_numpy(block_ok)
    diff = (down - lr64)[0][:, m]
    n = int(m.sum())
    out.update({"n-lr": n * c, "sum-abs": float(diff.abs().sum()), "sum-sq": float(diff.square().sum())})
    d_sr, d_lr = down[0][:, m], lr64[0][:, m]
    for i, b in enumerate(labels):
        sl, ss = float(d_lr[i].sum()), float(d_sr[i].sum())
        out.update({f"sum-lr-{b}": sl, f"sum-sr-{b}": ss, f"bias-{b}": (ss - sl) / n,
                    f"ratio-{b}": ss / sl if sl != 0 else math.nan})
    out["cast"] = max((abs(out[f"ratio-{b}"] - 1) for b in labels if math.isfinite(out[f"ratio-{b}"])),
                      default=math.nan)
    if ndvi:
        def index(x):
            num, den = x[opts.nir] - x[opts.red], x[opts.nir] + x[opts.red]
            return num / torch.where(den > 0, den, torch.ones_like(den)), den > 0
        (v_sr, ok_sr), (v_lr, ok_lr) = index(d_sr), index(d_lr)
        ok = ok_sr & ok_lr
        out.update({"n-ndvi": int(ok.sum()), "sum-ndvi-diff": float((v_sr - v_lr)[ok].sum()),
                    "ndvi-drift": float((v_sr - v_lr)[ok].mean()) if ok.any() else math.nan})
    box = F.avg_pool2d(sr64, s) if s > 1 else sr64
    maxdiff, maxbox = float(diff.abs().max()), float((box - lr64)[0][:, m].abs().max())
    tol = opts.construction_tol + (0.5 / data_range if sr_integer else 0.0)
    structured = float(d_lr.std()) > 1e-3 if n > 1 else False
    out.update({"lr-maxdiff": maxdiff, "lr-maxdiff-box": maxbox,
                "by-construction": float(structured and min(maxdiff, maxbox) <= tol)})
    if not lv.all():
        near = F.max_pool2d(torch.from_numpy(~lv)[None, None].float(), 5, stride=1, padding=2)[0, 0] > 0
        both = both & _up_nn((~near).numpy()[core], s)
    bi_p = upsample_lr(torch.from_numpy(lrf)[None], (lr.shape[1] * s, lr.shape[2] * s), mode="bicubic")[0]
    bi = bi_p[:, HALO * s:HALO * s + sh, HALO * s:HALO * s + sw]
    vb = torch.from_numpy(both)
    okc, okr = (vb[:, 1:] & vb[:, :-1]).numpy(), (vb[1:] & vb[:-1]).numpy()
    ch = seam_chunk(opts.seam_period)

    def chunked(d: np.ndarray, start: int) -> np.ndarray:  # [n, L] -> sums over the chunks of the other axis
        ids = (start + np.arange(d.shape[1])) // ch - start // ch
        out = np.zeros((d.shape[0], ids[-1] + 1))
        np.add.at(out.T, ids, d.T)
        return out

    c_sr, c_bi = (chunked(np.where(okc, x.diff(dim=-1).sum(dim=0).numpy(), 0.0).T, s * t.row0) for x in (sr64[0], bi))
    r_sr, r_bi = (chunked(np.where(okr, x.diff(dim=-2).sum(dim=0).numpy(), 0.0), s * t.col0) for x in (sr64[0], bi))
    axes = [SeamAxis(_profile(sr64[0], vb, -1), _profile(bi, vb, -1), np.arange(s * t.col0 + 1, s * t.col0 + sw),
                     c_sr, c_bi, chunked(okc.T.astype(float), s * t.row0), ch, s * t.row0 // ch),
            SeamAxis(_profile(sr64[0], vb, -2), _profile(bi, vb, -2), np.arange(s * t.row0 + 1, s * t.row0 + sh),
                     r_sr, r_bi, chunked(okr.astype(float), s * t.col0), ch, s * t.col0 // ch)]
    step, energy, period = seam_scores(axes, opts.seam_period, s)
    out.update({"seam-step": step, "seam-energy": energy, "seam-period": period})
    hf_sr = sr64[0] - upsample_lr(down, (sh, sw), mode="bicubic")[0]
    hf_bi = bi - upsample_lr(downsample(bi[None], s), (sh, sw), mode="bicubic")[0]
    e_sr, e_bi = float(hf_sr[:, vb].square().sum()), float(hf_bi[:, vb].square().sum())
    n_sr = int(vb.sum()) * c
    out.update({"n-sr": n_sr, "sum-hf2-sr": e_sr, "sum-hf2-bi": e_bi,
                "detail-rms": math.sqrt(e_sr / n_sr) if n_sr else math.nan,
                "detail-gain": math.sqrt(e_sr / e_bi) if e_bi > 0 else math.nan})
    return out
