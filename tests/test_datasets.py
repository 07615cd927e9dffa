"""Dataset readers on small synthetic files written in each dataset's real layout (+ the shared WorldStrat
sample when present). Expected values are computed here from the arrays written to disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from torch.utils.data import DataLoader

from clipscore_sr.baselines import (
    DatasetError,
    OLI2MSIDataset,
    PairedFolderDataset,
    ProbaVDataset,
    S2NAIPDataset,
    WorldStratDataset,
    select_frames,
)

from .conftest import SHARED  # noqa: E402  (found from a git worktree too)


def png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_select_frames_prefers_clean_then_least_bad():
    rng = np.random.default_rng(0)
    bad = [0.0, 0.5, 0.0, 0.1, 0.0]
    for _ in range(20):
        pick = select_frames(bad, 3, rng)
        assert sorted(pick.tolist()) == [0, 2, 4]
    assert select_frames(bad, 4, rng).tolist() == [0, 2, 3, 4]
    assert select_frames([0.2, 0.1], 5, rng).tolist() == [0, 1, 0, 1, 0]
    choices = {tuple(select_frames([0.0] * 5, 2, np.random.default_rng(s))) for s in range(30)}
    assert len(choices) > 3  # random among equally good frames


# --------------------------------------------------------------------------------------------------
# S2-NAIP

def make_s2naip(root: Path, rng: np.random.Generator, t: int = 6):
    strips = {}
    for i, tile in enumerate(["1000_2000", "1001_2000", "1002_2000"]):
        hr = rng.integers(1, 256, (128, 128, 3), dtype=np.uint8)
        if tile == "1002_2000":
            hr[:5, :5] = 0  # no-data target
        png(root / "naip" / f"uuid{i}" / tile / "rgb.png", hr)
        frames = rng.integers(1, 256, (t, 32, 32, 3), dtype=np.uint8)
        frames[1, :3, :3] = 0  # black no-data pixels in frames 1 and 4
        frames[4, 10:, :] = 0
        strip = frames.reshape(t * 32, 32, 3)
        png(root / "sentinel2" / tile / "tci.png", strip)
        b05 = rng.integers(0, 12000, (t * 32, 32), dtype=np.uint16)
        png(root / "sentinel2" / tile / "b05.png", b05)
        strips[tile] = (hr, frames, b05.reshape(t, 32, 32))
    png(root / "naip" / "uuid9" / "9999_9999" / "rgb.png", np.ones((128, 128, 3), np.uint8))  # no S2 strip
    return strips


def test_s2naip_reader(tmp_path):
    strips = make_s2naip(tmp_path, np.random.default_rng(0))
    ds = S2NAIPDataset(tmp_path, n_frames=3, bands=("tci", "b05"), seed=7)
    assert len(ds) == 2 and ds.skipped == ["1002_2000/uuid2"] and ds.missing_lr == ["9999_9999/uuid9"]
    s = ds[0]
    hr, frames, b05 = strips["1000_2000"]
    assert s["key"] == "1000_2000/uuid0" and s["lr"].shape == (3, 4, 32, 32) and s["hr"].shape == (3, 128, 128)
    chosen = s["frames"].numpy()
    assert not set(chosen) & {1, 4}  # frames with black pixels avoided while clean ones remain
    np.testing.assert_allclose(s["hr"].numpy(), hr.transpose(2, 0, 1) / 255.0, atol=1e-7)
    np.testing.assert_allclose(s["lr"][:, :3].numpy(), frames[chosen].transpose(0, 3, 1, 2) / 255.0, atol=1e-7)
    np.testing.assert_allclose(s["lr"][:, 3].numpy(), np.clip(b05[chosen] / 8160.0, 0, 1), atol=1e-6)
    # deterministic given the seed, varies with seed and epoch
    assert torch.equal(S2NAIPDataset(tmp_path, 3, seed=7)[0]["frames"], s["frames"])
    picks = {tuple(S2NAIPDataset(tmp_path, 3, seed=k)[0]["frames"].tolist()) for k in range(8)}
    assert len(picks) > 1
    by_epoch = set()
    for epoch in range(8):
        ds.set_epoch(epoch)
        by_epoch.add(tuple(ds[0]["frames"].tolist()))
    assert len(by_epoch) > 1
    ds.set_epoch(0)
    assert torch.equal(ds[0]["frames"], s["frames"])
    # more frames than clean ones: the least-black frame (1: 9 px) comes before frame 4 (22 rows)
    assert S2NAIPDataset(tmp_path, 5, frame_order="chronological")[0]["frames"].tolist() == [0, 1, 2, 3, 5]
    assert S2NAIPDataset(tmp_path, 8, frame_order="chronological")[0]["frames"].tolist() == [0, 1, 2, 3, 4, 5, 0, 1]
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["lr"].shape == (2, 3, 4, 32, 32) and batch["key"] == ["1000_2000/uuid0", "1001_2000/uuid1"]


def test_s2naip_nodata_modes_and_errors(tmp_path):
    make_s2naip(tmp_path, np.random.default_rng(1))
    keep = S2NAIPDataset(tmp_path, 2, nodata_targets="keep")
    assert len(keep) == 3
    s = keep[2]
    assert not s["hr_valid"][0, :5, :5].any() and s["hr_valid"][0, 5:, 5:].all()
    with pytest.raises(DatasetError, match="black no-data"):
        S2NAIPDataset(tmp_path, 2, nodata_targets="error")[2]
    with pytest.raises(DatasetError, match="start with 'tci'"):
        S2NAIPDataset(tmp_path, 2, bands=("b05",))
    with pytest.raises(DatasetError, match="missing"):
        S2NAIPDataset(tmp_path / "nothing", 2)
    crop = S2NAIPDataset(tmp_path, 2, crop_size=16, seed=3)[0]
    assert crop["lr"].shape == (2, 3, 16, 16) and crop["hr"].shape == (3, 64, 64)


# --------------------------------------------------------------------------------------------------
# WorldStrat

def test_worldstrat_official_layout(tmp_path):
    rng = np.random.default_rng(2)
    arrays = {}
    for aoi in ("Landcover-1", "UNHCR-2"):
        png(tmp_path / "hr_dataset" / aoi / f"{aoi}_rgb.png", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
        l2a = tmp_path / "lr_dataset" / aoi / "L2A"
        l2a.mkdir(parents=True)
        for i in range(1, 5):
            data = rng.random((16, 16, 12)).astype(np.float32) * 0.9 + 0.05
            tifffile.imwrite(l2a / f"{aoi}-{i}-L2A_data.tiff", data, photometric="minisblack", planarconfig="contig")
            mask = np.zeros((16, 16), np.uint8)
            if i == 2:
                mask[:] = 1  # fully clouded revisit
            if i == 3:
                mask[:4] = 1
            tifffile.imwrite(l2a / f"{aoi}-{i}-CLM.tiff", mask)
            arrays[(aoi, i)] = (data, mask)
    ds = WorldStratDataset(tmp_path, n_frames=3, seed=0, frame_order="chronological")
    assert len(ds) == 2
    s = ds[0]
    assert s["key"] == "Landcover-1" and s["lr"].shape == (3, 3, 16, 16) and s["hr"].shape == (3, 64, 64)
    assert s["frames"].tolist() == [0, 2, 3]  # clouded revisit 2 (index 1) dropped; partly clouded 3 kept
    data, mask = arrays[("Landcover-1", 3)]
    np.testing.assert_allclose(s["lr"][1].numpy(), data[:, :, [3, 2, 1]].transpose(2, 0, 1), atol=1e-7)  # B4,B3,B2
    assert torch.equal(s["lr_valid"][1, 0], torch.from_numpy(mask == 0))
    resized = WorldStratDataset(tmp_path, n_frames=2, lr_size=8, hr_size=32)[1]
    assert resized["lr"].shape == (2, 3, 8, 8) and resized["hr"].shape == (3, 32, 32)
    csv_path = tmp_path / "splits.csv"
    csv_path.write_text(",tile,lowres_date,split\n0,Landcover-1,2020,train\n1,UNHCR-2,2020,test\n")
    only = WorldStratDataset(tmp_path, 2, splits_csv=csv_path, split="test")
    assert [k for k, _, _ in only.scenes] == ["UNHCR-2"]


def test_worldstrat_flat_layout_synthetic(tmp_path):
    rng = np.random.default_rng(3)
    scene = tmp_path / "scene_a"
    png(scene / "HR.png", rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    lrs = {}
    for name in ("L1.png", "L2_clouded.png", "L3.png", "L10.png"):
        lrs[name] = rng.integers(1, 256, (20, 20, 3), dtype=np.uint8)
        png(scene / name, lrs[name])
    s = WorldStratDataset(tmp_path, n_frames=3, frame_order="chronological")[0]
    assert s["key"] == "scene_a" and s["frames"].tolist() == [0, 2, 3]  # natural order L1, L2, L3, L10
    np.testing.assert_allclose(s["lr"][2].numpy(), lrs["L10.png"].transpose(2, 0, 1) / 255.0, atol=1e-7)


def test_worldstrat_shared_sample():
    root = SHARED / "samples" / "worldstrat"
    if not (root / "HR.png").is_file():
        pytest.skip("shared WorldStrat sample not present")
    ds = WorldStratDataset(root, n_frames=1)
    s = ds[0]
    assert s["lr"].shape == (1, 3, 400, 400) and s["hr"].shape == (3, 800, 800)
    assert s["frames"].tolist() == [0]  # L1 is the only revisit not marked clouded
    expected = np.asarray(Image.open(root / "L1.png").convert("RGB")).transpose(2, 0, 1) / 255.0
    np.testing.assert_allclose(s["lr"][0].numpy(), expected, atol=1e-7)
    assert WorldStratDataset(root, n_frames=3, frame_order="chronological")[0]["frames"].tolist() == [0, 1, 2]


# --------------------------------------------------------------------------------------------------
# PROBA-V

def test_probav_reader(tmp_path):
    rng = np.random.default_rng(4)
    d = tmp_path / "train" / "NIR" / "imgset0001"
    clear_rows = [12, 3, 12, 8, 0]  # clear rows per frame in QM
    frames = []
    for i, rows in enumerate(clear_rows):
        lr = rng.integers(0, 16384, (12, 12), dtype=np.uint16)
        frames.append(lr)
        png(d / f"LR{i:03d}.png", lr)
        qm = np.zeros((12, 12), np.uint8)
        qm[:rows] = 255
        png(d / f"QM{i:03d}.png", qm)
    hr = rng.integers(0, 16384, (36, 36), dtype=np.uint16)
    png(d / "HR.png", hr)
    sm = np.full((36, 36), 255, np.uint8)
    sm[0] = 0
    png(d / "SM.png", sm)
    png(tmp_path / "test" / "NIR" / "imgset0002" / "LR000.png", frames[0])
    (tmp_path / "norm.csv").write_text("imgset0001 45.25\nimgset0002 47.5\n")
    ds = ProbaVDataset(tmp_path, "train", "NIR", n_frames=3, seed=1, frame_order="chronological")
    s = ds[0]
    assert s["key"] == "train/NIR/imgset0001" and s["frames"].tolist() == [0, 2, 3]  # most clear first
    np.testing.assert_allclose(s["lr"][:, 0].numpy(), np.stack([frames[i] for i in (0, 2, 3)]) / 65535.0, atol=1e-7)
    np.testing.assert_allclose(s["hr"][0].numpy(), hr / 65535.0, atol=1e-7)
    assert s["norm"] == 45.25 and not s["hr_valid"][0, 0].any() and s["hr_valid"][0, 1:].all()
    assert s["lr_valid"][2, 0, :8].all() and not s["lr_valid"][2, 0, 8:].any()
    test = ProbaVDataset(tmp_path, "test", n_frames=2)[0]
    assert "hr" not in test and test["lr"].shape == (2, 1, 12, 12) and test["norm"] == 47.5
    with pytest.raises(DatasetError, match="no PROBA-V image sets"):
        ProbaVDataset(tmp_path, "val")


# --------------------------------------------------------------------------------------------------
# OLI2MSI and generic folders

def test_oli2msi_reader(tmp_path):
    rng = np.random.default_rng(5)
    for name in ("a", "b"):
        hr = rng.random((3, 48, 48)).astype(np.float32)
        lr = rng.random((3, 16, 16)).astype(np.float32)
        for split_dir, arr in (("train_hr", hr), ("train_lr", lr)):
            (tmp_path / split_dir).mkdir(exist_ok=True)
            tifffile.imwrite(tmp_path / split_dir / f"{name}.TIF", arr, photometric="minisblack", planarconfig="separate")
        if name == "a":
            expected = (hr, lr)
    ds = OLI2MSIDataset(tmp_path, "train")
    s = ds[0]
    assert len(ds) == 2 and s["key"] == "a" and s["lr"].shape == (1, 3, 16, 16)
    np.testing.assert_allclose(s["hr"].numpy(), expected[0], atol=0)
    np.testing.assert_allclose(s["lr"][0].numpy(), expected[1], atol=0)
    crop = OLI2MSIDataset(tmp_path, "train", crop_size=8, seed=2)[0]
    assert crop["lr"].shape == (1, 3, 8, 8) and crop["hr"].shape == (3, 24, 24)
    with pytest.raises(DatasetError, match="test_hr"):
        OLI2MSIDataset(tmp_path, "test")


def test_paired_folder_strips_and_aligned_crops(tmp_path):
    rng = np.random.default_rng(6)
    for i in range(3):
        base = rng.integers(1, 256, (10, 10, 3), dtype=np.uint8)
        png(tmp_path / "lr" / "sub" / f"s{i}.png", np.concatenate([base, base, base], axis=0))  # 3 frames
        png(tmp_path / "hr" / "sub" / f"s{i}.png", np.kron(base, np.ones((4, 4, 1), np.uint8)))
    ds = PairedFolderDataset(tmp_path / "lr", tmp_path / "hr", frame_size="auto", crop_size=6, seed=0)
    for i in range(3):
        s = ds[i]
        assert s["key"] == f"sub/s{i}" and s["lr"].shape == (3, 3, 6, 6) and s["hr"].shape == (3, 24, 24)
        up = s["lr"][0].repeat_interleave(4, -1).repeat_interleave(4, -2)
        torch.testing.assert_close(s["hr"], up)  # the HR crop is the one matching the LR crop
    single = PairedFolderDataset(tmp_path / "lr", tmp_path / "hr")[0]
    assert single["lr"].shape == (1, 3, 30, 10)
    two = PairedFolderDataset(tmp_path / "lr", tmp_path / "hr", frame_size=10, n_frames=2)[0]
    assert two["lr"].shape == (2, 3, 10, 10)
