"""Fused CPU kernels (numba) for the default correctness path: per-pixel L1 distances, counting histogram
matching, scores and classes in single passes instead of ~40 full-size tensor operations.

Used by :func:`clipscore_sr.metrics.correctness.correctness` on the CPU when numba is installed (``pip install
numba``; the ``fast`` extra) for ``distance="l1"``, ``patch_size=1``, up to 16 bands; every other case, and any
machine without numba, runs the torch code. Each kernel repeats the torch code's arithmetic in the same order
(tests compare the two paths: identical histogram matching, distances, masks and classes on the tested data).
Exception: ``math.exp`` here and ``torch.exp`` may differ by 1 ulp, so a location whose two lowest scores tie
to ~1e-16 can be classed differently. The kernels run over images in parallel on ``torch.get_num_threads()``
threads and are compiled once per machine (numba's on-disk cache). After a fork, a child process must not call
them (GNU OpenMP refuses; torch's own threads hang there too).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np


@nb.njit(cache=True, nogil=True)
def _codes(x: np.ndarray, levels: int, codes: np.ndarray, value: np.ndarray, count: np.ndarray) -> bool:
    """Nearest level of each value of one band; False when a level holds two distinct values."""
    for k in range(value.size):
        value[k] = np.nan
        count[k] = 0.0
    for i in range(x.size):
        v = min(max(x[i] * levels + 0.5, 0.0), float(levels))
        c = int(v)
        codes[i] = c
        if value[c] != value[c]:
            value[c] = x[i]
        elif value[c] != x[i]:
            return False
        count[c] += 1.0
    return True


@nb.njit(cache=True, nogil=True)
def _match_band(s: np.ndarray, t: np.ndarray, levels: int, out: np.ndarray) -> bool:
    """``histogram_match`` of one band by counting (the torch ``_histogram_match_levels`` steps); False when
    the data is not quantised at ``levels`` (the caller then uses the sorting path)."""
    nl = levels + 1
    cs = np.empty(s.size, np.int64)
    ct = np.empty(t.size, np.int64)
    vs, vt = np.empty(nl), np.empty(nl)
    ns, nt = np.empty(nl), np.empty(nl)
    if not _codes(s, levels, cs, vs, ns) or not _codes(t, levels, ct, vt, nt):
        return False
    q, cq = np.empty(nl), np.empty(nl)
    acc_s = acc_t = 0.0
    last = -1
    for k in range(nl):
        acc_s += ns[k]
        acc_t += nt[k]
        q[k] = acc_s / s.size
        cq[k] = acc_t / t.size
        if nt[k] > 0:
            last = k
    kq, kv = np.empty(nl), np.empty(nl)
    j = nl
    for k in range(nl - 1, -1, -1):  # knots: each level -> the next present level, else the last present one
        if nt[k] > 0:
            j = k
        src = j if j < nl else last
        kq[k] = cq[src]
        kv[k] = vt[src]
    lut = np.empty(nl)
    for k in range(nl):
        qk = q[k]
        lo, hi = 0, nl
        while lo < hi:  # searchsorted(kq, qk, right=True)
            mid = (lo + hi) // 2
            if kq[mid] <= qk:
                lo = mid + 1
            else:
                hi = mid
        jj = min(max(lo, 1), nl - 1)
        x0, x1, y0, y1 = kq[jj - 1], kq[jj], kv[jj - 1], kv[jj]
        val = y0 if x1 == x0 else y0 + (y1 - y0) / (x1 - x0) * (qk - x0)
        if qk <= kq[0]:
            val = kv[0]
        if qk >= kq[nl - 1]:
            val = kv[nl - 1]
        lut[k] = val
    for i in range(s.size):
        out[i] = lut[cs[i]]
    return True


@nb.njit(cache=True, parallel=True)
def histogram_match_levels(src: np.ndarray, ref: np.ndarray, levels: int, out: np.ndarray) -> bool:
    """``src``, ``ref`` ``[P,N]``/``[P,M]`` float64 rows (image x band) -> ``out`` ``[P,N]``; False if any row
    is not quantised at ``levels``."""
    ok = np.ones(src.shape[0], np.bool_)
    for p in nb.prange(src.shape[0]):
        ok[p] = _match_band(src[p], ref[p], levels, out[p])
    return bool(ok.all())


@nb.njit(cache=True, parallel=True)
def l1_distances(sr_h: np.ndarray, hr: np.ndarray, up: np.ndarray, d_ref: np.ndarray, d_im: np.ndarray,
                 d_om: np.ndarray) -> None:
    """Per-pixel mean over bands of |up-hr|, |sr_h-hr|, |sr_h-up| (``[B,C,N]`` -> ``[B,N]`` each), summed in
    band order and divided by the band count, as torch's ``mean(dim=1)``."""
    b, c, n = sr_h.shape
    for i in nb.prange(b):
        for k in range(n):
            a_ref = a_im = a_om = 0.0
            for ch in range(c):
                s, h, u = sr_h[i, ch, k], hr[i, ch, k], up[i, ch, k]
                a_ref += abs(u - h)
                a_im += abs(s - h)
                a_om += abs(s - u)
            d_ref[i, k] = a_ref / c
            d_im[i, k] = a_im / c
            d_om[i, k] = a_om / c


