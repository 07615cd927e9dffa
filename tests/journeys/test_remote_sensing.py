"""Journey: real remote-sensing inputs -> score -> montage -> summaries.

Covers the README flows "`srmetrics score` in detail" (multi-band and non-8-bit data: `--bands 3,2,1`,
`--data-range 4095` / `10000`, the uint16 small-range warning, `OUT.meta.json`, `--summary`), "Evaluating SR
where no HR exists (`--lr`)" (missing LR files, LR-only scoring, the real WorldStrat sample numbers) and
`srmetrics montage` (GT | LR | each method, one GT-percentile stretch per row).

Inputs are built from the real Landsat 8 sample in ../shared/samples/landsat: three 128x128 tiles without
no-data, written as 4-band uint16 GeoTIFFs (R, G, B and a synthetic NIR) either as 12-bit data (0..4095) or
as reflectance x10000, an x4 area-downsampled LR, and bicubic / nearest SR upsampled from the LR.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ..conftest import SHARED
from ._cli import REPO, run

TILES = {"t0": (80, 40), "t1": (120, 280), "t2": (40, 320)}  # (y, x) of 128x128 tiles without no-data (255)
SIZE, SCALE = 128, 4
GAP_DB = 20 * math.log10(65535 / 4095)  # what scoring 12-bit data against 65535 adds to PSNR


def _shared() -> Path:
    if not (SHARED / "samples" / "landsat").is_dir():
        pytest.skip("../shared sample data not present")
    return SHARED / "samples"


def _write_geotiff(path: Path, arr: np.ndarray, pixel: float) -> None:
    import rasterio
    from affine import Affine

    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", height=arr.shape[1], width=arr.shape[2], count=arr.shape[0],
                       dtype="uint16", crs="EPSG:32613", transform=Affine(pixel, 0, 440000, 0, -pixel, 4460000),
                       compress="lzw") as dst:
        dst.write(arr.astype(np.uint16))


def build_dataset(root: Path, full_scale: float) -> dict[str, dict[str, np.ndarray]]:
    """gt/, lr/, sr/bicubic/, sr/nearest/ of 4-band uint16 GeoTIFFs; returns the arrays written."""
    import tifffile
    from scipy import ndimage

    land = _shared() / "landsat"
    rgb = tifffile.imread(land / "rmnp-rgb.tif")
    bands = [tifffile.imread(land / f"{c}.tif").astype(np.float64) for c in ("red", "green", "blue")]
    for i, b in enumerate(bands):  # the single-band files are the composite's bands
        assert b.shape == rgb.shape[:2] and np.array_equal(b, rgb[..., i])
    nir = np.clip(1.4 * bands[1] - 0.5 * bands[0] + 0.3 * bands[2] + 30, 0, 255)  # synthetic, vegetation-bright
    stack = np.stack(bands + [nir])
    written: dict[str, dict[str, np.ndarray]] = {}
    for key, (y, x) in TILES.items():
        gt = np.rint(stack[:, y:y + SIZE, x:x + SIZE] * full_scale / 255)
        n = SIZE // SCALE
        lr = np.rint(gt.reshape(4, n, SCALE, n, SCALE).mean(axis=(2, 4)))  # area (box) downsampling
        bic = np.clip(np.rint(np.stack([ndimage.zoom(b, SCALE, order=3, grid_mode=True, mode="nearest")
                                        for b in lr])), 0, full_scale)
        near = lr.repeat(SCALE, 1).repeat(SCALE, 2)
        arrays = {"gt": gt, "lr": lr, "sr/bicubic": bic, "sr/nearest": near}
        for name, arr in arrays.items():
            _write_geotiff(root / name / f"{key}.tif", arr, 30.0 * (SCALE if name == "lr" else 1))
        written[key] = {k: v.astype(np.uint16) for k, v in arrays.items()}
    return written


@pytest.fixture(scope="module")
def d12(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("landsat12")
    return root, build_dataset(root, 4095)


@pytest.fixture(scope="module")
def d10k(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("landsat10k")
    return root, build_dataset(root, 10000)


def psnr_ref(gt: np.ndarray, sr: np.ndarray, full_scale: float, bands=None) -> float:
    """PSNR from its definition in float64: 10 log10(1 / MSE) on values / full scale, over the bands used."""
    if bands is not None:
        gt, sr = gt[[b - 1 for b in bands]], sr[[b - 1 for b in bands]]
    mse = np.mean((gt.astype(np.float64) / full_scale - sr.astype(np.float64) / full_scale) ** 2)
    return 10 * math.log10(1.0 / mse)


def warning_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if "Warning: uint16 data reach at most" in ln]


def test_inputs_are_what_we_think(d12, d10k):
    root, arrays = d12
    import tifffile

    a = tifffile.imread(root / "gt" / "t0.tif")
    assert a.dtype == np.uint16 and a.shape in ((4, 128, 128), (128, 128, 4))
    assert max(int(v["gt"].max()) for v in arrays.values()) == 4095
    assert max(int(v["gt"].max()) for v in d10k[1].values()) == 10000
    assert tifffile.imread(root / "lr" / "t0.tif").shape in ((4, 32, 32), (32, 32, 4))


def test_default_range_warns_once_and_records_ranges(d12):
    root, arrays = d12
    p = run("srmetrics score gt sr/bicubic -m psnr,ssim -o out.csv", root)
    lines = warning_lines(p.stderr)
    assert len(lines) == 1, p.stderr
    assert "Warning: uint16 data reach at most 4095" in lines[0]
    assert "--data-range 4095" in lines[0]
    meta = json.loads((root / "out.csv.meta.json").read_text())
    s = meta["settings"]
    assert s["data_range"] == 65535 and s["data_range_requested"] is None
    assert s["inputs_range"]["gt"]["max_value"] == 4095
    assert s["inputs_range"]["gt"]["dtype"] == ["uint16"] and s["inputs_range"]["gt"]["data_range"] == [65535.0]
    assert s["inputs_range"]["sr"]["max_value"] == max(int(v["sr/bicubic"].max()) for v in arrays.values())
    df = pd.read_csv(root / "out.csv")
    for _, row in df.iterrows():  # the numbers are what 65535 as full scale gives (too high, hence the warning)
        assert row["psnr"] == pytest.approx(psnr_ref(arrays[row["key"]]["gt"], arrays[row["key"]]["sr/bicubic"],
                                                     65535), abs=1e-4)

    q = run("srmetrics score gt sr/bicubic -m psnr,ssim -o out-q.csv -q", root)
    assert len(warning_lines(q.stderr)) == 1, q.stderr  # -q keeps warnings
    assert q.stdout.strip() == ""


def test_range_warning_starts_its_own_line(d12):
    root, _ = d12
    p = run("srmetrics score gt sr/bicubic -m psnr -o out-line.csv", root)
    assert any(ln.startswith("Warning: uint16 data reach at most 4095") for ln in p.stderr.splitlines()), p.stderr


def test_data_range_4095_matches_definition(d12):
    root, arrays = d12
    p = run("srmetrics score gt sr/bicubic -m psnr,ssim -o right.csv --data-range 4095", root)
    assert "Warning" not in p.stderr, p.stderr
    run("srmetrics score gt sr/bicubic -m psnr,ssim -o wrong.csv -q", root)
    right, wrong = (pd.read_csv(root / f).set_index("key") for f in ("right.csv", "wrong.csv"))
    assert sorted(right.index) == sorted(TILES)
    for key in TILES:
        ref = psnr_ref(arrays[key]["gt"], arrays[key]["sr/bicubic"], 4095)
        assert right.loc[key, "psnr"] == pytest.approx(ref, abs=1e-4)
        assert wrong.loc[key, "psnr"] - right.loc[key, "psnr"] == pytest.approx(GAP_DB, abs=1e-3)
        assert abs(GAP_DB - 24.08) < 0.01
        # SSIM's constants depend on the range too: the default range hides the error (SSIM near 1)
        assert right.loc[key, "ssim"] < wrong.loc[key, "ssim"] <= 1
    meta = json.loads((root / "right.csv.meta.json").read_text())
    assert meta["settings"]["data_range"] == 4095 and meta["settings"]["data_range_requested"] == 4095
    assert meta["settings"]["inputs_range"]["gt"]["data_range"] == [4095.0]


def test_bands_and_summary(d12):
    root, arrays = d12
    run("srmetrics score gt sr/bicubic -m psnr,ssim --bands 3,2,1 --data-range 4095 -o bands.csv "
        "--summary summary.csv", root)
    df = pd.read_csv(root / "bands.csv").set_index("key")
    for key in TILES:
        ref = psnr_ref(arrays[key]["gt"], arrays[key]["sr/bicubic"], 4095, bands=[3, 2, 1])
        assert df.loc[key, "psnr"] == pytest.approx(ref, abs=1e-4)
        assert df.loc[key, "psnr"] != pytest.approx(psnr_ref(arrays[key]["gt"], arrays[key]["sr/bicubic"], 4095),
                                                    abs=1e-3)  # the NIR band really was left out
    meta = json.loads((root / "bands.csv.meta.json").read_text())
    assert meta["settings"]["bands"] == [3, 2, 1]
    summ = pd.read_csv(root / "summary.csv").set_index("metric")
    for metric in ("psnr", "ssim"):
        assert summ.loc[metric, "mean"] == pytest.approx(df[metric].mean(), abs=1e-9)
        assert summ.loc[metric, "count"] == 3
        lo, hi = summ.loc[metric, "ci95_low"], summ.loc[metric, "ci95_high"]
        assert lo <= summ.loc[metric, "mean"] <= hi
    assert -1 <= summ.loc["ssim", "ci95_low"] <= summ.loc["ssim", "ci95_high"] <= 1
    assert summ.loc["psnr", "ci95_low"] > 0


def test_reflectance_x10000(d10k):
    root, arrays = d10k
    p = run("srmetrics score gt sr/nearest -m psnr -o warn.csv", root)
    lines = warning_lines(p.stderr)
    assert len(lines) == 1 and "reach at most 10000" in lines[0] and "--data-range 10000" in lines[0], p.stderr
    p = run("srmetrics score gt sr/nearest -m psnr -o ok.csv --data-range 10000", root)
    assert "Warning" not in p.stderr
    df = pd.read_csv(root / "ok.csv").set_index("key")
    for key in TILES:
        assert df.loc[key, "psnr"] == pytest.approx(psnr_ref(arrays[key]["gt"], arrays[key]["sr/nearest"], 10000),
                                                    abs=1e-4)


def test_missing_lr_is_a_per_pair_error(d12):
    root, arrays = d12
    miss = root / "lr_missing_one"
    miss.mkdir(exist_ok=True)
    for key in ("t0", "t2"):
        shutil.copy(root / "lr" / f"{key}.tif", miss / f"{key}.tif")
    p = run("srmetrics score gt sr/bicubic --lr lr_missing_one -m psnr,lr-psnr -o x.csv --summary s.csv "
            "--data-range 4095", root, expect_rc=1)
    assert "t1" in p.stderr and "1 of 3 pairs failed" in p.stderr
    df = pd.read_csv(root / "x.csv").set_index("key")
    assert df["psnr"].notna().all()
    assert df["lr-psnr"].isna().tolist() == [k == "t1" for k in df.index]
    assert "lr-psnr" in str(df.loc["t1", "error"]) and pd.isna(df.loc["t0", "error"])
    summ = pd.read_csv(root / "s.csv").set_index("metric")
    assert summ.loc["psnr", "count"] == 3 and summ.loc["lr-psnr", "count"] == 2
    assert summ.loc["lr-psnr", "mean"] == pytest.approx(df.loc[["t0", "t2"], "lr-psnr"].mean(), abs=1e-9)
    assert summ.loc["psnr", "mean"] == pytest.approx(df["psnr"].mean(), abs=1e-9)


def test_no_hr_counts_lr_metrics(d12):
    root, _ = d12
    p = run("srmetrics score --lr lr sr/bicubic -m lr-psnr,psnr --data-range 4095 --summary s-nohr.csv", root,
            expect_rc=1)
    assert "3 of 3 pairs failed" in p.stderr
    summ = pd.read_csv(root / "s-nohr.csv").set_index("metric")
    assert summ.loc["lr-psnr", "count"] == 3 and summ.loc["psnr", "count"] == 0
    assert 20 < summ.loc["lr-psnr", "mean"] < 60

    extra = root / "sr-extra"
    shutil.copytree(root / "sr" / "bicubic", extra, dirs_exist_ok=True)
    shutil.copy(root / "sr" / "bicubic" / "t0.tif", extra / "extra.tif")
    p = run("srmetrics score --lr lr sr-extra -m lr-psnr --data-range 4095 --summary s-extra.csv -q", root)
    warn = [ln for ln in p.stderr.splitlines() if "extra" in ln]
    assert warn and "without LR" in warn[0] and "without GT" not in p.stderr, p.stderr
    assert pd.read_csv(root / "s-extra.csv").set_index("metric").loc["lr-psnr", "count"] == 3


# --- montage ------------------------------------------------------------------------------------------------

def _runs(mask) -> list[tuple[int, int]]:
    out, start = [], None
    for i, v in enumerate(list(mask) + [False]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            out.append((start, i))
            start = None
    return out


def gt_tiles(png: Path) -> tuple[np.ndarray, list[np.ndarray]]:
    """The figure as RGB and the crops of the GT column's tiles (first column of large non-white squares)."""
    from PIL import Image

    a = np.asarray(Image.open(png).convert("RGB")).astype(np.float64)
    nonwhite = a.min(-1) < 235
    cols = [r for r in _runs(nonwhite.mean(0) > 0.3) if r[1] - r[0] > 40]
    assert len(cols) == 4, cols  # GT | LR | bicubic | nearest
    c0, c1 = cols[0]
    w = c1 - c0
    rows = [r for r in _runs(nonwhite[:, c0:c1].mean(1) > 0.5) if r[1] - r[0] > 40]
    assert len(rows) == 3 and all(abs((r1 - r0) - w) <= 4 for r0, r1 in rows), (rows, w)  # 3 square tiles
    m = 4  # skip the frame
    return a, [a[r0 + m:r1 - m, c0 + m:c1 - m] for r0, r1 in rows]


