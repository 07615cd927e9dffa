"""CLIP aliases: preprocessing derived from open_clip (== open_clip's own eval transform on a real image),
the remote-sensing aliases (RemoteCLIP, GeoRSCLIP) loaded from files in their published formats, and the
true tolerance of our batched tensor resize against open_clip's PIL path.

Tolerances:
* our batched preprocessing vs open_clip's transform on the same float tensor: 1e-5 in normalised units;
* vs open_clip's transform on the 8-bit PIL image (what a user of open_clip feeds): identical at the native
  size; when resized, PIL's uint8 bicubic (saturated and rounded to 8 bits, its own edge handling) differs
  from torch's float antialiased bicubic by up to ~30/255 at sharp edges (asserted < 30 levels; observed 28.5
  at 64x64) and < 1/255 on average (observed <= 0.40); the CLIPScore of a pair moves by <= 1e-4 (observed
  <= 4e-6 with random weights; the issue measured 5.3e-5 with real ones), < 1/10 of what visible noise does.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict
from PIL import Image

from clipscore_sr.errors import SRMetricsError, WeightsNotFoundError
from clipscore_sr.metrics import get_metric
from clipscore_sr.metrics.clip import CLIP_ALIASES, Preprocess, parse_clip_spec, preprocess_batch
from clipscore_sr.metrics.clip.model import quiet_open_clip

from .test_clip_support import (
    TINY_VIT,
    cos64,
    image_batch,
    isolated_offline_env,
    make_model,
    register_tiny_arch,
)

DEMO_GT = Path(__file__).resolve().parents[1] / "clipscore_sr" / "data" / "demo" / "scene" / "gt"

_isolated = pytest.fixture(autouse=True)(isolated_offline_env)


def demo_scene() -> np.ndarray:
    """The bundled demo scene (real imagery), reassembled from its 64x64 GT tiles ``yYYYxXXX.png``: uint8 HWC."""
    tiles = sorted(DEMO_GT.glob("y*x*.png"))
    pos = [(int(p.stem[1:4]), int(p.stem[5:8])) for p in tiles]
    h, w = max(y for y, _ in pos) + 64, max(x for _, x in pos) + 64
    scene = np.zeros((h, w, 3), np.uint8)
    for p, (y, x) in zip(tiles, pos):
        scene[y:y + 64, x:x + 64] = np.asarray(Image.open(p).convert("RGB"))
    return scene


def open_clip_eval_cfg(alias) -> PreprocessCfg:
    """What open_clip's create_model attaches for the alias's weights: PreprocessCfg defaults, the pretrained
    tag's values merged on top (open_clip's own merge_preprocess_dict), the architecture's image size."""
    cfg = dict(merge_preprocess_dict(PreprocessCfg(), open_clip.get_pretrained_cfg(alias.model, alias.pretrained)
                                     if alias.pretrained else {}))
    size = open_clip.get_model_config(alias.model)["vision_cfg"]["image_size"]
    cfg["size"] = size if isinstance(size, int) else tuple(size)
    return PreprocessCfg(**cfg)


def test_every_alias_matches_open_clips_own_transform_on_a_real_image():
    scene = demo_scene()
    x = torch.from_numpy(scene.copy()).permute(2, 0, 1).float()[None] / 255  # 320x448: resized and cropped
    for name, alias in CLIP_ALIASES.items():
        if alias.pretrained is None:  # RemoteCLIP: the transform of create_model_and_transforms(NAME) itself
            with quiet_open_clip(), torch.device("meta"):
                _, _, tf = open_clip.create_model_and_transforms(alias.model, pretrained=None, device="meta")
        else:
            tf = image_transform_v2(open_clip_eval_cfg(alias), is_train=False)
        ref = tf(x[0])[None]
        got = preprocess_batch(x, alias.preprocess)
        assert got.shape == ref.shape, name
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=0, msg=name)
        if alias.pretrained:
            assert alias.quick_gelu == bool(open_clip.get_pretrained_cfg(alias.model, alias.pretrained)
                                            .get("quick_gelu", False)), name


