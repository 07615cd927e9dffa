"""Fast resampling and step kernels for the scene detectors: float32 torch (CPU, or CUDA when the tensors are
there), batched over tiles ``[B, C, H, W]``.

Every operator is PyTorch's own interpolation, applied in fewer passes: its 1-D weights are taken from
``F.interpolate`` applied to the identity in float64 (so borders are PyTorch's: clamped indices for bicubic, the
renormalised support of the antialiased bilinear reduction), then applied separably, as one matrix product per
pass over the data. The results equal ``F.interpolate`` on the same float32 data to float32 rounding (tested to
1e-6 of full scale against float64).

* :class:`Down`: SR ``n*s`` -> LR ``n`` per axis, the antialiased bilinear reduction of
  :func:`clipscore_sr.metrics.consistency.downsample` and the ``s``-block mean, from one read of the input
  (``x.view(..., n, s) @ K``: each LR pixel's own block and its two neighbours' contributions).
* :class:`Up`: LR ``n`` (given with 2 pixels of halo on each side, the bicubic support) -> SR ``s*n``, PyTorch's
  bicubic (``align_corners=False``, ``A = -0.75``) in chunks of 16 LR pixels (one ``[20, 16 s]`` matrix).
* :class:`StepSums`: the summed absolute steps between neighbouring columns and rows (the seam profiles).

The detectors stream each tile through these in bands of rows (:func:`row_bands`) small enough to stay in the
CPU's cache, so a tile is read from memory twice rather than once per operation.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

#: LR pixels per chunk of :class:`Up` (one matrix product of [.., CHUNK + 4] by [CHUNK + 4, CHUNK * s])
CHUNK = 16


@functools.lru_cache(maxsize=32)
def operator_matrix(mode: str, n_in: int, n_out: int) -> torch.Tensor:
    """PyTorch's 1-D resampling ``n_in -> n_out`` as a float64 matrix ``[n_out, n_in]`` (``mode``: ``"bicubic"``
    or ``"aa"``, the antialiased bilinear reduction), from ``F.interpolate`` on the identity."""
    eye = torch.eye(n_in, dtype=torch.float64).view(1, n_in, 1, n_in)
    if mode == "bicubic":
        y = F.interpolate(eye, size=(1, n_out), mode="bicubic", align_corners=False)
    elif mode == "aa":
        y = F.interpolate(eye, size=(1, n_out), mode="bilinear", antialias=True, align_corners=False)
    else:  # pragma: no cover - internal
        raise ValueError(mode)
    return y.view(n_in, n_out).T.contiguous()


class Down:
    """``[..., n*s] -> [..., n]`` along the last axis: the antialiased bilinear reduction and the block mean."""

    def __init__(self, n: int, s: int) -> None:
        self.n, self.s = n, s
        a = operator_matrix("aa", n * s, n)
        self.dense = a if n < 4 else None
        if self.dense is None:
            o = n // 2
            k = torch.stack([a[o, (o + d) * s:(o + d + 1) * s] for d in (-1, 0, 1)], dim=1)  # [s, 3]
            self.kernel = torch.cat([k, torch.full((s, 1), 1.0 / s, dtype=torch.float64)], dim=1)
            self.special = []  # rows that are not the interior pattern (the borders): computed directly
            for r in range(n):
                lo, hi = max(0, (r - 1) * s), min(n * s, (r + 2) * s)
                row = torch.zeros(3 * s, dtype=torch.float64)
                row[lo - (r - 1) * s:hi - (r - 1) * s] = a[r, lo:hi]
                outside = a[r].abs().sum() - a[r, lo:hi].abs().sum()
                if outside > 0 or not torch.equal(row, k.T.reshape(-1)):
                    nz = torch.nonzero(a[r]).flatten()
                    self.special.append((r, int(nz[0]), int(nz[-1]) + 1, a[r, int(nz[0]):int(nz[-1]) + 1]))
        self._cache: dict[tuple, tuple] = {}

    def _on(self, x: torch.Tensor):
        key = (x.dtype, x.device)
        if key not in self._cache:
            if self.dense is not None:
                self._cache[key] = (self.dense.T.to(**_to(x)),)
            else:
                self._cache[key] = (self.kernel.T.contiguous().to(**_to(x)),
                                    [(r, lo, hi, w.to(**_to(x))) for r, lo, hi, w in self.special])
        return self._cache[key]

    def __call__(self, x: torch.Tensor, box: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(antialiased bilinear, block mean or None)`` of ``x`` ``[..., n*s]`` (contiguous)."""
        w = self._on(x)
        if self.dense is not None:
            y = x @ w[0]
            return y, (x.unflatten(-1, (self.n, self.s)).mean(-1) if box else None)
        kernel, special = w
        # one product [4, s] x [s, ...]: each block's share of the next output, of its own, of the previous one, mean
        p = torch.mm(kernel, x.reshape(-1, self.s).T).view(4, *x.shape[:-1], self.n)
        y = p[1].clone()
        y[..., 1:] += p[0][..., :-1]
        y[..., :-1] += p[2][..., 1:]
        for r, lo, hi, wr in special:
            y[..., r] = x[..., lo:hi] @ wr
        return y, (p[3] if box else None)

    def image(self, x: torch.Tensor, rows: Down, box: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """2-D: ``x`` ``[..., rows.n*s, self.n*s]`` -> ``[..., rows.n, self.n]`` (this operator along the
        columns, ``rows`` along the rows), with the ``s x s`` block mean."""
        y, b = self(x.contiguous(), box)
        return self.finish(y, b, rows)

    def finish(self, y: torch.Tensor, b: torch.Tensor | None, rows: Down) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The second pass of :meth:`image`, along the rows, of this operator's output ``(y, b)`` (which may be
        computed band of rows by band of rows)."""
        y = rows.rows(y)
        if b is not None:
            b = b.unflatten(-2, (rows.n, rows.s)).mean(-2)
        return y, b

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        """The antialiased bilinear reduction along the rows: ``[..., n*s, W] -> [..., n, W]``."""
        w = self._on(x)
        if self.dense is not None:
            return torch.matmul(w[0].T, x)
        kernel, special = w
        p = torch.matmul(kernel, x.unflatten(-2, (self.n, self.s)))  # [..., n, 4, W]
        y = p[..., 1, :].clone()
        y[..., 1:, :] += p[..., :-1, 0, :]
        y[..., :-1, :] += p[..., 1:, 2, :]
        for r, lo, hi, wr in special:
            y[..., r, :] = torch.matmul(wr, x[..., lo:hi, :])
        return y


class Up:
    """``[..., n + 4] -> [..., s*n]`` along the last axis: PyTorch's bicubic upsampling of the ``n`` central
    pixels, the 2 pixels on each side being their halo (real neighbours, or replicated at a scene edge)."""

    def __init__(self, n: int, s: int) -> None:
        self.n, self.s = n, s
        a = operator_matrix("bicubic", CHUNK + 4, s * (CHUNK + 4))[2 * s:2 * s + s * CHUNK]  # [s*CHUNK, CHUNK+4]
        self.matrix = a.T.contiguous()  # [CHUNK + 4, s*CHUNK], the same for every chunk of the padded input
        self._cache: dict[tuple, torch.Tensor] = {}

    def _matrix(self, x: torch.Tensor) -> torch.Tensor:
        key = (x.dtype, x.device)
        if key not in self._cache:
            self._cache[key] = self.matrix.to(**_to(x))
        return self._cache[key]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        nch = -(-self.n // CHUNK)
        pad = nch * CHUNK + 4 - x.shape[-1]
        if pad:
            x = F.pad(x, (0, pad))
        u = x.unfold(-1, CHUNK + 4, CHUNK).reshape(-1, CHUNK + 4)  # 2-D product: ~6x faster than batched
        y = (u @ self._matrix(x)).view(*x.shape[:-1], nch * self.s * CHUNK)
        return y[..., :self.s * self.n] if pad else y

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        """This operator along the rows: ``[..., n + 4, W] -> [..., s*n, W]`` (contiguous)."""
        nch = -(-self.n // CHUNK)
        pad = nch * CHUNK + 4 - x.shape[-2]
        if pad:
            x = F.pad(x, (0, 0, 0, pad))
        chunks = x.unfold(-2, CHUNK + 4, CHUNK).transpose(-1, -2)  # [..., nch, CHUNK + 4, W]
        y = torch.matmul(self._matrix(x).T, chunks).flatten(-3, -2)  # [..., nch * s*CHUNK, W]
        return y[..., :self.s * self.n, :] if pad else y

    def image(self, x: torch.Tensor, rows: Up) -> torch.Tensor:
        """2-D: ``x`` ``[..., rows.n + 4, self.n + 4]`` -> ``[..., s*rows.n, s*self.n]`` (not clamped)."""
        return self(self.first(x, rows))

    @staticmethod
    def first(x: torch.Tensor, rows: Up) -> torch.Tensor:
        """The first pass of :meth:`image`, along the rows: ``[..., s*rows.n, self.n + 4]``; this operator called on
        any band of its rows gives those rows of the image."""
        return rows.rows(x).contiguous()


def _to(x: torch.Tensor) -> dict:
    return {"dtype": x.dtype, "device": x.device}


def row_bands(height: int, rows: int) -> Iterator[tuple[int, int, int]]:
    """``(lo, r0, r1)`` covering ``range(height)`` in bands ``[r0, r1)`` of ``rows`` rows, with ``lo = r0 - 1``
    (the row above, for the steps between bands) or 0."""
    for r0 in range(0, height, rows):
        yield max(r0 - 1, 0), r0, min(height, r0 + rows)


class StepSums:
    """Seam profiles of images ``[B, C, H, W]`` accumulated band by band: ``col[c]`` sums, over the rows whose two
    pixels ``c-1, c`` are both valid, the band mean of ``|x[:, r, c] - x[:, r, c-1]|`` (``row`` likewise), with
    their counts of valid pairs; float32 within a band, float64 across. ``dcol`` ``[B, K_rows, W-1]`` and ``drow``
    ``[B, H-1, K_cols]`` sum the signed steps of the band sum over the valid pairs of each chunk of the other
    axis (runs between global multiples of ``chunk``: the seam segments are made of them; float32), with their
    counts."""

    def __init__(self, b: int, h: int, w: int, device: torch.device, chunk: int = 1, row0: int = 0,
                 col0: int = 0) -> None:
        z = functools.partial(torch.zeros, dtype=torch.float64, device=device)
        self.col, self.col_n, self.row, self.row_n = z(b, w - 1), z(b, w - 1), z(b, h - 1), z(b, h - 1)
        self.chunk = chunk
        self.rid = chunk_ids(row0, h, chunk).to(device)
        self.cid = chunk_ids(col0, w, chunk).to(device)
        kr, kc = int(self.rid[-1]) + 1, int(self.cid[-1]) + 1
        z32 = functools.partial(torch.zeros, dtype=torch.float32, device=device)
        self.dcol, self.dcol_n = z32(b, kr, w - 1), z32(b, kr, w - 1)
        self.drow, self.drow_n = z32(b, h - 1, kc), z32(b, h - 1, kc)
        self._masked = False
        self._cols = chunk if col0 % chunk == 0 and w % chunk == 0 else 0  # chunks of columns by a reshape

    def add(self, x: torch.Tensor, lo: int, r0: int, valid: torch.Tensor | None = None) -> None:
        """``x``: rows ``[lo, r1)`` of the images (``lo`` = ``r0 - 1``, or ``r0``); ``valid`` ``[B, H, W]``."""
        c, r1 = x.shape[1], lo + x.shape[2]
        xc = x[:, :, r0 - lo:]
        dc, dr = xc[..., 1:] - xc[..., :-1], x[:, :, 1:] - x[:, :, :-1]
        sc, sr = dc.sum(dim=1), dr.sum(dim=1)  # signed steps summed over bands (after the difference: float32
        dc, dr = dc.abs_(), dr.abs_()  # rounding of the steps, not of the values)
        rid = self.rid[r0:r1]
        if valid is None:
            self.col += dc.sum(dim=2).sum(dim=1).double() / c
            self.col_n += r1 - r0
            self.row[:, lo:r1 - 1] += dr.sum(dim=3).sum(dim=1).double() / c
            self.row_n[:, lo:r1 - 1] += x.shape[3]
        else:
            v = valid[:, lo:r1]
            vc, vr = v[:, r0 - lo:, 1:] & v[:, r0 - lo:, :-1], v[:, 1:] & v[:, :-1]
            sc *= vc
            sr *= vr
            _chunk_add(self.dcol_n, 1, rid, vc.float())
            self._col_add(self.drow_n[:, lo:r1 - 1], vr.float())
            self._masked = True
            self.col += (dc.mean(dim=1) * vc).sum(dim=1).double()
            self.col_n += vc.sum(dim=1)
            self.row[:, lo:r1 - 1] += (dr.mean(dim=1) * vr).sum(dim=2).double()
            self.row_n[:, lo:r1 - 1] += vr.sum(dim=2)
        _chunk_add(self.dcol, 1, rid, sc)  # signed step sums per chunk of the other axis
        self._col_add(self.drow[:, lo:r1 - 1], sr)

    def _col_add(self, acc: torch.Tensor, x: torch.Tensor) -> None:
        if self._cols:
            acc += x.unflatten(-1, (-1, self._cols)).sum(-1)
        else:
            acc.index_add_(2, self.cid, x)

    def profiles(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per image: (column profile ``[W-1]``, row profile ``[H-1]``), mean steps, NaN where no valid pair."""
        out = []
        for sums, counts in ((self.col, self.col_n), (self.row, self.row_n)):
            s, n = sums.cpu().numpy(), counts.cpu().numpy()
            with np.errstate(invalid="ignore", divide="ignore"):
                out.append(np.where(n > 0, s / np.maximum(n, 1), np.nan))
        return list(zip(*out))

    def signed(self, i: int = 0) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """Image ``i``'s signed step sums per chunk ``(sums, counts of valid pairs)``: across columns
        ``[W-1, K_rows]`` and across rows ``[H-1, K_cols]`` (the pair's axis first)."""
        if self._masked:
            nc, nr = self.dcol_n[i].T.double().cpu().numpy(), self.drow_n[i].double().cpu().numpy()
        else:
            nc = np.broadcast_to(np.bincount(self.rid.cpu().numpy()).astype(np.float64), self.dcol[i].T.shape)
            nr = np.broadcast_to(np.bincount(self.cid.cpu().numpy()).astype(np.float64), self.drow[i].shape)
        return (self.dcol[i].T.double().cpu().numpy(), nc), (self.drow[i].double().cpu().numpy(), nr)


def _chunk_add(acc: torch.Tensor, dim: int, ids: torch.Tensor, x: torch.Tensor) -> None:
    """``acc.index_add_(dim, ids, x)`` for sorted ``ids`` of a few runs (the chunks of a band's rows), as a sum
    per run (faster)."""
    ids_l = ids.tolist()
    bounds = [0] + [i for i in range(1, len(ids_l)) if ids_l[i] != ids_l[i - 1]] + [len(ids_l)]
    for a, b in zip(bounds[:-1], bounds[1:]):
        acc.select(dim, ids_l[a]).add_(x.narrow(dim, a, b - a).sum(dim))


def chunk_ids(start: int, n: int, chunk: int) -> torch.Tensor:
    """Chunk of each of ``n`` positions from global index ``start``: runs between multiples of ``chunk``, from 0."""
    g = torch.arange(start, start + n)
    return g // chunk - start // chunk


__all__ = ["CHUNK", "Down", "StepSums", "Up", "chunk_ids", "operator_matrix", "row_bands"]
