"""The scoring loop: batching invariance, per-pair errors, incremental/atomic output, resume, torchrun."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
from PIL import Image

from clipscore_sr import io
from clipscore_sr.metrics.base import Metric
from clipscore_sr.pipeline import score_folders, score_pairs
from clipscore_sr.results import read_journal, read_table, summarize

from .conftest import make_pair_folders


class MeanAbsDiff(Metric):
    """Test metric: mean |sr-gt| in file units (uses data_range), counts its calls."""

    name = "mad-test"
    higher_is_better = False

    def __init__(self, spec=None, *, device="cpu", fail_on_key_value: float | None = None, stop_after: int = 0):
        super().__init__(spec, device=device)
        self.calls = 0
        self.images = 0
        self.fail_value = fail_on_key_value
        self.stop_after = stop_after

    def compute(self, sr, gt, *, mask=None, data_range=None, sr_ids=None, gt_ids=None):
        self.calls += 1
        if self.stop_after and self.calls > self.stop_after:
            raise KeyboardInterrupt("simulated crash")
        self.images += sr.shape[0]
        if self.fail_value is not None and bool((gt.flatten(1)[:, 0] == self.fail_value).any()):
            raise ValueError("poisoned image")
        return ((sr.double() - gt.double()).abs().flatten(1).mean(1)) * data_range


def expected_mad(gt_path: str, sr_path: str) -> float:
    gt = np.asarray(Image.open(gt_path), dtype=np.float64)
    sr = np.asarray(Image.open(sr_path), dtype=np.float64)
    return float(np.abs(sr - gt).mean())


def test_values_match_direct_computation_for_any_batch_size(tmp_path: Path) -> None:
    gt_dir, sr_dir = make_pair_folders(tmp_path, n=7)
    pairs = io.pair_folders(gt_dir, sr_dir).pairs
    results = []
    for bs, workers in [(1, 0), (3, 2), (16, 1)]:
        df = score_pairs(pairs, [MeanAbsDiff()], batch_size=bs, workers=workers, progress=False, device="cpu")
        results.append(df["mad-test"].to_numpy())
        assert list(df.columns) == ["key", "gt", "sr", "mad-test", "error"]
        assert (df["error"] == "").all()
    for r in results[1:]:
        np.testing.assert_array_equal(results[0], r)
    direct = [expected_mad(p.gt, p.sr) for p in pairs]
    np.testing.assert_allclose(results[0], direct, rtol=1e-6)


def test_mixed_sizes_are_batched_by_shape(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for i, size in enumerate([16, 24, 16, 24, 32, 16]):
        a = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        for d in ("gt", "out"):
            (tmp_path / d).mkdir(exist_ok=True)
            Image.fromarray(a if d == "gt" else 255 - a).save(tmp_path / d / f"{i}.png")
    metric = MeanAbsDiff()
    df = score_folders(tmp_path / "gt", tmp_path / "out", [metric], batch_size=4, progress=False, device="cpu")
    assert len(df) == 6 and metric.calls == 3  # three distinct shapes
    assert (df["error"] == "").all()


def test_bad_pairs_get_an_error_row_and_the_rest_are_scored(tmp_path: Path) -> None:
    gt_dir, sr_dir = make_pair_folders(tmp_path, n=4)
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(sr_dir / "img01.png")  # size mismatch
    (sr_dir / "img02.png").write_bytes(b"garbage")  # unreadable
    nan = np.full((48, 48, 3), np.nan, np.float32)
    (sr_dir / "img03.png").unlink()
    tifffile.imwrite(sr_dir / "img03.tif", nan)
    (gt_dir / "img03.png").unlink()
    tifffile.imwrite(gt_dir / "img03.tif", np.zeros((48, 48, 3), np.float32))
    df = score_folders(gt_dir, sr_dir, [MeanAbsDiff()], progress=False, device="cpu", out=tmp_path / "r.csv")
    errors = dict(zip(df["key"], df["error"]))
    assert errors["img00"] == ""
    assert "size mismatch" in errors["img01"] and "48x48x3" in errors["img01"] and "10x10x3" in errors["img01"]
    assert "img02.png: cannot decode" in errors["img02"]
    assert "NaN or inf" in errors["img03"]
    assert math.isnan(df.set_index("key").loc["img01", "mad-test"])
    on_disk = read_table(tmp_path / "r.csv")
    assert len(on_disk) == 4 and (on_disk["error"].fillna("") != "").sum() == 3


def test_metric_failure_isolated_to_its_pair(tmp_path: Path) -> None:
    gt_dir, sr_dir = make_pair_folders(tmp_path, n=4)
    # make img02's first GT value distinctive so the metric "fails" on that image only
    arr = np.asarray(Image.open(gt_dir / "img02.png")).copy()
    arr[0, 0, 0] = 7
    Image.fromarray(arr).save(gt_dir / "img02.png")
    for k in ("img00", "img01", "img03"):
        a = np.asarray(Image.open(gt_dir / f"{k}.png")).copy()
        a[0, 0, 0] = 100
        Image.fromarray(a).save(gt_dir / f"{k}.png")
    df = score_folders(gt_dir, sr_dir, [MeanAbsDiff(fail_on_key_value=7 / 255)], batch_size=4,
                       progress=False, device="cpu")
    errs = dict(zip(df["key"], df["error"]))
    assert errs["img02"].startswith("mad-test: ValueError: poisoned image")
    assert all(errs[k] == "" for k in ("img00", "img01", "img03"))


@pytest.mark.parametrize("ext", [".csv", ".json", ".parquet"])
def test_output_formats_round_trip_with_inf(tmp_path: Path, ext: str) -> None:
    gt_dir, _ = make_pair_folders(tmp_path, n=3)

    class Inf(MeanAbsDiff):
        name = "inf-test"

        def compute(self, sr, gt, **kw):
            return torch.full((sr.shape[0],), math.inf, dtype=torch.float64)

    out = tmp_path / f"r{ext}"
    score_folders(gt_dir, gt_dir, [Inf()], out=out, progress=False, device="cpu")
    back = read_table(out)
    assert np.isinf(back["inf-test"].astype(float)).all()
    if ext == ".csv":
        assert "inf" in out.read_text()
    if ext == ".json":
        assert json.loads(out.read_text())[0]["inf-test"] == "inf"
    meta = json.loads(Path(str(out) + ".meta.json").read_text())
    assert meta["metrics"][0]["id"] == "inf-test"
    assert not Path(str(out) + ".journal.jsonl").exists()


def test_crash_keeps_work_and_resume_finishes(tmp_path: Path) -> None:
    gt_dir, sr_dir = make_pair_folders(tmp_path, n=9)
    out = tmp_path / "r.csv"
    with pytest.raises(KeyboardInterrupt):
        score_folders(gt_dir, sr_dir, [MeanAbsDiff(stop_after=2)], batch_size=2, workers=0, out=out,
                      progress=False, device="cpu")
    journal = read_journal(Path(str(out) + ".journal.jsonl"))
    assert len(journal) == 4  # two batches of two finished before the crash
    resumed_metric = MeanAbsDiff()
    df = score_folders(gt_dir, sr_dir, [resumed_metric], batch_size=2, workers=0, out=out, resume=True,
                       progress=False, device="cpu")
    assert resumed_metric.images == 5 and len(df) == 9
    full = score_folders(gt_dir, sr_dir, [MeanAbsDiff()], progress=False, device="cpu")
    pd.testing.assert_series_equal(df["mad-test"], full["mad-test"])
    assert len(read_table(out)) == 9


def test_torn_journal_line_is_ignored(tmp_path: Path) -> None:
    p = tmp_path / "j.jsonl"
    p.write_text('{"key": "a", "x": 1.0, "error": ""}\n{"key": "b", "x"')
    assert read_journal(p) == [{"key": "a", "x": 1.0, "error": ""}]


def test_resume_refuses_different_metrics(tmp_path: Path) -> None:
    from clipscore_sr.errors import SRMetricsError

    gt_dir, sr_dir = make_pair_folders(tmp_path, n=2)
    out = tmp_path / "r.csv"
    score_folders(gt_dir, sr_dir, [MeanAbsDiff()], out=out, progress=False, device="cpu")

    class Other(MeanAbsDiff):
        name = "other-test"

    with pytest.raises(SRMetricsError, match="other settings.*metrics: were mad-test, now other-test"):
        score_folders(gt_dir, sr_dir, [Other()], out=out, resume=True, progress=False, device="cpu")
    Path(str(out) + ".meta.json").unlink()  # no record of the settings: the column check still refuses
    with pytest.raises(SRMetricsError, match="no column"):
        score_folders(gt_dir, sr_dir, [Other()], out=out, resume=True, progress=False, device="cpu")


def test_summary_statistics() -> None:
    # a failed pair or metric leaves NaN in its own column (counted out); other columns of that row still count
    df = pd.DataFrame({"m": [1.0, 2.0, 3.0, 4.0, math.inf, math.nan], "error": ["", "", "", "", "", "bad"]})
    s = summarize(df, ["m"]).iloc[0]
    assert s["count"] == 4 and s["n_nonfinite"] == 1
    assert s["mean"] == pytest.approx(2.5)
    assert s["std"] == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    half = 3.182446305284263 * s["std"] / 2  # t(0.975, df=3)
    assert s["ci95_low"] == pytest.approx(2.5 - half) and s["ci95_high"] == pytest.approx(2.5 + half)


@pytest.mark.slow
def test_torchrun_two_processes_gloo_matches_single_process(tmp_path: Path) -> None:
    gt_dir, sr_dir = make_pair_folders(tmp_path, n=7)
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
        from tests.test_pipeline import MeanAbsDiff
        from clipscore_sr.pipeline import score_folders
        score_folders({str(gt_dir)!r}, {str(sr_dir)!r}, [MeanAbsDiff()], out={str(tmp_path / 'dist.csv')!r},
                      progress=False, device="cpu", batch_size=2)
    """))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517",
           str(script)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env={**__import__("os").environ,
                                                                                   "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    dist_df = read_table(tmp_path / "dist.csv")
    single = score_folders(gt_dir, sr_dir, [MeanAbsDiff()], progress=False, device="cpu")
    assert list(dist_df["key"]) == list(single["key"])
    np.testing.assert_allclose(dist_df["mad-test"].to_numpy(float), single["mad-test"].to_numpy(float))
    assert not list(tmp_path.glob("*.journal.jsonl"))


def test_written_tables_get_normal_permissions(tmp_path: Path) -> None:
    import os
    import stat

    from clipscore_sr.results import write_table

    write_table(pd.DataFrame({"key": ["a"], "error": [""]}), tmp_path / "t.csv")
    mode = stat.S_IMODE(os.stat(tmp_path / "t.csv").st_mode)
    assert mode & 0o044  # readable by group/others under the usual umask, not mkstemp's 0600


def test_nan_metric_value_becomes_a_pair_error(tmp_path: Path) -> None:
    """cpsnr with a mask that hides everything is undefined: the row says so instead of a silent NaN."""
    gt_dir, sr_dir = make_pair_folders(tmp_path, n=2)
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(np.full((48, 48), 255, np.uint8)).save(masks / "img00.png")
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(masks / "img01.png")  # nothing clear
    df = score_folders(gt_dir, sr_dir, ["cpsnr", "psnr"], mask_dir=masks, progress=False, device="cpu")
    errs = dict(zip(df["key"], df["error"]))
    assert errs["img00"] == ""
    assert errs["img01"].startswith("cpsnr: undefined (NaN)")
    assert np.isfinite(df.set_index("key").loc["img01", "psnr"])
