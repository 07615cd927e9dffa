"""psnr / ssim / ssim-gray against independent references.

References and tolerances:
* psnr vs ``skimage.metrics.peak_signal_noise_ratio`` on the original-range arrays: 1e-9 dB
  (1e-4 dB when our input is the float32 [0,1] tensor the IO layer produces);
* ssim vs ``skimage.metrics.structural_similarity`` (Wang et al. settings): 1e-5 (the issue's bound;
  observed ~1e-12 in float64);
* ssim-gray vs a hand-written float64 NumPy transcription of MATLAB ``rgb2gray`` + ``ssim_index.m``
  (``scipy.signal.correlate2d`` 'valid'): 1e-10.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import correlate2d
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from clipscore_sr.errors import ConfigError, InputMismatchError
from clipscore_sr.metrics import get_metric
from clipscore_sr.metrics.pixel import (
    MATLAB_RGB2GRAY_WEIGHTS,
    crop_border,
    gaussian_window,
    psnr,
    ssim,
    ssim_gray,
)

from .conftest import SHARED  # noqa: E402  (found from a git worktree too)

TID = SHARED / "calibration" / "tid2013"


def _pair(rng: np.random.Generator, shape: tuple[int, ...], kind: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Random GT/SR arrays ``[B,C,H,W]`` in their original range, plus that range."""
    if kind == "uint8":
        gt = rng.integers(0, 256, size=shape).astype(np.float64)
        sr = np.clip(gt + rng.normal(0, 12, size=shape).round(), 0, 255)
        return sr, gt, 255.0
    gt = rng.random(shape)
    sr = np.clip(gt + rng.normal(0, 0.05, size=shape), 0, 1)
    return sr, gt, 1.0


def _sk_ssim(gt: np.ndarray, sr: np.ndarray, rng_: float) -> float:
    """skimage SSIM of one ``[C,H,W]`` image with Wang et al.'s settings."""
    kw = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=rng_)
    if gt.shape[0] == 1:
        return float(structural_similarity(gt[0], sr[0], **kw))
    return float(structural_similarity(gt, sr, channel_axis=0, **kw))


SHAPES = [(3, 1, 32, 32), (2, 3, 48, 40), (2, 4, 23, 57)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ["uint8", "float"])
@pytest.mark.parametrize("border", [0, 4])
def test_psnr_and_ssim_match_skimage(shape, kind, border):
    rng = np.random.default_rng(hash((shape, kind, border)) % 2**32)
    sr, gt, r = _pair(rng, shape, kind)
    got_p = psnr(torch.from_numpy(sr / r), torch.from_numpy(gt / r), crop_border=border).numpy()
    got_s = ssim(torch.from_numpy(sr / r), torch.from_numpy(gt / r), crop_border=border).numpy()
    sl = (slice(None), slice(border, shape[2] - border), slice(border, shape[3] - border))
    for i in range(shape[0]):
        ref_p = peak_signal_noise_ratio(gt[i][sl], sr[i][sl], data_range=r)
        ref_s = _sk_ssim(gt[i][sl], sr[i][sl], r)
        assert got_p[i] == pytest.approx(ref_p, abs=1e-9)
        assert got_s[i] == pytest.approx(ref_s, abs=1e-5)
        assert abs(got_s[i] - ref_s) < 1e-10  # float64 all the way: far tighter than the bound


def test_registered_metrics_match_functional_and_float32_input():
    rng = np.random.default_rng(1)
    sr, gt, r = _pair(rng, (2, 3, 40, 44), "uint8")
    sr32 = torch.from_numpy(sr / r).float()
    gt32 = torch.from_numpy(gt / r).float()
    for name, ref in (("psnr", peak_signal_noise_ratio), ("ssim", None)):
        m = get_metric(name, crop_border=2)
        out = m(sr32, gt32)
        assert out.dtype == torch.float64 and out.shape == (2,)
        for i in range(2):
            g, s = gt[i][:, 2:-2, 2:-2], sr[i][:, 2:-2, 2:-2]
            want = ref(g, s, data_range=r) if ref else _sk_ssim(g, s, r)
            tol = 1e-4 if name == "psnr" else 1e-5  # float32 storage of k/255
            assert float(out[i]) == pytest.approx(want, abs=tol)
        assert m.provenance()["options"] == {"crop_border": 2}


