"""sam, ergas, ndvi-error and per-band columns against float64 NumPy computations written from the definitions.

Tolerances: sam 1e-6 degrees (``arccos`` reference near 0); ergas 1e-10 relative; ndvi-error 1e-12;
per-band columns equal the metric on the single band (exactly, same code path).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from clipscore_sr.errors import ConfigError, InputMismatchError
from clipscore_sr.metrics import get_metric
from clipscore_sr.metrics.spectral import PerBand, ergas, ndvi_error, sam


def _images(seed=0, shape=(3, 4, 32, 28)):
    rng = np.random.default_rng(seed)
    hr = ndimage.gaussian_filter(rng.random(shape), (0, 0, 1, 1)) * 0.8 + 0.1
    sr = np.clip(hr + rng.normal(0, 0.03, shape), 0, 1)
    return sr, hr


def ref_sam(a, b):
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return np.degrees(np.arccos(np.clip(cos, -1, 1))).reshape(len(a), -1).mean(1)


def ref_ergas(sr, hr, scale):
    """Wald (2000): 100 * h/l * sqrt(1/N sum_k RMSE_k^2 / M_k^2), h/l = 1/scale."""
    out = []
    for s, h in zip(sr, hr):
        terms = [np.mean((s[k] - h[k]) ** 2) / np.mean(h[k]) ** 2 for k in range(len(h))]
        out.append(100.0 * (1.0 / scale) * np.sqrt(np.mean(terms)))
    return np.array(out)


def test_sam_matches_arccos_definition():
    sr, hr = _images()
    np.testing.assert_allclose(sam(torch.from_numpy(sr), torch.from_numpy(hr)).numpy(), ref_sam(sr, hr), atol=1e-6)


def test_ergas_is_walds_definition_not_scale_times():
    sr, hr = _images()
    for scale in (2, 4):
        ours = ergas(torch.from_numpy(sr), torch.from_numpy(hr), scale).numpy()
        np.testing.assert_allclose(ours, ref_ergas(sr, hr, scale), rtol=1e-10)
    # the torchmetrics #2497 bug multiplied by the scale: scale^2 times larger
    wrong = ref_ergas(sr, hr, 1) * 4
    np.testing.assert_allclose(wrong / ergas(torch.from_numpy(sr), torch.from_numpy(hr), 4).numpy(), 16, rtol=1e-10)


def test_ergas_scale_from_lr_or_option():
    sr, hr = _images()
    t_sr, t_hr = torch.from_numpy(sr), torch.from_numpy(hr)
    lr = torch.zeros(3, 4, 8, 7)
    a = get_metric("ergas")(t_sr, t_hr, lr=lr)
    b = get_metric("ergas", scale=4)(t_sr, t_hr)
    torch.testing.assert_close(a, b)
    with pytest.raises(ConfigError, match="--lr LR_DIR or --scale"):
        get_metric("ergas")(t_sr, t_hr)


def test_ndvi_error_matches_definition():
    sr, hr = _images()
    ours = ndvi_error(torch.from_numpy(sr), torch.from_numpy(hr), red_band=3, nir_band=4).numpy()
    def nd(x):
        return (x[:, 3] - x[:, 2]) / (x[:, 3] + x[:, 2])
    np.testing.assert_allclose(ours, np.abs(nd(sr) - nd(hr)).reshape(3, -1).mean(1), atol=1e-12)
    m = get_metric("ndvi-error", red_band=3, nir_band=4)
    np.testing.assert_allclose(m(torch.from_numpy(sr), torch.from_numpy(hr)).numpy(), ours)
    with pytest.raises(ConfigError, match="red_band"):
        get_metric("ndvi-error")
    with pytest.raises(InputMismatchError, match="nir_band=9"):
        ndvi_error(torch.from_numpy(sr), torch.from_numpy(hr), red_band=3, nir_band=9)


def test_identity_best_and_monotone_in_colour_offset():
    _, hr = _images()
    t = torch.from_numpy(hr)
    assert sam(t, t).abs().max() < 1e-6
    assert ergas(t, t, 4).abs().max() == 0
    assert ndvi_error(t, t, 3, 4).abs().max() == 0
    prev = [-1.0, -1.0, -1.0]
    for o in (0.0, 0.02, 0.05, 0.1):
        sr = torch.from_numpy(np.clip(hr + np.array([o, 0, -o, o / 2])[None, :, None, None], 0, 1))
        vals = [sam(sr, t).mean().item(), ergas(sr, t, 4).mean().item(), ndvi_error(sr, t, 3, 4).mean().item()]
        assert all(v > p for v, p in zip(vals, prev)), (o, vals, prev)
        prev = vals


def test_band_order_invariance():
    sr, hr = _images()
    perm = [3, 1, 0, 2]
    a, b = torch.from_numpy(sr), torch.from_numpy(hr)
    pa, pb = torch.from_numpy(sr[:, perm]), torch.from_numpy(hr[:, perm])
    torch.testing.assert_close(sam(a, b), sam(pa, pb), atol=1e-10, rtol=0)
    torch.testing.assert_close(ergas(a, b, 4), ergas(pa, pb, 4), atol=1e-12, rtol=0)
    # ndvi follows its bands: red 3 -> position 4, nir 4 -> position 1 after the permutation
    torch.testing.assert_close(ndvi_error(a, b, 3, 4), ndvi_error(pa, pb, 4, 1), atol=1e-12, rtol=0)


def test_per_band_columns_equal_single_band_metric():
    sr, hr = _images()
    a, b = torch.from_numpy(sr).float(), torch.from_numpy(hr).float()
    for mid in ("psnr", "ssim"):
        inner = get_metric(mid)
        wrapped = PerBand(inner, [2, 3, 4, 8])
        out = wrapped(a, b)
        assert list(out) == [f"{mid}-b2", f"{mid}-b3", f"{mid}-b4", f"{mid}-b8"]
        for i, col in enumerate(out):
            torch.testing.assert_close(out[col], inner(a[:, i:i + 1], b[:, i:i + 1]))
    with pytest.raises(InputMismatchError, match="4 bands, expected 3"):
        PerBand(get_metric("psnr"), [1, 2, 3])(a, b)
