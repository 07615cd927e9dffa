"""`srmetrics demo` runs offline and produces its outputs; with --clip local-dir it adds that CLIP model."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from clipscore_sr.cli import main
from clipscore_sr.demo import METHODS, PIXEL_METRICS

from .test_clip_support import PREP, TINY_VIT, write_local_dir


@pytest.fixture
def empty_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No weights anywhere: the demo must still succeed with the pixel metrics."""
    for var, sub in (("TORCH_HOME", "torch"), ("HF_HOME", "hf"), ("CLIPSCORE_SR_CACHE", "own")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return tmp_path


def test_demo_offline_writes_its_outputs(empty_caches: Path) -> None:
    out = empty_caches / "demo"
    res = CliRunner().invoke(main, ["demo", "--out", str(out), "--quiet", "--bootstrap", "200"],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    for name in ("scores.csv", "summary.csv", "agreement.csv", "agreement_pairs.csv", "figure3.png"):
        assert (out / name).stat().st_size > 0, name
    # learned metrics without weights are skipped with the one-line "which, where, how" message
    assert "skipped lpips: weights for LPIPS-vgg backbone (vgg16) not found (looked in:" in res.output
    assert "skipped clipscore: weights for clipscore:clipa-v2-bigg" in res.output
    assert "skipped samscore:" in res.output
    scores = pd.read_csv(out / "scores.csv")
    assert sorted(scores["method"].unique()) == sorted(METHODS)
    assert set(PIXEL_METRICS) <= set(scores.columns)
    assert len(scores) == 3 * 6
    means = scores.groupby("method")["psnr"].mean()
    assert means["bicubic"] > means["nearest"]  # a sanity check of the bundled outputs
    agreement = pd.read_csv(out / "agreement.csv")
    assert set(PIXEL_METRICS) <= set(agreement["metric"])
    assert str(out / "figure3.png") in res.output


def test_demo_with_a_local_clip_model(empty_caches: Path) -> None:
    model_dir, _ = write_local_dir(empty_caches / "tinyclip", TINY_VIT, PREP, seed=3)
    out = empty_caches / "demo"
    spec = f"local-dir:{model_dir}"
    res = CliRunner().invoke(main, ["demo", "--out", str(out), "-q", "--bootstrap", "100", "--clip", spec],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    scores = pd.read_csv(out / "scores.csv")
    col = f"clipscore:{spec}"
    assert col in scores.columns
    assert scores[col].between(-1, 1).all() and scores[col].std() > 0


def test_demo_with_missing_clip_spec_fails_clearly(empty_caches: Path) -> None:
    res = CliRunner().invoke(main, ["demo", "--out", str(empty_caches / "d"), "-q", "--clip",
                                    f"local-dir:{empty_caches / 'nope'}"])
    assert res.exit_code == 2
    assert "--clip local-dir:" in res.output and "Traceback" not in res.output
