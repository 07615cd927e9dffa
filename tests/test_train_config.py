"""Training config validation: every mistake is one line naming the key; defaults per model family."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from clipscore_sr.baselines.train_config import load_config, run_label, validate_config
from clipscore_sr.cli import main
from clipscore_sr.errors import ConfigError

from .train_support import make_config, make_s2naip


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict:
    root = make_s2naip(tmp_path_factory.mktemp("s2naip"), n=3)
    return make_config(Path("runs/x"), root, "esrgan")


def _set(cfg: dict, dotted: str, value) -> dict:
    cfg = copy.deepcopy(cfg)
    *parents, last = dotted.split(".")
    node = cfg
    for p in parents:
        node = node.setdefault(p, {})
    if value is _DELETE:
        node.pop(last)
    else:
        node[last] = value
    return cfg


_DELETE = object()

CASES = [
    ("epochs", 3, r"^epochs: unknown key"),
    ("losses.perceptul", 1.0, r"^losses\.perceptul: unknown key \(did you mean 'perceptual'\?\)"),
    ("losses.mse", 0.3, r"^losses\.mse: unknown key;.*\(losses for esrgan\)"),
    ("train.batch_size", "eight", r"^train\.batch_size: expected an integer"),
    ("train.batch_size", 0, r"^train\.batch_size: must be >= 1"),
    ("train.steps", _DELETE, r"^train\.steps: missing \(required\)"),
    ("train.precision", "fp8", r"^train\.precision: 'fp8' is not one of fp32, bf16, fp16"),
    ("train.precision", "fp16", r"^train\.precision: fp16 needs a GPU"),
    ("optimizer.betas", [0.9], r"^optimizer\.betas: expected two numbers"),
    ("optimizer.lr", -1.0, r"^optimizer\.lr: must be > 0"),
    ("model.name", "esrgn", r"^model\.name: unknown generator \(did you mean 'esrgan'\?\)"),
    ("model.size", "huge", r"^model\.size: 'huge' is not a size of esrgan"),
    ("model.scale", 5, r"^model: .*scale 5 is not supported"),
    ("model.options", {"num_fet": 8}, r"^model: .*bad architecture argument"),
    ("data.reader", "sentinel", r"^data\.reader: 'sentinel' is not one of"),
    ("data.train.rooot", "x", r"^data\.train\.rooot: unknown key \(did you mean 'root'\?\)"),
    ("data.train.n_frames", 4, r"^data\.train\.n_frames: set by the trainer; use model\.n_frames"),
    ("data.train.root", "/does/not/exist",
     r"^data\.train\.root: /does/not/exist does not exist \(get the s2naip data: README, 'Getting the datasets"),
    ("data.train", {"bands": ["tci"]}, r"^data\.train\.root: missing \(the s2naip reader needs it\)"),
    ("data.val_fraction", 0.0, r"^validation\.interval: 3 but there is no held-out split"),
    ("validation.metrics", ["psnr", "clipscor:clip-rn50"], r"^validation\.metrics\[1\]: unknown metric 'clipscor'"),
    ("losses.perceptual_layers", {"conv6_1": 1.0}, r"^losses\.perceptual_layers: unknown VGG19 layer 'conv6_1'"),
    ("losses.clip_distance", "l2", r"^losses\.clip_distance: 'l2' is not one of l1, cosine"),
    ("schedule.type", "multistep", r"^schedule\.milestones: needed for the multistep schedule"),
    ("schedule.warmup_steps", 100, r"^schedule\.warmup_steps: 100 is not below train\.steps"),
    ("train.tensorboard", "maybe", r"^train\.tensorboard: 'maybe' is not one of auto, true, false"),
]


@pytest.mark.parametrize(("key", "value", "pattern"), CASES, ids=[c[0] + ":" + str(c[1])[:12] for c in CASES])
def test_config_errors_are_one_line_naming_the_key(base, key, value, pattern):
    with pytest.raises(ConfigError, match=pattern) as err:
        validate_config(_set(base, key, value))
    assert "\n" not in str(err.value)


def test_discriminator_only_for_esrgan(base):
    cfg = _set(_set(base, "model", {"name": "srcnn-915", "n_frames": 2}), "losses", {})
    with pytest.raises(ConfigError, match=r"^discriminator: only ESRGAN has a discriminator"):
        validate_config(cfg)


def test_defaults_per_family_and_idempotent(base):
    gan = validate_config(base)
    assert gan["losses"]["l1"] == 1.0 and gan["losses"]["gan"] == 0.1 and gan["losses"]["clip"] == 0.0
    assert gan["losses"]["perceptual_layers"] == {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0,
                                                  "conv5_4": 1.0}
    assert gan["optimizer"]["lr"] == 1e-4 or base["optimizer"]["lr"] == gan["optimizer"]["lr"]
    assert gan["optimizer"]["betas"] == [0.9, 0.99] and gan["train"]["ema_decay"] == 0.999
    assert validate_config(gan) == gan  # a validated config validates to itself
    l2 = validate_config(_set(_set(_set(base, "model", {"name": "highresnet-compact", "n_frames": 2}), "losses", {}),
                              "discriminator", _DELETE))
    assert l2["losses"] == {"mse": 0.3, "mae": 0.4, "ssim": 0.3, "ssim_style": "authors", "clip": 0.0,
                            "clip_model": "clip-rn50", "clip_distance": "l1", "clip_resize": "weights"}
    assert l2["train"]["ema_decay"] is None and l2["discriminator"] is None
    assert run_label(gan) == "esrgan-small (no CLIP loss)"
    assert run_label(_set(gan, "losses.clip", 1.0)) == "esrgan-small + CLIP loss (w=1)"
    assert run_label(_set(gan, "name", "mine")) == "mine"


def test_yaml_errors_and_cli_one_line(tmp_path, base):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: invalid YAML at line"):
        load_config(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    typo = tmp_path / "typo.yaml"
    typo.write_text(yaml.safe_dump(_set(base, "train.stepz", 10)))
    out = CliRunner().invoke(main, ["train", str(typo)])
    assert out.exit_code == 2
    assert out.output.strip() == ("Error: typo.yaml: train.stepz: unknown key (did you mean 'steps'?); expected one of "
                                  "steps, batch_size, precision, device, grad_clip, ema_decay, log_interval, "
                                  "checkpoint_interval, keep_checkpoints, nan_check, tensorboard")
    ok = tmp_path / "ok.yaml"
    ok.write_text(yaml.safe_dump(_set(base, "train.batch_size", 1)))  # base has 1 training tile (--check builds it)
    out = CliRunner().invoke(main, ["train", str(ok), "--check"])
    assert out.exit_code == 0 and "esrgan (custom: num_block=1, num_feat=8, num_grow_ch=4), 6 steps" in out.output


def test_example_configs_validate():
    folder = Path(__file__).resolve().parents[1] / "baselines" / "configs"
    files = sorted(folder.glob("*.yaml"))
    assert files, "example configs missing"
    for f in files:
        cfg = load_config(f, check_paths=False)
        assert cfg["model"]["name"] in ("esrgan", "srcnn", "highresnet", "sr3", "srcnn-mf", "srcnn-915", "highresnet-compact")


def _bomb(levels: int = 9, width: int = 9) -> list:
    """The object a YAML alias bomb builds: small in memory (shared lists), width**levels leaves when expanded."""
    node: list = ["lol"] * width
    for _ in range(levels - 1):
        node = [node] * width
    return node


def test_yaml_alias_bomb_is_refused_fast(tmp_path, base):
    """Issue 10 item 11: a ~700-byte alias bomb used to hang --check (the message formatted the expanded value)."""
    anchors = ["&a [" + ",".join(['"lol"'] * 9) + "]"]
    for prev, name in zip("abcdefgh", "bcdefghi"):
        anchors.append(f"&{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    cfg = copy.deepcopy(base)
    cfg["train"]["batch_size"] = "BOMB"
    text = yaml.safe_dump(cfg).replace("batch_size: BOMB", "batch_size: [" + ", ".join(anchors) + "]")
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    assert yaml.compose(text, Loader=yaml.SafeLoader) is not None and len(text) < 3000
    with pytest.raises(ConfigError, match=r"bomb\.yaml: YAML expands to more than 100,000 values through aliases"):
        load_config(path)
    res = CliRunner().invoke(main, ["train", str(path), "--check"])
    assert res.exit_code == 2 and res.output.count("\n") == 1


def test_messages_truncate_huge_values(base):
    with pytest.raises(ConfigError, match=r"^train\.batch_size: expected an integer, got \[\[") as err:
        validate_config(_set(base, "train.batch_size", _bomb()))
    assert len(str(err.value)) < 200
    small = [["lol"] * 3] * 3  # a few anchors are fine and load as usual
    assert "train.batch_size" in str(pytest.raises(ConfigError, validate_config, _set(base, "train.batch_size",
                                                                                        small)).value)
