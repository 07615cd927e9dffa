"""The montage (GT | LR | each method per tile, values, best marked), `srmetrics montage`, `score --montage`,
the best-method line, and the score messages that point a newcomer to the right input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from click.testing import CliRunner
from PIL import Image

from clipscore_sr.cli import main
from clipscore_sr.figures.montage import montage
from clipscore_sr.results import best_per_metric, format_best

from .conftest import make_pair_folders, save_png


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _methods(root: Path) -> tuple[Path, dict[str, Path]]:
    """gt/ plus two methods: 'good' (GT + weak noise) and 'bad' (GT + strong noise) over 3 tiles."""
    rng = np.random.default_rng(1)
    gt_dir = root / "gt"
    dirs = {"good": root / "good", "bad": root / "bad"}
    for i in range(3):
        gt = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
        save_png(gt_dir / f"t{i}.png", gt)
        for name, sigma in (("good", 3.0), ("bad", 30.0)):
            save_png(dirs[name] / f"t{i}.png", np.clip(gt + rng.normal(0, sigma, gt.shape), 0, 255).astype(np.uint8))
    return gt_dir, dirs


def test_best_per_metric_follows_each_direction_and_keeps_ties() -> None:
    means = pd.DataFrame({"psnr": [20.0, 25.0, 25.0], "lpips": [0.3, 0.1, 0.2]}, index=["a", "b", "c"])
    best = best_per_metric(means, {"psnr": True, "lpips": False})
    assert best == {"psnr": ["b", "c"], "lpips": ["b"]}
    assert format_best(best) == "best method per metric: psnr b=c, lpips b"


def test_montage_marks_the_better_method_and_is_deterministic(tmp_path: Path) -> None:
    scores = {
        "x": pd.DataFrame({"key": ["k1", "k2"], "gt": ["", ""], "sr": ["", ""], "error": ["", ""],
                           "psnr": [30.0, 10.0], "lpips": [0.5, 0.5]}),
        "y": pd.DataFrame({"key": ["k1", "k2"], "gt": ["", ""], "sr": ["", ""], "error": ["", ""],
                           "psnr": [20.0, 40.0], "lpips": [0.2, 0.6]}),
    }
    meta = montage(scores, ["psnr", "lpips"], tmp_path / "m.png", higher_is_better={"psnr": True, "lpips": False})
    assert meta["best"] == {"psnr": ["y"], "lpips": ["y"]}  # means 20 vs 30 dB; 0.5 vs 0.4
    assert meta["best_per_row"]["k1"] == {"psnr": ["x"], "lpips": ["y"]}
    assert meta["best_per_row"]["k2"] == {"psnr": ["y"], "lpips": ["x"]}
    first = (tmp_path / "m.png").read_bytes()
    montage(scores, ["psnr", "lpips"], tmp_path / "m.png", higher_is_better={"psnr": True, "lpips": False})
    assert (tmp_path / "m.png").read_bytes() == first


def test_montage_command_prints_the_best_method(tmp_path: Path) -> None:
    gt_dir, dirs = _methods(tmp_path)
    out = tmp_path / "fig" / "montage.png"
    res = run("montage", gt_dir, dirs["bad"], dirs["good"], "--lr", gt_dir, "-m", "psnr,ssim", "-o", out)
    assert res.exit_code == 0, res.output
    assert "best method per metric: psnr good, ssim good" in res.output
    quiet = run("montage", gt_dir, dirs["bad"], dirs["good"], "-m", "psnr", "-o", tmp_path / "q.png", "-q")
    assert quiet.exit_code == 0 and quiet.output == "", quiet.output  # -q: errors only, as in every command
    with Image.open(out) as im:
        assert im.size[0] > 300 and im.size[1] > 300


def test_score_montage_resume_message_and_input_hints(tmp_path: Path) -> None:
    gt_dir, sr_dir = make_pair_folders(tmp_path, n=3, size=32)
    out, fig = tmp_path / "r.csv", tmp_path / "m.png"
    assert run("score", gt_dir, sr_dir, "-m", "psnr", "-o", out, "-q", "--montage", fig).exit_code == 0
    assert fig.stat().st_size > 0
    res = CliRunner().invoke(main, ["score", str(gt_dir), str(sr_dir), "-m", "psnr", "-o", str(out), "-q",
                                    "--resume"])
    assert res.exit_code == 0 and "3 pairs already scored, skipped" in res.output

    # an SR folder holding only method subfolders: the error names them
    methods = tmp_path / "methods"
    for name in ("bicubic", "nearest"):
        for f in sr_dir.iterdir():
            save_png(methods / name / f.name, np.asarray(Image.open(f)))
    res = run("score", gt_dir, methods, "-m", "psnr")
    assert res.exit_code == 2
    assert "holds method subfolders (bicubic, nearest)" in res.output and str(methods / "bicubic") in res.output
    assert "--methods" in res.output

    # the LR input given instead of the SR output (exactly 1/4 of the GT)
    lr = tmp_path / "lr"
    for f in sorted(gt_dir.iterdir()):
        save_png(lr / f.name, np.asarray(Image.open(f).resize((8, 8))))
    res = run("score", gt_dir, lr, "-m", "psnr")
    assert res.exit_code == 1
    assert "exactly 1/4 of the GT: was the LR input given instead of the SR output?" in res.output


def test_score_methods_summarises_each_method_and_names_the_best(tmp_path: Path) -> None:
    gt_dir, dirs = _methods(tmp_path / "x")
    sr = tmp_path / "sr"
    sr.mkdir()
    for name, d in dirs.items():
        d.rename(sr / name)
    out, summary, fig = tmp_path / "r.csv", tmp_path / "s.csv", tmp_path / "m.png"
    res = run("score", gt_dir, sr, "--methods", "-m", "psnr,ssim", "-o", out, "--summary", summary,
              "--montage", fig)
    assert res.exit_code == 0, res.output
    assert "best method per metric: psnr good, ssim good" in res.output
    table = pd.read_csv(summary)
    assert list(table.columns[:2]) == ["method", "metric"] and set(table["method"]) == {"bad", "good"}
    assert sorted(pd.read_csv(out)["key"]) == sorted(f"{m}/t{i}" for m in ("bad", "good") for i in range(3))
    assert fig.stat().st_size > 0
