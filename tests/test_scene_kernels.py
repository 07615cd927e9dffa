"""The fast scene detectors against their definitions: the float32 operators of `scene.kernels` against
PyTorch's float64 interpolations, and every per-tile value of `tile_metrics` against the plain float64
reference (`tests/scene_reference.py`) on the real Landsat sample with noise, NaN holes and the LR's own
no-data, at scales 2, 3 and 4, to the tolerances stated in `clipscore_sr/scene/detectors.py`."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clipscore_sr.scene import grid as G
from clipscore_sr.scene.detectors import DetectorOptions, tile_metrics
from clipscore_sr.scene.kernels import Down, StepSums, Up, row_bands
from clipscore_sr.scene.read import invalid_pixels

from .scene_reference import reference_metrics
from .scene_support import bicubic_sr, read_landsat, write_sr

pytest.importorskip("rasterio")


@pytest.mark.parametrize(("s", "h", "w"), [(4, 64, 80), (2, 37, 53), (3, 20, 17), (4, 3, 5), (1, 9, 6)])
def test_operators_equal_pytorch_interpolation(s: int, h: int, w: int) -> None:
    g = torch.Generator().manual_seed(s * h + w)
    x = torch.rand(2, 3, h * s, w * s, dtype=torch.float64, generator=g)
    y, box = Down(w, s).image(x.float(), Down(h, s))
    ref = x if s == 1 else F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    assert (y.double() - ref).abs().max() < 1e-6
    assert (box.double() - F.avg_pool2d(x, s)).abs().max() < 1e-6
    lr = torch.rand(2, 3, h + 4, w + 4, dtype=torch.float64, generator=g)
    up = Up(w, s).image(lr.float(), Up(h, s))
    ref = F.interpolate(lr, scale_factor=s, mode="bicubic", align_corners=False)[..., 2 * s:-2 * s, 2 * s:-2 * s]
    assert up.shape == ref.shape and (up.double() - ref).abs().max() < 1e-6
    # by bands of rows: the same image
    rows = Up.first(lr.float(), Up(h, s))
    bands = [Up(w, s)(rows[:, :, r0:r1]) for _, r0, r1 in row_bands(h * s, 7)]
    assert torch.equal(torch.cat(bands, dim=2), up)


def test_step_sums_by_bands_equal_the_whole_image() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 30, 17, generator=g)
    valid = torch.rand(2, 30, 17, generator=g) > 0.2
    for v in (None, valid):
        st = StepSums(2, 30, 17, torch.device("cpu"))
        for lo, r0, r1 in row_bands(30, 4):
            st.add(x[:, :, lo:r1], lo, r0, v)
        m = torch.ones(2, 30, 17, dtype=torch.bool) if v is None else v
        dc, dr = (x[..., 1:] - x[..., :-1]).abs().mean(1), (x[:, :, 1:] - x[:, :, :-1]).abs().mean(1)
        vc, vr = m[..., 1:] & m[..., :-1], m[:, 1:] & m[:, :-1]
        for j, (col, row) in enumerate(st.profiles()):
            want_c = ((dc[j] * vc[j]).sum(0) / vc[j].sum(0)).double()
            want_r = ((dr[j] * vr[j]).sum(1) / vr[j].sum(1)).double()
            np.testing.assert_allclose(col, want_c.numpy(), rtol=1e-6)
            np.testing.assert_allclose(row, want_r.numpy(), rtol=1e-6)


def test_invalid_pixels_checks_minimum_and_maximum_first() -> None:
    raw = np.full((2, 4, 5), 500, np.uint16)
    assert invalid_pixels(raw, [0, 0], 65535) is None  # no nodata, no saturation: no mask at all
    raw[1, 2, 3] = 0
    raw[0, 0, 0] = 65535
    bad = invalid_pixels(raw, [None, 0], 65535)
    assert bad.sum() == 2 and bad[2, 3] and bad[0, 0]
    assert invalid_pixels(raw, [0, None], None).sum() == 0  # band 1 has no 0, band 2's 0 is not its nodata
    f = np.ones((1, 3, 3), np.float32)
    f[0, 1, 1] = np.nan
    assert invalid_pixels(f, [None], None).sum() == 1


#: |fast - float64 definition| allowed: (absolute, relative), the tolerances stated in scene/detectors.py
TOLERANCE = {"lr-l1": (2e-7, 0), "lr-maxdiff": (2e-7, 0), "lr-maxdiff-box": (2e-7, 0), "lr-psnr": (1e-5, 0),
             "lr-sam": (1e-5, 0), "seam-step": (1e-5, 0), "seam-energy": (1e-5, 0), "detail-rms": (0, 1e-6),
             "detail-gain": (0, 1e-6), "cast": (2e-7, 0), "lr-shift": (0, 0), "lr-shift-dy": (0, 0),
             "lr-shift-dx": (0, 0)}


def _tolerance(key: str) -> tuple[float, float]:
    if key.startswith("bias-"):
        return 2e-7, 0.0
    if key.startswith(("ratio-", "sum-")):
        return 0.0, 1e-6
    return TOLERANCE.get(key, (0.0, 0.0))  # counts, fractions, flags, periods: equal


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_fast_detectors_match_the_float64_definition(shared_dir: Path, tmp_path: Path, scale: int) -> None:
    from clipscore_sr.scene.evaluate import SceneSettings, plan_scenes
    from clipscore_sr.scene.read import SceneRaster
    from clipscore_sr.scene.stream import read_tile

    lr, prof = read_landsat(shared_dir)
    rng = np.random.default_rng(scale)
    sr = bicubic_sr(lr, scale) + rng.normal(0, 3, (3, lr.shape[1] * scale, lr.shape[2] * scale)).astype(np.float32)
    sr[:, 100:104, 300:306] = np.nan  # holes a model blew up, beside the LR's own no-data collar
    sr[:, 2 * scale * 64 + 5:2 * scale * 64 + 7, 40:45] = np.nan
    lr_path = shared_dir / "samples" / "landsat" / "rmnp-rgb.tif"
    sr_path = write_sr(tmp_path / "sr.tif", sr, prof, scale)
    plan = plan_scenes([(str(lr_path), str(sr_path))], SceneSettings(tile=96))[0]
    lr_r, sr_r = SceneRaster(plan.lr, "LR"), SceneRaster(plan.sr, "SR")
    opts = DetectorOptions(scale=scale, band_labels=plan.labels)
    worst: dict[str, float] = {}
    seen = {"masked": 0, "clean": 0, "holes": 0}
    for t in G.plan_tiles([(plan.name, plan.lr_h, plan.lr_w)], 96):
        x = read_tile(plan, t, lr_r, sr_r, None, 0.0)
        fast = tile_metrics(x, opts, data_range=plan.data_range)
        ref = reference_metrics(x, opts, data_range=plan.data_range)
        seen["masked" if x.lr_valid is not None else "clean"] += 1
        seen["holes"] += ref["nodata-new-px"] > 0
        assert set(fast) == set(ref)
        for key, want in ref.items():
            got = fast[key]
            if isinstance(want, float) and math.isnan(want):
                assert math.isnan(got), (t.key, key, got)
                continue
            atol, rtol = _tolerance(key)
            assert abs(got - want) <= atol + rtol * abs(want), (t.key, key, got, want)
            worst[key] = max(worst.get(key, 0.0), abs(got - want))
    assert seen["masked"] >= 5 and seen["clean"] >= 2 and seen["holes"] >= 2, seen
    assert worst["lr-l1"] > 0 and worst["sum-hf2-sr"] > 0  # float32 did run: not a copy of the reference