@nb.njit(cache=True, parallel=True)
def classify(d_ref: np.ndarray, d_im: np.ndarray, d_om: np.ndarray, t: np.ndarray, any_rule: bool,
             g_im: float, g_om: float, g_ha: float, keep: np.ndarray, first: np.ndarray, second: np.ndarray,
             counts: np.ndarray) -> None:
    """Mask, normalised distances, the paper's three scores and the class per kept location (``[B,N]``), with
    the torch code's operations in its order; ``counts`` ``[B,4]`` = kept, improvement, omission,
    hallucination. ``first``/``second`` are False where a location is left out."""
    b, n = d_ref.shape
    for i in nb.prange(b):
        ti = t[i]
        n_keep = n_im = n_om = 0
        for k in range(n):
            r, dm, do = d_ref[i, k], d_im[i, k], d_om[i, k]
            kp = r > ti
            if any_rule:
                kp = kp or dm > ti or do > ti
            kp = kp and r > 0
            keep[i, k] = kp
            if not kp:  # left out: no scores (the class map masks it; ``scores`` recomputes on access)
                first[i, k] = second[i, k] = False
                continue
            x, y = dm / r, do / r
            h = x + y - 1.0
            e_im = math.exp(-g_im * h)
            e_om = e_im if g_om == g_im else math.exp(-g_om * h)
            s_im, s_om, s_ha = x + y * (1.0 - e_im), y + x * (1.0 - e_om), math.exp(-g_ha * x * y)
            f = s_im <= s_om and s_im <= s_ha
            sec = s_om <= s_ha
            first[i, k], second[i, k] = f, sec
            n_keep += 1
            if f:
                n_im += 1
            elif sec:
                n_om += 1
        counts[i, 0], counts[i, 1], counts[i, 2], counts[i, 3] = n_keep, n_im, n_om, n_keep - n_im - n_om


@nb.njit(cache=True, nogil=True)
def _kth_row(x: np.ndarray, k: int) -> float:
    """The ``k``-th smallest (1-based) value of ``x``, exactly: bucket the values into 1024 bins between the
    minimum and maximum, then sort only the bin that holds rank ``k``."""
    lo, hi = x[0], x[0]
    for v in x:
        lo = min(lo, v)
        hi = max(hi, v)
    if lo == hi:
        return lo
    nb_bins = 1024
    scale = nb_bins / (hi - lo)
    if not scale < np.inf or not scale > 0:  # a denormal or overflowing range: sort it all
        y = x.copy()
        y.sort()
        return y[k - 1]
    counts = np.zeros(nb_bins + 1, np.int64)
    for v in x:
        counts[min(int((v - lo) * scale), nb_bins)] += 1
    below = 0
    target = 0
    for j in range(nb_bins + 1):
        if below + counts[j] >= k:
            target = j
            break
        below += counts[j]
    chosen = np.empty(counts[target])
    m = 0
    for v in x:
        if min(int((v - lo) * scale), nb_bins) == target:
            chosen[m] = v
            m += 1
    chosen.sort()
    return chosen[k - below - 1]


@nb.njit(cache=True, parallel=True)
def kth_smallest(d: np.ndarray, k: int, out: np.ndarray) -> None:
    """``out[i]`` = the ``k``-th smallest (1-based) value of row ``i`` of ``d`` ``[B,N]`` (torch ``kthvalue``)."""
    for i in nb.prange(d.shape[0]):
        out[i] = _kth_row(d[i], k)