def test_remote_sensing_aliases_record_their_official_loading():
    for name in ("remoteclip-rn50", "remoteclip-vit-b-32", "remoteclip-vit-l-14"):
        a = CLIP_ALIASES[name]
        assert a.hf_repo == "chendelong/RemoteCLIP" and a.hf_filename == f"RemoteCLIP-{a.model}.pt"
        assert a.pretrained is None and a.strict and not a.quick_gelu and a.remote_sensing
        assert (a.image_size, a.interpolation, a.resize_mode) == (224, "bicubic", "shortest")
        assert a.mean == open_clip.OPENAI_DATASET_MEAN and a.std == open_clip.OPENAI_DATASET_STD
        s = parse_clip_spec(name)
        assert (s.kind, s.model, s.repo, s.path) == ("hub-file", a.model, a.hf_repo, a.hf_filename)
    sizes = {"ViT-B-32": 224, "ViT-L-14": 224, "ViT-L-14-336": 336, "ViT-H-14": 224}
    for model, size in sizes.items():
        a = CLIP_ALIASES[f"georsclip-{model.lower()}"]
        assert a.hf_repo == "Zilun/GeoRSCLIP" and a.hf_filename == f"ckpt/RS5M_{model}.pt" and not a.strict
        assert a.image_size == size and a.mean == open_clip.OPENAI_DATASET_MEAN and a.resize_mode == "shortest"
        assert a.quick_gelu == (model != "ViT-H-14")  # OpenAI-initialised towers use QuickGELU


