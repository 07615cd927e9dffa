"""Issue 13: the reference generators, readers and trainers against the paper authors' code
(allenai/satlas-super-resolution) and the datasets' own formats. Each test pins one audited difference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from clipscore_sr.cli import main

from .train_support import TINY_SRCNN


@pytest.fixture(autouse=True)
def _offline(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPSCORE_SR_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    monkeypatch.setenv("CLIPSCORE_SR_CACHE", str(tmp_path / "srcache"))


def _png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def make_probav(root: Path, n_sets: int = 3, seed: int = 0) -> Path:
    """PROBA-V image sets (14-bit values in 16-bit PNGs): 12x12 LR frames, 36x36 HR, all-clear masks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:36, 0:36] / 36.0
    for i in range(n_sets):
        d = root / "train" / "NIR" / f"imgset{i:04d}"
        hr = 4000 + 6000 * (0.5 + 0.4 * np.sin(2 * np.pi * (rng.uniform(1, 3) * xx + yy)))
        _png(d / "HR.png", hr.astype(np.uint16))
        _png(d / "SM.png", np.full((36, 36), 255, np.uint8))
        lr = hr.reshape(12, 3, 12, 3).mean((1, 3))
        for t in range(3):
            _png(d / f"LR{t:03d}.png", np.clip(lr + rng.normal(0, 30, lr.shape), 0, 16383).astype(np.uint16))
            _png(d / f"QM{t:03d}.png", np.full((12, 12), 255, np.uint8))
    return root


# --------------------------------------------------------------------------------------------------
# item 2: one PROBA-V scale for cPSNR

def test_probav_trainer_validation_cpsnr_equals_score_cpsnr(tmp_path):
    from clipscore_sr.baselines.trainer import Trainer
    from clipscore_sr.io import write_image

    root = make_probav(tmp_path / "probav")
    reader = {"root": str(root), "split": "train", "band": "NIR"}
    cfg = {"output_dir": str(tmp_path / "run"), "seed": 0,
           "model": {"name": "srcnn", "n_frames": 2, "scale": 3,
                     "options": {**TINY_SRCNN, "in_channels": 1, "out_channels": 1}},
           "data": {"reader": "probav", "train": reader, "val": reader},
           "train": {"steps": 1, "batch_size": 1, "device": "cpu"},
           "validation": {"interval": 1, "metrics": ["cpsnr"], "batch_size": 2}}
    trainer = Trainer(cfg)
    val = trainer.validate()["cpsnr"]
    model = trainer.generator.eval()
    for sample in trainer.val_set:
        with torch.no_grad():
            sr = model(sample["lr"][None])[0].clamp(0, 1)
        write_image(tmp_path / "sr" / f"{sample['key']}.png", sr, dtype="uint16")
        hr_file = root / sample["key"] / "HR.png"
        dest = tmp_path / "gt" / f"{sample['key']}.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(hr_file.read_bytes())
    out = CliRunner().invoke(main, ["score", str(tmp_path / "gt"), str(tmp_path / "sr"), "-m", "cpsnr", "-q",
                                    "-o", str(tmp_path / "scores.csv")])
    assert out.exit_code == 0, out.output
    scored = pd.read_csv(tmp_path / "scores.csv")["cpsnr"].mean()
    # same files, same convention: equal up to the 16-bit rounding of the written SR (< 0.01 dB here)
    assert abs(val - scored) < 0.01, (val, scored)


# --------------------------------------------------------------------------------------------------
# item 3: WorldStrat cloud masks are {AOI}-{i}-CLM.tiff; -dataMask.tiff (1 = valid) is not a cloud mask

