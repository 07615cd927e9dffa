"""Trainers: losses vs independent computations, loss reduction, CLIP loss, exact resume, NaN stop, export, CLI."""

from __future__ import annotations

import math
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner

from clipscore_sr.baselines.checkpoints import load_checkpoint
from clipscore_sr.baselines.train_losses import L2ModelLoss, ssim_map_mean, unsharp_mask
from clipscore_sr.baselines.trainer import Trainer, TrainingDivergedError, list_checkpoints, load_train_state
from clipscore_sr.cli import main
from clipscore_sr.errors import WeightsNotFoundError
from clipscore_sr.metrics.clip import clear_model_cache
from clipscore_sr.metrics.pixel import ssim as ssim_metric

from .test_clip_support import PREP, TINY_VIT, write_local_dir
from .train_support import hashed_copy, make_config, make_s2naip, state_equal, write_random_vgg19


@pytest.fixture(autouse=True)
def _offline(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIPSCORE_SR_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    monkeypatch.setenv("CLIPSCORE_SR_CACHE", str(tmp_path / "srcache"))

    def no_network(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket, "create_connection", no_network)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    clear_model_cache()


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_s2naip(tmp_path_factory.mktemp("s2naip"), n=6)


@pytest.fixture(scope="module")
def vgg_weights(tmp_path_factory) -> Path:
    """Stand-in VGG19 weights passed by path, as a user passes their own (``losses.perceptual_weights``)."""
    return write_random_vgg19(tmp_path_factory.mktemp("vgg"))


@pytest.fixture(scope="module")
def clip_spec(tmp_path_factory) -> str:
    d, _ = write_local_dir(tmp_path_factory.mktemp("clip") / "tiny", TINY_VIT, PREP, seed=3)
    return f"local-dir:{d}"


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------------------------------
# losses against independent computations

def test_ssim_and_l2_loss_match_metric_and_formula():
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(3, 3, 24, 20, generator=g)
    sr = (gt + 0.1 * torch.randn(3, 3, 24, 20, generator=g)).clamp(0, 1)
    # the differentiable float32 SSIM equals the float64 ssim metric (skimage's convention)
    torch.testing.assert_close(ssim_map_mean(sr, gt).double(), ssim_metric(sr, gt), atol=2e-6, rtol=0)
    s64 = ssim_metric(sr, gt).numpy()
    a, b = sr.double().numpy(), gt.double().numpy()
    expected = 0.3 * np.mean((a - b) ** 2) + 0.4 * np.mean(np.abs(a - b)) + 0.3 * np.mean((1 - s64) / 2)
    crit = L2ModelLoss(ssim_style="metric")
    sr_req = sr.clone().requires_grad_(True)
    loss = crit(sr_req, gt)
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    loss.backward()
    assert sr_req.grad is not None and sr_req.grad.abs().sum() > 0
    assert set(crit.terms(sr, gt)) == {"mse", "mae", "ssim"}
    assert set(L2ModelLoss(mse=1.0, mae=0.0, ssim=0.0).terms(sr, gt)) == {"mse"}


def test_gan_loss_and_lr_schedules_match_formulas():
    from clipscore_sr.baselines.train_losses import gan_loss
    from clipscore_sr.baselines.trainer import _lr_factor

    x = torch.tensor([[-3.0, -0.5], [0.0, 2.5]], dtype=torch.float64)
    real = np.mean(np.log1p(np.exp(-x.numpy())))
    fake = np.mean(np.log1p(np.exp(x.numpy())))
    assert gan_loss(x, True).item() == pytest.approx(real, abs=1e-12)
    assert gan_loss(x, False).item() == pytest.approx(fake, abs=1e-12)
    cfg = {"schedule": {"type": "cosine", "warmup_steps": 4, "milestones": [], "gamma": 0.5, "min_lr_ratio": 0.1}}
    f = _lr_factor(cfg, 104)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == pytest.approx(1.0) and f(104) == pytest.approx(0.1)
    assert f(54) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    cfg["schedule"].update(type="multistep", warmup_steps=0, milestones=[10, 20])
    f = _lr_factor(cfg, 100)
    assert [f(9), f(10), f(19), f(20), f(99)] == [1.0, 0.5, 0.5, 0.25, 0.25]


def _usm_reference(img: np.ndarray, weight=0.5, radius=50, threshold=10 / 255) -> np.ndarray:
    """Float64 loop: OpenCV GaussianBlur (reflect-101, sigma from the kernel size) then Real-ESRGAN's USM."""
    k = radius + 1 if radius % 2 == 0 else radius
    sigma = 0.3 * ((k - 1) * 0.5 - 1) + 0.8
    x = np.arange(k) - (k - 1) / 2
    w1 = np.exp(-x * x / (2 * sigma * sigma))
    w2 = np.outer(w1, w1) / w1.sum() ** 2
    p = k // 2

    def blur(a):
        out = np.zeros_like(a)
        padded = np.pad(a, ((p, p), (p, p)), mode="reflect")
        for i in range(k):
            for j in range(k):
                out += w2[i, j] * padded[i:i + a.shape[0], j:j + a.shape[1]]
        return out

    res = np.empty_like(img)
    for c in range(img.shape[0]):
        a = img[c]
        residual = a - blur(a)
        soft = blur((np.abs(residual) > threshold).astype(np.float64))
        sharp = np.clip(a + weight * residual, 0, 1)
        res[c] = soft * sharp + (1 - soft) * a
    return res


def test_unsharp_mask_matches_float64_loop():
    g = torch.Generator().manual_seed(1)
    img = torch.rand(1, 3, 32, 40, generator=g, dtype=torch.float64)
    ref = _usm_reference(img[0].numpy(), radius=11)
    np.testing.assert_allclose(unsharp_mask(img, radius=11)[0].numpy(), ref, atol=1e-10)
    ref50 = _usm_reference(img[0].numpy())  # the default 51x51 kernel (pad 25 < 32)
    np.testing.assert_allclose(unsharp_mask(img.float())[0].double().numpy(), ref50, atol=2e-6)


def test_vgg_perceptual_loss_matches_torchvision(vgg_weights):
    from torchvision.models import vgg19

    from clipscore_sr.baselines.vgg_loss import ESRGAN_LAYER_WEIGHTS, VGGPerceptualLoss, vgg19_layer_names

    crit = VGGPerceptualLoss(weights_path=vgg_weights)
    with torch.device("meta"):
        net = vgg19(weights=None)
    state = torch.load(vgg_weights, weights_only=True)
    net.features.to_empty(device="cpu").load_state_dict({k[len("features."):]: v for k, v in state.items()})
    net.features.double().eval()
    g = torch.Generator().manual_seed(2)
    sr, gt = torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 3, 32, 32, generator=g)
    mean = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).view(1, 3, 1, 1)

    def feats(x):
        out, y = {}, (x.double() - mean) / std
        for name, layer in zip(vgg19_layer_names(), net.features):
            y = layer(y)
            out[name] = y.clone()  # torchvision's ReLU is in place: keep the conv output as it was
        return out

    fs, fg = feats(sr), feats(gt)
    expected = sum(w * (fs[k] - fg[k]).abs().mean() for k, w in ESRGAN_LAYER_WEIGHTS.items())
    got = crit(sr, gt)
    assert got.item() == pytest.approx(expected.item(), rel=1e-4)
    sr_req = sr.clone().requires_grad_(True)
    crit(sr_req, gt).backward()
    assert sr_req.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in crit.parameters())