def test_batch_equals_per_image():
    rng = np.random.default_rng(2)
    sr, gt, _ = _pair(rng, (5, 3, 30, 33), "float")
    s, g = torch.from_numpy(sr), torch.from_numpy(gt)
    for fn in (psnr, ssim, ssim_gray):
        batch = fn(s, g)
        single = torch.cat([fn(s[i : i + 1], g[i : i + 1]) for i in range(5)])
        assert torch.equal(batch, single) or torch.allclose(batch, single, rtol=0, atol=1e-13)


def test_identical_images_give_inf_psnr_and_unit_ssim():
    x = torch.rand(2, 3, 20, 20)
    p = psnr(x, x.clone())
    assert torch.isinf(p).all() and (p > 0).all()
    assert torch.allclose(ssim(x, x.clone()), torch.ones(2, dtype=torch.float64))
    assert torch.allclose(ssim_gray(x, x.clone(), file_range=255.0), torch.ones(2, dtype=torch.float64))
    assert torch.isinf(get_metric("psnr")(x, x)).all()


def test_gaussian_window_is_skimage_and_fspecial_window():
    from scipy.ndimage import gaussian_filter

    impulse = np.zeros((21, 21))
    impulse[10, 10] = 1.0
    ref = gaussian_filter(impulse, sigma=1.5, truncate=3.5)[5:16, 5:16]
    win = gaussian_window(ndim=2).numpy()
    assert win.shape == (11, 11)
    np.testing.assert_allclose(win, ref, atol=1e-15)
    x, y = np.meshgrid(np.arange(-5, 6), np.arange(-5, 6))
    fspecial = np.exp(-(x**2 + y**2) / (2 * 1.5**2))
    np.testing.assert_allclose(win, fspecial / fspecial.sum(), atol=1e-15)


# ------------------------------------------------------------------------------------------------------
# ssim-gray: hand-written transcription of MATLAB rgb2gray + Wang et al.'s ssim_index.m
# ------------------------------------------------------------------------------------------------------
def _matlab_round(x: np.ndarray) -> np.ndarray:
    """MATLAB's conversion to an integer class: round half away from zero."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def _matlab_rgb2gray(rgb: np.ndarray, integer_max: float | None) -> np.ndarray:
    """``rgb`` [H,W,3] in the file's own scale (0..255 for uint8)."""
    t = np.array(MATLAB_RGB2GRAY_WEIGHTS)
    gray = rgb[:, :, 0] * t[0] + rgb[:, :, 1] * t[1] + rgb[:, :, 2] * t[2]
    if integer_max is not None:
        gray = np.clip(_matlab_round(gray), 0, integer_max)
    return gray


def _matlab_ssim_index(img1: np.ndarray, img2: np.ndarray, L: float) -> float:
    """Step by step as ssim_index.m (K = [0.01 0.03], window = fspecial('gaussian', 11, 1.5))."""
    ax = np.arange(-5, 6)
    xx, yy = np.meshgrid(ax, ax)
    window = np.exp(-(xx.astype(float) ** 2 + yy**2) / (2 * 1.5**2))
    window = window / window.sum()
    C1 = (0.01 * L) ** 2
    C2 = (0.03 * L) ** 2
    img1 = img1.astype(np.float64)
    img2 = img2.astype(np.float64)
    mu1 = correlate2d(img1, window, mode="valid")  # filter2(window, img1, 'valid')
    mu2 = correlate2d(img2, window, mode="valid")
    mu1_sq, mu2_sq, mu1_mu2 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    sigma1_sq = correlate2d(img1 * img1, window, mode="valid") - mu1_sq
    sigma2_sq = correlate2d(img2 * img2, window, mode="valid") - mu2_sq
    sigma12 = correlate2d(img1 * img2, window, mode="valid") - mu1_mu2
    ssim_map = ((2 * mu1_mu2 + C1) * (2 * sigma12 + C2)) / ((mu1_sq + mu2_sq + C1) * (sigma1_sq + sigma2_sq + C2))
    return float(ssim_map.mean())


