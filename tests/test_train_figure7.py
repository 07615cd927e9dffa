"""Figure 7: curves from run folders, first step reaching a target, speed-up ratios, CLI, real runs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from clipscore_sr.baselines.train_config import validate_config
from clipscore_sr.cli import main
from clipscore_sr.errors import SRMetricsError
from clipscore_sr.figures.figure7 import figure7, first_reaching, read_run, summarize

from .test_clip_support import PREP, TINY_VIT, write_local_dir
from .train_support import make_config, make_s2naip

COL = "val_clipscore:clip-rn50"


def _fake_run(d: Path, data_root: Path, clip_weight: float, values: list[float], every: int, sec_per_step: float,
              name: str | None = None) -> Path:
    d.mkdir(parents=True)
    cfg = make_config(d, data_root, "esrgan", losses={"clip": clip_weight, "perceptual": 0.0})
    if name:
        cfg["name"] = name
    (d / "config.yaml").write_text(yaml.safe_dump(validate_config(cfg)))
    rows = []
    for step in range(0, every * (len(values) - 1) + 1):
        row = {"step": step, "epoch": 0, "time_s": step * sec_per_step + 3.0, "lr": 1e-4,
               "loss": 1.0 if step else np.nan, COL: np.nan}
        if step % every == 0:
            row[COL] = values[step // every]
        rows.append(row)
    pd.DataFrame(rows).to_csv(d / "log.csv", index=False)
    return d


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_s2naip(tmp_path_factory.mktemp("s2naip"), n=3)


@pytest.fixture
def runs(tmp_path, data_root):
    # baseline: validated every 100 steps, first >= 0.8 at step 1800; CLIP loss run: already at step 100
    base_vals = [0.5 + 0.3 * min(1.0, i / 18) for i in range(21)]  # 0.8 exactly at i = 18
    clip_vals = [0.5, 0.8, 0.85, 0.87, 0.88, 0.89]
    a = _fake_run(tmp_path / "base", data_root, 0.0, base_vals, 100, 2.0)
    b = _fake_run(tmp_path / "clip", data_root, 1.0, clip_vals, 100, 2.5)
    return a, b


def test_first_reaching_and_summary(runs):
    a, b = runs
    ca, cb = read_run(a), read_run(b)
    assert ca.label == "esrgan-small (no CLIP loss)" and cb.label == "esrgan-small + CLIP loss (w=1)"
    assert ca.column == cb.column == COL
    assert list(ca.steps[:3]) == [0, 100, 200] and len(ca.values) == 21
    assert first_reaching(np.array([0, 10, 20]), np.array([0.1, 0.5, 0.4]), 0.5) == 10
    assert math.isnan(first_reaching(np.array([0, 10]), np.array([0.1, 0.2]), 0.5))
    s = summarize([ca, cb], 0.8)
    assert s["first_step"].tolist() == [1800.0, 100.0]
    assert s["first_time_s"].tolist() == [3603.0, 253.0]
    assert s["speedup_steps"].tolist() == [1.0, 18.0]
    assert s["speedup_time"].iloc[1] == pytest.approx(3603.0 / 253.0)
    assert s["final"].tolist() == [0.8, 0.89] and s["final_gain"].iloc[1] == pytest.approx(9.0)
    assert s["gain_unit"].iloc[1] == "points"
    never = summarize([ca, cb], 0.95)
    assert never["first_step"].isna().all() and never["speedup_steps"].isna().all()


def test_figure_files_deterministic_and_cli(runs, tmp_path):
    a, b = runs
    out1, out2 = tmp_path / "f1.png", tmp_path / "f2.png"
    figure7([a, b], out1)
    figure7([a, b], out2)
    assert out1.read_bytes() == out2.read_bytes() and out1.stat().st_size > 5000
    res = figure7([a, b], tmp_path / "t.svg", x="time", target=0.85, labels=["base", "clip"])
    assert res["summary"]["run"].tolist() == ["base", "clip"] and (tmp_path / "t.svg").is_file()
    out = CliRunner().invoke(main, ["figure7", str(a), str(b), "-o", str(tmp_path / "r" / "figure7.png"),
                                    "--target", "0.8", "--table", str(tmp_path / "r" / "summary.csv")])
    assert out.exit_code == 0, out.output
    assert "reaches 0.8 at step 1800" in out.output and "reaches 0.8 at step 100" in out.output
    assert "18x sooner in steps" in out.output and "+9.00 points" in out.output
    table = pd.read_csv(tmp_path / "r" / "summary.csv")
    assert table["speedup_steps"].tolist() == [1.0, 18.0]


def test_figure7_errors(runs, tmp_path):
    a, _ = runs
    with pytest.raises(SRMetricsError, match="not a training run folder"):
        figure7([tmp_path], tmp_path / "x.png")
    with pytest.raises(SRMetricsError, match="no validation column 'val_lpips'"):
        figure7([a], tmp_path / "x.png", metric="lpips")
    with pytest.raises(SRMetricsError, match="unsupported figure format"):
        figure7([a], tmp_path / "x.jpg")
    log = pd.read_csv(a / "log.csv").drop(columns=[COL])
    log.to_csv(a / "log.csv", index=False)
    with pytest.raises(SRMetricsError, match="no validation CLIPScore column.*--metric"):
        read_run(a)
    out = CliRunner().invoke(main, ["figure7", str(a), "-o", str(tmp_path / "x.png")])
    assert out.exit_code == 2 and out.output.startswith("Error: ") and out.output.count("\n") == 1


def test_figure7_from_real_training_runs(tmp_path, data_root, monkeypatch):
    """Two tiny SRCNN runs validated with a tiny CLIP model, with and without the CLIP loss."""

    from clipscore_sr.baselines.trainer import Trainer
    from clipscore_sr.metrics.clip import clear_model_cache

    monkeypatch.setenv("CLIPSCORE_SR_OFFLINE", "1")
    clip_dir, _ = write_local_dir(tmp_path / "clip", TINY_VIT, PREP, seed=3)
    metric = f"clipscore:local-dir:{clip_dir}"
    dirs = []
    for w in (0.0, 1.0):
        cfg = make_config(tmp_path / f"run{w:g}", data_root, "srcnn-915", data={"val_fraction": 0.3},
                          losses={"clip": w, "clip_model": f"local-dir:{clip_dir}"},
                          train={"steps": 4, "batch_size": 2, "checkpoint_interval": 4},
                          validation={"interval": 2, "metrics": ["psnr", metric]})
        Trainer(cfg).run()
        dirs.append(tmp_path / f"run{w:g}")
    clear_model_cache()
    res = figure7(dirs, tmp_path / "figure7.png", target=-1.0)
    s = res["summary"]
    assert s["metric"].tolist() == [metric, metric]
    assert s["first_step"].tolist() == [0.0, 0.0] and s["final_step"].tolist() == [4, 4]
    assert all(-1.0 <= v <= 1.0 for v in s["final"])
    assert res["curves"][1].label == "srcnn-915-small + CLIP loss (w=1)"