def test_vgg_weights_missing_fail_fast(tmp_path, monkeypatch):
    from torchvision.models import VGG19_Weights

    import clipscore_sr.baselines.vgg_loss as vgg_loss
    from clipscore_sr.baselines.vgg_loss import VGGPerceptualLoss

    monkeypatch.setattr(vgg_loss, "vgg19_url", lambda: VGG19_Weights.IMAGENET1K_V1.url)

    with pytest.raises(WeightsNotFoundError, match=r"vgg19-dcbb9e9d\.pth") as err:
        VGGPerceptualLoss()
    assert "\n" not in str(err.value) and "TORCH_HOME" in str(err.value)


# --------------------------------------------------------------------------------------------------
# training behaviour

def test_l2_model_training_reduces_loss(tmp_path, data_root):
    cfg = make_config(tmp_path / "run", data_root, "srcnn-915", train={"steps": 30, "checkpoint_interval": 30},
                      validation={"interval": 15})
    res = Trainer(cfg).run()
    log = pd.read_csv(res.log_path)
    loss = log["loss"].dropna().to_numpy()
    assert len(loss) == 30
    assert loss[-5:].mean() < 0.5 * loss[:5].mean()
    val = log["val_psnr"].dropna().to_numpy()
    assert len(val) == 3 and val[-1] > val[0] + 3  # held-out PSNR at steps 0, 15, 30 improves
    assert {"mse", "mae", "ssim", "time_s", "lr", "epoch"} <= set(log.columns)
    assert np.all(np.diff(log["time_s"].to_numpy()) >= 0)
    # the exported generator is the format `srmetrics generate` reads (no EMA for L2 models by default)
    model = load_checkpoint(res.exported)
    assert state_equal(_weights(model), load_train_state(res.checkpoint)["generator"]) == []