def _reference_ssim_gray(gt: np.ndarray, sr: np.ndarray, integer_max: float | None) -> float:
    """``gt``/``sr`` [C,H,W] in the file's scale; integer_max = 255 for uint8, None for float files."""
    if gt.shape[0] == 3:
        g = _matlab_rgb2gray(np.moveaxis(gt, 0, -1), integer_max)
        s = _matlab_rgb2gray(np.moveaxis(sr, 0, -1), integer_max)
    else:
        g, s = gt[0], sr[0]
    return _matlab_ssim_index(g, s, integer_max if integer_max is not None else 1.0)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("kind", ["uint8", "float"])
def test_ssim_gray_matches_matlab_transcription(channels, kind):
    rng = np.random.default_rng(3 + channels)
    sr, gt, r = _pair(rng, (2, channels, 37, 45), kind)
    integer_max = 255.0 if kind == "uint8" else None
    s32, g32 = torch.from_numpy(sr / r).float(), torch.from_numpy(gt / r).float()  # as the IO layer stores them
    got = get_metric("ssim-gray")(s32, g32, data_range=torch.full((2,), r))
    if kind == "float":  # the reference sees exactly the float32 values the metric got
        gt, sr = g32.double().numpy(), s32.double().numpy()
    for i in range(2):
        want = _reference_ssim_gray(gt[i], sr[i], integer_max)
        assert float(got[i]) == pytest.approx(want, abs=1e-10)


def test_ssim_gray_rounding_matters_and_differs_from_channel_ssim():
    rng = np.random.default_rng(5)
    sr, gt, r = _pair(rng, (1, 3, 40, 40), "uint8")
    s, g = torch.from_numpy(sr / r), torch.from_numpy(gt / r)
    rounded = float(ssim_gray(s, g, file_range=255.0))
    unrounded = float(ssim_gray(s, g))  # float-file convention: no rounding
    want_unrounded = _reference_ssim_gray(gt[0] / 255.0, sr[0] / 255.0, None)
    assert unrounded == pytest.approx(want_unrounded, abs=1e-10)
    assert rounded != pytest.approx(unrounded, abs=1e-7)
    assert rounded != pytest.approx(float(ssim(s, g)), abs=1e-4)


def test_rgb2gray_integer_rounding():
    from clipscore_sr.metrics.pixel import rgb_to_gray_matlab

    # MATLAB: rgb2gray(uint8([255 0 0; 0 255 0; 0 0 255; 255 255 255; 0 0 0])) -> 76, 150, 29, 255, 0
    px = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1], [0, 0, 0]], dtype=torch.float64)
    x = px.T.reshape(1, 3, 1, 5).float()  # float32 storage, as the IO layer provides
    assert rgb_to_gray_matlab(x.double(), 255.0).flatten().tolist() == [76.0, 150.0, 29.0, 255.0, 0.0]
    # every pixel of a large random 8-bit sample equals the NumPy transcription
    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, size=(64, 300, 3)).astype(np.float64)
    want = _matlab_rgb2gray(rgb, 255.0)
    t = torch.from_numpy(np.moveaxis(rgb, -1, 0)[None] / 255.0).float().double()
    got = rgb_to_gray_matlab(t, 255.0)[0, 0].numpy()
    np.testing.assert_array_equal(got, want)


