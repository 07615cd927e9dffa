"""`srmetrics score`, `srmetrics metrics`, `--version` through click's runner: success, resume, strict pairing,
and each bad-input case."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

from clipscore_sr import __version__
from clipscore_sr.cli import main

from .conftest import make_pair_folders


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_version_and_metric_list() -> None:
    assert __version__ in run("--version").output
    res = run("metrics")
    assert res.exit_code == 0
    lines = {ln.split()[0]: ln for ln in res.output.splitlines() if ln and not ln.startswith(" ")}
    assert "higher is better" in lines["psnr"] and "dB" in lines["psnr"]
    assert " lower is better" in lines["ergas"]
    # a multi-column metric states each column's direction, not only the first one's
    assert "improvement higher, omission and hallucination lower" in lines["correctness:SPEC"]
    for mid in ("ssim", "ssim-gray", "cpsnr", "cpsnr-satlas"):
        assert mid in lines
    listing = json.loads(run("metrics", "--json").output)
    assert {m["name"]: m["higher_is_better"] for m in listing}["psnr"] is True


def test_score_success_csv_and_summary(tmp_path: Path, pair_folders) -> None:
    gt_dir, sr_dir = pair_folders
    out, summary = tmp_path / "r.csv", tmp_path / "s.csv"
    res = run("score", gt_dir, sr_dir, "--metrics", "psnr,ssim", "--out", out, "--summary", summary, "--quiet")
    assert res.exit_code == 0, res.output
    df = pd.read_csv(out, keep_default_na=False)
    assert list(df.columns) == ["key", "gt", "sr", "psnr", "ssim", "error"]
    assert len(df) == 6 and (df["error"] == "").all()
    for row in df.itertuples():
        gt = np.asarray(Image.open(row.gt))
        sr = np.asarray(Image.open(row.sr))
        assert row.psnr == pytest.approx(peak_signal_noise_ratio(gt, sr, data_range=255), abs=1e-6)
    s = pd.read_csv(summary)
    assert list(s["metric"]) == ["psnr", "ssim"]
    assert s.loc[0, "mean"] == pytest.approx(df["psnr"].mean())
    assert s.loc[0, "count"] == 6
    meta = json.loads(Path(str(out) + ".meta.json").read_text())
    assert [m["id"] for m in meta["metrics"]] == ["psnr", "ssim"]


def test_score_prints_summary_table(pair_folders) -> None:
    res = run("score", *pair_folders, "--metrics", "psnr")
    assert res.exit_code == 0
    assert "psnr (↑)" in res.output and "95% CI" in res.output


def test_identical_images_give_inf_not_a_crash(tmp_path: Path, pair_folders) -> None:
    gt_dir, _ = pair_folders
    out = tmp_path / "r.csv"
    res = run("score", gt_dir, gt_dir, "--metrics", "psnr", "--out", out)
    assert res.exit_code == 0
    assert "inf" in out.read_text().splitlines()[1]
    assert "+6 inf" in res.output


@pytest.mark.parametrize("ext", [".json", ".parquet"])
def test_other_output_formats(tmp_path: Path, pair_folders, ext: str) -> None:
    out = tmp_path / f"r{ext}"
    assert run("score", *pair_folders, "-m", "psnr", "-o", out, "-q").exit_code == 0
    df = pd.read_json(out) if ext == ".json" else pd.read_parquet(out)
    assert len(df) == 6 and "psnr" in df


def test_resume_skips_pairs_already_scored(tmp_path: Path, pair_folders) -> None:
    out = tmp_path / "r.csv"
    assert run("score", *pair_folders, "-m", "psnr", "-o", out, "-q").exit_code == 0
    df = pd.read_csv(out, keep_default_na=False)
    full = df.copy()
    df.loc[0, "psnr"] = 123.0  # sentinel: a resumed run must keep it (it does not recompute done pairs)
    df.iloc[:3].to_csv(out, index=False)
    res = run("score", *pair_folders, "-m", "psnr", "-o", out, "--resume", "-q")
    assert res.exit_code == 0
    back = pd.read_csv(out, keep_default_na=False)
    assert len(back) == 6 and back.loc[0, "psnr"] == 123.0
    np.testing.assert_allclose(back["psnr"][1:], full["psnr"][1:])


def test_unknown_metric_suggests_close_names(pair_folders) -> None:
    res = run("score", *pair_folders, "--metrics", "psnr,ssmi")
    assert res.exit_code == 2
    assert "unknown metric 'ssmi'" in res.output and "'ssim'" in res.output
    assert "Traceback" not in res.output


def test_strict_pairing_and_no_match(tmp_path: Path, pair_folders) -> None:
    gt_dir, sr_dir = pair_folders
    (sr_dir / "img05.png").unlink()
    res = run("score", gt_dir, sr_dir, "-m", "psnr", "-q")
    assert res.exit_code == 0 and "1 GT file(s) without SR: img05" in res.output
    res = run("score", gt_dir, sr_dir, "-m", "psnr", "--strict")
    assert res.exit_code == 2 and "--strict" in res.output
    empty = tmp_path / "empty"
    empty.mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(empty / "zzz.png")
    res = run("score", gt_dir, empty, "-m", "psnr")
    assert res.exit_code == 2 and "no GT/SR pairs" in res.output


def test_bad_pairs_reported_and_exit_nonzero(tmp_path: Path) -> None:
    gt_dir, sr_dir = make_pair_folders(tmp_path, n=4)
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(sr_dir / "img01.png")
    (sr_dir / "img02.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / "r.csv"
    res = run("score", gt_dir, sr_dir, "-m", "psnr,ssim", "-o", out, "-q")
    assert res.exit_code == 1
    assert "2 of 4 pairs failed" in res.output
    df = pd.read_csv(out, keep_default_na=False)
    assert (df["error"] != "").sum() == 2
    assert float(df.set_index("key").loc["img00", "psnr"]) > 0


def test_pairs_manifest_and_usage_errors(tmp_path: Path, pair_folders) -> None:
    gt_dir, sr_dir = pair_folders
    manifest = tmp_path / "pairs.csv"
    manifest.write_text("gt,sr\n" + "".join(f"{gt_dir.name}/img0{i}.png,{sr_dir.name}/img0{i}.png\n" for i in range(3)))
    res = run("score", "--pairs", manifest, "-m", "psnr", "-o", tmp_path / "r.csv", "-q")
    assert res.exit_code == 0, res.output
    assert len(pd.read_csv(tmp_path / "r.csv")) == 3
    assert "missing GT_DIR" in run("score", "-m", "psnr").output
    assert "--resume needs --out" in run("score", *pair_folders, "--resume").output
    res = run("score", *pair_folders, "-o", tmp_path / "r.txt")
    assert res.exit_code == 2 and "unsupported output format" in res.output