def test_esrgan_training_reduces_pixel_loss_with_perceptual_and_gan(tmp_path, data_root, vgg_weights):
    cfg = make_config(tmp_path / "run", data_root, "esrgan", train={"steps": 24, "checkpoint_interval": 24},
                      losses={"perceptual": 1.0, "unsharp_targets": True, "pixel_warmup_steps": 4,
                              "perceptual_weights": str(vgg_weights)},
                      discriminator={"num_feat": 4, "lr_conditioned": True}, validation={"interval": 0})
    trainer = Trainer(cfg)
    assert trainer.discriminator.lr_conditioned and trainer.discriminator.conv0.in_channels == 3 + 3 * 2
    res = trainer.run()
    log = pd.read_csv(res.log_path)
    assert log["perceptual"].iloc[:4].isna().all() and log["perceptual"].iloc[4:].notna().all()  # warm-up: L1 only
    assert log["d_real"].iloc[:4].isna().all() and log["d_real"].iloc[4:].notna().all()
    l1 = log["l1"].to_numpy()
    assert l1[-4:].mean() < 0.75 * l1[:4].mean()
    # EMA weights are exported, and they differ from the raw generator
    state = load_train_state(res.checkpoint)
    exported = _weights(load_checkpoint(res.exported))
    assert state_equal(exported, state["ema"]) == [] and state_equal(exported, state["generator"]) != []


def test_bf16_autocast_on_cpu_trains(tmp_path, data_root):
    cfg = make_config(tmp_path / "run", data_root, "esrgan", train={"steps": 3, "precision": "bf16"},
                      losses={"perceptual": 0.0, "clip": 0.0}, discriminator={"num_feat": 4, "lr_conditioned": True},
                      validation={"interval": 3})
    trainer = Trainer(cfg)
    lr, _, _ = next(trainer._batches())
    with trainer._autocast():
        assert trainer.generator(lr).dtype == torch.bfloat16  # the forward really runs in bf16
    res = trainer.run()
    log = pd.read_csv(res.log_path)
    assert np.isfinite(log[["loss", "l1", "gan", "d_real", "d_fake"]].iloc[1:].to_numpy()).all()
    assert all(p.dtype == torch.float32 for p in trainer.generator.parameters())  # weights stay fp32
    assert math.isfinite(res.validation["psnr"])


def test_sr3_training_reduces_noise_prediction_loss(tmp_path, data_root):
    from clipscore_sr.baselines.datasets import S2NAIPDataset

    cfg = make_config(tmp_path / "run", data_root, "sr3", train={"steps": 40, "checkpoint_interval": 40},
                      optimizer={"lr": 2e-3}, validation={"interval": 40, "metrics": ["psnr"]})
    trainer = Trainer(cfg)
    ds = S2NAIPDataset(data_root, n_frames=2, crop_size=8)
    items = [ds[i] for i in range(4)]
    lr, hr = torch.stack([it["lr"] for it in items]), torch.stack([it["hr"] for it in items])

    def fixed_loss():  # the training objective at fixed noise levels and noise, eval mode (no dropout)
        trainer.generator.eval()
        with torch.no_grad():
            vals = [trainer.generator.loss(hr, lr, [torch.Generator().manual_seed(100 * r + i) for i in range(4)])
                    for r in range(8)]
        trainer.generator.train()
        return float(torch.stack(vals).mean())

    before = fixed_loss()
    res = trainer.run()
    assert fixed_loss() < 0.85 * before
    assert math.isfinite(res.validation["psnr"])  # DDIM validation samples