@pytest.mark.skipif(not TID.is_dir(), reason="../shared/calibration/tid2013 not present")
def test_tid2013_calibration_pairs():
    from PIL import Image

    names = sorted(p.name for p in (TID / "ref").glob("*.bmp"))
    assert names, "no BMP pairs in tid2013/ref"
    for name in names:
        ref = np.asarray(Image.open(TID / "ref" / name).convert("RGB")).astype(np.float64)
        dist = np.asarray(Image.open(TID / "dist" / name).convert("RGB")).astype(np.float64)
        g = torch.from_numpy(np.moveaxis(ref, -1, 0)[None] / 255.0).float()
        s = torch.from_numpy(np.moveaxis(dist, -1, 0)[None] / 255.0).float()
        dr = torch.tensor([255.0])
        got_p = float(get_metric("psnr")(s, g, data_range=dr))
        got_s = float(get_metric("ssim")(s.double(), g.double(), data_range=dr))  # the float64 reference path
        assert float(get_metric("ssim")(s, g, data_range=dr)) == pytest.approx(got_s, abs=1e-6), name  # float32
        got_g = float(get_metric("ssim-gray")(s, g, data_range=dr))
        assert got_p == pytest.approx(peak_signal_noise_ratio(ref, dist, data_range=255), abs=1e-4), name
        sk = structural_similarity(ref, dist, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                                   use_sample_covariance=False, data_range=255)
        assert got_s == pytest.approx(sk, abs=1e-5), name
        want_g = _reference_ssim_gray(np.moveaxis(ref, -1, 0), np.moveaxis(dist, -1, 0), 255.0)
        assert got_g == pytest.approx(want_g, abs=1e-10), name


# ------------------------------------------------------------------------------------------------------
# bad inputs and options
# ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["psnr", "ssim", "ssim-gray"])
def test_bad_inputs_raise_input_mismatch(name):
    m = get_metric(name)
    x = torch.rand(2, 3, 32, 32)
    with pytest.raises(InputMismatchError, match="does not match"):
        m(x, torch.rand(2, 3, 32, 31))
    bad = x.clone()
    bad[1, 0, 3, 3] = float("nan")
    with pytest.raises(InputMismatchError, match=r"NaN or inf.*item\(s\) 1"):
        m(bad, x)
    bad[1, 0, 3, 3] = float("inf")
    with pytest.raises(InputMismatchError, match="GT contains NaN or inf"):
        m(x, bad)
    with pytest.raises(InputMismatchError, match="dtype"):
        m((x * 255).to(torch.uint8), (x * 255).to(torch.uint8))
    with pytest.raises(InputMismatchError, match="crop_border=16 removes"):
        get_metric(name, crop_border=16)(x, x)


def test_psnr_accumulates_in_float64_on_any_layout():
    """The per-image CPU path: float64 differences and sums (a float32 difference or sum would be ~1e-7 dB
    off), crops and channels-last views handled, float64 inputs never modified in place. 1e-12 dB."""
    g = torch.Generator().manual_seed(3)
    gt = torch.rand(3, 3, 40, 36, generator=g) * 0.9 + 0.05
    sr = gt + torch.randn(3, 3, 40, 36, generator=g) * 1e-3  # tiny differences (a float32 sum is off)
    sr[0] = torch.rand(3, 40, 36, generator=g) ** 3  # unrelated values: float32 differences are inexact
    for border in (0, 2):
        h, w = 40 - 2 * border, 36 - 2 * border
        want = [10 * np.log10(1.0 / np.mean((sr[i].double().numpy()[:, border:border + h, border:border + w]
                                             - gt[i].double().numpy()[:, border:border + h, border:border + w]) ** 2))
                for i in range(3)]
        for s_, g_ in ((sr, gt), (sr.double(), gt.double()), (sr.to(memory_format=torch.channels_last), gt)):
            before = s_.clone()
            got = psnr(s_, g_, crop_border=border)
            assert got.dtype == torch.float64
            np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-12)
            assert torch.equal(s_, before)
    mixed = gt.clone()
    mixed[2, 1, 5, 5] = float("inf")
    with pytest.raises(InputMismatchError, match=r"SR contains NaN or inf.*item\(s\) 2"):
        psnr(mixed, gt)


def test_small_images_and_channel_counts():
    x = torch.rand(1, 3, 10, 40)
    with pytest.raises(InputMismatchError, match="smaller than the 11x11 window"):
        ssim(x, x)
    with pytest.raises(InputMismatchError, match="smaller than"):
        get_metric("ssim", crop_border=12)(torch.rand(1, 3, 32, 40), torch.rand(1, 3, 32, 40))
    with pytest.raises(InputMismatchError, match="1 \\(gray\\) or 3 \\(RGB\\) channels, got 4"):
        ssim_gray(torch.rand(1, 4, 20, 20), torch.rand(1, 4, 20, 20))
    assert torch.isfinite(psnr(torch.rand(1, 1, 3, 3), torch.rand(1, 1, 3, 3))).all()


