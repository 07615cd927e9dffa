"""Shared helpers of tests/test_train*.py: synthetic S2-NAIP data, tiny configs, random VGG19 weights.

(This module has no tests of its own.)
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .conftest import save_png

TINY_ESRGAN = {"num_feat": 8, "num_block": 1, "num_grow_ch": 4}
TINY_SRCNN = {"n1": 16, "n2": 8}
TINY_SR3 = {"inner_channel": 8, "channel_mults": [1, 2], "norm_groups": 4, "res_blocks": 1, "attn_res": [],
            "n_timestep": 50, "dropout": 0.1}


def make_s2naip(root: Path, n: int = 6, frames: int = 3, seed: int = 0) -> Path:
    """``n`` S2-NAIP tiles: smooth 128x128 RGB targets and strips of ``frames`` noisy 32x32 area-downsampled
    copies, so a small network can learn the mapping."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:128, 0:128] / 128.0
    for i in range(n):
        tile = f"{1000 + i}_2000"
        f1, f2, ph = rng.uniform(1, 4), rng.uniform(1, 4), rng.uniform(0, 6)
        hr = np.stack([0.5 + 0.4 * np.sin(2 * np.pi * (f1 * xx + 0.3 * c) + f2 * 3 * yy + ph) for c in range(3)], -1)
        hr8 = (np.clip(hr, 0.02, 1) * 255).astype(np.uint8)
        save_png(root / "naip" / f"uuid{i}" / tile / "rgb.png", hr8)
        lr = hr8.astype(np.float64).reshape(32, 4, 32, 4, 3).mean((1, 3))
        strip = np.stack([np.clip(lr + rng.normal(0, 2, lr.shape), 1, 255) for _ in range(frames)])
        save_png(root / "sentinel2" / tile / "tci.png", strip.astype(np.uint8).reshape(frames * 32, 32, 3))
    return root


def make_config(out: Path, data_root: Path, model: str = "srcnn-915", options: dict | None = None, **sections: Any
                ) -> dict[str, Any]:
    """A small CPU config; ``sections`` update (one level deep) the defaults below."""
    opts = {"srcnn-915": TINY_SRCNN, "esrgan": TINY_ESRGAN, "sr3": TINY_SR3}.get(model, {})
    cfg: dict[str, Any] = {
        "output_dir": str(out), "seed": 0,
        "model": {"name": model, "n_frames": 2, "scale": 4, "options": copy.deepcopy(options or opts)},
        "data": {"reader": "s2naip", "train": {"root": str(data_root)}, "val_fraction": 0.34, "crop_size": 8,
                 "val_crop_size": 8},
        "optimizer": {"lr": 1e-3},
        "train": {"steps": 6, "batch_size": 2, "checkpoint_interval": 3, "device": "cpu"},
        "validation": {"interval": 3, "metrics": ["psnr"], "batch_size": 2, "sampler_steps": 2},
    }
    if model == "esrgan":
        cfg["discriminator"] = {"num_feat": 4}
        cfg["losses"] = {"perceptual": 0.0}
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


def write_random_vgg19(folder: Path, seed: int = 0) -> Path:
    """Random He-initialised VGG19 ``features`` weights in ``folder/vgg19-random.pth``: user-supplied stand-in
    weights, passed by path (``losses.perceptual_weights``, ``VGGPerceptualLoss(weights_path=...)``), never under
    torchvision's official file name (whose SHA-256 prefix they cannot match)."""
    from torchvision.models import vgg19

    with torch.device("meta"):
        feats = vgg19(weights=None).features
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, p in feats.named_parameters():
        if name.endswith("weight"):
            fan_in = p.shape[1] * p.shape[2] * p.shape[3]
            state[f"features.{name}"] = torch.randn(p.shape, generator=g) * (2.0 / fan_in) ** 0.5
        else:
            state[f"features.{name}"] = torch.randn(p.shape, generator=g) * 0.01
    path = folder / "vgg19-random.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def hashed_copy(path: Path) -> Path:
    """A copy of a random weights file named with its own SHA-256 prefix (``vgg19-<sha8>.pth``): the loader
    checks the prefix in the official name, which belongs to the ImageNet file a random one cannot match."""
    import hashlib
    import shutil

    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    copy = path.with_name(path.name.rsplit("-", 1)[0] + f"-{digest}{path.suffix}")
    shutil.copyfile(path, copy)
    return copy


def state_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    """Names of tensors that are not bit-identical."""
    assert a.keys() == b.keys()
    return [k for k in a if not torch.equal(a[k], b[k])]
