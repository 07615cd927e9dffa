"""cpsnr (PROBA-V) and cpsnr-satlas against plain float64 NumPy loops over every shift.

Tolerance: 1e-9 dB against the loops (observed ~1e-14). The loops below are written from the issue's
definitions, independently of the package code (no FFTs, no cumulative sums, no centring).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from clipscore_sr.errors import ConfigError, InputMismatchError
from clipscore_sr.metrics import get_metric
from clipscore_sr.metrics.cpsnr import cpsnr, cpsnr_satlas, normalize_to_baseline, read_baseline_csv

TOL_DB = 1e-9


def loop_cpsnr(sr: np.ndarray, hr: np.ndarray, mask: np.ndarray | None = None, min_valid: int = 16
               ) -> tuple[float, tuple[int, int]]:
    """PROBA-V cPSNR of one image ``[C,H,W]`` in [0,1]: best of 49 shifts, per-channel bias over clear pixels;
    windows with fewer than ``min_valid`` clear pixels are skipped."""
    c, hh, ww = hr.shape
    h, w = hh - 6, ww - 6
    s = sr[:, 3 : 3 + h, 3 : 3 + w]
    if mask is None:
        mask = np.ones((hh, ww), dtype=bool)
    best, best_uv = -math.inf, (-1, -1)
    for u in range(7):
        for v in range(7):
            hr_w = hr[:, u : u + h, v : v + w]
            clear = mask[u : u + h, v : v + w]
            if clear.sum() < min_valid:
                continue
            b = np.array([np.mean(hr_w[k][clear] - s[k][clear]) for k in range(c)])
            resid = hr_w - (s + b[:, None, None])
            cmse = np.mean(np.stack([resid[k][clear] for k in range(c)]) ** 2)
            score = math.inf if cmse == 0 else -10 * math.log10(cmse)
            if score > best:
                best, best_uv = score, (u, v)
    return (math.nan if best == -math.inf else best), best_uv


def loop_satlas(sr: np.ndarray, gt: np.ndarray) -> tuple[float, tuple[int, int]]:
    """The paper authors' loop on one image ``[C,H,W]`` already in the 0..255 scale."""
    img1 = sr[:, 4:-4, 4:-4]
    img2 = gt[:, 4:-4, 4:-4]
    ch, cw = img1.shape[1] - 8, img1.shape[2] - 8
    best, best_rc = None, None
    for r in range(9):
        for c in range(9):
            a = img1[:, r : r + ch, c : c + cw]
            b = img2[:, 8 - r : 8 - r + ch, 8 - c : 8 - c + cw].copy()
            for k in range(a.shape[0]):
                b[k] += np.mean(a[k] - b[k])
            mse = np.mean((a - b) ** 2)
            if best is None or mse < best:
                best, best_rc = mse, (r, c)
    return (math.inf if best == 0 else 10 * math.log10(255.0**2 / best)), best_rc


def smooth_scene(rng: np.random.Generator, c: int, size: tuple[int, int]) -> np.ndarray:
    """A textured image with a clear best alignment (random field, lightly blurred)."""
    x = rng.random((c, size[0], size[1]))
    return (x + np.roll(x, 1, 1) + np.roll(x, 1, 2)) / 3


# ------------------------------------------------------------------------------------------------------
# cpsnr (PROBA-V)
# ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("use_mask", [False, True])
def test_cpsnr_matches_loop_on_random_images(channels, use_mask):
    rng = np.random.default_rng(10 + channels + 10 * use_mask)
    gt = rng.random((3, channels, 29, 35))
    sr = np.clip(gt + rng.normal(0, 0.08, gt.shape) + 0.03, 0, 1)
    mask = rng.random((3, 1, 29, 35)) > 0.3 if use_mask else None
    got, shift = cpsnr(torch.from_numpy(sr), torch.from_numpy(gt),
                       None if mask is None else torch.from_numpy(mask), return_shift=True)
    for i in range(3):
        want, uv = loop_cpsnr(sr[i], gt[i], None if mask is None else mask[i, 0])
        assert float(got[i]) == pytest.approx(want, abs=TOL_DB)
        assert tuple(shift[i].tolist()) == uv


