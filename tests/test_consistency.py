"""LR-consistency metrics (lr-l1, lr-psnr, lr-sam, lr-shift) against independent float64 references.

References and tolerances:
* antialiased bilinear SR -> LR: a float64 NumPy triangle filter written from its definition (weights
  ``max(0, 1 - |x + 0.5 - (i + 0.5) s| / s)``, normalised): 1e-12; Pillow's float ``BILINEAR`` reduction
  (float32): 1e-5;
* Gaussian PSF option: ``scipy.ndimage.gaussian_filter(mode="mirror", truncate=4)`` + block mean: 1e-12;
* lr-l1 / lr-psnr / lr-sam: NumPy from the definitions (sam: ``arccos`` of the clipped cosine): 1e-10
  (1e-6 degrees for angles, the conditioning of ``arccos`` near 0);
* lr-shift known shifts (integer and sub-pixel, scene moved periodically): within 0.05 LR px;
* lr-shift: ``skimage.registration.phase_cross_correlation(normalization="phase")`` with the opposite sign:
  exact (same 1/upsample_factor grid), and known integer shifts recovered exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from skimage.registration import phase_cross_correlation

from clipscore_sr.errors import ConfigError, InputMismatchError
from clipscore_sr.metrics import get_metric
from clipscore_sr.metrics.base import get_metric_class, list_metrics
from clipscore_sr.metrics.consistency import (
    downsample,
    integer_scale,
    lr_consistency,
    lr_l1,
    lr_psnr,
    lr_sam,
    lr_shift,
)


def _triangle_matrix(n_in: int, s: int) -> np.ndarray:
    """[n_in/s, n_in] weights of the antialiased bilinear (triangle) reduction by ``s``."""
    n_out = n_in // s
    m = np.zeros((n_out, n_in))
    x = np.arange(n_in) + 0.5
    for i in range(n_out):
        w = np.maximum(0.0, 1.0 - np.abs(x - (i + 0.5) * s) / s)
        m[i] = w / w.sum()
    return m


def ref_downsample(x: np.ndarray, s: int) -> np.ndarray:
    """float64 [B,C,H,W] -> [B,C,H/s,W/s] by the separable triangle filter."""
    mh, mw = _triangle_matrix(x.shape[-2], s), _triangle_matrix(x.shape[-1], s)
    return np.einsum("ih,bchw,jw->bcij", mh, x, mw)


def ref_sam(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    dot = (a * b).sum(1)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    ang = np.degrees(np.arccos(np.clip(dot / (na * nb), -1, 1)))
    return ang.reshape(len(a), -1).mean(1)


@pytest.fixture
def triplet():
    rng = np.random.default_rng(0)
    sr = rng.random((3, 4, 48, 40))
    lr = ref_downsample(sr, 4) + rng.normal(0, 0.02, (3, 4, 12, 10))
    return sr, np.clip(lr, 0, 1)


def test_downsample_matches_triangle_filter_and_pillow(triplet):
    sr, _ = triplet
    for s in (2, 3, 4):
        h, w = sr.shape[-2] // s * s, sr.shape[-1] // s * s
        x = sr[..., :h, :w]
        ours = downsample(torch.from_numpy(x), s).numpy()
        np.testing.assert_allclose(ours, ref_downsample(x, s), atol=1e-12)
        pil = np.asarray(Image.fromarray(x[0, 0].astype(np.float32), "F").resize((w // s, h // s), Image.BILINEAR))
        np.testing.assert_allclose(ours[0, 0], pil, atol=1e-5)


def test_psf_option_matches_scipy_gaussian_and_block_mean(triplet):
    sr, _ = triplet
    s, sigma = 4, 0.5
    ours = downsample(torch.from_numpy(sr), s, psf_sigma=sigma).numpy()
    blurred = ndimage.gaussian_filter(sr, sigma=(0, 0, sigma * s, sigma * s), mode="mirror", truncate=4.0)
    ref = blurred.reshape(3, 4, 12, s, 10, s).mean(axis=(3, 5))
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_values_match_definitions(triplet):
    sr, lr = triplet
    t_sr, t_lr = torch.from_numpy(sr), torch.from_numpy(lr)
    down = ref_downsample(sr, 4)
    np.testing.assert_allclose(lr_l1(t_sr, t_lr).numpy(), np.abs(down - lr).reshape(3, -1).mean(1), atol=1e-12)
    mse = ((down - lr) ** 2).reshape(3, -1).mean(1)
    np.testing.assert_allclose(lr_psnr(t_sr, t_lr).numpy(), 10 * np.log10(1 / mse), atol=1e-10)
    np.testing.assert_allclose(lr_sam(t_sr, t_lr).numpy(), ref_sam(down, lr), atol=1e-6)
    # registry objects give the same numbers; float32 inputs as the pipeline passes them
    m = get_metric("lr-psnr")
    np.testing.assert_allclose(m(t_sr.float(), t_lr.float()).numpy(), 10 * np.log10(1 / mse), atol=1e-4)


def test_shift_matches_skimage_with_displacement_sign():
    rng = np.random.default_rng(1)
    base = ndimage.gaussian_filter(rng.random((64, 64)), 1.5)
    lr = base[None, None]
    cases = [(np.roll(base, (dy, dx), axis=(0, 1)), (dy, dx)) for dy, dx in ((0, 0), (2, -3), (-1, 5))]
    for moved, (dy, dx) in cases:
        sr = np.kron(moved, np.ones((2, 2)))[None, None]  # 2x, same content
        v = lr_shift(torch.from_numpy(sr), torch.from_numpy(lr)).numpy()[0]
        # the same numbers as skimage (negated) on the band-mean images
        ref = -phase_cross_correlation(base, ref_downsample(sr, 2)[0, 0], upsample_factor=100,
                                       normalization="phase")[0]
        np.testing.assert_allclose(v[1:], ref, atol=1e-12)
        # 0.05 px: the antialias filter is renormalised at the borders of the (periodically) shifted scene
        assert abs(v[1] - dy) <= 0.05 and abs(v[2] - dx) <= 0.05, (v, dy, dx)
        assert v[0] == pytest.approx(math.hypot(v[1], v[2]), abs=1e-12)
    # sub-pixel, scale 1 (no resampling): an exact periodic shift is recovered to the 0.01 px grid
    sub = np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(base), (0.37, -1.42))).real
    v = lr_shift(torch.from_numpy(sub[None, None]), torch.from_numpy(lr)).numpy()[0]
    np.testing.assert_allclose(v[1:], (0.37, -1.42), atol=0.011)


def test_fused_equals_one_by_one_and_skimage_on_odd_sizes():
    """lr_consistency (one downsampling) = the four functions (1e-12); shifts = skimage's (negated) on odd,
    non-square LR grids with sub-pixel moves (the half-spectrum / real-arithmetic DFT path), 1e-12."""
    rng = np.random.default_rng(7)
    lr = ndimage.gaussian_filter(rng.random((3, 2, 15, 21)), (0, 0, 1.2, 1.2))
    sr = np.stack([np.kron(ndimage.shift(lr[k], (0, 0.3 * k - 0.4, 0.7 - 0.5 * k), mode="wrap"), np.ones((3, 3)))
                   for k in range(3)])
    t_sr, t_lr = torch.from_numpy(sr), torch.from_numpy(lr)
    fused = lr_consistency(t_sr, t_lr).numpy()
    one = np.column_stack([lr_l1(t_sr, t_lr), lr_psnr(t_sr, t_lr), lr_sam(t_sr, t_lr), lr_shift(t_sr, t_lr)])
    np.testing.assert_allclose(fused, one, atol=1e-12, rtol=0)
    for k in range(3):
        want = -phase_cross_correlation(lr[k].mean(0), ref_downsample(sr[k:k + 1], 3)[0].mean(0),
                                        upsample_factor=100, normalization="phase")[0]
        np.testing.assert_allclose(fused[k, 4:], want, atol=1e-12)
        assert abs(want).max() > 0.05  # a real sub-pixel move, not the trivial zero
    assert np.isnan(lr_consistency(t_sr[:, :1], t_lr[:, :1]).numpy()[:, 2]).all()  # one band: no lr-sam


def test_shift_columns_in_registry():
    m = get_metric("lr-shift")
    assert [c.name for c in m.columns()] == ["lr-shift", "lr-shift-dy", "lr-shift-dx"]
    assert get_metric_class("lr-shift").reference == "lr"
    refs = {i.name: i.reference for i in list_metrics()}
    assert refs["psnr"] == "hr" and refs["lr-l1"] == "lr" and refs["correctness"] == "hr+lr"


def test_identity_is_best(triplet):
    sr, _ = triplet
    t_sr = torch.from_numpy(sr)
    lr = downsample(t_sr, 4)
    assert lr_l1(t_sr, lr).abs().max() < 1e-15
    assert torch.isinf(lr_psnr(t_sr, lr)).all()
    assert lr_sam(t_sr, lr).abs().max() < 1e-6
    assert lr_shift(t_sr, lr)[:, 0].abs().max() == 0


def _smooth_scene(seed: int = 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = ndimage.gaussian_filter(rng.random((3, 128, 128)), (0, 2, 2))
    return (x - x.min()) / (x.max() - x.min())


def test_monotone_under_blur_shift_and_colour_offset():
    hr = _smooth_scene()
    lr = torch.from_numpy(ref_downsample(hr[None], 4))
    def scores(sr):
        t = torch.from_numpy(sr[None])
        return lr_l1(t, lr).item(), lr_psnr(t, lr).item(), lr_sam(t, lr).item(), lr_shift(t, lr)[0, 0].item()
    blur = [scores(ndimage.gaussian_filter(hr, (0, s, s))) for s in (0.5, 2, 4, 8)]
    shift = [scores(np.roll(hr, k, axis=2)) for k in (0, 4, 8, 16)]
    offset = [scores(np.clip(hr + np.array([o, 0, -o])[:, None, None], 0, 1)) for o in (0, 0.05, 0.1, 0.2)]
    for series, idx in ((blur, (0, 1)), (shift, (0, 1, 3)), (offset, (0, 1, 2))):
        for i in idx:
            col = [s[i] for s in series]
            if i == 1:  # psnr: decreasing
                assert all(a > b for a, b in zip(col, col[1:])), col
            else:
                assert all(a < b for a, b in zip(col, col[1:])), col
    np.testing.assert_allclose([s[3] for s in shift], [0, 1, 2, 4], atol=0.05)  # LR pixels (x4), borders


def test_band_order_invariance(triplet):
    sr, lr = triplet
    perm = [2, 0, 3, 1]
    for fn in (lr_l1, lr_psnr, lr_sam):
        a = fn(torch.from_numpy(sr), torch.from_numpy(lr))
        b = fn(torch.from_numpy(sr[:, perm]), torch.from_numpy(lr[:, perm]))
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_bad_inputs():
    with pytest.raises(InputMismatchError, match="same integer"):
        integer_scale((50, 40), (12, 10))
    with pytest.raises(InputMismatchError, match="same integer"):
        lr_l1(torch.rand(1, 3, 48, 40), torch.rand(1, 3, 12, 20))
    with pytest.raises(InputMismatchError, match="at least 2 bands"):
        lr_sam(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 4, 4))
    with pytest.raises(ConfigError, match="psf_sigma"):
        get_metric("lr-l1", psf_sigma=-1)
    with pytest.raises(ConfigError, match="upsample_factor"):
        get_metric("lr-shift", upsample_factor=0)


def test_nan_input_is_an_error():
    sr = torch.rand(2, 3, 8, 8)
    sr[1, 0, 3, 3] = float("nan")
    with pytest.raises(InputMismatchError, match="SR contains NaN"):
        lr_l1(sr, torch.rand(2, 3, 4, 4))
