"""Regression tests for the seams between commands (issue: the researcher's journey): each failed before its fix.
The journeys themselves, run as a user types them, are in tests/journeys/."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from clipscore_sr.cli import main
from tests.conftest import make_pair_folders, save_png


def _study(tmp_path: Path, n_trials: int = 4) -> Path:
    """A study made as `study make` makes it: inputs outside the study folder."""
    from clipscore_sr.human.study.make import make_study

    gt, sr = make_pair_folders(tmp_path / "data", n=4, size=32)
    sr2 = tmp_path / "data" / "out2"
    for p in sorted(sr.iterdir()):
        arr = np.asarray(Image.open(p))
        save_png(sr2 / p.name, np.clip(arr.astype(int) + 9, 0, 255).astype(np.uint8))
    make_study(gt, {"noisy": sr, "bright": sr2}, n_trials, tmp_path / "study", seed=0)
    return tmp_path / "study"


def _answer_all(study: Path, annotator: str = "ann", pick: str = "a") -> None:
    from clipscore_sr.human.study.manifest import load_study
    from clipscore_sr.human.study.store import JudgementStore, answer_row, shown_left

    s = load_study(study)
    store = JudgementStore(s.root)
    for t in s.trials:
        store.append(answer_row(s, t, annotator, pick, shown_left(s, annotator, t), 500, "2026-01-01T00:00:00"))


# 1. rank refused every study's answers ("image path leaves the root")
def test_rank_reads_a_study_whose_inputs_live_outside_it(tmp_path: Path) -> None:
    study = _study(tmp_path)
    _answer_all(study)
    res = CliRunner().invoke(main, ["rank", str(study / "judgements.csv"), "--bootstrap", "20", "-q",
                                    "-o", str(tmp_path / "r.csv")])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(tmp_path / "r.csv")
    assert sorted(table["method"]) == ["bright", "noisy"]
    assert CliRunner().invoke(main, ["judgements", "validate", str(study / "judgements.csv")]).exit_code == 0


def test_rank_never_touches_files_named_by_a_judgement(tmp_path: Path) -> None:
    """rank opens no image: paths outside anything are fine, and none is even stat'ed."""
    csv = tmp_path / "j.csv"
    rows = [("p1", "d", "/etc/nope/gt.png", "/etc/nope/a.png", "/etc/nope/a.png", "a", "m1", "m2")]
    pd.DataFrame(rows, columns=["pair_id", "dataset", "gt", "a", "b", "choice", "a_method", "b_method"]).to_csv(
        csv, index=False)
    res = CliRunner().invoke(main, ["rank", str(csv), "--bootstrap", "0", "-q"])
    # a == b as strings is a row error (names the same file); nothing else is checked on disk
    assert res.exit_code == 2 and "name the same file" in res.output


# 22.2: a crafted study.json must not widen the root of validate/agreement
@pytest.mark.parametrize("manifest", [{"trials": [{"gt": "/"}]},
                                      {"format": "clipscore-sr-study/1", "options": {"gt_dir": "/"}}])
def test_study_json_cannot_widen_the_root(tmp_path: Path, manifest: dict) -> None:
    from clipscore_sr.human.study.manifest import FORMAT

    if "format" in manifest:
        manifest = {**manifest, "format": FORMAT}
    (tmp_path / "study.json").write_text(json.dumps(manifest))
    csv = tmp_path / "judgements.csv"
    csv.write_text("pair_id,dataset,gt,a,b,choice\np,d,/etc/passwd,/etc/hostname,/etc/hosts,a\n")
    res = CliRunner().invoke(main, ["judgements", "validate", str(csv)])
    assert res.exit_code != 0 and "leaves the root" in res.output and "unreadable" not in res.output


# 3. 12-bit data scored against 65535 silently; meta recorded data_range null
def _write_u16(path: Path, arr: np.ndarray) -> None:
    import tifffile

    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, arr, photometric="minisblack", planarconfig="separate")


def test_12_bit_data_warn_once_and_the_meta_records_the_range_used(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for i in range(3):
        gt = rng.integers(0, 4096, (3, 24, 24)).astype(np.uint16)
        gt[0, 0, 0] = 4095  # full scale in every tile: the warning names 4095 whichever tile comes first
        _write_u16(tmp_path / "gt" / f"t{i}.tif", gt)
        _write_u16(tmp_path / "sr" / f"t{i}.tif", np.clip(gt + rng.normal(0, 99, gt.shape), 0, 4095).astype(np.uint16))
    out = tmp_path / "o.csv"
    res = CliRunner().invoke(main, ["score", str(tmp_path / "gt"), str(tmp_path / "sr"), "-m", "psnr", "-o", str(out),
                                    "-q", "--batch-size", "1"])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("Warning: uint16 data reach at most 4095")]
    assert len(lines) == 1 and "--data-range 4095 (12-bit)" in lines[0]  # once per run, even with -q
    settings = json.loads(Path(str(out) + ".meta.json").read_text())["settings"]
    assert settings["data_range"] == 65535.0 and settings["data_range_requested"] is None
    assert settings["inputs_range"]["gt"] == {"dtype": ["uint16"], "data_range": [65535.0], "max_value": 4095.0}
    default = pd.read_csv(out)["psnr"].to_numpy()
    res = CliRunner().invoke(main, ["score", str(tmp_path / "gt"), str(tmp_path / "sr"), "-m", "psnr", "-o", str(out),
                                    "--data-range", "4095", "-q"])
    assert res.exit_code == 0 and "Warning" not in res.output
    np.testing.assert_allclose(default - pd.read_csv(out)["psnr"].to_numpy(), 20 * math.log10(65535 / 4095), atol=1e-4)
    assert json.loads(Path(str(out) + ".meta.json").read_text())["settings"]["data_range"] == 4095.0


