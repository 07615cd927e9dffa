"""Round 2 against the paper authors' code path (allenai/satlas-super-resolution): their SRCNN and HighRes-net
(transcribed in tests/authors_archs_support.py, loaded with the same random state dict as ours), their sampler,
their discriminator step, the configs' batch sizes/precision, and the scale of x3 ESRGAN weights."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from clipscore_sr.baselines import build_generator, count_parameters, load_checkpoint
from clipscore_sr.cli import main
from clipscore_sr.errors import ConfigError

from . import authors_archs_support as theirs
from .test_train import _offline  # noqa: F401  (autouse: offline, empty weight caches)
from .train_support import make_config, make_s2naip

CONFIGS = Path(__file__).resolve().parents[1] / "baselines" / "configs"


def _theirs(kind: str, **kw):
    cfg = {**theirs.AUTHORS_NETWORK_G, **kw}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return (theirs.HighResNet if kind == "highresnet" else theirs.SRCNN)(**cfg)


def _randomise(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """A random state dict (PReLU slopes too, so that they are not all 0.25)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for k, v in model.state_dict().items():
        state[k] = (torch.randn(v.shape, generator=g) * (0.5 if k.endswith("bias") else 0.08)).to(v.dtype)
    # shared modules appear under several names: one tensor per parameter, as a saved state dict holds
    model.load_state_dict(state)
    return model.state_dict()


def _ours(kind: str, frames: int = 8, scale: int = 4, **kw):
    return build_generator(kind, "small", frames, scale, **kw)


# --------------------------------------------------------------------------------------------------
# item 1: the authors' SRCNN and HighRes-net

@pytest.mark.parametrize("kind,params,n_keys", [("srcnn", 1_773_816, 42), ("highresnet", 3_249_019, 57)])
def test_authors_networks_parameter_counts_and_state_dict_keys(kind, params, n_keys):
    ref = _theirs(kind)
    ours = build_generator(kind, "small", 8, 4, device="meta")
    assert count_parameters(ref) == count_parameters(ours) == params
    assert list(ours.state_dict()) == list(ref.state_dict()) and len(ref.state_dict()) == n_keys
    # ours under their own names
    assert count_parameters(build_generator("srcnn-915", "small", 8, 4, device="meta")) == 128_963
    assert count_parameters(build_generator("highresnet-compact", "small", 8, 4, device="meta")) == 622_924


@pytest.mark.parametrize("kind", ["srcnn", "highresnet"])
@pytest.mark.parametrize("frames,ref_frame", [(8, False), (3, True)])
def test_authors_networks_same_weights_same_outputs(kind, frames, ref_frame, tmp_path):
    """Their module with a random state dict, saved as BasicSR does, loads into ours (architecture and scale read
    from the shapes) and gives their outputs, in eval mode and in train mode (dropout, same seed)."""
    kw = dict(hidden_channels=32, revisits=frames, use_reference_frame=ref_frame)
    ref = _theirs(kind, **kw).double()
    state = _randomise(ref, 1)
    torch.save({"params_ema": state}, tmp_path / "net_g.pth")
    ours = load_checkpoint(tmp_path / "net_g.pth", use_reference_frame=ref_frame).double()
    assert ours.name == kind and ours.scale == 4 and ours.n_frames == frames
    lr = torch.rand(2, frames, 3, 32, 32, dtype=torch.float64)
    ref.eval()
    with torch.no_grad():
        diff = (ours(lr) - ref(lr)[:, 0]).abs().max().item()
    print(f"{kind} T={frames} ref={ref_frame}: eval max |ours - theirs| = {diff:.3g}")
    assert diff < 1e-12
    ref.train(), ours.train()
    torch.manual_seed(5)
    a = ref(lr)[:, 0]
    torch.manual_seed(5)
    b = ours(lr)
    assert (a - b).abs().max().item() < 1e-12  # the same dropout masks: dropout sits where theirs does
    b.square().mean().backward()
    used = [n for n, p in ours.named_parameters() if p.requires_grad]
    assert all(dict(ours.named_parameters())[n].grad is not None for n in used)


