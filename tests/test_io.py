"""Image IO: every format, dtype and layout; data ranges; bands; S2 strips; pairing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from clipscore_sr import io
from clipscore_sr.errors import ImageReadError, PairingError


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tif"])
@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_pil_formats_uint8(tmp_path: Path, ext: str, mode: str) -> None:
    rng = np.random.default_rng(0)
    shape = (20, 30, 3) if mode == "RGB" else (20, 30)
    arr = rng.integers(0, 256, shape, dtype=np.uint8)
    path = tmp_path / f"x{ext}"
    Image.fromarray(arr).save(path, quality=100) if ext == ".jpg" else Image.fromarray(arr).save(path)
    img = io.read_image(path)
    assert img.data_range == 255.0
    assert img.data.dtype == np.float32
    assert img.data.shape == ((3 if mode == "RGB" else 1), 20, 30)
    if ext != ".jpg":  # lossless formats round-trip exactly
        expect = arr if arr.ndim == 3 else arr[..., None]
        np.testing.assert_array_equal(np.rint(img.data * 255).astype(np.uint8), np.moveaxis(expect, -1, 0))


def test_rgba_drops_alpha(tmp_path: Path) -> None:
    arr = np.random.default_rng(1).integers(0, 256, (8, 9, 4), dtype=np.uint8)
    Image.fromarray(arr, mode="RGBA").save(tmp_path / "a.png")
    img = io.read_image(tmp_path / "a.png")
    assert img.data.shape == (3, 8, 9)
    np.testing.assert_allclose(img.data, np.moveaxis(arr[..., :3], -1, 0) / 255.0, atol=1e-7)


def test_uint16_png_and_custom_range(tmp_path: Path) -> None:
    arr = np.random.default_rng(2).integers(0, 4096, (10, 12), dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "a.png")
    img = io.read_image(tmp_path / "a.png")
    assert img.data_range == 65535.0
    np.testing.assert_allclose(img.data[0], arr / 65535.0, rtol=1e-6)
    img12 = io.read_image(tmp_path / "a.png", data_range=4095)
    np.testing.assert_allclose(img12.data[0], arr / 4095.0, rtol=1e-6)


@pytest.mark.parametrize("compression", ["lzw", "zlib", None])
@pytest.mark.parametrize("planar", ["contig", "separate"])
def test_tiff_multiband_uint16(tmp_path: Path, compression, planar) -> None:
    rng = np.random.default_rng(3)
    bands = rng.integers(0, 65535, (5, 16, 18), dtype=np.uint16)
    path = tmp_path / "m.tif"
    data = bands if planar == "separate" else np.moveaxis(bands, 0, -1)
    tifffile.imwrite(path, data, compression=compression, planarconfig=planar, photometric="minisblack")
    img = io.read_image(path)
    assert img.data.shape == (5, 16, 18)
    np.testing.assert_allclose(img.data, bands / 65535.0, rtol=1e-6)
    sel = io.read_image(path, bands=io.parse_bands("3,2,1"))
    np.testing.assert_allclose(sel.data, bands[[2, 1, 0]] / 65535.0, rtol=1e-6)


def test_float_tiff_reflectance(tmp_path: Path) -> None:
    arr = np.random.default_rng(4).random((3, 7, 7)).astype(np.float32)
    tifffile.imwrite(tmp_path / "f.tif", arr, photometric="minisblack", planarconfig="separate")
    img = io.read_image(tmp_path / "f.tif")
    assert img.data_range == 1.0
    np.testing.assert_allclose(img.data, arr)


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="file not found"):
        io.read_image(tmp_path / "missing.png")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(ImageReadError, match="junk.png: cannot decode"):
        io.read_image(tmp_path / "junk.png")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "ok.png")
    with pytest.raises(ImageReadError, match="asks for band 4"):
        io.read_image(tmp_path / "ok.png", bands=(4,))
    with pytest.raises(ImageReadError, match="1-based"):
        io.parse_bands("0,1")
    tifffile.imwrite(tmp_path / "i32.tif", np.zeros((4, 4), np.int32))
    with pytest.raises(ImageReadError, match="no default data range"):
        io.read_image(tmp_path / "i32.tif")


def test_landsat_lzw_geotiffs(shared_dir: Path) -> None:
    landsat = shared_dir / "samples" / "landsat"
    rgb = io.read_image(landsat / "rmnp-rgb.tif")
    assert rgb.data.shape[0] == 3 and rgb.data.shape[1] > 100
    red = io.read_image(landsat / "red.tif")
    assert red.data.shape == (1, *rgb.data.shape[1:])
    assert 0.0 <= rgb.data.min() and rgb.data.max() <= 1.0 and rgb.data.std() > 0
    # the RGB composite's first band is the red band
    np.testing.assert_allclose(rgb.data[0], red.data[0], atol=1e-6)


def test_worldstrat_png(shared_dir: Path) -> None:
    hr = io.read_image(shared_dir / "samples" / "worldstrat" / "HR.png")
    assert hr.data.shape[0] == 3 and hr.data_range == 255.0


def test_s2_strip_decoding_splits_height_only() -> None:
    t, c = 4, 3
    frames = np.arange(t * c * 32 * 32, dtype=np.int64).reshape(t, 32, 32, c)
    strip = frames.reshape(t * 32, 32, c)  # vertical stack of T frames, HWC
    out = io.decode_s2_strip(strip)
    assert out.shape == (t, c, 32, 32)
    for i in range(t):
        np.testing.assert_array_equal(out[i], np.moveaxis(frames[i], -1, 0))
        np.testing.assert_array_equal(out[i, 1], strip[i * 32:(i + 1) * 32, :, 1])
    out_t = io.decode_s2_strip(torch.from_numpy(strip))
    assert torch.equal(out_t, torch.from_numpy(out))
    with pytest.raises(ImageReadError, match="not T frames"):
        io.decode_s2_strip(np.zeros((50, 32, 3)))


def test_pairing_by_relative_path_without_extension(tmp_path: Path) -> None:
    gt, sr = tmp_path / "gt", tmp_path / "out"
    img = Image.fromarray(np.zeros((4, 4, 3), np.uint8))
    for p in [gt / "a" / "x.png", gt / "y.png", gt / "only_gt.png"]:
        p.parent.mkdir(parents=True, exist_ok=True)
        img.save(p)
    for p in [sr / "a" / "x.tif", sr / "y.png", sr / "only_sr.png"]:
        p.parent.mkdir(parents=True, exist_ok=True)
        img.save(p)
    pairing = io.pair_folders(gt, sr)
    assert [p.key for p in pairing.pairs] == ["a/x", "y"]
    assert pairing.pairs[0].sr.endswith("x.tif")
    assert pairing.unmatched_gt == ["only_gt"] and pairing.unmatched_sr == ["only_sr"]
    assert "1 GT file(s) without SR" in pairing.warning()
    with pytest.raises(PairingError, match="--strict"):
        io.pair_folders(gt, sr, strict=True)


def test_pairing_errors(tmp_path: Path) -> None:
    gt, sr = tmp_path / "gt", tmp_path / "sr"
    gt.mkdir()
    sr.mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(gt / "a.png")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(sr / "b.png")
    with pytest.raises(PairingError, match="no GT/SR pairs"):
        io.pair_folders(gt, sr)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(gt / "a.bmp")
    with pytest.raises(PairingError, match="share the key 'a'"):
        io.pair_folders(gt, sr)


def test_pairs_csv(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "g.png")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "s.png")
    (tmp_path / "pairs.csv").write_text("gt,sr\ng.png,s.png\n")
    pairing = io.read_pairs_csv(tmp_path / "pairs.csv")
    assert pairing.pairs[0].gt == str(tmp_path / "g.png")
    (tmp_path / "bad.csv").write_text("gt,sr\ng.png,nope.png\n")
    with pytest.raises(PairingError, match=r"bad.csv:2: sr file not found"):
        io.read_pairs_csv(tmp_path / "bad.csv")
    (tmp_path / "cols.csv").write_text("a,b\n1,2\n")
    with pytest.raises(PairingError, match="needs columns 'gt' and 'sr'"):
        io.read_pairs_csv(tmp_path / "cols.csv")


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_16bit_png_keeps_full_precision(tmp_path: Path, channels: int) -> None:
    """Pillow reads 16-bit RGB PNGs as 8-bit; ours must not lose the low byte."""
    rng = np.random.default_rng(5)
    chw = rng.integers(0, 65536, (channels, 9, 11)).astype(np.float64) / 65535.0
    io.write_image(tmp_path / "a.png", chw, dtype="uint16")
    img = io.read_image(tmp_path / "a.png")
    assert img.data_range == 65535.0
    expect = chw[:3] if channels == 4 else chw  # alpha dropped
    np.testing.assert_allclose(img.data, expect, atol=1e-6)
    assert np.any(np.rint(img.data * 65535) % 256 != 0)