def test_clip_loss_gets_gradients_changes_update_and_clip_stays_frozen(tmp_path, data_root, clip_spec):
    from clipscore_sr.metrics.clip import load_clip

    base = dict(train={"steps": 3, "checkpoint_interval": 3}, validation={"interval": 0})
    with_clip = Trainer(make_config(tmp_path / "a", data_root, "esrgan",
                                    losses={"perceptual": 0.0, "clip": 1.0, "clip_model": f"clipscore:{clip_spec}"},
                                    **base))
    without = Trainer(make_config(tmp_path / "b", data_root, "esrgan", **base))
    assert state_equal(_weights(with_clip.generator), _weights(without.generator)) == []  # same init
    clip_model = with_clip.clip_loss.clip(torch.device("cpu"))
    assert clip_model is load_clip(clip_spec)
    clip_before = _weights(clip_model.visual)
    # the CLIP term alone sends gradients into the generator
    lr, hr, _ = next(with_clip._batches())
    sr = with_clip.generator(lr)
    with_clip.generator.zero_grad()
    with_clip.clip_loss(sr, hr).backward()
    grads = [p.grad for p in with_clip.generator.parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0
    with_clip.generator.zero_grad()
    a, b = with_clip.run(), without.run()
    log_a = pd.read_csv(a.log_path)
    assert "clip" in log_a.columns and log_a["clip"].notna().all() and (log_a["clip"] > 0).all()
    diff = state_equal(load_train_state(a.checkpoint)["generator"], load_train_state(b.checkpoint)["generator"])
    assert diff  # the CLIP loss changed the generator's updates
    # the frozen CLIP weights never change: same as before training and as the file on disk
    from safetensors.torch import load_file

    assert state_equal(_weights(clip_model.visual), clip_before) == []
    on_disk = load_file(Path(clip_spec.split(":", 1)[1]) / "open_clip_model.safetensors")
    assert state_equal(clip_before, {k[len("visual."):]: v for k, v in on_disk.items() if k.startswith("visual.")}
                       ) == []
    assert not any(p.requires_grad for p in clip_model.visual.parameters())
    clip_ids = {id(q) for q in clip_model.visual.parameters()}
    assert all(id(p) not in clip_ids for group in with_clip.opt_g.param_groups for p in group["params"])


# --------------------------------------------------------------------------------------------------
# exact resume

def _full_state(path: Path) -> dict:
    return load_train_state(path)


@pytest.mark.parametrize("model", ["esrgan", "sr3"])
def test_resume_is_bit_exact(tmp_path, data_root, vgg_weights, model):
    extra = {}
    if model == "esrgan":
        extra = dict(losses={"perceptual": 1.0, "pixel_warmup_steps": 1, "unsharp_targets": True,
                             "perceptual_weights": str(vgg_weights)},
                     schedule={"type": "cosine", "warmup_steps": 2}, train={"steps": 6, "grad_clip": 0.5,
                                                                           "checkpoint_interval": 2})
    else:
        extra = dict(train={"steps": 6, "checkpoint_interval": 2})
    straight_cfg = make_config(tmp_path / "straight", data_root, model, **extra)
    straight = Trainer(straight_cfg).run()
    resumed_cfg = make_config(tmp_path / "resumed", data_root, model, **extra)
    first = Trainer(resumed_cfg).run(until=3)  # "killed" after step 3 (checkpoint written there)
    assert first.step == 3 and first.exported is None
    second = Trainer(resumed_cfg, resume=True).run()
    assert second.step == 6
    a, b = _full_state(straight.checkpoint), _full_state(second.checkpoint)
    for key in ("generator", "ema", "discriminator"):
        if a[key] is not None:
            assert state_equal(a[key], b[key]) == [], key
    for key in ("opt_g", "opt_d"):
        if a[key] is not None:
            for (ka, sa), (kb, sb) in zip(a[key]["state"].items(), b[key]["state"].items()):
                assert ka == kb and all(torch.equal(sa[n], sb[n]) for n in sa)
    assert a["sched_g"]["last_epoch"] == b["sched_g"]["last_epoch"] == 6
    assert torch.equal(a["rng"][0]["torch"], b["rng"][0]["torch"])
    la, lb = pd.read_csv(straight.log_path), pd.read_csv(second.log_path)
    pd.testing.assert_frame_equal(la.drop(columns="time_s"), lb.drop(columns="time_s"))


def test_resume_errors(tmp_path, data_root):
    cfg = make_config(tmp_path / "run", data_root, "srcnn-915", train={"steps": 2, "checkpoint_interval": 2},
                      validation={"interval": 0})
    with pytest.raises(Exception, match="--resume: no checkpoint"):
        Trainer(cfg, resume=True)
    Trainer(cfg).run()
    with pytest.raises(Exception, match="pass --resume"):
        Trainer(cfg)
    changed = make_config(tmp_path / "run", data_root, "srcnn-915", options={"n1": 8, "n2": 8},
                          train={"steps": 4}, validation={"interval": 0})
    with pytest.raises(Exception, match="'model' differs"):
        Trainer(changed, resume=True)


def test_resume_skips_a_damaged_newest_checkpoint(tmp_path, data_root, capsys):
    cfg = make_config(tmp_path / "run", data_root, "srcnn-915", train={"steps": 4, "checkpoint_interval": 2},
                      validation={"interval": 0})
    Trainer(cfg).run()
    ckpts = list_checkpoints(tmp_path / "run")
    good = load_train_state(ckpts[0])
    ckpts[-1].write_bytes(ckpts[-1].read_bytes()[:1000])  # e.g. a disk filled up mid-copy
    (tmp_path / "run" / "checkpoints" / ".step_00000006.pt.tmp123").write_bytes(b"partial")  # ignored
    trainer = Trainer(cfg, resume=True)
    assert trainer.step == 2 and "skipping" in capsys.readouterr().err
    assert state_equal(_weights(trainer.generator), good["generator"]) == []
    assert trainer.run().step == 4 and load_train_state(list_checkpoints(tmp_path / "run")[-1])["step"] == 4


# --------------------------------------------------------------------------------------------------
# NaN / inf detection

def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, data_root, monkeypatch):
    cfg = make_config(tmp_path / "run", data_root, "srcnn-915", train={"steps": 10, "checkpoint_interval": 2},
                      validation={"interval": 0})
    trainer = Trainer(cfg)
    real_terms = trainer.l2_loss.terms
    calls = {"n": 0}

    def poisoned(sr, gt):
        calls["n"] += 1
        terms = real_terms(sr, gt)
        if calls["n"] == 5:
            terms["mae"] = terms["mae"] * float("nan")
        return terms

    monkeypatch.setattr(trainer.l2_loss, "terms", poisoned)
    with pytest.raises(TrainingDivergedError) as err:
        trainer.run()
    msg = str(err.value)
    assert "\n" not in msg and "step 5" in msg and "'mae'" in msg and "nan" in msg and "step_00000004.pt" in msg
    ckpts = list_checkpoints(tmp_path / "run")
    assert [p.name for p in ckpts] == ["step_00000002.pt", "step_00000004.pt"]
    state = load_train_state(ckpts[-1])
    assert all(torch.isfinite(v).all() for v in state["generator"].values())
    # the poisoned step never reached the weights
    assert state_equal(state["generator"], _weights(trainer.generator)) == []
    # the CLI reports it on one line with a non-zero exit code
    cfg_path = tmp_path / "cfg.yaml"
    bad = make_config(tmp_path / "run2", data_root, "srcnn-915", optimizer={"lr": 1e30},
                      train={"steps": 30}, validation={"interval": 0})
    cfg_path.write_text(yaml.safe_dump(bad))
    out = CliRunner().invoke(main, ["train", str(cfg_path)])
    assert out.exit_code == 2 and "training stopped" in out.output and "Traceback" not in out.output