def test_authors_srcnn_resize_matches_kornia():
    """output_size = 128 on 32-px frames is their identity resize; on other sizes ours is kornia's bilinear
    antialiased Resize (upscaling and shrinking)."""
    for lr_size, out in ((16, 128), (48, 128), (40, 128)):
        ref = _theirs("srcnn", hidden_channels=16, output_size=out).double()
        state = _randomise(ref, 2)
        ours = _ours("srcnn", hidden_channels=16, output_size=out).double()
        ours.load_state_dict(state)
        ref.eval(), ours.eval()
        lr = torch.rand(1, 8, 3, lr_size, lr_size, dtype=torch.float64)
        with torch.no_grad():
            d = (ours(lr) - ref(lr)[:, 0]).abs().max().item()
        print(f"srcnn resize {4 * lr_size}->{out}: max diff {d:.3g}")
        assert d < 1e-10


def test_authors_networks_refuse_bad_shapes_and_old_options():
    with pytest.raises(ConfigError, match="not divisible by scale"):
        build_generator("srcnn", "small", 8, 3)
    with pytest.raises(ConfigError, match="srcnn-915"):
        build_generator("srcnn", "small", 8, 4, n1=8)
    with pytest.raises(ConfigError, match="highresnet-compact"):
        build_generator("highresnet", "small", 8, 4, features=8)


def test_old_checkpoints_of_our_networks_still_load(tmp_path):
    from clipscore_sr.baselines import save_checkpoint

    torch.manual_seed(0)
    m = build_generator("srcnn-915", "small", 2, 4, n1=8, n2=4)
    path = save_checkpoint(m, tmp_path / "old.safetensors")
    import json

    meta = json.loads(path.with_suffix(".json").read_text())
    meta["name"] = "srcnn"  # as written before the rename
    path.with_suffix(".json").write_text(json.dumps(meta))
    from safetensors.torch import save_file

    save_file(m.state_dict(), str(path))  # no embedded metadata: the sidecar speaks
    assert load_checkpoint(path).name == "srcnn-915"


# --------------------------------------------------------------------------------------------------
# item 2: their sampler (BasicSR EnlargedSampler, set_epoch never called)

@pytest.mark.parametrize("world", [1, 2])
def test_authors_sampler_is_basicsr_enlarged_sampler_without_set_epoch(tmp_path, world):
    from clipscore_sr.baselines.trainer import Trainer

    root = make_s2naip(tmp_path / "s2", n=7, frames=2)
    cfg = make_config(tmp_path / "run", root, "srcnn-915", validation={"interval": 0},
                      data={"val_fraction": 0.0, "sampler": "authors"}, train={"batch_size": 2 * world})
    trainer = Trainer(cfg)
    for rank in range(world):
        trainer.rank, trainer.world, trainer.local_batch = rank, world, 2
        sampler = theirs.EnlargedSampler(list(range(7)), world, rank)
        loader = torch.utils.data.DataLoader(list(range(7)), batch_size=2, sampler=sampler, drop_last=True)
        expected = [b.tolist() for b in loader]
        for epoch in range(3):  # the same permutation every epoch, as theirs
            got = trainer._epoch_batches(epoch)
            assert got == expected[: len(got)] and len(got) == 7 // (2 * world)


# --------------------------------------------------------------------------------------------------
# item 3: the shipped configs say which file of theirs they reproduce, with its batch size and fp32

THEIR_FILES = {  # ours: (their file, batch_size_per_gpu in the stored copy, model)
    "esrgan_s2naip.yaml": ("esrgan_baseline.yml", 64, "esrgan"),
    "esrgan_clip_s2naip.yaml": ("esrgan_baseline_cliploss.yml", 64, "esrgan"),
    "esrgan_medium_s2naip.yaml": ("esrgan_larger1.yml", 32, "esrgan"),
    "esrgan_large_s2naip.yaml": ("esrgan_larger2.yml", 32, "esrgan"),
    "srcnn_s2naip.yaml": ("srcnn_s2naip_urban.yml", 32, "srcnn"),
    "highresnet_s2naip.yaml": ("highresnet_s2naip_urban.yml", 32, "highresnet"),
}