@pytest.mark.parametrize("dy,dx", [(0, 0), (-3, 2), (3, -3), (1, 1)])
def test_cpsnr_finds_shift_and_removes_brightness_offset(dy, dx):
    rng = np.random.default_rng(20 + dy * 7 + dx)
    base = np.round(smooth_scene(rng, 3, (60, 66)) * 256) / 256  # dyadic values: exact arithmetic
    hr = base[:, 6:54, 6:60]
    sr = base[:, 6 + dy : 54 + dy, 6 + dx : 60 + dx] + np.array([0.125, -0.0625, 0.25])[:, None, None]
    noise = rng.normal(0, 0.01, sr.shape)
    batch_sr = torch.from_numpy(np.stack([sr, sr + noise]))
    batch_hr = torch.from_numpy(np.stack([hr, hr]))
    got, shift = cpsnr(batch_sr, batch_hr, return_shift=True)
    assert shift.tolist() == [[3 + dy, 3 + dx]] * 2
    assert math.isinf(float(got[0])) and float(got[0]) > 0  # exact match after removing the offset
    # With noise: the score is the noise level (bias removed), and equals the loop.
    want, uv = loop_cpsnr(sr + noise, hr)
    assert uv == (3 + dy, 3 + dx)
    assert float(got[1]) == pytest.approx(want, abs=TOL_DB)
    resid = noise - noise.reshape(3, -1).mean(1)[:, None, None]
    assert float(got[1]) == pytest.approx(-10 * math.log10(np.mean(resid[:, 3:-3, 3:-3] ** 2)), abs=0.05)


def test_cpsnr_mask_ignores_corrupted_region():
    rng = np.random.default_rng(30)
    base = smooth_scene(rng, 3, (60, 60))
    hr_clean = base[:, 6:54, 6:54]
    sr = base[:, 7:55, 5:53] + 0.05 + rng.normal(0, 0.01, (3, 48, 48))
    hr_cloudy = hr_clean.copy()
    hr_cloudy[:, 10:30, 15:40] = 1.0  # a "cloud"
    mask = np.ones((48, 48), dtype=bool)
    mask[8:32, 13:42] = False  # the mask covers the cloud (and a margin)
    t = torch.from_numpy
    m = t(mask)[None, None]
    masked_cloudy = float(cpsnr(t(sr)[None], t(hr_cloudy)[None], m))
    masked_clean = float(cpsnr(t(sr)[None], t(hr_clean)[None], m))
    unmasked_cloudy = float(cpsnr(t(sr)[None], t(hr_cloudy)[None]))
    assert masked_cloudy == masked_clean  # hidden pixels never enter the score
    assert masked_cloudy > unmasked_cloudy + 5
    assert masked_cloudy == pytest.approx(loop_cpsnr(sr, hr_cloudy, mask)[0], abs=TOL_DB)
    # NaN in GT pixels that are not clear is allowed (never used); in clear pixels it is an error.
    hr_nan = hr_cloudy.copy()
    hr_nan[:, 12:20, 20:30] = np.nan
    assert float(cpsnr(t(sr)[None], t(hr_nan)[None], m)) == masked_cloudy
    with pytest.raises(InputMismatchError, match="GT contains NaN or inf values at clear pixels"):
        cpsnr(t(sr)[None], t(hr_nan)[None], torch.ones_like(m))
    with pytest.raises(InputMismatchError, match=r"GT contains NaN or inf values \(batch items 0\)"):
        cpsnr(t(sr)[None], t(hr_nan)[None])
    # masks as 0/1 numbers and as [B,H,W] work the same way
    assert float(cpsnr(t(sr)[None], t(hr_cloudy)[None], m.to(torch.uint8)[:, 0])) == masked_cloudy


def test_cpsnr_windows_without_clear_pixels():
    rng = np.random.default_rng(40)
    gt = rng.random((2, 3, 24, 24))
    sr = np.clip(gt + rng.normal(0, 0.05, gt.shape), 0, 1)
    mask = np.ones((2, 1, 24, 24), dtype=bool)
    mask[0] = False  # no clear pixel at all -> NaN (documented), shift (-1, -1)
    mask[1, :, :, :] = False
    mask[1, :, 0:5, 0:5] = True  # clear pixels only in the corner: windows with < 16 of them are skipped
    got, shift = cpsnr(torch.from_numpy(sr), torch.from_numpy(gt), torch.from_numpy(mask), return_shift=True)
    assert math.isnan(float(got[0])) and shift[0].tolist() == [-1, -1]
    want, uv = loop_cpsnr(sr[1], gt[1], mask[1, 0])
    assert float(got[1]) == pytest.approx(want, abs=TOL_DB) and tuple(shift[1].tolist()) == uv
    assert uv in {(0, 0), (0, 1), (1, 0), (1, 1)}  # the only windows that see the corner