# --------------------------------------------------------------------------------------------------
# CLI

def test_cli_train_check_resume_and_export(tmp_path, data_root):
    cfg = make_config(tmp_path / "run", data_root, "esrgan", train={"steps": 4, "checkpoint_interval": 2},
                      validation={"interval": 2})
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    runner = CliRunner()
    out = runner.invoke(main, ["train", str(path), "--check"])
    assert out.exit_code == 0 and "OK" in out.output
    cfg["train"]["steps"] = 2
    path.write_text(yaml.safe_dump(cfg))
    out = runner.invoke(main, ["train", str(path)])
    assert out.exit_code == 0, out.output
    cfg["train"]["steps"] = 4  # extend the run
    path.write_text(yaml.safe_dump(cfg))
    out = runner.invoke(main, ["train", str(path), "--resume"])
    assert out.exit_code == 0, out.output
    assert "step 4" in out.output and "generator.safetensors" in out.output
    log = pd.read_csv(tmp_path / "run" / "log.csv")
    assert log["step"].tolist() == [0, 1, 2, 3, 4]
    ckpt = list_checkpoints(tmp_path / "run")[-1]
    out = runner.invoke(main, ["export-generator", str(ckpt), "-o", str(tmp_path / "g.safetensors"), "--no-ema"])
    assert out.exit_code == 0, out.output
    raw = _weights(load_checkpoint(tmp_path / "g.safetensors"))
    assert state_equal(raw, load_train_state(ckpt)["generator"]) == []
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["train"]["ema_decay"] == 0.999 and saved["losses"]["perceptual_layers"]["conv5_4"] == 1.0


