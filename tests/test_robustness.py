"""Reliability of `score`/`agreement` outputs (issue 10 items 2-4, 10, 13-15): resume compares what defines a
result, odd file names never lose work, one writer per output, colliding or unusable outputs fail before work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from clipscore_sr import results
from clipscore_sr.cli import main
from clipscore_sr.errors import SRMetricsError
from clipscore_sr.pipeline import score_folders
from clipscore_sr.results import OutputLock, read_table

from .conftest import make_pair_folders, save_png

KW = dict(progress=False, device="cpu", workers=0)


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_resume_with_other_sr_folder_rescores_every_row(tmp_path: Path) -> None:
    gt, sr = make_pair_folders(tmp_path / "a", n=4, seed=0)
    _, sr2 = make_pair_folders(tmp_path / "b", n=4, seed=1)
    out = tmp_path / "r.csv"
    score_folders(gt, sr, ["psnr"], out=out, **KW)
    df = score_folders(gt, sr2, ["psnr"], out=out, resume=True, **KW)
    fresh = score_folders(gt, sr2, ["psnr"], **KW)
    assert df["psnr"].tolist() == fresh["psnr"].tolist()  # no row of the first SR folder survives
    note = df.attrs["run"].resume_note
    assert "kept 0 of 4" in note and "rescoring 4" in note and "sr changed" in note
    assert json.loads(Path(str(out) + ".meta.json").read_text())["resume_note"] == note


def test_resume_with_other_data_range_or_options_is_refused(tmp_path: Path) -> None:
    gt, sr = make_pair_folders(tmp_path, n=3)
    out = tmp_path / "r.csv"
    score_folders(gt, sr, ["psnr", "ssim"], out=out, **KW)
    before = out.read_bytes()
    with pytest.raises(SRMetricsError, match=r"other settings .*data-range: was None, now 1000\.0"):
        score_folders(gt, sr, ["psnr", "ssim"], out=out, resume=True, data_range=1000, **KW)
    with pytest.raises(SRMetricsError, match=r"psnr options: was .*crop_border': 0.* now .*crop_border': 4"):
        score_folders(gt, sr, ["psnr", "ssim"], out=out, resume=True, metric_options={"crop_border": 4}, **KW)
    with pytest.raises(SRMetricsError, match="bands: was None, now"):
        score_folders(gt, sr, ["psnr", "ssim"], out=out, resume=True, bands="1", **KW)
    assert out.read_bytes() == before  # a refused resume leaves the table alone
    # options that do not change values (cache folder) do not block a resume
    df = score_folders(gt, sr, ["psnr", "ssim"], out=out, resume=True, metric_options={"cache_dir": tmp_path}, **KW)
    assert df.attrs["run"].n_skipped == 3 and df.attrs["run"].resume_note == "--resume: kept 3 of 3 finished row(s)"


def test_resume_rescores_only_changed_inputs_and_drops_foreign_keys(tmp_path: Path) -> None:
    gt, sr = make_pair_folders(tmp_path, n=4)
    out = tmp_path / "r.json"
    first = score_folders(gt, sr, ["psnr"], out=out, **KW)
    changed = sr / "img02.png"
    save_png(changed, np.zeros((48, 48, 3), np.uint8))
    os.utime(changed, ns=(time.time_ns(), time.time_ns() + 10**9))
    (gt / "img03.png").unlink()
    (sr / "img03.png").unlink()
    df = score_folders(gt, sr, ["psnr"], out=out, resume=True, **KW)
    assert df["key"].tolist() == ["img00", "img01", "img02"]  # img03 is not in this run any more
    assert df["psnr"][:2].tolist() == first["psnr"][:2].tolist()
    assert df["psnr"][2] != first["psnr"][2]
    note = df.attrs["run"].resume_note
    assert "kept 2 of 4" in note and "rescoring 1" in note and "'img02': sr changed" in note
    assert "dropped 1" in note and "'img03'" in note


def test_resume_of_a_table_without_records_rescores(tmp_path: Path) -> None:
    gt, sr = make_pair_folders(tmp_path, n=2)
    out = tmp_path / "r.csv"
    score_folders(gt, sr, ["psnr"], out=out, **KW)
    Path(str(out) + ".meta.json").unlink()  # e.g. written by an older version: nothing to compare with
    df = score_folders(gt, sr, ["psnr"], out=out, resume=True, **KW)
    assert df.attrs["run"].n_skipped == 0 and "no record of its inputs" in df.attrs["run"].resume_note


@pytest.mark.parametrize("ext", [".csv", ".json", ".parquet"])
def test_non_utf8_file_name_is_kept_escaped_in_every_format(tmp_path: Path, ext: str) -> None:
    if ext == ".parquet":
        pytest.importorskip("pyarrow")
    gt, sr = make_pair_folders(tmp_path, n=2)
    for d in (gt, sr):
        os.rename(os.fsencode(d / "img01.png"), os.fsencode(d) + b"/img\xff01.png")
    out = tmp_path / f"r{ext}"
    df = score_folders(gt, sr, ["psnr"], out=out, **KW)
    table = read_table(out)
    assert sorted(table["key"]) == ["img00", "img\\xff01"] and table["sr"].str.contains("\\\\xff").any()
    assert (df["error"] == "").all()
    again = score_folders(gt, sr, ["psnr"], out=out, resume=True, **KW)
    assert again.attrs["run"].n_skipped == 2  # the escaped key matches on resume


def test_output_error_keeps_every_row_in_the_journal(tmp_path: Path, monkeypatch) -> None:
    gt, sr = make_pair_folders(tmp_path, n=3)
    out = tmp_path / "r.csv"
    real = results.write_table

    def broken(df, path):
        raise UnicodeEncodeError("utf-8", "x", 0, 1, "surrogates not allowed")

    monkeypatch.setattr(results, "write_table", broken)
    with pytest.raises(SRMetricsError, match=r"could not write the results .*kept in .*journal\.jsonl.*--resume"):
        score_folders(gt, sr, ["psnr"], out=out, **KW)
    assert len(results.read_journal(str(out) + ".journal.jsonl")) == 3
    monkeypatch.setattr(results, "write_table", real)
    df = score_folders(gt, sr, ["psnr"], out=out, resume=True, **KW)
    assert df.attrs["run"].n_skipped == 3 and len(read_table(out)) == 3


def test_second_run_on_one_output_fails_fast_naming_the_holder(tmp_path: Path) -> None:
    gt, sr = make_pair_folders(tmp_path, n=2)
    out = tmp_path / "r.csv"
    journal = Path(str(out) + ".journal.jsonl")
    journal.write_text('{"key": "other-run"}\n')  # the running process's journal
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys,time; from clipscore_sr.results import OutputLock; "
         f"lock = OutputLock({str(out)!r}).acquire(); print('ok', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1])
    try:
        assert holder.stdout.readline().strip() == "ok"
        with pytest.raises(SRMetricsError, match=rf"r\.csv is being written by pid {holder.pid} on .*another --out"):
            score_folders(gt, sr, ["psnr"], out=out, **KW)
        assert journal.read_text() == '{"key": "other-run"}\n' and not out.exists()
    finally:
        holder.kill()
        holder.wait()
    journal.unlink()
    score_folders(gt, sr, ["psnr"], out=out, **KW)  # the lock dies with its process
    assert out.exists() and not Path(str(out) + ".lock").exists()


def test_lock_is_exclusive_within_a_process_too(tmp_path: Path) -> None:
    with OutputLock(tmp_path / "x.csv"):
        with pytest.raises(SRMetricsError, match=f"pid {os.getpid()}"):
            OutputLock(tmp_path / "x.csv").acquire()
    OutputLock(tmp_path / "x.csv").acquire().release()


def test_colliding_and_unusable_outputs_fail_before_any_work(tmp_path: Path) -> None:
    gt, sr = make_pair_folders(tmp_path, n=2)
    x = tmp_path / "x.csv"
    res = cli("score", gt, sr, "-m", "psnr", "--out", x, "--summary", x, "-q")
    assert res.exit_code == 2 and "--summary and --out name the same file" in res.output
    res = cli("score", gt, sr, "-m", "psnr", "--out", x, "--summary", str(x) + ".meta.json", "-q")
    assert res.exit_code == 2 and "meta.json file" in res.output
    res = cli("score", gt, sr, "-m", "psnr", "--out", x, "--summary", tmp_path / "s.xlsx", "-q")
    assert res.exit_code == 2 and "unsupported output format '.xlsx'" in res.output and not x.exists()
    blocker = tmp_path / "file"
    blocker.write_text("")
    res = cli("score", gt, sr, "-m", "psnr", "--out", blocker / "r.csv", "-q")
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "--out: cannot write in" in res.output
    res = cli("score", gt, sr, "-m", "psnr", "--cache", blocker / "sub", "--out", x, "-q")
    assert res.exit_code == 2 and "--cache: cannot write in" in res.output and not x.exists()
    j = tmp_path / "j.csv"
    j.write_text("pair_id,dataset,gt,a,b,choice\n")
    res = cli("agreement", j, "-m", "psnr", "--out", tmp_path / "a.csv", "--pairs-out", tmp_path / "a.csv")
    assert res.exit_code == 2 and "--pairs-out and --out name the same file" in res.output
    res = cli("agreement", j, "-m", "psnr", "--scores-out", j)
    assert res.exit_code == 2 and "--scores-out and JUDGEMENTS_CSV name the same file" in res.output


def test_pairs_csv_with_bom_and_non_utf8(tmp_path: Path) -> None:
    gt, sr = make_pair_folders(tmp_path, n=2)
    pairs = tmp_path / "pairs.csv"
    pairs.write_bytes(b"\xef\xbb\xbfgt,sr\n" + f"{gt}/img00.png,{sr}/img00.png\n".encode())
    res = cli("score", "--pairs", pairs, "-m", "psnr", "--out", tmp_path / "r.csv", "-q")
    assert res.exit_code == 0, res.output
    assert len(pd.read_csv(tmp_path / "r.csv")) == 1
    pairs.write_bytes(b"gt,sr\n" + f"{gt}/img00.png,{sr}/img00.png\n".encode() + b"caf\xe9.png,b.png\n")
    res = cli("score", "--pairs", pairs, "-m", "psnr", "-q")
    assert res.exit_code == 2 and "pairs.csv:3: not valid UTF-8 (byte 0xe9)" in res.output


def test_figure3_on_an_empty_csv_is_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "a.csv"
    empty.write_text("")
    res = cli("figure3", empty, "-o", tmp_path / "f.png")
    assert res.exit_code == 2 and res.output.strip() == f"Error: {empty}: agreement table is empty (no header, no rows)"