def _worldstrat(root: Path, clm: bool) -> Path:
    import tifffile

    rng = np.random.default_rng(5)
    aoi = "Landcover-7"
    _png(root / "hr_dataset" / aoi / f"{aoi}_rgb.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    l2a = root / "lr_dataset" / aoi / "L2A"
    l2a.mkdir(parents=True)
    for i in range(1, 4):
        data = rng.random((8, 8, 12)).astype(np.float32) * 0.9 + 0.05
        tifffile.imwrite(l2a / f"{aoi}-{i}-L2A_data.tiff", data, photometric="minisblack", planarconfig="contig")
        tifffile.imwrite(l2a / f"{aoi}-{i}-dataMask.tiff", np.ones((8, 8), np.uint8))  # 1 = valid data
        if clm:
            tifffile.imwrite(l2a / f"{aoi}-{i}-CLM.tiff", np.full((8, 8), i == 2, np.uint8))  # revisit 2 clouded
    return root


def test_worldstrat_data_mask_is_not_a_cloud_mask(tmp_path):
    from clipscore_sr.baselines import WorldStratDataset

    with pytest.warns(UserWarning, match="CLM.tiff not found; revisits without a CLM cloud mask are treated as clear"):
        s = WorldStratDataset(_worldstrat(tmp_path / "a", clm=False), n_frames=3)[0]
    assert s["lr_valid"].all()  # dataMask's 1s (valid) must not read as clouds
    s = WorldStratDataset(_worldstrat(tmp_path / "b", clm=True), n_frames=2)[0]
    assert sorted(s["frames"].tolist()) == [0, 2] and s["lr_valid"].all()  # the CLM-clouded revisit 2 dropped


# --------------------------------------------------------------------------------------------------
# item 9: frames in random order by default (the authors' random.sample), chronological on request

def test_frame_order_random_by_default_chronological_on_request(tmp_path):
    from clipscore_sr.baselines import S2NAIPDataset

    from .train_support import make_s2naip

    root = make_s2naip(tmp_path / "s2", n=1, frames=6)
    orders = {tuple(S2NAIPDataset(root, 4, seed=k)[0]["frames"].tolist()) for k in range(12)}
    assert any(list(o) != sorted(o) for o in orders)  # some draws are not in file order
    chrono = {tuple(S2NAIPDataset(root, 4, seed=k, frame_order="chronological")[0]["frames"].tolist())
              for k in range(12)}
    assert all(list(o) == sorted(o) for o in chrono)
    a, b = S2NAIPDataset(root, 4, seed=3)[0], S2NAIPDataset(root, 4, seed=3, frame_order="chronological")[0]
    assert sorted(a["frames"].tolist()) == b["frames"].tolist()  # same frames, different order
    assert torch.equal(a["lr"], b["lr"][np.argsort(np.argsort(a["frames"].numpy()))])
    with pytest.raises(Exception, match="frame_order must be one of random, chronological"):
        S2NAIPDataset(root, 4, frame_order="sorted")


# --------------------------------------------------------------------------------------------------
# item 10: the authors' OSM inverse-frequency tile weights (public train_tile_weights JSON)

def test_tile_weight_sampler_draws_in_proportion(tmp_path):
    import json

    from clipscore_sr.baselines.trainer import Trainer

    from .train_support import make_config, make_s2naip

    root = make_s2naip(tmp_path / "s2", n=4, frames=2)
    weights = tmp_path / "urban_set_weights.json"
    weights.write_text(json.dumps({"1000_2000": 9.0, "1001_2000": 0.0}))  # 1002/1003 unlisted: weight 1
    cfg = make_config(tmp_path / "run", root, "srcnn", validation={"interval": 0},
                      data={"val_fraction": 0.0, "sampler": "tile_weights", "tile_weights": str(weights)},
                      train={"batch_size": 1})
    trainer = Trainer(cfg)
    counts = np.zeros(4)
    for epoch in range(300):
        for batch in trainer._epoch_batches(epoch):
            counts[batch] += 1
    freq = counts / counts.sum()
    np.testing.assert_allclose(freq, [9 / 11, 0, 1 / 11, 1 / 11], atol=0.02)  # 1200 draws: 3 sigma ~ 0.02
    from clipscore_sr.errors import ConfigError

    with pytest.raises(ConfigError, match="data.tile_weights: needed by sampler: tile_weights"):
        Trainer(make_config(tmp_path / "r2", root, "srcnn", validation={"interval": 0},
                            data={"val_fraction": 0.0, "sampler": "tile_weights"}))