def test_options_are_validated_and_recorded():
    with pytest.raises(ConfigError, match="crop_border"):
        get_metric("psnr", crop_border=-1)
    with pytest.raises(ConfigError, match="crop_border"):
        get_metric("ssim", crop_border=1.5)
    with pytest.raises(ConfigError, match="no option 'window'"):
        get_metric("ssim", window=7)
    m = get_metric("ssim-gray", crop_border=3)
    assert m.provenance() == {"id": "ssim-gray", "higher_is_better": True, "options": {"crop_border": 3}}
    assert get_metric("psnr").provenance()["options"] == {"crop_border": 0}


def test_pipeline_passes_crop_border_to_pixel_metrics():
    # build_metrics hands each metric only the options its constructor names.
    from clipscore_sr.pipeline import build_metrics

    built = build_metrics(["psnr", "ssim", "ssim-gray", "cpsnr", "cpsnr-satlas"], device=torch.device("cpu"),
                          metric_options={"crop_border": 5, "cache_dir": "/nonexistent"})
    assert [m.options["crop_border"] for m in built] == [5] * 5


def test_crop_border_helper():
    x = torch.arange(2 * 5 * 6, dtype=torch.float64).view(1, 2, 5, 6)
    assert torch.equal(crop_border(x, 1), x[..., 1:4, 1:5])
    assert crop_border(x, 0) is x
    with pytest.raises(InputMismatchError, match="removes the whole"):
        crop_border(x, 3)


def test_metric_info_is_filled():
    for name in ("psnr", "ssim", "ssim-gray"):
        info = type(get_metric(name)).info()
        assert info.higher_is_better and info.units and info.value_range and info.description


@pytest.mark.parametrize("name", ["psnr", "ssim", "ssim-gray"])
def test_float32_and_float64_inputs_agree(name):
    x64 = torch.rand(2, 3, 24, 24, dtype=torch.float64)
    y64 = (x64 + 0.05 * torch.randn_like(x64)).clamp(0, 1)
    x32, y32 = x64.float(), y64.float()
    m = get_metric(name)
    # Same stored values -> identical results (ssim: float32 inputs take the float32 path, within 1e-6 of the
    # float64 reference, which float64 inputs take); float32 rounding of the values -> tiny differences.
    if name == "ssim":
        assert torch.allclose(m(y32, x32), m(y32.double(), x32.double()), atol=1e-6, rtol=0)
        from clipscore_sr.metrics.pixel import ssim

        assert torch.equal(ssim(y32, x32, precision="float64"), m(y32.double(), x32.double()))
    else:
        assert torch.equal(m(y32, x32), m(y32.double(), x32.double()))
    assert torch.allclose(m(y32, x32), m(y64, x64), atol=1e-4, rtol=0)


@pytest.mark.parametrize("bits", [8, 16])
def test_ssim_float32_path_is_within_1e6_of_the_float64_reference(bits):
    """The float32 SSIM (the default for float32 inputs: moments of mean-centred planes, float64 mean) against
    the float64 reference on 8- and 16-bit data: smooth, textured, dark and bright images, noise levels."""
    from clipscore_sr.metrics.pixel import ssim

    g = torch.Generator().manual_seed(bits)
    levels = 2 ** bits - 1
    worst = 0.0
    for size, noise, offset in ((64, 0.01, 0.0), (100, 0.05, 0.4), (48, 0.2, 0.0), (80, 0.002, 0.9)):
        low = torch.rand(4, 3, size // 8, size // 8, generator=g, dtype=torch.float64)
        gt = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
        gt = (offset + (1 - offset) * gt).clamp(0, 1)
        sr = (gt + noise * torch.randn(gt.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
        gt, sr = (torch.round(x * levels) / levels for x in (gt, sr))  # values of real 8/16-bit files
        ref = ssim(sr, gt, precision="float64")
        got = ssim(sr.float(), gt.float())  # auto: the float32 path
        worst = max(worst, float((got - ref).abs().max()))
    assert worst <= 1e-6, worst