@pytest.mark.slow  # a fresh interpreter importing torch and open_clip: several seconds
def test_aliases_are_not_derived_at_import():
    code = ("import sys, clipscore_sr.metrics.clip.aliases as a; assert 'open_clip' not in sys.modules; "
            "a.CLIP_ALIASES['clip-rn50'].image_size; assert 'open_clip' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------------------
# RemoteCLIP / GeoRSCLIP files, through the public spec (tiny architecture standing in for the real one)
# ---------------------------------------------------------------------------------------------------------

def _hf_file(hf_home: Path, repo: str, filename: str) -> Path:
    repo_dir = hf_home / "hub" / ("models--" + repo.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text("f" * 40)
    path = repo_dir / "snapshots" / ("f" * 40) / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def tiny_alias(tmp_path, monkeypatch):
    """Swap the alias's architecture for a registered tiny one (files, repo, strictness stay the alias's)."""
    arch = register_tiny_arch(tmp_path)

    def swap(name: str):
        alias = dataclasses.replace(CLIP_ALIASES[name], model=arch, pretrained=None)
        monkeypatch.setitem(CLIP_ALIASES, name, alias)
        return alias
    return swap


def _official_embed(model, images: torch.Tensor, size: int) -> torch.Tensor:
    tf = image_transform_v2(PreprocessCfg(size=size), is_train=False)  # what create_model_and_transforms gives
    with torch.no_grad():
        return model.encode_image(torch.stack([tf(i) for i in images])).float()


def test_remoteclip_plain_state_dict_from_hf_cache(tmp_path, tiny_alias):
    alias = tiny_alias("remoteclip-vit-b-32")
    path = _hf_file(tmp_path / "hf_home", alias.hf_repo, alias.hf_filename)
    torch.save(make_model(TINY_VIT, seed=21).state_dict(), path)  # RemoteCLIP's format: a plain state dict
    # the official loading: create_model_and_transforms(NAME) without a tag, then load_state_dict
    official, _, _ = open_clip.create_model_and_transforms(alias.model)
    official.load_state_dict(torch.load(path, weights_only=True))
    official.eval()
    m = get_metric("clipscore:remoteclip-vit-b-32")
    assert m.check_weights() == path
    sr, gt = image_batch(3, 40, 56, seed=5)
    ref = cos64(_official_embed(official, sr, 32), _official_embed(official, gt, 32))
    torch.testing.assert_close(m(sr, gt), ref, atol=1e-5, rtol=0)
    prov = m.provenance()["model"]
    assert prov["kind"] == "hub-file" and "RemoteCLIP" in prov["preprocess_source"]
    # a file missing tensors is refused (RemoteCLIP loads strictly)
    sd = make_model(TINY_VIT, seed=21).state_dict()
    sd.pop("text_projection")
    torch.save(sd, path)
    with pytest.raises(SRMetricsError, match="do not fit architecture"):
        get_metric("clipscore:remoteclip-vit-b-32").load()


def test_georsclip_checkpoint_loads_non_strictly_but_needs_the_image_tower(tmp_path, tiny_alias, monkeypatch):
    alias = tiny_alias("georsclip-vit-b-32")
    path = _hf_file(tmp_path / "hf_home", alias.hf_repo, alias.hf_filename)
    full = make_model(TINY_VIT, seed=22)
    sd = {k: v for k, v in full.state_dict().items() if not k.startswith("transformer.")}  # text layers absent
    sd["unexpected.extra"] = torch.zeros(1)
    torch.save(sd, path)
    official, _, _ = open_clip.create_model_and_transforms(alias.model)
    official.load_state_dict(torch.load(path, weights_only=True), strict=False)  # GeoRSCLIP's official call
    official.eval()
    sr, gt = image_batch(3, 48, 40, seed=6)
    ref = cos64(_official_embed(official, sr, 32), _official_embed(official, gt, 32))
    torch.testing.assert_close(get_metric("clipscore:georsclip-vit-b-32")(sr, gt), ref, atol=1e-5, rtol=0)
    sd.pop("visual.proj")
    torch.save(sd, path)
    from clipscore_sr.metrics.clip import clear_model_cache

    clear_model_cache()
    with pytest.raises(SRMetricsError, match="lack 1 image-tower tensors.*visual.proj") as info:
        get_metric("clipscore:georsclip-vit-b-32").load()
    assert "\n" not in str(info.value)


def test_remote_sensing_weights_missing_offline_is_one_line():
    with pytest.raises(WeightsNotFoundError) as info:
        get_metric("clipscore:remoteclip-rn50").check_weights()
    msg = str(info.value)
    assert "\n" not in msg and "chendelong/RemoteCLIP" in msg and "RemoteCLIP-RN50.pt" in msg
    assert "offline" in msg and "srmetrics models --fetch remoteclip-rn50" in msg


def test_models_cli_says_remote_sensing():
    from click.testing import CliRunner

    from clipscore_sr.cli import main

    res = CliRunner().invoke(main, ["models", "--no-params"])
    assert res.exit_code == 0, res.output
    line = next(ln for ln in res.output.splitlines() if ln.startswith("georsclip-vit-l-14-336 "))
    assert "remote sensing" in line and "336px" in line and "Zilun/GeoRSCLIP/ckpt/RS5M_ViT-L-14-336.pt" in line


# ---------------------------------------------------------------------------------------------------------
# the PIL path: how far our batched float resize is from open_clip fed a PIL image
# ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [(224, 224), (64, 64), (100, 150), (256, 256), (320, 448), (500, 700)])
def test_resize_tolerance_against_open_clips_pil_path(size):
    h, w = size
    scene = Image.fromarray(demo_scene())
    img = scene if scene.size == (w, h) else scene.resize((w, h), Image.BICUBIC)
    noisy = np.clip(np.asarray(img).astype(int) + np.random.default_rng(0).integers(-40, 41, (h, w, 3)), 0, 255)
    imgs = [img, Image.fromarray(noisy.astype(np.uint8))]
    cfg = PreprocessCfg(size=224)
    tf = image_transform_v2(cfg, is_train=False)
    ref = torch.stack([tf(i) for i in imgs])  # open_clip on the PIL images
    x = torch.stack([torch.from_numpy(np.array(i)).permute(2, 0, 1) for i in imgs]).float() / 255
    got = preprocess_batch(x, Preprocess.from_config(dict(mean=cfg.mean, std=cfg.std), 224))
    std = torch.tensor(cfg.std).view(1, 3, 1, 1)
    diff = ((got - ref) * std * 255).abs()  # in 8-bit levels
    if size == (224, 224):
        assert float(diff.max()) == 0  # native size: no resampling, identical
    else:
        assert float(diff.max()) < 30 and float(diff.mean()) < 1.0
    torch.manual_seed(0)
    cfg_model = {**TINY_VIT, "vision_cfg": {**TINY_VIT["vision_cfg"], "image_size": 224, "patch_size": 32}}
    model = make_model(cfg_model, seed=0)
    with torch.no_grad():
        e_ref, e_got = model.encode_image(ref), model.encode_image(got)
    c_ref, c_got = cos64(e_ref[:1], e_ref[1:]), cos64(e_got[:1], e_got[1:])
    print(f"{size}: max {float(diff.max()):.2f} mean {float(diff.mean()):.3f} levels, "
          f"cosine {float(c_ref):.6f} differs by {float((c_ref - c_got).abs()):.1e}")
    assert float((c_ref - c_got).abs()) <= 1e-4
    # the resampling difference moves the score far less than the noise does (the check is not trivial)
    assert float((c_ref - c_got).abs()) <= 0.1 * float(1 - c_ref)



def test_static_catalog_equals_what_open_clip_derives():
    """`srmetrics models` lists from clipscore_sr/data/clip_aliases.json (no torch, no open_clip): the file must
    still be what the registry derives from open_clip (regenerate: python -m clipscore_sr.metrics.clip.aliases)."""
    import json
    from importlib import resources

    from clipscore_sr.metrics.clip.aliases import CATALOG_FILE, catalog

    stored = json.loads((resources.files("clipscore_sr.data") / CATALOG_FILE).read_text())
    assert stored == catalog()


def test_models_listing_imports_neither_torch_nor_open_clip():
    import subprocess
    import sys

    code = ("import sys\nfrom clipscore_sr.cli import main\ntry:\n    main(['models'], standalone_mode=False)\n"
            "except SystemExit:\n    pass\nprint('HEAVY', [m for m in ('torch', 'open_clip', 'pandas') if m in sys.modules])")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "clipa-v2-bigg *" in res.stdout and "HEAVY []" in res.stdout, res.stdout + res.stderr