def lum(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114])


def test_montage_stretch_makes_12bit_visible(d12):
    from clipscore_sr import io
    from clipscore_sr.display import stretch_limits, to_display

    root, _ = d12
    p = run("srmetrics montage gt sr/bicubic sr/nearest --lr lr --bands 1,2,3 --data-range 4095 "
            "-m psnr,ssim,lr-psnr,sam -o m.png", root)
    assert "Warning" not in p.stderr, p.stderr
    best = next(ln for ln in p.stdout.splitlines() if ln.startswith("best method per metric"))
    assert "psnr bicubic" in best and "sam bicubic" in best
    img, tiles = gt_tiles(root / "m.png")
    nonwhite = img.min(-1) < 235
    assert nonwhite.mean() > 0.3 and np.median(lum(img[nonwhite])) > 40
    # each GT tile looks like the GT percentile stretch of the file, as display.to_display renders it
    for key, crop in zip(sorted(TILES), tiles):
        ref = io.read_image(root / "gt" / f"{key}.tif", bands=[1, 2, 3], data_range=4095)
        lo, hi = stretch_limits(ref.data, dtype=ref.dtype)
        shown = to_display(ref.data, lo, hi).astype(np.float64)
        assert shown.mean() > 60
        assert lum(crop).mean() == pytest.approx(lum(shown).mean(), abs=12)

    # without --data-range the auto stretch still shows the 12-bit data (one warning about the range) ...
    p = run("srmetrics montage gt sr/bicubic sr/nearest --lr lr --bands 1,2,3 -m psnr -o m-auto.png -q", root)
    assert len(warning_lines(p.stderr)) == 1
    _, auto = gt_tiles(root / "m-auto.png")
    # ... while no stretch on the default 65535 range (the old rendering) is nearly black
    run("srmetrics montage gt sr/bicubic sr/nearest --lr lr --bands 1,2,3 -m psnr --stretch none -o m-none.png -q",
        root)
    _, dark = gt_tiles(root / "m-none.png")
    for a, b, c in zip(tiles, auto, dark):
        assert lum(c).mean() < 20 < 60 < lum(b).mean()
        assert lum(a).mean() == pytest.approx(lum(b).mean(), abs=3)  # same stretch, from the GT, either way


