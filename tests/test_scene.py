"""`srmetrics scene`: grids, tiles and shards as values; the real Landsat sample streamed tile by tile (maps on
the LR grid, tile metrics equal to `score --lr` on the same windows); shards + merge and kill -9 + resume give
the single-process table; bad inputs are one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from clipscore_sr.cli import main
from clipscore_sr.errors import ConfigError, InputMismatchError
from clipscore_sr.scene import grid as G

from .scene_support import bicubic_sr, nearest_sr, read_landsat, write_sr

rasterio = pytest.importorskip("rasterio")
REPO = Path(__file__).resolve().parents[1]


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


# ------------------------------------------------------------------------------------------------ plain values
def test_grid_refinement_and_errors() -> None:
    lr = G.Grid(100, 80, "EPSG:32633", (10.0, 0.0, 500000.0, 0.0, -10.0, 4000000.0))
    sr = G.Grid(400, 320, "EPSG:32633", (2.5, 0.0, 500000.0, 0.0, -2.5, 4000000.0))
    assert G.check_refinement(lr, sr) == 4
    bad = {
        "misaligned": G.Grid(400, 320, "EPSG:32633", (2.5, 0.0, 500001.25, 0.0, -2.5, 4000000.0)),
        "crs": G.Grid(400, 320, "EPSG:32634", sr.transform),
        "fraction": G.Grid(401, 320, "EPSG:32633", sr.transform),
        "pixel": G.Grid(400, 320, "EPSG:32633", (2.0, 0.0, 500000.0, 0.0, -2.5, 4000000.0)),
    }
    for why, g in bad.items():
        with pytest.raises(InputMismatchError) as e:
            G.check_refinement(lr, g, "LR a.tif", "SR b.tif")
        msg = str(e.value)
        assert "\n" not in msg and "a.tif" in msg and "b.tif" in msg and "100x80" in msg, (why, msg)
    plain = G.Grid(400, 320, None, (1, 0, 0, 0, 1, 0), georeferenced=False)
    assert G.check_refinement(lr, plain) == 4  # sizes only (the caller warns)


def test_tiles_and_shards_partition() -> None:
    tiles = G.plan_tiles([("a", 70, 50), ("b", 10, 33)], 16)
    assert len(tiles) == 5 * 4 + 1 * 3 and [t.gindex for t in tiles] == list(range(len(tiles)))
    assert sum(t.height * t.width for t in tiles if t.scene == "a") == 70 * 50
    parts = [G.shard_tiles(tiles, i, 3) for i in range(3)]
    assert sorted(t.gindex for p in parts for t in p) == list(range(len(tiles)))
    assert G.parse_shard("1/3") == (1, 3)
    for bad in ("3/3", "a/2", "1", "-1/2"):
        with pytest.raises(ConfigError):
            G.parse_shard(bad)


# ------------------------------------------------------------------------------------------------ real data
@pytest.fixture
def landsat(shared_dir: Path, tmp_path: Path):
    lr, prof = read_landsat(shared_dir)
    lr_path = shared_dir / "samples" / "landsat" / "rmnp-rgb.tif"
    return lr_path, lr, prof, tmp_path


def test_maps_on_lr_grid_and_tiles_equal_score_lr(landsat) -> None:
    import tifffile

    lr_path, lr, prof, tmp = landsat
    sr_path = write_sr(tmp / "sr_nearest.tif", nearest_sr(lr, 2), prof, 2)
    out = tmp / "eval"
    r = run("scene", lr_path, sr_path, "-o", out, "--tile", 48, "-q")
    assert r.exit_code == 0, r.output
    df = pd.read_parquet(out / "tiles.parquet")
    assert len(df) == 8 * 11 and df.equals(df.sort_values("key").reset_index(drop=True))
    csv = pd.read_csv(out / "tiles.csv")
    assert list(csv.columns) == list(df.columns) and "seam-step" in df and "nodata-new-frac" in df
    with rasterio.open(out / "maps" / "sr_nearest.tif") as m, rasterio.open(lr_path) as src:
        assert m.crs == src.crs and m.transform == src.transform and (m.width, m.height) == (src.width, src.height)
        assert m.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        band = list(m.descriptions).index("lr-psnr") + 1
        t = df.iloc[13]
        v = m.read(band, window=((int(t.row_off), int(t.row_off + t.height)), (int(t.col_off), int(t.col_off + t.width))))
        assert v.shape == (48, 48) and (v == np.float32(t["lr-psnr"])).all()  # every pixel of the tile, no other
        assert m.read(band, window=((int(t.row_off), int(t.row_off) + 1), (int(t.col_off) - 1, int(t.col_off))))[0, 0] \
            == np.float32(df.iloc[12]["lr-psnr"])
        assert m.nodata != m.nodata  # NaN = no value
    x0, y0 = prof["transform"] * (int(df.iloc[13].col_off), int(df.iloc[13].row_off))
    assert df.iloc[13].x_min == pytest.approx(x0) and df.iloc[13].y_max == pytest.approx(y0)
    assert (out / "quicklook" / "sr_nearest.png").stat().st_size > 1000
    # the same windows written as files, scored by `score --lr`
    full = df[df["valid_frac"] == 1.0].head(4)
    assert len(full) == 4
    (tmp / "lrw").mkdir()
    (tmp / "srw").mkdir()
    up = nearest_sr(lr, 2)
    for t in full.itertuples():
        r0, c0, h, w = int(t.row_off), int(t.col_off), int(t.height), int(t.width)
        tifffile.imwrite(tmp / "lrw" / f"{t.tile}.tif", np.moveaxis(lr[:, r0:r0 + h, c0:c0 + w], 0, -1))
        tifffile.imwrite(tmp / "srw" / f"{t.tile}.tif",
                         np.moveaxis(up[:, 2 * r0:2 * (r0 + h), 2 * c0:2 * (c0 + w)], 0, -1))
    r = run("score", "--lr", tmp / "lrw", tmp / "srw", "-m", "lr-l1,lr-psnr,lr-sam,lr-shift", "-o", tmp / "s.csv", "-q")
    assert r.exit_code == 0, r.output
    ref = pd.read_csv(tmp / "s.csv", dtype={"key": str}).set_index("key")
    mine = full.set_index("tile")
    for tile in mine.index:
        for col in ("lr-l1", "lr-psnr", "lr-sam", "lr-shift", "lr-shift-dy", "lr-shift-dx"):
            a, b = mine.loc[tile, col], ref.loc[str(tile), col]
            assert a == pytest.approx(b, rel=1e-6, abs=1e-9), (tile, col, a, b)


def _frames_equal(a: Path, b: Path) -> None:
    da, db = pd.read_parquet(a / "tiles.parquet"), pd.read_parquet(b / "tiles.parquet")
    pd.testing.assert_frame_equal(da, db, check_dtype=False, check_exact=True)
    sa, sb = (json.loads((p / "summary.json").read_text())["scenes"] for p in (a, b))
    assert sa == sb


def test_shards_merge_exactly_and_several_scenes(landsat) -> None:
    lr_path, lr, prof, tmp = landsat
    write_sr(tmp / "sr" / "rmnp-rgb.tif", bicubic_sr(lr, 2), prof, 2)
    (tmp / "lr").mkdir()
    os.symlink(lr_path, tmp / "lr" / "rmnp-rgb.tif")
    lr_g = tmp / "lr" / "green.tif"
    os.symlink(lr_path.with_name("green.tif"), lr_g)
    g, gprof = read_landsat(lr_path.parents[2], "green.tif")
    write_sr(tmp / "sr" / "green.tif", nearest_sr(g, 2), gprof, 2)
    args = [tmp / "lr", tmp / "sr", "--tile", 64, "--bands", 1, "-q"]
    assert run("scene", *args, "-o", tmp / "one").exit_code == 0
    for i in range(3):
        r = run("scene", *args, "-o", tmp / "sharded", "--shard", f"{i}/3")
        assert r.exit_code == 0, r.output
        assert not (tmp / "sharded" / "tiles.parquet").exists()
    r = run("scene-merge", tmp / "sharded", "-q")
    assert r.exit_code == 0, r.output
    _frames_equal(tmp / "one", tmp / "sharded")
    df = pd.read_parquet(tmp / "one" / "tiles.parquet")
    assert set(df["scene"]) == {"rmnp-rgb", "green"}
    # the scene aggregate is the ratio of sums, not a mean of tile means
    s = json.loads((tmp / "one" / "summary.json").read_text())["scenes"]["rmnp-rgb"]["aggregate"]
    part = df[df["scene"] == "rmnp-rgb"]
    assert s["lr-l1"] == pytest.approx(part["sum-abs"].sum() / part["n-lr"].sum(), rel=1e-12)
    assert s["lr-l1"] != pytest.approx(part["lr-l1"].mean(), rel=1e-6)
    # a missing shard is a one-line error
    os.unlink(tmp / "sharded" / "shards" / "meta.1-of-3.json")
    r = run("scene-merge", tmp / "sharded")
    assert r.exit_code == 2 and "1/3 not run yet" in r.output


def test_torchrun_ranks_shard_and_rank0_merges_the_same_table(landsat) -> None:
    """`torchrun --nproc-per-node 2 -m clipscore_sr scene ...` (gloo on the CPU): each rank runs shard r/2 and
    rank 0 merges; the table and summary are bit for bit those of one process."""
    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not installed")
    lr_path, lr, prof, tmp = landsat
    sr = write_sr(tmp / "sr.tif", bicubic_sr(lr, 2), prof, 2)
    args = ["scene", str(lr_path), str(sr), "--tile", "48", "-q"]
    assert run(*args, "-o", tmp / "one").exit_code == 0
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "clipscore_sr", *args, "-o",
                        str(tmp / "ranks")], env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    shards = [pd.read_parquet(tmp / "ranks" / "shards" / f"tiles.{i}-of-2.parquet") for i in range(2)]
    assert [len(d) for d in shards] == [44, 44] and not set(shards[0]["key"]) & set(shards[1]["key"])
    _frames_equal(tmp / "one", tmp / "ranks")


def test_kill9_then_resume_gives_the_same_table(landsat) -> None:
    lr_path, lr, prof, tmp = landsat
    sr = write_sr(tmp / "sr.tif", bicubic_sr(lr, 2), prof, 2)
    args = ["scene", str(lr_path), str(sr), "--tile", "24", "-q"]
    assert run(*args, "-o", tmp / "ref").exit_code == 0
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "clipscore_sr", *args, "-o", str(tmp / "killed")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = tmp / "killed" / "shards" / "tiles.0-of-1.parquet.journal.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if journal.exists() and journal.read_text().count("\n") > 30:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = journal.read_text().count("\n")
    assert not (tmp / "killed" / "tiles.parquet").exists() and done < 16 * 21
    r = run(*args, "-o", tmp / "killed", "--resume")
    assert r.exit_code == 0, r.output
    _frames_equal(tmp / "ref", tmp / "killed")
    # other settings on resume: refused
    r = run(*args[:-1], "--tile", "32", "-o", tmp / "killed", "--resume")
    assert r.exit_code == 2 and "same inputs and settings" in r.output


def test_bad_inputs_are_one_line_errors(landsat) -> None:
    import tifffile
    from rasterio.transform import Affine

    lr_path, lr, prof, tmp = landsat
    up = nearest_sr(lr, 2)
    cases = {
        "misaligned": write_sr(tmp / "shift.tif", up, prof, 2,
                               transform=prof["transform"] @ Affine.translation(0.5, 0) @ Affine.scale(0.5)),
        "crs": write_sr(tmp / "crs.tif", up, prof, 2, crs="EPSG:3857"),
        "fraction": write_sr(tmp / "frac.tif", up[:, :-1], prof, 2),
    }
    for why, path in cases.items():
        r = run("scene", lr_path, path, "-o", tmp / f"o_{why}", "-q")
        assert r.exit_code == 2, (why, r.output)
        line = r.output.strip()
        assert "\n" not in line and "rmnp-rgb.tif" in line and path.name in line, (why, line)
    if not __import__("torch").cuda.is_available():
        r = run("scene", lr_path, write_sr(tmp / "ok.tif", up, prof, 2), "-o", tmp / "o_dev", "--device", "cuda", "-q")
        assert r.exit_code == 2 and "CUDA is not available" in r.output and "\n" not in r.output.strip()
    # no georeferencing: allowed with a warning, pixel coordinates
    tifffile.imwrite(tmp / "plain_lr.tif", np.moveaxis(lr, 0, -1))
    tifffile.imwrite(tmp / "plain_sr.tif", np.moveaxis(up, 0, -1))
    r = CliRunner().invoke(main, ["scene", str(tmp / "plain_lr.tif"), str(tmp / "plain_sr.tif"), "-o",
                                  str(tmp / "plain"), "--tile", "64", "-q"])
    assert r.exit_code == 0, r.output
    assert "not georeferenced" in r.output
    df = pd.read_parquet(tmp / "plain" / "tiles.parquet")
    assert df.iloc[1].x_min == 64 and df.iloc[1].y_min == 0
    # an unreadable window: that tile gets an error row, the others are kept, exit 1
    bad = write_sr(tmp / "corrupt.tif", up, prof, 2, blockxsize=128, blockysize=128)
    with tifffile.TiffFile(bad) as tf:
        page = tf.pages[0]
        off, n = page.dataoffsets[5], page.databytecounts[5]
    with open(bad, "r+b") as fh:
        fh.seek(off)
        fh.write(b"\xff" * n)
    r = run("scene", lr_path, bad, "-o", tmp / "corrupt", "--tile", 64, "-q")
    assert r.exit_code == 1 and "could not be evaluated" in r.output
    df = pd.read_parquet(tmp / "corrupt" / "tiles.parquet")
    errs = df[df["error"] != ""]
    # SR block 5 (rows 0-127, cols 640-767) is tile 5's SR (tiles read no SR halo)
    assert set(errs["tile"]) == {5} and errs["error"].str.contains("unreadable").all()
    assert df.loc[df["error"] == "", "lr-l1"].notna().sum() > 0 and len(df) == 6 * 8


def test_s2_offset_named_bands_mask_and_ndvi(tmp_path: Path) -> None:
    """Synthetic L2A-like rasters (baseline 04.00: +1000 offset), bands by name, a mask file, NDVI drift."""
    from rasterio.transform import Affine

    from clipscore_sr.scene.read import parse_band_list, s2_offset

    assert s2_offset("04.00") == 1000 and s2_offset("03.01") == 0 and parse_band_list("B04,8") == ["B04", 8]
    rng = np.random.default_rng(0)
    refl = rng.uniform(0.05, 0.4, (3, 40, 40))
    lr = np.round(refl * 10000 + 1000).astype(np.uint16)
    t = Affine(20.0, 0, 400000.0, 0, -20.0, 6000000.0)
    names = ("B02", "B04", "B08")
    for name, arr, tr in (("lr", lr, t), ("sr", nearest_sr(lr, 2), t @ Affine.scale(0.5))):
        with rasterio.open(tmp_path / f"{name}.tif", "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1],
                           count=3, dtype="uint16", crs="EPSG:32633", transform=tr) as d:
            d.write(arr)
            for i, n in enumerate(names, start=1):
                d.set_band_description(i, n)
    sr = rasterio.open(tmp_path / "sr.tif").read()
    sr[1] = np.round((sr[1] - 1000) * 1.1 + 1000).astype(np.uint16)  # red +10% in reflectance
    with rasterio.open(tmp_path / "sr.tif", "r+") as d:
        d.write(sr)
    mask = np.ones((40, 40), np.uint8)
    mask[:20, :20] = 0
    with rasterio.open(tmp_path / "mask.tif", "w", driver="GTiff", width=40, height=40, count=1, dtype="uint8",
                       crs="EPSG:32633", transform=t) as d:
        d.write(mask[None])
    r = run("scene", tmp_path / "lr.tif", tmp_path / "sr.tif", "-o", tmp_path / "out", "--tile", 20,
            "--s2-baseline", "04.00", "--bands", "B04,B08", "--red-band", "B04", "--nir-band", "B08",
            "--mask", tmp_path / "mask.tif", "--min-valid", 0.5, "-q")
    assert r.exit_code == 0, r.output
    df = pd.read_parquet(tmp_path / "out" / "tiles.parquet")
    assert df.loc[0, "valid_frac"] == 0 and np.isnan(df.loc[0, "lr-l1"])  # masked out
    ok = df.iloc[1:]
    assert ok["ratio-b2"].between(1.09, 1.11).all() and ok["ratio-b3"].between(0.999, 1.001).all()
    assert (ok["ndvi-drift"] < -0.01).all() and ok["flags"].str.contains("cast").all()
    assert (ok["nodata-new-px"] == 0).all()
    r = run("scene", tmp_path / "lr.tif", tmp_path / "sr.tif", "-o", tmp_path / "o2", "--bands", "B05", "-q")
    assert r.exit_code == 2 and "no band named 'B05'" in r.output
