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

from .test_train import _offline  # noqa: F401  (autouse: offline, empty weight caches)
from .train_support import TINY_SRCNN


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

@pytest.mark.slow
def test_probav_trainer_validation_cpsnr_equals_score_cpsnr(tmp_path):
    from clipscore_sr.baselines.trainer import Trainer
    from clipscore_sr.io import write_image

    root = make_probav(tmp_path / "probav")
    reader = {"root": str(root), "split": "train", "band": "NIR"}
    cfg = {"output_dir": str(tmp_path / "run"), "seed": 0,
           "model": {"name": "srcnn-915", "n_frames": 2, "scale": 3,
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
    cfg = make_config(tmp_path / "run", root, "srcnn-915", validation={"interval": 0},
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
        Trainer(make_config(tmp_path / "r2", root, "srcnn-915", validation={"interval": 0},
                            data={"val_fraction": 0.0, "sampler": "tile_weights"}))


# --------------------------------------------------------------------------------------------------
# items 5 and 6: the CLIP loss compares with the (sharpened) L1 target, optionally through the authors' resize

@pytest.fixture(scope="module")
def clip_spec(tmp_path_factory) -> str:
    from .test_clip_support import PREP, TINY_VIT, write_local_dir

    d, _ = write_local_dir(tmp_path_factory.mktemp("clip") / "tiny", TINY_VIT, PREP, seed=3)
    return f"local-dir:{d}"


def test_clip_loss_nearest_resize_is_the_authors_path(clip_spec):
    import torch.nn.functional as F

    from clipscore_sr import ClipLoss
    from clipscore_sr.metrics.clip import load_clip

    g = torch.Generator().manual_seed(0)
    sr, gt = torch.rand(2, 3, 20, 28, generator=g), torch.rand(2, 3, 20, 28, generator=g)
    clip = load_clip(clip_spec)
    size = clip.preprocess.size
    mean = torch.tensor((0.48145466, 0.4578275, 0.40821073)).view(1, 3, 1, 1)
    std = torch.tensor((0.26862954, 0.26130258, 0.27577711)).view(1, 3, 1, 1)

    def feats(x):  # the authors' CLIPLoss.forward: F.interpolate(x, img_size), Normalize(OpenAI), encode_image
        return clip.visual((F.interpolate(x, size) - mean) / std)

    expected = (feats(sr) - feats(gt)).abs().mean()
    got = ClipLoss(clip_spec, resize="nearest")(sr, gt)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert abs(float(ClipLoss(clip_spec)(sr, gt)) - float(expected)) > 1e-4  # the weights' transform differs
    with pytest.raises(Exception, match="ClipLoss resize 'bicubic'"):
        ClipLoss(clip_spec, resize="bicubic")


def test_clip_loss_sees_the_unsharp_masked_target(tmp_path, clip_spec):
    from clipscore_sr.baselines.train_losses import unsharp_mask
    from clipscore_sr.baselines.trainer import Trainer

    from .train_support import make_config, make_s2naip

    root = make_s2naip(tmp_path / "s2", n=4, frames=2)
    cfg = make_config(tmp_path / "run", root, "esrgan", validation={"interval": 0},
                      losses={"perceptual": 0.0, "gan": 0.0, "clip": 1.0, "clip_model": f"clipscore:{clip_spec}",
                              "unsharp_targets": True, "clip_resize": "nearest"},
                      train={"steps": 1})
    trainer = Trainer(cfg)
    seen = []
    real = trainer.clip_loss

    class Recorder(torch.nn.Module):
        def forward(self, sr, target):
            seen.append(target.detach().clone())
            return real(sr, target)

    trainer.clip_loss = Recorder()
    lr, hr, _ = next(trainer._batches())
    trainer._step_gan(lr, hr)
    assert real.resize == "nearest"
    torch.testing.assert_close(seen[0], unsharp_mask(hr))
    assert not torch.allclose(seen[0], hr)


# --------------------------------------------------------------------------------------------------
# item 7: the L2 models' SSIM term is the authors' kornia ssim_loss(window_size=5)

def test_l2_ssim_term_matches_kornia_window_5():
    kornia = pytest.importorskip("kornia")
    from clipscore_sr.baselines.train_losses import L2ModelLoss, ssim_loss

    g = torch.Generator().manual_seed(1)
    gt = torch.rand(2, 3, 16, 12, generator=g, dtype=torch.float64)
    sr = (gt + 0.1 * torch.randn(2, 3, 16, 12, generator=g, dtype=torch.float64)).clamp(0, 1)
    ref = kornia.losses.ssim_loss(sr, gt, window_size=5, reduction="none").mean(dim=(-1, -2, -3)).mean()
    terms = L2ModelLoss(0.0, 0.0, 1.0).terms(sr, gt)  # default ssim_style: authors
    torch.testing.assert_close(terms["ssim"], ref, rtol=1e-10, atol=1e-12)
    assert abs(float(L2ModelLoss(0.0, 0.0, 1.0, ssim_style="metric")(sr, gt)) - float(ref)) > 1e-3
    assert float(ssim_loss(sr, gt)) == pytest.approx(float(L2ModelLoss(0, 0, 1, "metric")(sr, gt)))


# --------------------------------------------------------------------------------------------------
# item 8: validation PSNR/SSIM with the authors' crop_border: 4

def test_validation_crop_border(tmp_path):
    from clipscore_sr.baselines.trainer import Trainer
    from clipscore_sr.metrics import get_metric

    from .train_support import make_config, make_s2naip

    root = make_s2naip(tmp_path / "s2", n=4, frames=2)
    cfg = make_config(tmp_path / "run", root, "srcnn-915", train={"batch_size": 1}, data={"val_fraction": 0.25},
                      validation={"interval": 1, "metrics": ["psnr"], "crop_border": 4, "batch_size": 1})
    trainer = Trainer(cfg)
    got = trainer.validate()["psnr"]
    sample = trainer.val_set[0]
    with torch.no_grad():
        sr = trainer.generator.eval()(sample["lr"][None]).clamp(0, 1)
    hr = sample["hr"][None]
    mse = ((sr.double() - hr.double())[..., 4:-4, 4:-4] ** 2).mean()
    assert len(trainer.val_set) == 1 and got == pytest.approx(float(10 * torch.log10(1 / mse)), abs=1e-4)
    assert got != pytest.approx(float(get_metric("psnr").compute(sr, hr)[0]), abs=1e-3)


# --------------------------------------------------------------------------------------------------
# item 4: the shipped ESRGAN configs are the authors' recipe (values read from their experiments/*.yml)

AUTHORS_ESRGAN = {  # ours: (their file, generator (num_feat, num_grow_ch), discriminator num_feat, clip weight)
    "esrgan_s2naip.yaml": ("esrgan_baseline", "small", 64, 0.0),
    "esrgan_clip_s2naip.yaml": ("esrgan_baseline_cliploss", "small", 64, 1.0),
    "esrgan_medium_s2naip.yaml": ("esrgan_larger1", "medium", 128, 0.0),
    "esrgan_large_s2naip.yaml": ("esrgan_larger2", "large", 256, 0.0),
}


@pytest.mark.parametrize("fname", sorted(AUTHORS_ESRGAN))
def test_shipped_esrgan_configs_are_the_authors_recipe(fname):
    from clipscore_sr.baselines.train_config import load_config

    cfg = load_config(Path(__file__).resolve().parents[1] / "baselines" / "configs" / fname, check_paths=False)
    _, size, d_feat, clip = AUTHORS_ESRGAN[fname]
    L = cfg["losses"]
    assert cfg["model"]["size"] == size and cfg["model"]["n_frames"] == 8 and cfg["model"]["scale"] == 4
    assert L["unsharp_targets"] is True  # l1_gt_usm, percep_gt_usm: True; gan_gt_usm: False (D sees raw HR)
    assert (L["l1"], L["perceptual"], L["gan"], L["clip"]) == (1.0, 1.0, 0.1, clip)
    assert L["perceptual_layers"] == {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}
    assert L["clip_model"] == "clip-rn50" and L["clip_distance"] == "l1" and L["clip_resize"] == "nearest"
    assert cfg["discriminator"] == {"num_feat": d_feat, "lr_conditioned": True, "skip_connection": True}
    assert cfg["optimizer"]["lr"] == 1e-4 and cfg["optimizer"]["betas"] == [0.9, 0.99]
    assert cfg["optimizer"]["d_lr"] is None and cfg["optimizer"]["d_betas"] is None  # D as G
    assert cfg["schedule"] == {"type": "multistep", "warmup_steps": 0, "milestones": [400000], "gamma": 0.5,
                               "min_lr_ratio": 0.0}
    assert cfg["train"]["ema_decay"] == 0.999 and cfg["validation"]["crop_border"] == 4
    assert cfg["data"]["sampler"] == "authors"  # their ssr/train.py: BasicSR EnlargedSampler (tile weights unused)
    assert cfg["data"]["train"].get("frame_order", "random") == "random"


# --------------------------------------------------------------------------------------------------
# items 12-15: generate on real dataset layouts; pairs with targets; folder frames; overlap clamp

def _gen(*args: str):
    return CliRunner().invoke(main, ["generate", *args, "--device", "cpu", "--quiet"])


def test_generate_reads_the_s2naip_tree_multiband_skips_bad_scenes_and_pairs_targets(tmp_path):
    from clipscore_sr.baselines import build_generator, save_checkpoint
    from clipscore_sr.baselines.datasets import read_s2_bands

    from .train_support import make_s2naip

    root = make_s2naip(tmp_path / "s2naip", n=3, frames=2)
    rng = np.random.default_rng(0)
    tiles = sorted(p.name for p in (root / "sentinel2").iterdir())
    for t in tiles[:2]:  # b05 (16-bit) for two tiles; the third lacks it and must be skipped, not stop the run
        _png(root / "sentinel2" / t / "b05.png", rng.integers(0, 9000, (64, 32), dtype=np.uint16))
    torch.manual_seed(0)
    model = build_generator("esrgan", "small", 2, 4, in_channels=4, num_feat=8, num_block=1, num_grow_ch=4).eval()
    ckpt = save_checkpoint(model, tmp_path / "g.safetensors", extra={"tile": 32, "bands": ["tci", "b05"]})
    out = tmp_path / "sr"
    res = _gen("--checkpoint", str(ckpt), "--input", str(root / "sentinel2"), "--out", str(out), "--layout", "s2naip",
               "--frames", "2")
    assert res.exit_code == 1, res.output
    assert f"1 of 3 scene(s) failed and were skipped; first: {tiles[2]}: " in res.output and "b05.png" in res.output
    assert sorted(p.stem for p in out.glob("*.png")) == tiles[:2]
    # the output is the model on the reader's frames (chronological choice of all 2 frames), within PNG rounding
    frames = torch.from_numpy(read_s2_bands(root / "sentinel2" / tiles[0], ["tci", "b05"]))
    with torch.no_grad():
        expected = model(frames[None])[0].clamp(0, 1)
    got = torch.from_numpy(np.asarray(Image.open(out / f"{tiles[0]}.png")).astype(np.float64) / 255).permute(2, 0, 1)
    assert (got - expected.double()).abs().max() <= 1 / 255 + 1e-6
    pairs = pd.read_csv(out / "pairs.csv")
    assert pairs["sr"].tolist() == [f"{t}.png" for t in tiles[:2]]
    assert all((out / g).resolve() == (root / "naip" / f"uuid{i}" / t / "rgb.png").resolve()
               for i, (g, t) in enumerate(zip(pairs["gt"], tiles[:2])))
    res = CliRunner().invoke(main, ["score", "--pairs", str(out / "pairs.csv"), "-m", "psnr", "-q",
                                    "-o", str(tmp_path / "scores.csv")])
    assert res.exit_code == 0, res.output
    assert len(pd.read_csv(tmp_path / "scores.csv")) == 2


def test_generate_folder_layout_takes_lr_frames_only_and_clamps_overlap(tmp_path):
    from clipscore_sr.baselines import build_generator, save_checkpoint
    from clipscore_sr.baselines.inference import find_scenes

    scene = tmp_path / "in" / "imgset0001"
    rng = np.random.default_rng(1)
    lrs = [rng.integers(0, 255, (12, 12, 3), dtype=np.uint8) for _ in range(2)]
    for i, a in enumerate(lrs):
        _png(scene / f"LR{i:03d}.png", a)
        _png(scene / f"QM{i:03d}.png", np.full((12, 12), 255, np.uint8))
    _png(scene / "HR.png", rng.integers(0, 255, (48, 48, 3), dtype=np.uint8))
    _png(scene / "SM.png", np.full((48, 48), 255, np.uint8))
    ws = tmp_path / "in" / "ws"
    for name in ("L1.png", "L2.png", "L1_mask.png", "HR.png"):
        _png(ws / name, rng.integers(0, 255, (12, 12, 3), dtype=np.uint8))
    found = {s.key: [p.name for p in s.paths] for s in find_scenes(tmp_path / "in", "folder")}
    assert found == {"imgset0001": ["LR000.png", "LR001.png"], "ws": ["L1.png", "L2.png"]}
    torch.manual_seed(0)
    model = build_generator("esrgan", "small", 2, 4, num_feat=8, num_block=1, num_grow_ch=4).eval()
    ckpt = save_checkpoint(model, tmp_path / "g.safetensors", extra={"tile": 8})  # trained on 8x8 crops
    res = _gen("--checkpoint", str(ckpt), "--input", str(tmp_path / "in"), "--out", str(tmp_path / "o"),
               "--layout", "folder")
    assert res.exit_code == 0, res.output  # default overlap 8 would be >= tile 8; now tile/4 = 2
    assert (tmp_path / "o" / "imgset0001.png").is_file() and (tmp_path / "o" / "ws.png").is_file()
    res = _gen("--checkpoint", str(ckpt), "--input", str(tmp_path / "in"), "--out", str(tmp_path / "o2"),
               "--layout", "folder", "--overlap", "8")
    assert res.exit_code == 2 and "--overlap" in res.output


# --------------------------------------------------------------------------------------------------
# item 16: Figure 7 gains in the metric's own units (dB for PSNR), points only for bounded metrics

def test_figure7_gain_units():
    from clipscore_sr.figures.figure7 import RunCurve, format_summary, gain_unit, summarize

    def curve(label, col, vals):
        n = len(vals)
        return RunCurve(Path(label), label, col, np.arange(n) * 10, np.arange(n) * 1.0, np.asarray(vals, float))

    psnr = summarize([curve("a", "val_psnr", [20.0, 25.0]), curve("b", "val_psnr", [20.0, 25.0079])], 30.0)
    assert psnr["final_gain"].iloc[1] == pytest.approx(0.0079) and psnr["gain_unit"].iloc[1] == "dB"
    text = format_summary(psnr)
    assert "+0.0079 dB" in text and "points" not in text
    clip = summarize([curve("a", "val_clipscore:clip-rn50", [0.5, 0.8]),
                      curve("b", "val_clipscore:clip-rn50", [0.5, 0.89])], 0.8)
    assert clip["final_gain"].iloc[1] == pytest.approx(9.0) and "+9.00 points" in format_summary(clip)
    assert gain_unit("ssim") == (100.0, "points") and gain_unit("cpsnr") == (1.0, "dB")


# --------------------------------------------------------------------------------------------------
# items 17-20: train --check, --resume messages and the steps rule, export modes and errors

def _write_cfg(path: Path, cfg: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(cfg))
    return path


def test_train_check_builds_datasets_and_resolves_weights(tmp_path):
    from .train_support import make_config, make_s2naip

    root = make_s2naip(tmp_path / "s2", n=4, frames=2)
    runner = CliRunner()
    ok = _write_cfg(tmp_path / "ok.yaml", make_config(tmp_path / "run", root, "srcnn-915"))
    res = runner.invoke(main, ["train", str(ok), "--check"])
    assert res.exit_code == 0 and "OK" in res.output and "2 training / 2 validation samples" in res.output
    assert not (tmp_path / "run").exists()  # --check writes nothing
    big = _write_cfg(tmp_path / "big.yaml", make_config(tmp_path / "r2", root, "srcnn-915", train={"batch_size": 4}))
    res = runner.invoke(main, ["train", str(big), "--check"])
    assert res.exit_code == 2 and "train.batch_size: 4 exceeds the 2 training samples" in res.output
    vgg = _write_cfg(tmp_path / "vgg.yaml", make_config(tmp_path / "r3", root, "esrgan", losses={"perceptual": 1.0}))
    res = runner.invoke(main, ["train", str(vgg), "--check"])
    assert res.exit_code == 2 and "vgg19" in res.output.lower() and "Traceback" not in res.output
    clip = _write_cfg(tmp_path / "clip.yaml", make_config(tmp_path / "r4", root, "srcnn-915",
                                                          validation={"metrics": ["clipscore:clip-rn50"]}))
    res = runner.invoke(main, ["train", str(clip), "--check"])
    assert res.exit_code == 2 and "Error:" in res.output and "Traceback" not in res.output
    assert "--check" in runner.invoke(main, ["train", "--help"]).output and "resolves every weight" in \
        " ".join(runner.invoke(main, ["train", "--help"]).output.split())


def test_resume_prints_checkpoint_and_refuses_cosine_steps_change(tmp_path):
    from clipscore_sr.baselines.trainer import Trainer
    from clipscore_sr.errors import ConfigError

    from .train_support import make_config, make_s2naip

    root = make_s2naip(tmp_path / "s2", n=3, frames=2)
    cfg = make_config(tmp_path / "run", root, "srcnn-915", validation={"interval": 0}, data={"val_fraction": 0.0},
                      schedule={"type": "cosine"}, train={"steps": 2, "checkpoint_interval": 2})
    path = _write_cfg(tmp_path / "run.yaml", cfg)
    runner = CliRunner()
    assert runner.invoke(main, ["train", str(path)]).exit_code == 0
    res = runner.invoke(main, ["train", str(path), "--resume"])
    assert res.exit_code == 0 and "resuming from " in res.output and "step_00000002.pt at step 2" in res.output
    cfg["train"]["steps"] = 4
    with pytest.raises(ConfigError, match="train.steps 4 differs from the run's 2 and the cosine schedule"):
        Trainer(cfg, resume=True)
    cfg["schedule"] = {"type": "constant"}  # allowed without a cosine schedule... but the schedule itself differs
    with pytest.raises(ConfigError, match="'schedule' differs"):
        Trainer(cfg, resume=True)


def test_exported_generators_follow_the_umask_and_bad_checkpoints_say_what_was_expected(tmp_path):
    import os
    import stat

    from safetensors.torch import save_file

    from clipscore_sr.baselines import build_generator
    from clipscore_sr.baselines.trainer import export_generator

    old = os.umask(0o022)
    try:
        out = export_generator(build_generator("srcnn-915", "small", 1, 4, **TINY_SRCNN), tmp_path / "g.safetensors")
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644 and stat.S_IMODE(out.with_suffix(".json").stat().st_mode) == 0o644
    save_file({"w": torch.zeros(2)}, str(tmp_path / "gen.safetensors"))
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("hello")
    torch.save({"params_ema": {}}, tmp_path / "authors.pth")
    for name in ("gen.safetensors", "empty.pt", "notes.txt", "authors.pth"):
        res = CliRunner().invoke(main, ["export-generator", str(tmp_path / name), "-o", str(tmp_path / "x.safetensors")])
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert res.exit_code == 2 and len(lines) == 1, res.output
        assert str(tmp_path / name) in lines[0] and "expected a training checkpoint checkpoints/step_*.pt" in lines[0]


# --------------------------------------------------------------------------------------------------
# item 11: parameter counts of the authors' configs (generator only, and with their discriminator)

def test_authors_config_parameter_counts_generator_and_discriminator():
    from clipscore_sr.baselines import build_discriminator, count_parameters, parameter_count

    sums = {}
    for size, d_feat in (("small", 64), ("medium", 128), ("large", 256)):
        g = parameter_count("esrgan", size, 8, 4)
        d = count_parameters(build_discriminator(8, True, num_feat=d_feat, device="meta"))  # feed_disc_lr: 27 ch
        sums[size] = (round(g / 1e6, 1), round((g + d) / 1e6, 1))
    assert sums == {"small": (16.7, 21.1), "medium": (66.8, 84.3), "large": (267.0, 337.1)}
    # the paper's 17 / 87 / 347 M match neither column (87 and 347 are far from both)
    assert all(abs(p - x) > 2 for p, (x, _) in zip((87, 347), (sums["medium"], sums["large"])))
    assert all(abs(p - y) > 2 for p, (_, y) in zip((87, 347), (sums["medium"], sums["large"])))
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "21.1 M / 84.3 M / 337.1 M" in readme and "16.7 M / 66.8 M / 267.0 M" in readme


# --------------------------------------------------------------------------------------------------
# items 21-22: the README's smoke training example is VGG-free, offline and does not validate frozen EMA weights

def test_readme_training_example_is_vgg_free_with_a_suitable_ema():
    import re

    import yaml

    from clipscore_sr.baselines.train_config import validate_config

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"cat > (?:srmetrics-demo/)?demo-train.yaml <<'EOF'\n(.*?)\nEOF\n", readme, flags=re.S)
    assert block, "README lost the demo training example"
    cfg = validate_config(yaml.safe_load(block.group(1)), check_paths=False)
    assert cfg["model"]["name"] in ("srcnn", "highresnet", "srcnn-915", "srcnn-mf", "highresnet-compact")  # L2 family: no VGG19, no discriminator
    assert cfg["losses"]["clip"] == 0.0 and cfg["train"]["device"] == "cpu"
    decay, steps = cfg["train"]["ema_decay"], cfg["train"]["steps"]
    assert decay is None or decay ** steps < 0.5  # validation does not mostly see the initial weights
    assert cfg["data"]["train"]["lr_dir"].startswith("srmetrics-demo/")  # the bundled demo copy