@pytest.mark.parametrize("fname", sorted(THEIR_FILES))
def test_configs_cite_their_file_batch_precision_and_sampler(fname):
    from clipscore_sr.baselines.train_config import load_config

    cfg = load_config(CONFIGS / fname, check_paths=False)
    their_file, batch, model = THEIR_FILES[fname]
    assert their_file in (CONFIGS / fname).read_text()
    assert cfg["train"]["batch_size"] == batch and cfg["train"]["precision"] == "fp32"
    assert cfg["data"]["sampler"] == "authors" and cfg["model"]["name"] == model
    assert cfg["optimizer"]["betas"] == [0.9, 0.99] and cfg["train"]["grad_clip"] is None
    assert cfg["schedule"]["type"] == "multistep" and cfg["schedule"]["milestones"] == [400000]
    assert cfg["validation"]["crop_border"] == 4 and cfg["data"]["val"]["root"].endswith("small_val_set")


# --------------------------------------------------------------------------------------------------
# item 4: the discriminator step is D(real) then D(fake), as BasicSR's ESRGANModel

def test_discriminator_step_real_then_fake(tmp_path):
    from clipscore_sr.baselines.train_losses import gan_loss
    from clipscore_sr.baselines.trainer import Trainer

    root = make_s2naip(tmp_path / "s2", n=4, frames=2)
    cfg = make_config(tmp_path / "run", root, "esrgan", validation={"interval": 0}, data={"val_fraction": 0.0},
                      discriminator={"num_feat": 4, "lr_conditioned": True}, train={"batch_size": 2})
    trainer = Trainer(cfg)
    lr, hr, _ = next(trainer._batches())
    g0, d0 = copy.deepcopy(trainer.generator), copy.deepcopy(trainer.discriminator)
    calls = []
    hook = trainer.discriminator.register_forward_pre_hook(lambda m, a: calls.append(a[0].detach().clone()))
    logged = trainer._step_gan(lr, hr)
    hook.remove()
    # their order: G step's D(fake), then D(real), then D(fake detached): one power iteration each
    assert len(calls) == 3 and torch.equal(calls[1], hr) and calls[0].shape == calls[2].shape == hr.shape
    with torch.no_grad():
        sr = g0(lr)
        d0(sr, lr)
        real = gan_loss(d0(hr, lr), True).item()
        fake = gan_loss(d0(sr, lr), False).item()
    print(f"d_real diff {abs(real - logged['d_real']):.3g}, d_fake diff {abs(fake - logged['d_fake']):.3g}")
    assert abs(real - logged["d_real"]) < 1e-6 and abs(fake - logged["d_fake"]) < 1e-6


# --------------------------------------------------------------------------------------------------
# item 5: x3 ESRGAN weights are not run as x4 silently

def test_generate_requires_scale_for_esrgan_weights_without_metadata(tmp_path):
    from PIL import Image

    torch.manual_seed(0)
    model = build_generator("esrgan", "small", 1, 3, num_feat=8, num_block=1, num_grow_ch=4).eval()
    torch.save({"params_ema": model.state_dict()}, tmp_path / "x3.pth")
    (tmp_path / "in").mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "in" / "a.png")
    args = ["generate", "--checkpoint", str(tmp_path / "x3.pth"), "--input", str(tmp_path / "in"), "--device", "cpu",
            "--quiet"]
    res = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "o1")])
    assert res.exit_code != 0 and "pass --scale" in res.output and not (tmp_path / "o1" / "a.png").exists()
    res = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "o3"), "--scale", "3"])
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "o3" / "a.png").size == (24, 24)
    with pytest.warns(UserWarning, match="cannot be read"):
        load_checkpoint(tmp_path / "x3.pth")


# --------------------------------------------------------------------------------------------------
# item 6: in_channels follows the S2-NAIP bands

def test_in_channels_derived_from_bands_or_refused():
    from clipscore_sr.baselines.train_config import validate_config

    base = {"output_dir": "x", "model": {"name": "srcnn-915", "n_frames": 2},
            "data": {"reader": "s2naip", "train": {"root": "r", "bands": ["tci", "b05", "b06"]}},
            "train": {"steps": 2}, "validation": {"interval": 0}}
    cfg = validate_config(copy.deepcopy(base), check_paths=False)
    assert cfg["model"]["options"]["in_channels"] == 5
    bad = copy.deepcopy(base)
    bad["model"]["options"] = {"in_channels": 3}
    with pytest.raises(ConfigError, match="model.options.in_channels: 3 but data.train.bands"):
        validate_config(bad, check_paths=False)
