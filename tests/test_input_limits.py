"""Input limits (issue 10 items 5 and 9): one pixel cap, read from headers, for every image reader; judgement
image paths confined to their root."""

from __future__ import annotations

import csv
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner

from clipscore_sr import io
from clipscore_sr.cli import main
from clipscore_sr.errors import ImageReadError
from clipscore_sr.human.amt import AmtMapping, import_amt
from clipscore_sr.human.judgements import validate_judgements

from .conftest import save_png


def bomb_png(path: Path, width: int, height: int, bit_depth: int = 16, colour: int = 2, rows: int = 1) -> Path:
    """A PNG whose IHDR claims ``width x height`` but whose IDAT holds only ``rows`` rows of zeros: what a
    decoder would allocate is set by the header, which is all the cap may look at."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\0" * (1 + width * {0: 1, 2: 3, 4: 2, 6: 4}[colour] * bit_depth // 8)
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(row * rows, 9))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_png_bomb_is_refused_from_its_header_before_decoding(tmp_path, monkeypatch, bit_depth) -> None:
    import imagecodecs
    from PIL import Image

    f = bomb_png(tmp_path / "bomb.png", 60_000, 60_000, bit_depth)
    assert f.stat().st_size < 2_000
    monkeypatch.setattr(imagecodecs, "png_decode", lambda *a: pytest.fail("decoded"))
    monkeypatch.setattr(Image.Image, "load", lambda *a: pytest.fail("decoded"))
    with pytest.raises(ImageReadError, match=r"60000x60000 = 3,600,000,000 pixels exceeds the cap of 89,478,485"):
        io.read_image(f)
    assert io.image_header_shape(f) == (60_000, 60_000, 3, 1)


def test_one_configurable_cap_for_every_reader(tmp_path, monkeypatch) -> None:
    img = np.zeros((40, 50, 3), np.uint8)
    files = [save_png(tmp_path / "a.png", img), tmp_path / "b.jpg", tmp_path / "c.tif", tmp_path / "d.png",
             tmp_path / "e.bmp", tmp_path / "f.tif"]
    from PIL import Image

    Image.fromarray(img).save(files[1])
    tifffile.imwrite(files[2], np.zeros((40, 50), np.float32))
    io.write_image(files[3], np.zeros((3, 40, 50)), dtype="uint16")
    Image.fromarray(img).save(files[4])
    tifffile.imwrite(files[5], np.zeros((4, 40, 50), np.uint16), photometric="minisblack", planarconfig="separate")
    for f in files:
        assert io.read_image(f).data.shape[1:] == (40, 50)
        assert io.image_header_shape(f)[:2] == (40, 50)
    monkeypatch.setenv("CLIPSCORE_SR_MAX_PIXELS", "1999")  # 40 x 50 = 2000 pixels
    for f in files:
        with pytest.raises(ImageReadError, match="2,000 pixels exceeds the cap of 1,999"):
            io.read_image(f)
    monkeypatch.setenv("CLIPSCORE_SR_MAX_PIXELS", "0")  # no cap
    assert io.max_pixels() is None and io.read_image(files[0]).data.shape == (3, 40, 50)
    monkeypatch.setenv("CLIPSCORE_SR_MAX_PIXELS", "lots")
    with pytest.raises(ImageReadError, match="CLIPSCORE_SR_MAX_PIXELS='lots'"):
        io.read_image(files[0])


def test_multi_page_tiff_counts_every_plane(tmp_path, monkeypatch) -> None:
    f = tmp_path / "vol.tif"
    tifffile.imwrite(f, np.zeros((5, 20, 30), np.uint8), photometric="minisblack", metadata={"axes": "ZYX"})
    h, w, _, planes = io.image_header_shape(f)
    assert (h, w, planes) == (20, 30, 5)
    monkeypatch.setenv("CLIPSCORE_SR_MAX_PIXELS", str(20 * 30 * 4))
    with pytest.raises(ImageReadError, match="x5 planes"):
        io.read_image(f)


def test_header_shapes_match_decoded_shapes(tmp_path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    cases = {"rgba.png": (rng.integers(0, 256, (9, 7, 4), dtype=np.uint8), 3),
             "la.png": (rng.integers(0, 256, (9, 7, 2), dtype=np.uint8), 1),
             "gray.png": (rng.integers(0, 256, (9, 7), dtype=np.uint8), 1)}
    for name, (arr, bands) in cases.items():
        Image.fromarray(arr).save(tmp_path / name)
        assert io.image_header_shape(tmp_path / name) == (9, 7, bands, 1)
        assert io.read_image(tmp_path / name).data.shape == (bands, 9, 7)
    pal = Image.fromarray(cases["gray.png"][0]).convert("P")
    pal.save(tmp_path / "pal.png")
    assert io.image_header_shape(tmp_path / "pal.png")[2] == io.read_image(tmp_path / "pal.png").data.shape[0] == 3
    tifffile.imwrite(tmp_path / "rgba.tif", cases["rgba.png"][0])
    assert io.image_header_shape(tmp_path / "rgba.tif")[2] == io.read_image(tmp_path / "rgba.tif").data.shape[0]


# --- judgements ---------------------------------------------------------------------------------------------

HEADER = ["pair_id", "dataset", "gt", "a", "b", "choice"]


def _study(tmp_path: Path, rows: list[list[str]], name: str = "j.csv") -> Path:
    img = tmp_path / "study" / "images"
    for stem in ("gt", "a", "b"):
        save_png(img / f"{stem}.png", np.full((8, 8, 3), ord(stem[0]), np.uint8))
    path = tmp_path / "study" / name
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([HEADER, *rows])
    return path


def test_validate_reads_shapes_from_headers(tmp_path, monkeypatch) -> None:
    path = _study(tmp_path, [["p1", "d", "images/gt.png", "images/a.png", "images/bomb.png", "a"]])
    bomb_png(path.parent / "images" / "bomb.png", 60_000, 60_000)
    monkeypatch.setattr(io, "read_array", lambda *a, **k: pytest.fail("validate decoded an image"))
    report = validate_judgements(path)
    assert [p.column for p in report.problems] == ["b"]
    assert "unreadable image" in report.problems[0].message and "exceeds the cap" in report.problems[0].message


@pytest.mark.parametrize("value", ["../secret.png", "images/../../secret.png", "ABS", "~/secret.png", "LINK"])
def test_judgement_paths_must_stay_inside_the_root(tmp_path, monkeypatch, value) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    secret = save_png(tmp_path / "secret.png", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "study" / "images").mkdir(parents=True)
    os.symlink(secret, tmp_path / "study" / "images" / "link.png")
    value = {"ABS": str(secret), "LINK": "images/link.png"}.get(value, value)
    path = _study(tmp_path, [["p1", "d", "images/gt.png", "images/a.png", value, "a"]])
    report = validate_judgements(path)
    assert not report.ok and [p.column for p in report.problems] == ["b"]
    msg = report.problems[0].message
    assert "leaves the root" in msg and "--allow-outside-root" in msg
    # an existing and a missing file outside the root get the same answer: nothing leaks
    missing = validate_judgements(_study(tmp_path, [["p1", "d", "images/gt.png", "images/a.png",
                                                     value.replace("secret", "nothere"), "a"]], "m.csv"))
    if value != "images/link.png":
        assert missing.problems[0].message == msg.replace("secret", "nothere")
    assert validate_judgements(path, allow_outside_root=True).ok


def test_cli_allow_outside_root_and_amt_percent_encoded_dots(tmp_path) -> None:
    path = _study(tmp_path, [["p1", "d", "images/gt.png", "images/a.png", "../outside.png", "a"]])
    save_png(tmp_path / "outside.png", np.zeros((8, 8, 3), np.uint8))
    res = CliRunner().invoke(main, ["judgements", "validate", str(path)])
    assert res.exit_code == 1 and "leaves the root" in res.output
    res = CliRunner().invoke(main, ["judgements", "validate", str(path), "--allow-outside-root"])
    assert res.exit_code == 0, res.output
    batch = tmp_path / "study" / "batch.csv"
    with open(batch, "w", newline="") as fh:
        csv.writer(fh).writerows([
            ["HITId", "WorkerId", "AssignmentStatus", "Input.gt", "Input.a", "Input.b", "Answer.c"],
            ["h1", "w1", "Approved", "https://x/s/gt.png", "https://x/s/a.png", "https://x/s/%2e%2e/%2e%2e/outside.png",
             "a"]])
    result = import_amt([batch], AmtMapping.from_options(
        ["gt=Input.gt", "a=Input.a", "b=Input.b", "choice=Answer.c"], prefixes=["https://x/s/=images/"]))
    assert result.judgements["b"].iat[0] == "images/../../outside.png"  # decoded after the prefix
    res = CliRunner().invoke(main, ["judgements", "import-amt", str(batch), "--map", "gt=Input.gt", "--map",
                                    "a=Input.a", "--map", "b=Input.b", "--map", "choice=Answer.c", "--prefix",
                                    "https://x/s/=images/", "-o", str(tmp_path / "study" / "out.csv")])
    assert res.exit_code == 1 and "leaves the root" in res.output


# --- data range (item 7) ----------------------------------------------------------------------------------


def _float_pair(tmp_path: Path, scale: float) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    gt = (rng.random((32, 32)) * scale).astype(np.float32)
    for d, arr in (("gt", gt), ("sr", gt * 0.98)):
        (tmp_path / d).mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(tmp_path / d / "x.tif", arr)
    return tmp_path / "gt", tmp_path / "sr"


@pytest.mark.parametrize("value", ["inf", "nan", "0", "-1", "1e-30", "1e300"])
def test_absurd_data_range_is_refused_before_work(tmp_path, value) -> None:
    gt, sr = _float_pair(tmp_path, 1.0)
    res = CliRunner().invoke(main, ["score", str(gt), str(sr), "-m", "psnr,ssim", "--data-range", value, "-q",
                                    "--out", str(tmp_path / "r.csv")])
    assert res.exit_code == 2 and "--data-range" in res.output and "must be a finite number" in res.output
    assert not (tmp_path / "r.csv").exists()


def test_values_outside_the_data_range_are_flagged_per_pair(tmp_path) -> None:
    from clipscore_sr.pipeline import score_folders

    gt, sr = _float_pair(tmp_path, 1000.0)  # float TIFF with 0..1000 but the default range 1.0
    df = score_folders(gt, sr, ["ssim"], progress=False, device="cpu", workers=0)
    assert np.isnan(df["ssim"][0]) and "outside [0, 1] (the data range" in df["error"][0]
    ok = score_folders(gt, sr, ["ssim"], data_range=1000, progress=False, device="cpu", workers=0)
    assert ok["error"][0] == "" and 0.9 < ok["ssim"][0] < 1
    small, _ = _float_pair(tmp_path / "t", 1.0005)  # within the 0.1% tolerance
    assert score_folders(small, small, ["psnr"], progress=False, device="cpu", workers=0)["error"][0] == ""