def test_cpsnr_batch_equals_per_image_and_dtypes():
    rng = np.random.default_rng(50)
    gt = rng.random((6, 3, 40, 40)).astype(np.float32)
    sr = np.clip(gt + rng.normal(0, 0.05, gt.shape), 0, 1).astype(np.float32)
    mask = torch.from_numpy(rng.random((6, 1, 40, 40)) > 0.2)
    s, g = torch.from_numpy(sr), torch.from_numpy(gt)
    for m in (None, mask):
        batch = cpsnr(s, g, m)
        single = torch.cat([cpsnr(s[i : i + 1], g[i : i + 1], None if m is None else m[i : i + 1])
                            for i in range(6)])
        assert torch.allclose(batch, single, rtol=0, atol=1e-10)
        assert torch.allclose(batch, cpsnr(s.double(), g.double(), m), rtol=0, atol=1e-10)
        assert batch.dtype == torch.float64
    # float32 vs float64 values of the "same" image differ only by float32 rounding
    assert torch.allclose(cpsnr(s, g), cpsnr(torch.from_numpy(sr.astype(np.float64)),
                                             torch.from_numpy(gt.astype(np.float64))), atol=1e-9)


def test_cpsnr_chunking_does_not_change_results(monkeypatch):
    import clipscore_sr.metrics.cpsnr as mod

    rng = np.random.default_rng(55)
    g = torch.from_numpy(rng.random((5, 2, 30, 30)))
    s = (g + 0.05 * torch.from_numpy(rng.standard_normal((5, 2, 30, 30)))).clamp(0, 1)
    whole = cpsnr(s, g)
    monkeypatch.setattr(mod, "_CHUNK_ELEMENTS", 2 * 30 * 30 * 2)  # chunks of 2 images
    assert torch.allclose(cpsnr(s, g), whole, rtol=0, atol=1e-12)
    assert torch.allclose(cpsnr_satlas(s, g), cpsnr_satlas(s, g), rtol=0, atol=0)


def test_cpsnr_near_ties_are_resolved_exactly():
    # A nearly constant image: many shifts have almost the same cMSE; the float32 search must not
    # pick a worse one than the exhaustive loop.
    rng = np.random.default_rng(60)
    gt = 0.5 + 1e-4 * rng.random((2, 3, 30, 30))
    sr = gt + 1e-5 * rng.standard_normal(gt.shape)
    got = cpsnr(torch.from_numpy(sr), torch.from_numpy(gt))
    for i in range(2):
        assert float(got[i]) == pytest.approx(loop_cpsnr(sr[i], gt[i])[0], abs=TOL_DB)


def test_cpsnr_crop_border_and_errors():
    rng = np.random.default_rng(70)
    gt = rng.random((1, 3, 30, 32))
    sr = np.clip(gt + rng.normal(0, 0.05, gt.shape), 0, 1)
    mask = rng.random((1, 1, 30, 32)) > 0.2
    got = get_metric("cpsnr", crop_border=2)(torch.from_numpy(sr), torch.from_numpy(gt), mask=torch.from_numpy(mask))
    want, _ = loop_cpsnr(sr[0][:, 2:-2, 2:-2], gt[0][:, 2:-2, 2:-2], mask[0, 0, 2:-2, 2:-2])
    assert float(got[0]) == pytest.approx(want, abs=TOL_DB)
    t = torch.from_numpy
    with pytest.raises(InputMismatchError, match="does not match"):
        cpsnr(t(sr), t(gt[..., :-1]))
    with pytest.raises(InputMismatchError, match="mask shape"):
        cpsnr(t(sr), t(gt), t(mask[..., :-1]))
    with pytest.raises(InputMismatchError, match="too small"):
        cpsnr(torch.rand(1, 1, 6, 20), torch.rand(1, 1, 6, 20))
    with pytest.raises(InputMismatchError, match="crop_border=15 removes"):
        cpsnr(t(sr), t(gt), crop_border=15)
    bad = sr.copy()
    bad[0, 1, 5, 5] = np.inf
    with pytest.raises(InputMismatchError, match="SR contains NaN or inf"):
        get_metric("cpsnr")(t(bad), t(gt))