def test_range_hint_names_the_usual_encodings() -> None:
    from clipscore_sr.io import small_range_hint

    assert small_range_hint("uint16", 65535, 60000) is None
    assert small_range_hint("uint8", 255, 20) is None
    assert small_range_hint("uint16", 65535, 4095, requested=True) is None
    hint = small_range_hint("uint16", 65535, 10400)
    assert "10000 (Sentinel-2 reflectance x10000)" in hint and "4095" not in hint


# 4. montage: black 12-bit tiles, no --bands/--data-range, clipped text, unlabelled sizes
def test_montage_of_12_bit_multiband_data_is_not_black(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for i in range(2):
        base = rng.integers(300, 3800, (4, 8, 8)).astype(np.float64)
        gt = np.kron(base, np.ones((1, 4, 4))).astype(np.uint16)  # 32x32, 4 bands, 12-bit
        _write_u16(tmp_path / "gt" / f"t{i}.tif", gt)
        _write_u16(tmp_path / "lr" / f"t{i}.tif", base.astype(np.uint16))
        _write_u16(tmp_path / "sr" / "m" / f"t{i}.tif", gt)
    out = tmp_path / "m.png"
    res = CliRunner().invoke(main, ["montage", str(tmp_path / "gt"), str(tmp_path / "sr" / "m"), "--lr",
                                    str(tmp_path / "lr"), "--bands", "3,2,1", "--data-range", "4095",
                                    "-m", "psnr,ssim,lr-psnr,sam", "-o", str(out), "-q"])
    assert res.exit_code == 0, res.output
    from clipscore_sr.display import Displayed, stretch_limits, to_display

    shown = Displayed(tmp_path / "gt" / "t0.tif", bands=(3, 2, 1), data_range=4095)
    lo, hi = stretch_limits(shown.data, dtype=shown.dtype)
    assert to_display(shown.data, lo, hi).mean() > 80  # stretched, where 0..4095 / 4095 unstretched is dark
    img = np.asarray(Image.open(out).convert("L"), dtype=np.float64)
    assert (img[-4:] > 250).all()  # the bottom edge is background: no text line cut off
    dark = (img < 30).mean()
    assert dark < 0.05  # not black tiles


def test_montage_text_fits_with_many_metrics(tmp_path: Path) -> None:
    from clipscore_sr.figures.montage import montage

    gt, sr = make_pair_folders(tmp_path, n=2, size=16)
    metrics = [f"m{i}" for i in range(6)]
    df = pd.DataFrame({"key": ["img00", "img01"], "gt": [str(gt / "img00.png"), str(gt / "img01.png")],
                       "sr": [str(sr / "img00.png"), str(sr / "img01.png")], "error": ["", ""],
                       **{m: [1.0, 2.0] for m in metrics}})
    montage({"a": df, "b": df.assign(**{m: [3.0, 0.5] for m in metrics})}, metrics, tmp_path / "f.png",
            higher_is_better={m: True for m in metrics})
    img = np.asarray(Image.open(tmp_path / "f.png").convert("L"))
    assert (img[-4:] > 250).all()


# 5. no-HR scoring seams
def test_lr_only_summary_counts_each_metric_and_says_without_lr(tmp_path: Path) -> None:
    lr_dir, sr_dir = tmp_path / "lr", tmp_path / "sr"
    rng = np.random.default_rng(2)
    for i in range(3):
        save_png(lr_dir / f"k{i}.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
        save_png(sr_dir / f"k{i}.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    save_png(sr_dir / "extra.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    res = CliRunner().invoke(main, ["score", "--lr", str(lr_dir), str(sr_dir), "-m", "lr-psnr,psnr",
                                    "--summary", str(tmp_path / "s.csv"), "-q"])
    assert res.exit_code == 1  # psnr fails on every pair (no HR)
    assert "SR file(s) without LR: extra" in res.output and "without GT" not in res.output
    s = pd.read_csv(tmp_path / "s.csv").set_index("metric")
    assert s.loc["lr-psnr", "count"] == 3 and s.loc["psnr", "count"] == 0


def test_a_missing_lr_is_a_per_pair_error(tmp_path: Path) -> None:
    gt, sr = make_pair_folders(tmp_path, n=3, size=32)
    for p in sorted(gt.iterdir())[:2]:
        save_png(tmp_path / "lr" / p.name, np.asarray(Image.open(p).resize((8, 8))))
    res = CliRunner().invoke(main, ["score", str(gt), str(sr), "--lr", str(tmp_path / "lr"), "-m", "psnr,lr-psnr",
                                    "-o", str(tmp_path / "o.csv"), "-q"])
    assert res.exit_code == 1, res.output  # a failed pair, not a stopped run
    df = pd.read_csv(tmp_path / "o.csv")
    assert df["psnr"].notna().all() and df["lr-psnr"].notna().sum() == 2
    assert "this pair has none" in df.loc[df["lr-psnr"].isna(), "error"].iat[0]


# 6. a busy port: one line with a --port hint, before any banner
def test_serve_on_a_busy_port_says_so_in_one_line(tmp_path: Path) -> None:
    study = _study(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        res = subprocess.run([sys.executable, "-m", "clipscore_sr", "study", "serve", str(study), "--port", str(port)],
                             capture_output=True, text=True, timeout=60, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 2
    assert res.stdout == "" and res.stderr.strip().count("\n") == 0
    assert f"port {port} is in use" in res.stderr and "--port" in res.stderr and "Errno" not in res.stderr


# 7. statistics that printed nonsense
def test_rank_prints_no_negative_zero_and_names_a_degenerate_interval() -> None:
    from clipscore_sr.human.ranking import format_ranking, rank_methods
    from clipscore_sr.human.votes import votes_from_frame

    rows = []  # three scenes with identical votes: every scene resample is the same
    for scene in ("s1", "s2", "s3"):
        rows += [(scene, "x", "y", "a"), (scene, "y", "z", "a"), (scene, "x", "z", "a")]
    df = pd.DataFrame(rows, columns=["gt", "a_method", "b_method", "choice"]).assign(dataset="d")
    df["a"], df["b"] = df["gt"] + "/" + df["a_method"], df["gt"] + "/" + df["b_method"]
    df.insert(0, "pair_id", [f"p{i}" for i in range(len(df))])
    from clipscore_sr.human.votes import load_method_judgements

    df, info = load_method_judgements(df)
    r = rank_methods(votes_from_frame(df, info), bootstrap=50, seed=0)
    text = format_ranking(r)
    assert "-0.000" not in text and "no interval" in text
    assert r.table["ci_low"].isna().all() and r.table["ci_note"].str.startswith("no interval").all()


def test_summary_intervals_stay_in_the_metric_range() -> None:
    from clipscore_sr.results import summarize

    df = pd.DataFrame({"ssim": [0.99, -0.5], "lr-l1": [0.001, 0.09], "error": ["", ""]})
    s = summarize(df, ["ssim", "lr-l1"]).set_index("metric")
    assert -1 <= s.loc["ssim", "ci95_low"] and s.loc["ssim", "ci95_high"] <= 1
    assert s.loc["lr-l1", "ci95_low"] >= 0


def test_kendall_tau_intervals_take_attainable_values() -> None:
    from clipscore_sr.human.resampling import percentile_ci

    taus = np.array([1 / 3] * 5 + [1.0] * 195)
    lo, hi = percentile_ci(taus[:, None], 0.95, discrete=True)
    assert lo[0] in (1 / 3, 1.0) and hi[0] == 1.0
    lo_lin, _ = percentile_ci(taus[:, None], 0.95)
    assert lo_lin[0] not in (1 / 3, 1.0)  # what interpolation did before


# 8. smaller things
def test_votes_label_never_calls_constructed_labels_people(tmp_path: Path) -> None:
    from clipscore_sr.cli.agreement import _votes_label

    (tmp_path / "c.csv").write_text("annotator\nconstruct-severity\nconstruct-severity\n")
    (tmp_path / "h.csv").write_text("annotator\nalice\nbob\n")
    assert _votes_label(tmp_path / "c.csv") == "constructed labels"
    assert _votes_label(tmp_path / "h.csv") == "people"


def test_no_network_leads_the_weights_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from clipscore_sr import weights
    from clipscore_sr.errors import WeightsNotFoundError

    monkeypatch.setattr(weights, "is_offline", lambda: False)
    monkeypatch.setattr(weights, "unreachable", lambda url: "cannot reach example.org: refused")
    with pytest.raises(WeightsNotFoundError) as err:
        weights.hf_download("org/repo", "w.bin", what="clipscore:x", looked_in=["/cache"], how="fetch it")
    assert str(err.value).startswith("no network (cannot reach example.org: refused): weights for clipscore:x")


def test_maps_command_writes_the_captioned_figure(tmp_path: Path) -> None:
    gt, sr = make_pair_folders(tmp_path, n=1, size=32)
    hr_p, sr_p = gt / "img00.png", sr / "img00.png"
    lr_p = save_png(tmp_path / "lr.png", np.asarray(Image.open(hr_p).resize((8, 8), Image.BICUBIC)))
    res = CliRunner().invoke(main, ["maps", str(hr_p), str(sr_p), str(lr_p), "-o", str(tmp_path / "f.png")])
    assert res.exit_code == 0, res.output
    assert "improvement" in res.output and Image.open(tmp_path / "f.png").size[0] > 500
