"""Correctness (improvement / omission / hallucination) against a float64 NumPy computation written from
Aybar et al.'s definitions, with skimage's ``match_histograms`` as the harmonisation reference.

Tolerances: histogram matching vs skimage 1e-12; distances 1e-12; fractions exactly equal (same classes at
every location, checked on the maps).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from skimage.exposure import match_histograms

from clipscore_sr.errors import ConfigError, InputMismatchError
from clipscore_sr.metrics import get_metric
from clipscore_sr.metrics.correctness import correctness, histogram_match, write_class_map


def np_bilinear_up(x: np.ndarray, s: int) -> np.ndarray:
    """[C,h,w] -> [C,h*s,w*s]: bilinear, half-pixel centres, edge-clamped (align_corners=False)."""
    def axis_weights(n):
        src = np.maximum((np.arange(n * s) + 0.5) / s - 0.5, 0)
        i0 = np.floor(src).astype(int)
        i1 = np.minimum(i0 + 1, n - 1)
        f = src - i0
        m = np.zeros((n * s, n))
        m[np.arange(n * s), i0] += 1 - f
        m[np.arange(n * s), i1] += f
        return m
    mh, mw = axis_weights(x.shape[1]), axis_weights(x.shape[2])
    return np.einsum("Hh,chw,Ww->cHW", mh, x, mw)


def np_correctness(sr, hr, lr, *, patch=1, q=0.75, gammas=(0.8, 0.8, 0.4), rule="ref"):
    """One image [C,H,W]: class map (-1 left out) and the three fractions."""
    sr_h = np.moveaxis(match_histograms(np.moveaxis(sr, 0, -1), np.moveaxis(hr, 0, -1), channel_axis=-1), -1, 0)
    up = np_bilinear_up(lr, hr.shape[1] // lr.shape[1])

    def dist(a, b):
        d = np.abs(a - b).mean(0)
        h, w = d.shape[0] // patch, d.shape[1] // patch
        return d[:h * patch, :w * patch].reshape(h, patch, w, patch).mean(axis=(1, 3))
    d_ref, d_im, d_om = dist(up, hr), dist(sr_h, hr), dist(sr_h, up)
    flat = np.sort(d_ref.ravel())
    t = flat[max(int(q * flat.size), 1) - 1]
    keep = d_ref > t
    if rule == "any":
        keep |= (d_im > t) | (d_om > t)
    keep &= d_ref > 0
    classes = np.full(d_ref.shape, -1)
    fr = np.zeros(3)
    for i, j in zip(*np.nonzero(keep)):
        x, y = d_im[i, j] / d_ref[i, j], d_om[i, j] / d_ref[i, j]
        h = x + y - 1
        scores = [x + y * (1 - np.exp(-h * gammas[0])), y + x * (1 - np.exp(-h * gammas[1])),
                  np.exp(-gammas[2] * x * y)]
        classes[i, j] = int(np.argmin(scores))
        fr[classes[i, j]] += 1
    return classes, fr / keep.sum()


def _scene(seed=0, size=64, scale=4):
    rng = np.random.default_rng(seed)
    hr = ndimage.gaussian_filter(rng.random((3, size, size)), (0, 1.2, 1.2))
    hr = (hr - hr.min()) / (hr.max() - hr.min())
    lr = hr.reshape(3, size // scale, scale, size // scale, scale).mean(axis=(2, 4))
    return hr, lr, rng


def test_histogram_match_equals_skimage():
    rng = np.random.default_rng(3)
    for src, ref in ((rng.integers(0, 40, (2, 3, 17, 23)) / 40.0, rng.random((2, 3, 30, 11)) ** 3),
                     (rng.random((1, 4, 16, 16)), rng.integers(0, 5, (1, 4, 16, 16)) / 4.0)):
        ours = histogram_match(torch.from_numpy(src), torch.from_numpy(ref)).numpy()
        for b in range(src.shape[0]):
            want = match_histograms(np.moveaxis(src[b], 0, -1), np.moveaxis(ref[b], 0, -1), channel_axis=-1)
            np.testing.assert_allclose(ours[b], np.moveaxis(want, -1, 0), atol=1e-12)


def test_histogram_match_counting_equals_skimage_and_falls_back():
    """levels=255 (8-bit files decoded to float32 k/255, scored in float64): counting path vs skimage (1e-12);
    values between levels or two values in one level: the sort path (same result)."""
    rng = np.random.default_rng(4)
    q8 = lambda a: (np.round(a * 255) / 255).astype(np.float32).astype(np.float64)  # noqa: E731
    src = q8(rng.random((3, 3, 24, 20)) ** 2)
    ref = q8(np.clip(rng.normal(0.4, 0.2, (3, 3, 24, 20)), 0, 1))
    ref[0, 1] = ref[0, 1, 0, 0]  # a constant band
    ref[1, 2, :, :10] = 0.0  # only two of the 256 levels at the ends
    ref[1, 2, :, 10:] = 1.0
    for s_, r_ in ((src, ref), (src[:, :, :12], ref), (rng.random(src.shape), ref),
                   (src, ref + np.where(rng.random(ref.shape) > 0.5, 1e-4, 0.0))):
        t_s, t_r = torch.from_numpy(s_), torch.from_numpy(r_)
        ours = histogram_match(t_s, t_r, levels=255).numpy()
        np.testing.assert_array_equal(ours, histogram_match(t_s, t_r).numpy())
        for b in range(s_.shape[0]):
            want = match_histograms(np.moveaxis(s_[b], 0, -1), np.moveaxis(r_[b], 0, -1), channel_axis=-1)
            np.testing.assert_allclose(ours[b], np.moveaxis(want, -1, 0), atol=1e-12)


def test_histogram_match_accepts_non_contiguous_input():
    """Channels-last views (e.g. ``torch.from_numpy(hwc).permute(2, 0, 1)``) give the same result on both paths."""
    rng = np.random.default_rng(7)
    hwc = (np.round(rng.random((1, 24, 20, 3)) * 255) / 255).astype(np.float32).astype(np.float64)
    ref = np.ascontiguousarray(np.roll(hwc, 3, axis=1).transpose(0, 3, 1, 2))
    view = torch.from_numpy(hwc).permute(0, 3, 1, 2)
    assert not view.is_contiguous()
    want = histogram_match(view.contiguous(), torch.from_numpy(ref))
    for levels in (255, None):
        np.testing.assert_array_equal(histogram_match(view, torch.from_numpy(ref), levels=levels).numpy(),
                                      want.numpy())


@pytest.mark.parametrize("patch,rule", [(1, "ref"), (4, "ref"), (1, "any")])
def test_matches_numpy_reference(patch, rule):
    hr, lr, rng = _scene()
    srs = [np.clip(hr + rng.normal(0, 0.05, hr.shape), 0, 1), np_bilinear_up(lr, 4),
           np.clip(ndimage.gaussian_filter(hr, (0, 1, 1)) + 0.1 * (rng.random(hr.shape) > 0.9), 0, 1)]
    sr = torch.from_numpy(np.stack(srs))
    hr_t = torch.from_numpy(np.stack([hr] * 3))
    lr_t = torch.from_numpy(np.stack([lr] * 3))
    maps = correctness(sr, hr_t, lr_t, patch_size=patch, mask_rule=rule)
    for b, s in enumerate(srs):
        classes, fr = np_correctness(s, hr, lr, patch=patch, rule=rule)
        np.testing.assert_array_equal(maps.classes[b].numpy(), classes)
        np.testing.assert_allclose(maps.fractions[b].numpy(), fr, atol=1e-15)


def test_lazy_scores_and_classes_agree_with_the_fractions():
    """``scores`` and ``classes`` are computed on first access: argmin of the scores is the class at every kept
    location, NaN / -1 elsewhere, the class counts give the fractions, and a map built without the cached
    classification recomputes the same classes."""
    hr, lr, rng = _scene(2)
    sr = np.clip(hr + rng.normal(0, 0.08, hr.shape), 0, 1)
    maps = correctness(torch.from_numpy(sr[None]), torch.from_numpy(hr[None]), torch.from_numpy(lr[None]))
    keep = maps.keep[0].numpy()
    scores, classes = maps.scores[0].numpy(), maps.classes[0].numpy()
    assert 0 < keep.sum() < keep.size and np.isnan(scores[:, ~keep]).all() and (classes[~keep] == -1).all()
    np.testing.assert_array_equal(scores[:, keep].argmin(axis=0), classes[keep])
    counts = np.bincount(classes[keep], minlength=3) / keep.sum()
    np.testing.assert_allclose(maps.fractions[0].numpy(), counts, atol=1e-15)
    assert len(set(classes[keep].tolist())) == 3
    fresh = dataclasses.replace(maps, _first=None, _second=None)
    np.testing.assert_array_equal(fresh.classes.numpy(), maps.classes.numpy())


def test_identity_improves_lr_up_omits_noise_hallucinates():
    hr, lr, rng = _scene(1)
    hr_t, lr_t = torch.from_numpy(hr[None]), torch.from_numpy(lr[None])
    perfect = correctness(hr_t, hr_t, lr_t).fractions[0].tolist()
    assert perfect == [1.0, 0.0, 0.0]
    omitted = correctness(torch.from_numpy(np_bilinear_up(lr, 4)[None]), hr_t, lr_t, harmonize=False)
    assert omitted.fractions[0].tolist() == [0.0, 1.0, 0.0]
    # more invented high-frequency detail -> more hallucination, less improvement
    previous = (2.0, -1.0)
    for amp in (0.02, 0.1, 0.3, 0.6):
        noise = ndimage.gaussian_filter(rng.normal(0, 1, hr.shape), (0, 0.7, 0.7))
        sr = torch.from_numpy(np.clip(hr + amp * noise, 0, 1)[None])
        im, _, ha = correctness(sr, hr_t, lr_t, harmonize=False).fractions[0].tolist()
        assert im <= previous[0] and ha >= previous[1], (amp, im, ha, previous)
        previous = (im, ha)
    assert previous[1] > 0.5


def test_registration_option_undoes_a_global_shift():
    hr, lr, _ = _scene(2)
    hr_t, lr_t = torch.from_numpy(hr[None]), torch.from_numpy(lr[None])
    shifted = torch.from_numpy(np.roll(hr, (2, -1), axis=(1, 2))[None])
    plain = correctness(shifted, hr_t, lr_t).fractions[0, 0].item()
    registered = correctness(shifted, hr_t, lr_t, register=True).fractions[0, 0].item()
    assert plain < 0.8 and registered > 0.95


def test_band_order_invariance():
    hr, lr, rng = _scene(4)
    sr = np.clip(hr + rng.normal(0, 0.05, hr.shape), 0, 1)
    perm = [2, 0, 1]
    a = correctness(*(torch.from_numpy(x[None]) for x in (sr, hr, lr))).fractions
    b = correctness(*(torch.from_numpy(x[None, perm]) for x in (sr, hr, lr))).fractions
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_metric_columns_and_options(tmp_path):
    hr, lr, rng = _scene(5)
    m = get_metric("correctness:l2", patch_size=2, threshold="q50")
    assert [c.name for c in m.columns()] == ["correctness:l2-improvement", "correctness:l2-omission",
                                             "correctness:l2-hallucination"]
    sr = torch.from_numpy(np.clip(hr + rng.normal(0, 0.05, hr.shape), 0, 1)[None])
    out = m(sr, torch.from_numpy(hr[None]), lr=torch.from_numpy(lr[None]))
    assert sum(v.item() for v in out.values()) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="unknown distance"):
        get_metric("correctness:lpipsx")
    with pytest.raises(ConfigError, match="threshold"):
        get_metric("correctness", threshold="auto")


def test_class_maps_png_and_geotiff(tmp_path):
    import tifffile

    classes = np.array([[0, 1], [2, -1]])
    geo = tmp_path / "sr.tif"
    tags = [(33550, "d", 3, (10.0, 10.0, 0.0), False), (33922, "d", 6, (0, 0, 0, 500000.0, 4000000.0, 0), False),
            (34735, "H", 4, (1, 1, 0, 0), False)]
    tifffile.imwrite(geo, np.zeros((4, 4), np.uint8), extratags=tags)
    written = write_class_map(tmp_path / "maps", "a/b", classes, patch_size=2, geo_source=str(geo))
    assert [p.name for p in written] == ["b.correctness.png", "b.correctness.tif"]
    png = np.asarray(Image.open(written[0]))
    assert png.shape == (4, 4, 3) and (png[0, 0] == (85, 168, 104)).all() and (png[3, 3] == (200, 200, 200)).all()
    with tifffile.TiffFile(written[1]) as tif:
        codes = tif.asarray()
        page_tags = tif.pages[0].tags
        assert page_tags[33550].value == (10.0, 10.0, 0.0) and page_tags[42113].value == "0"
    np.testing.assert_array_equal(codes[::2, ::2], [[1, 2], [3, 0]])
    with pytest.raises(ConfigError, match="outside"):
        write_class_map(tmp_path / "maps", "../../evil", classes)


def test_maps_figure_is_deterministic(tmp_path):
    from clipscore_sr.figures.correctness_maps import draw_correctness_maps

    hr, lr, rng = _scene(6, size=32)
    sr = np.clip(hr + rng.normal(0, 0.05, hr.shape), 0, 1)
    maps = correctness(*(torch.from_numpy(x[None]) for x in (sr, hr, lr)))
    paths = [draw_correctness_maps(lr, sr, hr, maps.classes[0].numpy(), tuple(maps.fractions[0].tolist()),
                                   tmp_path / f"f{i}.png", title="t") for i in range(2)]
    assert paths[0].read_bytes() == paths[1].read_bytes() and paths[0].stat().st_size > 1000
    with pytest.raises(Exception, match="unsupported figure format"):
        draw_correctness_maps(lr, sr, hr, maps.classes[0].numpy(), (1, 0, 0), tmp_path / "f.gif")


@pytest.fixture
def alex_home(tmp_path, monkeypatch):
    """A torchvision AlexNet checkpoint with random features where LPIPS looks for it (no download)."""
    import torchvision

    import clipscore_sr.metrics.lpips as lpips_mod
    from clipscore_sr.metrics.lpips import backbone_checkpoint

    from .train_support import hashed_copy

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    torch.manual_seed(0)
    path = backbone_checkpoint("alex")  # torchvision's real name: what the lpips package called directly loads
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torchvision.models.alexnet().state_dict(), path)
    # our loader checks the SHA-256 prefix in the name, which belongs to the ImageNet file: point it at a copy
    # named with the random file's own prefix
    ours = hashed_copy(path)
    real_url = lpips_mod.backbone_url
    monkeypatch.setattr(lpips_mod, "backbone_url",
                        lambda n: real_url(n).rsplit("/", 1)[0] + "/" + ours.name if n == "alex" else real_url(n))
    return path


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*(pretrained|weight enum).*:UserWarning")
def test_lpips_distance_per_patch_matches_the_lpips_package(alex_home):
    """correctness:lpips: d per 32x32 block equals the lpips package called on that block (1e-5)."""
    import lpips

    hr, lr, rng = _scene(7, size=64)
    sr = np.clip(hr + rng.normal(0, 0.08, hr.shape), 0, 1)
    m = get_metric("correctness:lpips", patch_size=32, harmonize=False)
    out = m(*(torch.from_numpy(x[None]) for x in (sr, hr)), lr=torch.from_numpy(lr[None]))
    maps = m.last_maps
    ref_model = lpips.LPIPS(net="alex", version="0.1", verbose=False).eval()
    up = np_bilinear_up(lr, 4)
    for (a, b), got in (((up, hr), maps.d_ref), ((sr, hr), maps.d_im), ((sr, up), maps.d_om)):
        for i in range(2):
            for j in range(2):
                pa = torch.from_numpy(a[None, :, 32 * i:32 * i + 32, 32 * j:32 * j + 32]).float()
                pb = torch.from_numpy(b[None, :, 32 * i:32 * i + 32, 32 * j:32 * j + 32]).float()
                want = ref_model(pa * 2 - 1, pb * 2 - 1).item()
                assert got[0, i, j].item() == pytest.approx(want, abs=1e-5)
    assert sum(v.item() for v in out.values()) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="patch_size >= 32"):
        get_metric("correctness:lpips", patch_size=8)


def test_clip_distance_per_patch_matches_open_clip(tmp_path, monkeypatch):
    """correctness:clip with a tiny open_clip model saved as a local-dir folder (the path users use): d per
    16x16 block equals 1 - cosine of open_clip's own transform + encode_image on that block (1e-5); the
    option reaches the metric from the CLI; too-small patches and the option on other distances are errors."""
    from click.testing import CliRunner

    from clipscore_sr.cli import main

    from .test_clip_support import PREP, TINY_VIT, isolated_offline_env, reference_embed, write_local_dir

    isolated_offline_env(tmp_path, monkeypatch)
    d, model = write_local_dir(tmp_path / "tiny", TINY_VIT, PREP, seed=0)
    hr, lr, rng = _scene(8, size=32)
    sr = np.clip(hr + rng.normal(0, 0.08, hr.shape), 0, 1)
    m = get_metric("correctness:clip", patch_size=16, harmonize=False, clip=f"local-dir:{d}")
    out = m(*(torch.from_numpy(x[None]) for x in (sr, hr)), lr=torch.from_numpy(lr[None]))
    maps = m.last_maps
    up = np_bilinear_up(lr, 4)
    size = TINY_VIT["vision_cfg"]["image_size"]
    for (a, b), got in (((up, hr), maps.d_ref), ((sr, hr), maps.d_im), ((sr, up), maps.d_om)):
        blocks = lambda x: torch.from_numpy(np.stack([x[:, 16 * i:16 * i + 16, 16 * j:16 * j + 16]  # noqa: E731
                                                      for i in range(2) for j in range(2)])).float()
        ea, eb = reference_embed(model, blocks(a), PREP, size), reference_embed(model, blocks(b), PREP, size)
        want = 1 - torch.nn.functional.cosine_similarity(ea.double(), eb.double(), dim=-1)
        np.testing.assert_allclose(got[0].flatten().numpy(), want.numpy(), atol=1e-5)
    assert sum(v.item() for v in out.values()) == pytest.approx(1.0)
    assert m.provenance()["options"]["clip"] == f"local-dir:{d}"
    with pytest.raises(ConfigError, match="patch_size >= 16"):
        get_metric("correctness:clip", patch_size=8)
    with pytest.raises(ConfigError, match="for correctness:clip only"):
        get_metric("correctness:l1", clip="clip-rn50")
    # CLI: the same numbers through --metric-option
    for name, arr in (("hr", hr), ("lr", lr), ("sr", sr)):
        (tmp_path / name).mkdir()
        Image.fromarray(np.round(arr.transpose(1, 2, 0) * 255).astype(np.uint8)).save(tmp_path / name / "a.png")
    res = CliRunner().invoke(main, ["score", str(tmp_path / "hr"), str(tmp_path / "sr"), "--lr", str(tmp_path / "lr"),
                                    "-m", "correctness:clip", "--metric-option", "correctness.patch_size=16",
                                    "--metric-option", f"correctness.clip=local-dir:{d}", "-o",
                                    str(tmp_path / "c.csv"), "-q"])
    assert res.exit_code == 0, res.output
    row = __import__("pandas").read_csv(tmp_path / "c.csv").iloc[0]
    png = {n: torch.from_numpy(np.asarray(Image.open(tmp_path / n / "a.png"), np.float64).transpose(2, 0, 1)[None]
                               / 255) for n in ("hr", "lr", "sr")}
    api = get_metric("correctness:clip", patch_size=16, clip=f"local-dir:{d}")(
        png["sr"], png["hr"], lr=png["lr"], data_range=torch.tensor([255.0]))
    for col, value in api.items():
        assert row[col] == pytest.approx(float(value[0]), abs=1e-12), col
    # 4 bands: one error naming the metric and --bands, before any model call
    with pytest.raises(InputMismatchError, match="correctness:clip SR input has 4 channels.*--bands"):
        m(torch.rand(1, 4, 32, 32), torch.rand(1, 4, 32, 32), lr=torch.rand(1, 4, 8, 8))


@pytest.mark.parametrize("threshold,rule", [("q75", "ref"), ("q50", "any"), (0.02, "ref"), ("q100", "ref")])
def test_fused_cpu_kernels_equal_the_torch_path(monkeypatch, threshold, rule):
    """With numba the default CPU path (l1, per pixel) runs fused kernels: every map, the fractions, classes and
    scores are bit-identical to the torch code's on this data (exact score ties aside, see the module), on
    8-bit data (counting histogram match), data that is not
    quantised (the kernel declines, the sorting path runs), 4 bands, a constant band and a channels-last view."""
    pytest.importorskip("numba")
    import clipscore_sr.metrics.correctness as K

    rng = np.random.default_rng(11)
    q8 = lambda a: (np.round(a * 255) / 255).astype(np.float32).astype(np.float64)  # noqa: E731
    hr = q8(ndimage.gaussian_filter(rng.random((3, 4, 48, 40)), (0, 0, 1.2, 1.2)) * 1.6 - 0.3).clip(0, 1)
    lr = hr.reshape(3, 4, 12, 4, 10, 4).mean(axis=(3, 5))
    sr = q8(np.clip(hr + rng.normal(0, 0.06, hr.shape) + 0.03, 0, 1))
    hr[1, 2] = hr[1, 2, 0, 0]  # a constant band
    cases = [(sr, 255), (sr + rng.normal(0, 1e-4, sr.shape), 255), (sr, None)]
    for s_, levels in cases:
        t_sr, t_hr, t_lr = torch.from_numpy(s_), torch.from_numpy(hr), torch.from_numpy(lr)
        out = {}
        for env in ("", "1"):
            monkeypatch.setenv("CLIPSCORE_SR_NO_NUMBA", env)
            K._fused_kernels.cache_clear()
            assert (K._fused_kernels() is None) == (env == "1")
            out[env] = K.correctness(t_sr, t_hr, t_lr, threshold=threshold, mask_rule=rule, levels=levels)
        fast, ref = out[""], out["1"]
        for name in ("d_ref", "d_im", "d_om", "keep", "classes"):
            assert torch.equal(getattr(fast, name), getattr(ref, name)), name
        assert torch.equal(fast.fractions.nan_to_num(-1), ref.fractions.nan_to_num(-1))
        assert torch.equal(fast.scores.nan_to_num(-9), ref.scores.nan_to_num(-9))
    # B=1 channels-last view through the kernels
    view = torch.from_numpy(np.ascontiguousarray(sr[:1].transpose(0, 2, 3, 1))).permute(0, 3, 1, 2)
    monkeypatch.setenv("CLIPSCORE_SR_NO_NUMBA", "")
    K._fused_kernels.cache_clear()
    a = K.correctness(view, torch.from_numpy(hr[:1]), torch.from_numpy(lr[:1]), levels=255)
    b = K.correctness(view.contiguous(), torch.from_numpy(hr[:1]), torch.from_numpy(lr[:1]), levels=255)
    assert torch.equal(a.classes, b.classes)
    K._fused_kernels.cache_clear()


def test_fused_kth_value_is_exact_on_adversarial_rows():
    """The bucketed k-th value equals torch's kthvalue: duplicates, all-equal rows, a denormal or overflowing
    range, huge dynamic range, values on bin edges."""
    pytest.importorskip("numba")
    from clipscore_sr.metrics import _correctness_cpu as kernels

    rng = np.random.default_rng(5)
    rows = [rng.random(4097), np.round(rng.random(4097) * 7) / 7, np.full(4097, 0.25),
            np.r_[np.zeros(4096), 5e-324], np.r_[-1e308, np.zeros(4095), 1e308],
            np.r_[np.full(2048, 1e-300), np.full(2049, 1e300)], np.arange(4097) / 4096 * 1024.0,
            rng.exponential(size=4097) ** 8]
    d = np.ascontiguousarray(np.stack(rows))
    for k in (1, 2, 1024, 2048, 3072, 4096, 4097):
        out = np.empty(len(rows))
        kernels.kth_smallest(d, k, out)
        np.testing.assert_array_equal(out, torch.from_numpy(d).kthvalue(k, dim=1).values.numpy(), err_msg=str(k))


def test_fused_path_guards(monkeypatch):
    """LR with NaN is an error on both paths; > 16 bands (torch's mean sums those pairwise) and inputs that
    require grad run correctly (torch code, or detached for the kernels)."""
    import clipscore_sr.metrics.correctness as K

    rng = np.random.default_rng(2)
    hr = torch.from_numpy(rng.random((1, 18, 8, 8)))
    lr = torch.from_numpy(rng.random((1, 18, 2, 2)))
    sr = torch.from_numpy(rng.random((1, 18, 8, 8)))
    bad = lr.clone()
    bad[0, 0, 1, 1] = math.nan
    for env in ("", "1"):
        monkeypatch.setenv("CLIPSCORE_SR_NO_NUMBA", env)
        K._fused_kernels.cache_clear()
        with pytest.raises(InputMismatchError, match="LR contains NaN"):
            K.correctness(sr[:, :3], hr[:, :3], bad[:, :3])
    out = {}
    for env in ("", "1"):
        monkeypatch.setenv("CLIPSCORE_SR_NO_NUMBA", env)
        K._fused_kernels.cache_clear()
        out[env] = K.correctness(sr, hr, lr, harmonize=False, threshold=0.0)
        grad = K.correctness(sr[:, :3].clone().requires_grad_(), hr[:, :3], lr[:, :3], harmonize=False)
        assert grad.fractions.shape == (1, 3)
    assert torch.equal(out[""].d_ref, out["1"].d_ref)  # 18 bands: the torch code on both
    K._fused_kernels.cache_clear()