def test_tensorboard_scalars_when_installed(tmp_path, data_root, monkeypatch):
    import sys
    import types

    written = []

    class FakeWriter:  # stands in for torch.utils.tensorboard.SummaryWriter (tensorboard is optional)
        def __init__(self, log_dir, purge_step=None):
            self.log_dir = log_dir

        def add_scalar(self, tag, value, step, walltime=None):
            written.append((tag, step, value))

        def flush(self):
            pass

        def close(self):
            pass

    cfg = make_config(tmp_path / "run", data_root, "srcnn-915", train={"steps": 2, "tensorboard": "true"},
                      validation={"interval": 2})
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # not installed
    with pytest.raises(Exception, match="train.tensorboard: true but the tensorboard package is not installed"):
        Trainer(cfg)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeWriter))
    trainer = Trainer(cfg)
    trainer.run()
    trainer.close()
    tags = {t for t, _, _ in written}
    assert {"loss", "mse", "mae", "ssim", "lr", "time_s", "val/psnr"} <= tags
    log = pd.read_csv(tmp_path / "run" / "log.csv")
    assert [v for t, st, v in written if t == "loss" and st == 2][0] == pytest.approx(log["loss"].iloc[-1], rel=1e-6)


def test_vgg_crafted_file_under_official_name_never_runs(tmp_path, monkeypatch):
    """A pickle with a payload saved as torchvision's vgg19 file: refused by the name's SHA-256 prefix, and
    (with a matching name) by weights_only=True; the payload never runs (issue 10, item 1)."""
    import clipscore_sr.baselines.vgg_loss as vgg_loss

    class Payload:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    from torchvision.models import VGG19_Weights

    monkeypatch.setattr(vgg_loss, "vgg19_url", lambda: VGG19_Weights.IMAGENET1K_V1.url)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = vgg_loss.vgg19_checkpoint()
    assert path.name == "vgg19-dcbb9e9d.pth"
    path.parent.mkdir(parents=True)
    torch.save({"features.0.weight": torch.zeros(1), "x": Payload()}, path)
    with pytest.raises(WeightsNotFoundError, match="integrity check"):
        vgg_loss.VGGPerceptualLoss()
    copy = hashed_copy(path)
    monkeypatch.setattr(vgg_loss, "vgg19_url", lambda: "https://example.invalid/" + copy.name)
    with pytest.raises(WeightsNotFoundError, match="loaded safely"):
        vgg_loss.VGGPerceptualLoss()
    with pytest.raises(WeightsNotFoundError, match="loaded safely"):
        vgg_loss.VGGPerceptualLoss(weights_path=path)
    assert not (tmp_path / "pwned").exists()