def test_baseline_normalisation(tmp_path):
    scores = torch.tensor([40.0, 50.0, math.inf], dtype=torch.float64)
    norm = normalize_to_baseline(scores, torch.tensor([44.0, 45.0, 46.0]))
    assert norm.tolist() == pytest.approx([1.1, 0.9, 0.0])
    with pytest.raises(InputMismatchError):
        normalize_to_baseline(scores, torch.tensor([44.0, 0.0, 46.0]))
    path = tmp_path / "norm.csv"
    path.write_text("imgset0000 47.25\nimgset0001,45.5\n\n")
    assert read_baseline_csv(path) == {"imgset0000": 47.25, "imgset0001": 45.5}
    path.write_text("key baseline\nimgset0000 47\n")  # a header line is skipped
    assert read_baseline_csv(path) == {"imgset0000": 47.0}
    path.write_text("imgset0000 47\nimgset0001 abc\n")
    with pytest.raises(ConfigError, match="norm.csv:2: baseline 'abc' is not a number"):
        read_baseline_csv(path)
    path.write_text("imgset0000 47\nimgset0000 48\n")
    with pytest.raises(ConfigError, match="appears twice"):
        read_baseline_csv(path)
    with pytest.raises(ConfigError, match="cannot read"):
        read_baseline_csv(tmp_path / "missing.csv")


# ------------------------------------------------------------------------------------------------------
# cpsnr-satlas
# ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("channels", [1, 3])
def test_satlas_matches_authors_loop_on_random_8bit_images(channels):
    rng = np.random.default_rng(80 + channels)
    gt = rng.integers(0, 256, size=(3, channels, 40, 37)).astype(np.float64)
    sr = np.clip(gt + rng.normal(0, 15, gt.shape).round() + 7, 0, 255)
    s32, g32 = torch.from_numpy(sr / 255).float(), torch.from_numpy(gt / 255).float()  # IO-layer storage
    got, shift = cpsnr_satlas(s32, g32, return_shift=True)
    assert torch.equal(got, get_metric("cpsnr-satlas")(s32, g32))
    for i in range(3):
        want, rc = loop_satlas(sr[i], gt[i])
        assert float(got[i]) == pytest.approx(want, abs=TOL_DB)
        assert tuple(shift[i].tolist()) == rc


