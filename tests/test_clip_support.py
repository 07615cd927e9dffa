"""Tiny randomly initialised open_clip models saved in every format the CLIPScore loader supports.

Shared by tests/test_clip*.py (this module has no tests of its own). Nothing here touches the network.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import open_clip
import torch
from open_clip.transform import PreprocessCfg, image_transform_v2

from clipscore_sr.embed_cache import clear_memory_cache
from clipscore_sr.metrics.clip import clear_model_cache

TEXT_CFG = {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}
TINY_VIT = {"embed_dim": 24, "vision_cfg": {"image_size": 32, "layers": 2, "width": 48, "patch_size": 8,
                                            "head_width": 16}, "text_cfg": TEXT_CFG}
TINY_RN = {"embed_dim": 24, "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8},
           "text_cfg": TEXT_CFG}
PREP = {"mean": [0.41, 0.52, 0.38], "std": [0.21, 0.27, 0.33], "interpolation": "bilinear",
        "resize_mode": "shortest"}
REGISTERED_NAME = "srtest-tiny-vit"
HF_REPO = "srtestorg/tiny-clip"
HF_REV = "0123456789abcdef0123456789abcdef01234567"


def make_model(cfg: dict, seed: int) -> torch.nn.Module:
    from open_clip.model import CLIP

    torch.manual_seed(seed)
    model = CLIP(**cfg)
    if "patch_size" not in cfg["vision_cfg"]:
        # a randomly initialised ModifiedResNet maps every image to nearly the same embedding; wider weights
        # spread them so the tests see cosines clearly below 1
        with torch.no_grad():
            for p in model.visual.parameters():
                if p.ndim >= 2:
                    p.normal_(0, 1.5 / p[0].numel() ** 0.5)
            model.visual.attnpool.positional_embedding.mul_(0.1)
    return model.eval()


def write_local_dir(d: Path, cfg: dict, prep: dict | None, seed: int, weights: str = "open_clip_model.safetensors"
                    ) -> tuple[Path, torch.nn.Module]:
    """An open_clip folder: open_clip_config.json (model_cfg + preprocess_cfg) and one weights file."""
    d.mkdir(parents=True, exist_ok=True)
    model = make_model(cfg, seed)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if weights.endswith(".safetensors"):
        from safetensors.torch import save_file

        save_file(state, d / weights)
    else:
        torch.save(state, d / weights)
    payload = {"model_cfg": cfg}
    if prep is not None:
        payload["preprocess_cfg"] = prep
    (d / "open_clip_config.json").write_text(json.dumps(payload))
    return d, model


def write_hf_cache(hf_home: Path, cfg: dict, prep: dict, seed: int, repo: str = HF_REPO) -> torch.nn.Module:
    """``$HF_HOME/hub/models--ORG--REPO/{refs/main, snapshots/<rev>/...}`` as huggingface_hub lays it out."""
    repo_dir = hf_home / "hub" / ("models--" + repo.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(HF_REV)
    _, model = write_local_dir(repo_dir / "snapshots" / HF_REV, cfg, prep, seed,
                               weights="open_clip_pytorch_model.bin")
    return model


def register_tiny_arch(root: Path) -> str:
    """Register TINY_VIT as a built-in open_clip architecture name (for the MODEL@FILE syntax)."""
    if REGISTERED_NAME not in open_clip.list_models():
        cfg_dir = root / "srtest_model_configs"
        cfg_dir.mkdir(parents=True, exist_ok=True)
        (cfg_dir / f"{REGISTERED_NAME}.json").write_text(json.dumps(TINY_VIT))
        open_clip.add_model_config(cfg_dir)
    return REGISTERED_NAME


def open_clip_transform(cfg: PreprocessCfg):
    """open_clip's eval transform for one float tensor image ``[3,H,W]``.

    ``shortest``/``squash`` use ``image_transform_v2`` unchanged. Its ``longest`` path (``ResizeKeepRatio``)
    reads ``img.size`` the PIL way, so for tensors we run the same open_clip steps by hand: its
    ``ResizeKeepRatio.get_params`` for the size, torchvision resize, its ``center_crop_or_pad``, Normalize.
    """
    if cfg.resize_mode != "longest":
        return image_transform_v2(cfg, is_train=False)
    import torchvision.transforms.functional as TF
    from open_clip.transform import ResizeKeepRatio, center_crop_or_pad
    from torchvision.transforms import InterpolationMode, Normalize

    target = (cfg.size, cfg.size) if isinstance(cfg.size, int) else tuple(cfg.size)
    mode = InterpolationMode.BILINEAR if cfg.interpolation == "bilinear" else InterpolationMode.BICUBIC
    norm = Normalize(mean=cfg.mean, std=cfg.std)

    def tf(img: torch.Tensor) -> torch.Tensor:
        class _PilLike:  # what get_params reads: .size == (width, height)
            size = (img.shape[-1], img.shape[-2])

        new = ResizeKeepRatio.get_params(_PilLike, target, 1.0)
        return norm(center_crop_or_pad(TF.resize(img, new, mode), list(target), fill=cfg.fill_color))

    return tf


def reference_embed(model: torch.nn.Module, images: torch.Tensor, prep: dict, size) -> torch.Tensor:
    """open_clip called directly: its own eval transform per image (tensor path), then encode_image."""
    cfg = PreprocessCfg(size=size, mean=tuple(prep["mean"]), std=tuple(prep["std"]),
                        interpolation=prep.get("interpolation", "bicubic"),
                        resize_mode=prep.get("resize_mode", "shortest"))
    tf = open_clip_transform(cfg)
    x = torch.stack([tf(img.expand(3, -1, -1) if img.shape[0] == 1 else img) for img in images])
    with torch.no_grad():
        return model.encode_image(x).float()


def cos64(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a.double(), b.double()
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))


def image_batch(n: int, h: int, w: int, seed: int, c: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """(sr, gt) float32 in [0,1]: smooth random GT and SR = GT + noise of growing strength."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, c, max(2, h // 8), max(2, w // 8), generator=g)
    gt = torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
    noise = torch.randn(n, c, h, w, generator=g) * torch.linspace(0.02, 0.4, n).view(n, 1, 1, 1)
    return (gt + noise).clamp(0, 1), gt


def uint8_images(n: int, h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def isolated_offline_env(tmp_path, monkeypatch):
    """Empty caches, offline, and any attempt to open a network connection fails the test."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("CLIPSCORE_SR_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("CLIPSCORE_SR_CACHE", str(tmp_path / "srcache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))

    def no_network(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    clear_model_cache()
    clear_memory_cache()
    yield
    clear_model_cache()
    clear_memory_cache()