# --- the real WorldStrat sample -----------------------------------------------------------------------------

def test_worldstrat_lr_consistency_matches_readme(tmp_path):
    ws = _shared() / "worldstrat"
    if not (ws / "L1.png").is_file():
        pytest.skip("worldstrat sample not present")
    from PIL import Image

    assert Image.open(ws / "SR.png").size == (800, 800) and Image.open(ws / "L1.png").size == (400, 400)
    (tmp_path / "lr").mkdir()
    (tmp_path / "sr").mkdir()
    shutil.copy(ws / "L1.png", tmp_path / "lr" / "scene.png")
    shutil.copy(ws / "SR.png", tmp_path / "sr" / "scene.png")
    run("srmetrics score --lr lr sr -m lr-psnr,lr-sam,lr-shift -o ws.csv --summary ws-summary.csv", tmp_path)
    row = pd.read_csv(tmp_path / "ws.csv").iloc[0]
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    m = re.search(r"`lr-psnr`\s+([\d.]+)\s+dB,\s+`lr-sam`\s+([\d.]+)°,\s+`lr-shift`\s+([\d.]+)\s+LR\s+px\s+"
                  r"\(dy\s+([−-][\d.]+),\s+dx\s+([−-][\d.]+)\)", readme)
    assert m, "README no longer states the WorldStrat lr-* numbers"
    claimed = [float(g.replace("−", "-")) for g in m.groups()]
    assert claimed[:3] == [15.95, 17.91, 0.71]
    for col, want in zip(("lr-psnr", "lr-sam", "lr-shift", "lr-shift-dy", "lr-shift-dx"), claimed):
        assert row[col] == pytest.approx(want, abs=0.01), col
    summ = pd.read_csv(tmp_path / "ws-summary.csv").set_index("metric")
    assert summ.loc["lr-psnr", "count"] == 1