@pytest.mark.parametrize("dy,dx", [(0, 0), (2, -4), (-8, 6), (8, 8)])
def test_satlas_finds_even_shift_and_removes_offset(dy, dx):
    rng = np.random.default_rng(90 + dy + 3 * dx)
    base = np.round(smooth_scene(rng, 3, (72, 72)) * 200)
    gt = base[:, 12:60, 12:60]
    sr = base[:, 12 + dy : 60 + dy, 12 + dx : 60 + dx] + np.array([20, 10, 5])[:, None, None]
    sr = np.clip(sr, 0, 255)
    got, shift = cpsnr_satlas(torch.from_numpy(sr / 255)[None], torch.from_numpy(gt / 255)[None], return_shift=True)
    # SR content at y equals GT at y + dy  ->  r = (8 - dy) / 2
    assert shift[0].tolist() == [(8 - dy) // 2, (8 - dx) // 2]
    assert math.isinf(float(got[0]))
    noisy = np.clip(sr + rng.normal(0, 3, sr.shape).round(), 0, 255)
    got_n = float(cpsnr_satlas(torch.from_numpy(noisy / 255)[None], torch.from_numpy(gt / 255)[None]))
    assert got_n == pytest.approx(loop_satlas(noisy, gt)[0], abs=TOL_DB)


def test_satlas_quantisation_and_options():
    rng = np.random.default_rng(100)
    gt = rng.random((2, 3, 36, 36))
    sr = np.clip(gt + rng.normal(0, 0.05, gt.shape), 0, 1)
    s, g = torch.from_numpy(sr), torch.from_numpy(gt)
    q = cpsnr_satlas(s, g)
    nq = get_metric("cpsnr-satlas", quantize=False)(s, g)
    for i in range(2):
        assert float(q[i]) == pytest.approx(loop_satlas(np.round(sr[i] * 255), np.round(gt[i] * 255))[0], abs=TOL_DB)
        assert float(nq[i]) == pytest.approx(loop_satlas(sr[i] * 255, gt[i] * 255)[0], abs=TOL_DB)
    assert not torch.allclose(q, nq, atol=1e-6)
    m = get_metric("cpsnr-satlas")
    assert m.provenance()["options"] == {"crop_border": 0, "quantize": True}
    # the shared crop_border is an extra crop before the authors' own 4-pixel crop
    extra = get_metric("cpsnr-satlas", crop_border=3)(s, g)
    for i in range(2):
        want = loop_satlas(np.round(sr[i] * 255)[:, 3:-3, 3:-3], np.round(gt[i] * 255)[:, 3:-3, 3:-3])[0]
        assert float(extra[i]) == pytest.approx(want, abs=TOL_DB)
    with pytest.raises(ConfigError, match="no option 'window'.*valid: crop_border, quantize"):
        get_metric("cpsnr-satlas", window=3)
    with pytest.raises(ConfigError, match="quantize"):
        get_metric("cpsnr-satlas", quantize="yes")
    with pytest.raises(InputMismatchError, match="too small"):
        cpsnr_satlas(torch.rand(1, 3, 16, 40), torch.rand(1, 3, 16, 40))
    assert torch.isfinite(cpsnr_satlas(torch.rand(1, 3, 17, 40), torch.rand(1, 3, 17, 40))).all()
    with pytest.raises(InputMismatchError, match="NaN or inf"):
        cpsnr_satlas(torch.full((1, 3, 30, 30), math.nan), torch.rand(1, 3, 30, 30))


def test_satlas_batch_equals_per_image():
    rng = np.random.default_rng(110)
    g = torch.from_numpy(rng.random((4, 3, 33, 30)))
    s = (g + 0.1 * torch.from_numpy(rng.standard_normal((4, 3, 33, 30)))).clamp(0, 1)
    batch = cpsnr_satlas(s, g)
    single = torch.cat([cpsnr_satlas(s[i : i + 1], g[i : i + 1]) for i in range(4)])
    assert torch.allclose(batch, single, rtol=0, atol=1e-12)
    assert torch.allclose(batch, cpsnr_satlas(s.float(), g.float()), rtol=0, atol=1e-9)


def test_registry_entries():
    for name in ("cpsnr", "cpsnr-satlas"):
        info = type(get_metric(name)).info()
        assert info.higher_is_better and info.units == "dB" and info.value_range and info.description
    assert type(get_metric("cpsnr")).uses_mask and not type(get_metric("cpsnr-satlas")).uses_mask


def test_degenerate_windows_are_errors_not_inf():
    """Issue 10 item 6: tiny windows or one clear pixel let the per-channel bias absorb everything (+inf for
    unrelated images); they are now an error (too small) or NaN (every window skipped)."""
    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(1, 3, 7, 7, generator=g), torch.rand(1, 3, 7, 7, generator=g)
    with pytest.raises(InputMismatchError, match=r"cpsnr: the comparison window is 1x1 = 1 pixel.*at least 16"):
        cpsnr(a, b)
    a, b = torch.rand(1, 3, 17, 17, generator=g), torch.rand(1, 3, 17, 17, generator=g)
    with pytest.raises(InputMismatchError, match=r"cpsnr-satlas: the comparison window is 1x1"):
        cpsnr_satlas(a, b)
    a, b = torch.rand(1, 3, 32, 32, generator=g), torch.rand(1, 3, 32, 32, generator=g)
    mask = torch.zeros(1, 1, 32, 32, dtype=torch.bool)
    mask[..., 10, 10] = True  # one clear pixel
    assert math.isnan(float(cpsnr(a, b, mask)))
    assert math.isinf(float(cpsnr(a, b, mask, min_valid=1)))  # what the old rule gave: a perfect score
    # the smallest accepted window is finite for unrelated images, the identical image still +inf
    a, b = torch.rand(1, 3, 10, 10, generator=g), torch.rand(1, 3, 10, 10, generator=g)
    assert math.isfinite(float(cpsnr(a, b))) and math.isinf(float(cpsnr(a, a)))
    assert float(cpsnr(a, b)) == pytest.approx(loop_cpsnr(a[0].double().numpy(), b[0].double().numpy())[0],
                                               abs=1e-9)
