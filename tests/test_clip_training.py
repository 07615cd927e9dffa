"""clip_score() / ClipLoss for training loops, the same numbers through `srmetrics score`, and `srmetrics models`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from clipscore_sr import io
from clipscore_sr.cli import main
from clipscore_sr.errors import ConfigError
from clipscore_sr.metrics import get_metric
from clipscore_sr.metrics.clip import CLIP_ALIASES, ClipLoss, clip_score, load_clip

from .conftest import save_png
from .test_clip_support import (
    PREP,
    TINY_VIT,
    cos64,
    image_batch,
    isolated_offline_env,
    reference_embed,
    write_local_dir,
)

_isolated = pytest.fixture(autouse=True)(isolated_offline_env)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d, model = write_local_dir(tmp_path_factory.mktemp("clipvit") / "tiny", TINY_VIT, PREP, seed=3)
    return f"local-dir:{d}", model


def test_clip_score_equals_open_clip_and_metric(tiny):
    spec, model = tiny
    sr, gt = image_batch(5, 48, 40, seed=1)
    got = clip_score(sr, gt, model=spec)
    assert got.shape == (5,) and got.dtype == torch.float32
    ref = cos64(reference_embed(model, sr, PREP, 32), reference_embed(model, gt, PREP, 32))
    torch.testing.assert_close(got.double(), ref, atol=1e-5, rtol=0)
    metric = get_metric(f"clipscore:{spec}")
    torch.testing.assert_close(got.double(), metric(sr, gt), atol=1e-6, rtol=0)
    # satlas variant agrees with the clipscore-satlas metric
    torch.testing.assert_close(clip_score(sr, gt, model=spec, variant="satlas").double(),
                               get_metric(f"clipscore-satlas:{spec}")(sr, gt), atol=1e-6, rtol=0)


def test_model_loaded_once_and_reused(tiny):
    spec, _ = tiny
    a = load_clip(spec)
    sr, gt = image_batch(2, 32, 32, seed=2)
    clip_score(sr, gt, model=spec)
    assert load_clip(spec) is a
    assert get_metric(f"clipscore:{spec}").load() is a


def test_gradients_flow_to_sr_not_model(tiny):
    spec, _ = tiny
    sr, gt = image_batch(3, 40, 40, seed=4)
    sr = sr.clone().requires_grad_(True)
    visual = load_clip(spec).visual
    before = {k: v.clone() for k, v in visual.state_dict().items()}
    opt = torch.optim.SGD([sr], lr=0.5)
    start = clip_score(sr, gt, model=spec).detach()
    for _ in range(3):
        opt.zero_grad()
        score = clip_score(sr, gt, model=spec)
        (-score.sum()).backward()
        assert sr.grad is not None and torch.isfinite(sr.grad).all() and sr.grad.abs().sum() > 0
        opt.step()
    assert all(not p.requires_grad and p.grad is None for p in visual.parameters())
    assert all(torch.equal(before[k], v) for k, v in visual.state_dict().items())
    assert not visual.training
    end = clip_score(sr.detach(), gt, model=spec)
    assert (end > start).all()  # gradient ascent on sr raised the score: the gradient is the right one


def test_gradient_matches_finite_differences(tiny):
    spec, _ = tiny
    sr, gt = image_batch(1, 32, 32, seed=5)
    sr = sr.clone().requires_grad_(True)
    clip_score(sr, gt, model=spec).sum().backward()
    direction = torch.randn(sr.shape, generator=torch.Generator().manual_seed(0))
    eps = 1e-2
    with torch.no_grad():
        plus = clip_score(sr + eps * direction, gt, model=spec).double()
        minus = clip_score(sr - eps * direction, gt, model=spec).double()
    numeric = float((plus - minus).item() / (2 * eps))
    analytic = float((sr.grad * direction).sum())
    assert analytic == pytest.approx(numeric, rel=0.05, abs=1e-4)


def test_metric_is_differentiable_too(tiny):
    spec, _ = tiny
    sr, gt = image_batch(2, 32, 32, seed=6)
    sr = sr.clone().requires_grad_(True)
    get_metric(f"clipscore:{spec}")(sr, gt, sr_ids=["a", "b"], gt_ids=["c", "d"]).sum().backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0


def test_clip_loss_distances_weight_and_model_object(tiny):
    spec, model = tiny
    sr, gt = image_batch(4, 40, 40, seed=7)
    e_sr, e_gt = reference_embed(model, sr, PREP, 32), reference_embed(model, gt, PREP, 32)
    l1 = ClipLoss(spec)(sr, gt)
    torch.testing.assert_close(l1, (e_sr - e_gt).abs().mean(), atol=1e-5, rtol=1e-5)
    cos = ClipLoss(spec, distance="cosine", weight=2.5, reduction="none")(sr, gt)
    torch.testing.assert_close(cos.double(), 2.5 * (1 - cos64(e_sr, e_gt)), atol=1e-5, rtol=0)
    torch.testing.assert_close(ClipLoss(spec, reduction="sum")(sr, gt), (e_sr - e_gt).abs().mean(-1).sum(),
                               atol=1e-4, rtol=1e-5)
    # an open_clip model object (its visual.preprocess_cfg says how to preprocess) gives the same loss
    import open_clip

    obj = open_clip.create_model(spec)
    torch.testing.assert_close(ClipLoss(obj)(sr, gt), l1, atol=1e-6, rtol=0)
    crit = ClipLoss(spec, weight=0.1)
    assert list(crit.parameters()) == [] and crit.state_dict() == {}  # CLIP is not part of the trained module
    with pytest.raises(ConfigError):
        ClipLoss(spec, distance="l2")


def test_clip_loss_trains_only_the_generator(tiny):
    spec, _ = tiny
    sr_in, gt = image_batch(2, 32, 32, seed=8)
    gen = torch.nn.Conv2d(3, 3, 3, padding=1)
    crit = ClipLoss(spec)
    loss = crit(torch.sigmoid(gen(sr_in)), gt)
    loss.backward()
    assert gen.weight.grad is not None and gen.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in crit.clip(torch.device("cpu")).visual.parameters())


def test_same_numbers_as_srmetrics_score(tiny, tmp_path):
    spec, _ = tiny
    from clipscore_sr.pipeline import score_folders

    rng = np.random.default_rng(0)
    for i in range(5):
        g = rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)
        s = np.clip(g.astype(int) + rng.integers(-40 * i - 1, 40 * i + 1, g.shape), 0, 255).astype(np.uint8)
        save_png(tmp_path / "gt" / f"{i}.png", g)
        save_png(tmp_path / "sr" / f"{i}.png", s)
    df = score_folders(tmp_path / "gt", tmp_path / "sr", [f"clipscore:{spec}"], device="cpu", progress=False,
                       batch_size=2, workers=1)
    df = df.sort_values("key")
    sr = torch.stack([io.read_image(tmp_path / "sr" / f"{i}.png").tensor() for i in range(5)])
    gt = torch.stack([io.read_image(tmp_path / "gt" / f"{i}.png").tensor() for i in range(5)])
    expected = clip_score(sr, gt, model=spec).double().numpy()
    np.testing.assert_allclose(df[f"clipscore:{spec}"].to_numpy(dtype=float), expected, atol=1e-6)
    # CLI: same numbers, written to a file
    out = tmp_path / "scores.csv"
    res = CliRunner().invoke(main, ["score", str(tmp_path / "gt"), str(tmp_path / "sr"), "--metrics",
                                    f"clipscore:{spec}", "--device", "cpu", "--out", str(out), "-q",
                                    "--cache", str(tmp_path / "cache")])
    assert res.exit_code == 0, res.output
    import pandas as pd

    cli = pd.read_csv(out).sort_values("key")
    np.testing.assert_allclose(cli[f"clipscore:{spec}"].to_numpy(dtype=float), expected, atol=1e-6)
    assert list((tmp_path / "cache").rglob("*.emb"))


def test_models_cli_lists_without_downloading(tmp_path):
    own = tmp_path / "srcache" / "open_clip" / "RN50" / "openai"
    own.mkdir(parents=True)
    (own / "RN50.pt").write_bytes(b"x")
    res = CliRunner().invoke(main, ["models", "--json", "--no-params"])
    assert res.exit_code == 0, res.output
    rows = {r["alias"]: r for r in json.loads(res.output)}
    assert set(rows) == set(CLIP_ALIASES)
    assert rows["clip-rn50"]["weights"] == str(own / "RN50.pt")
    assert rows["clipa-v2-bigg"]["weights"] is None and rows["clipa-v2-bigg"]["default"]
    assert rows["siglip-so400m"]["input_size"] == 384
    res = CliRunner().invoke(main, ["models"])  # default: no architecture is built, no parameter column
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[0].split() == ["alias", "model/pretrained", "input", "preprocess", "weights",
                                                     "family"]
    res = CliRunner().invoke(main, ["models", "--params"])
    assert res.exit_code == 0, res.output
    line = next(ln for ln in res.output.splitlines() if ln.startswith("clip-rn50 "))
    assert "RN50/openai" in line and "38.3M" in line and "224px" in line and "present" in line
    assert "missing" in next(ln for ln in res.output.splitlines() if ln.startswith("eva02-l14 "))


def test_models_fetch_offline_is_a_one_line_error():
    res = CliRunner().invoke(main, ["models", "--fetch", "clip-vitb16"])
    assert res.exit_code == 2
    assert "weights for clipscore:clip-vitb16" in res.output and "offline mode is on" in res.output
    assert "Traceback" not in res.output


def test_clip_loss_with_missing_weights_fails_at_construction(tmp_path):
    """Fail fast, as `srmetrics score` does: not at the first training step."""
    from clipscore_sr.errors import WeightsNotFoundError

    with pytest.raises(WeightsNotFoundError, match="srmetrics models --fetch clip-rn50"):
        ClipLoss("clip-rn50")
    with pytest.raises(WeightsNotFoundError):
        ClipLoss(f"local-dir:{tmp_path / 'absent'}")
