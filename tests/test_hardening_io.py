"""Hardening of inputs and outputs (review items 16-18, 20-23): lr-shift of flat images is undefined, one capped
YAML reader for every YAML the toolkit reads (alias bombs, deep nesting), a journal line with a bad byte is
skipped on --resume, --summary is locked like --out, file-name escaping is injective, an unusable --cache folder
fails once before any pair."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from clipscore_sr import pipeline
from clipscore_sr.cli import main
from clipscore_sr.cli.score import parse_metric_option
from clipscore_sr.embed_cache import EmbeddingCache
from clipscore_sr.errors import ConfigError, SRMetricsError
from clipscore_sr.figures.figure7 import read_run
from clipscore_sr.metrics.consistency import lr_consistency, lr_shift
from clipscore_sr.results import OutputLock, read_journal, read_journal_header, read_table, safe_text

from .conftest import make_pair_folders, save_png
from .test_clip_support import PREP, TINY_VIT, isolated_offline_env, write_local_dir

ROOT = Path(__file__).resolve().parents[1]
clip_env = pytest.fixture(isolated_offline_env)


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _bomb_text() -> str:
    """A ~700-byte YAML alias bomb: 9**9 values when expanded."""
    anchors = ["&a [" + ",".join(['"lol"'] * 9) + "]"]
    for prev, name in zip("abcdefgh", "bcdefghi"):
        anchors.append(f"&{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "[" + ", ".join(anchors) + "]"


DEEP = "[" * 5000 + "]" * 5000


# ---------------------------------------------------------------------------------------------------------
# 16. lr-shift of flat images
# ---------------------------------------------------------------------------------------------------------
def test_lr_shift_of_flat_images_is_nan() -> None:
    flat_sr, flat_lr = torch.full((1, 3, 32, 32), 0.5), torch.full((1, 3, 8, 8), 0.5)
    lr = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    sr = torch.nn.functional.interpolate(lr, scale_factor=4, mode="nearest")
    assert torch.isnan(lr_shift(flat_sr, flat_lr)).all()
    assert torch.isnan(lr_shift(sr, flat_lr)).all() and torch.isnan(lr_shift(flat_sr, lr)).all()
    assert torch.isnan(lr_consistency(flat_sr, flat_lr)[:, 3:]).all()
    both = lr_shift(torch.cat((flat_sr, sr)), torch.cat((flat_lr, lr)))  # per pair: the textured one is kept
    assert torch.isnan(both[0]).all() and torch.isfinite(both[1]).all() and both[1, 0] < 0.1


def test_lr_shift_of_flat_pair_is_a_per_pair_error_naming_why(tmp_path: Path) -> None:
    for d, size in (("lr", 8), ("sr", 32)):
        save_png(tmp_path / d / "flat.png", np.full((size, size, 3), 128, np.uint8))
    res = cli("score", "--lr", tmp_path / "lr", tmp_path / "sr", "-m", "lr-shift", "-q", "--out", tmp_path / "r.csv")
    assert res.exit_code == 1 and "undefined (NaN)" in res.output and "flat" in res.output, res.output
    df = read_table(tmp_path / "r.csv")
    assert np.isnan(df["lr-shift"][0]) and "no correlation peak" in df["error"][0]


# ---------------------------------------------------------------------------------------------------------
# 17-18. one capped YAML reader
# ---------------------------------------------------------------------------------------------------------
def test_every_yaml_read_goes_through_the_capped_loader() -> None:
    offenders = []
    for folder in ("clipscore_sr", "baselines"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name == "yamlsafe.py" or "baselines" in path.relative_to(ROOT).parts[1:]:
                continue
            text = path.read_text()
            if re.search(r"yaml\.(safe_load|load|full_load|unsafe_load|compose|load_all|safe_load_all)\(", text):
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders


def test_metric_option_alias_bomb_and_deep_nesting_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match=r"expands to more than 100,000 values through aliases"):
        parse_metric_option("correctness.threshold=" + _bomb_text())
    with pytest.raises(ConfigError, match=r"nests deeper than \d+ levels") as err:
        parse_metric_option("correctness.threshold=" + DEEP)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="nests deeper"):  # a node inside itself
        parse_metric_option("correctness.threshold=&a [*a]")
    assert parse_metric_option("correctness.gammas=[0.8,0.8,0.4]") == {"correctness.gammas": [0.8, 0.8, 0.4]}


def test_metric_option_bomb_and_deep_nesting_via_cli(tmp_path: Path) -> None:
    gt, sr = make_pair_folders(tmp_path, n=1)
    for value, message in ((_bomb_text(), "expands to more than"), (DEEP, "nests deeper than")):
        res = cli("score", gt, sr, "-m", "psnr", "-q", "--metric-option", "psnr.crop_border=" + value)
        assert res.exit_code == 2 and message in res.output and res.output.count("\n") == 1, res.output[-300:]


def test_figure7_run_config_bomb_and_deep_nesting(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "log.csv").write_text("step,time_s,val_psnr\n1,1.0,20.0\n2,2.0,21.0\n")
    (run / "config.yaml").write_text("extra: " + _bomb_text() + "\n")
    with pytest.raises(ConfigError, match=r"config\.yaml: YAML expands to more than"):
        read_run(run, metric="psnr")
    (run / "config.yaml").write_text("extra: " + DEEP + "\n")
    with pytest.raises(ConfigError, match=r"config\.yaml: YAML nests deeper"):
        read_run(run, metric="psnr")
    res = cli("figure7", run, "-o", tmp_path / "f.png", "--metric", "psnr")
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "nests deeper" in res.output, res.output[-300:]


def test_train_config_deep_nesting_is_one_line_error(tmp_path: Path) -> None:
    from clipscore_sr.baselines.train_config import load_config

    path = tmp_path / "deep.yaml"
    path.write_text("model: " + DEEP + "\n")
    with pytest.raises(ConfigError, match=r"deep\.yaml: YAML nests deeper"):
        load_config(path)
    res = cli("train", path, "--check")
    assert res.exit_code == 2 and res.output.count("\n") == 1, res.output[-300:]


# ---------------------------------------------------------------------------------------------------------
# 20. a journal line with a bad byte
# ---------------------------------------------------------------------------------------------------------
def test_journal_line_with_bad_byte_is_skipped(tmp_path: Path) -> None:
    j = tmp_path / "r.csv.journal.jsonl"
    j.write_bytes(b'{"_run": {"v": 1}}\n{"key": "a", "error": ""}\n{"key": "b\xff", "error": ""}\n'
                  b'{"_run": {"v": \xfe}}\n{"key": "c", "error": ""}\n')
    assert [r["key"] for r in read_journal(j)] == ["a", "c"]
    assert read_journal_header(j) == {"v": 1}


def test_resume_with_bad_byte_in_journal(tmp_path: Path) -> None:
    gt, sr = make_pair_folders(tmp_path, n=3)
    out = tmp_path / "r.csv"
    assert cli("score", gt, sr, "-m", "psnr", "-q", "--out", out).exit_code == 0
    Path(str(out) + ".journal.jsonl").write_bytes(b'{"key": "img00", "psnr": 1.0, "err\xff\n')
    res = cli("score", gt, sr, "-m", "psnr", "--out", out, "--resume")
    assert res.exit_code == 0 and "3 pairs already scored" in res.output, res.output
    assert len(read_table(out)) == 3


# ---------------------------------------------------------------------------------------------------------
# 21. --summary is locked like --out
# ---------------------------------------------------------------------------------------------------------
def test_summary_held_by_another_run_is_refused(tmp_path: Path) -> None:
    gt, sr = make_pair_folders(tmp_path, n=2)
    taken = tmp_path / "a.csv"  # another run's --out (or --summary), being written
    taken.write_text("key,gt,sr,psnr,error\n")
    with OutputLock(taken):
        res = cli("score", gt, sr, "-m", "psnr", "-q", "--out", tmp_path / "b.csv", "--summary", taken)
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "is being written by" in res.output, res.output
    assert "--summary" in res.output and taken.read_text() == "key,gt,sr,psnr,error\n"
    assert not (tmp_path / "b.csv").exists()


def test_summary_is_locked_while_the_run_scores(tmp_path: Path, monkeypatch) -> None:
    gt, sr = make_pair_folders(tmp_path, n=2)
    summary = tmp_path / "s.csv"
    seen = []
    real = pipeline.score_pairs

    def probe(*args, **kwargs):
        try:
            OutputLock(summary, "--out").acquire().release()  # a second run with --out (or --summary) s.csv
            seen.append("acquired")
        except SRMetricsError as exc:
            seen.append(str(exc))
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "score_pairs", probe)
    res = cli("score", gt, sr, "-m", "psnr", "-q", "--summary", summary)
    assert res.exit_code == 0 and summary.exists()
    assert len(seen) == 1 and "is being written by" in seen[0], seen
    OutputLock(summary).acquire().release()  # released at the end


# ---------------------------------------------------------------------------------------------------------
# 22. injective escaping of file names
# ---------------------------------------------------------------------------------------------------------
def test_safe_text_is_injective() -> None:
    names = [b"a\xff", b"a\\xff", b"a\\\\xff", b"a\\\xff", b"a\\b", b"a\\\\b", b"plain", b"a\\x", b"a\xff\\"]
    texts = [safe_text(os.fsdecode(n)) for n in names]
    assert len(set(texts)) == len(texts), texts
    assert safe_text("plain") == "plain" and safe_text("a\\b") == "a\\b"  # names without \x are kept
    assert all(t.encode("utf-8") for t in texts)


def test_undecodable_name_and_its_escaped_form_are_two_rows(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    gt, sr = tmp_path / "gt", tmp_path / "sr"
    try:
        for name in (b"a\xff.png", b"a\\xff.png"):
            for d in (gt, sr):
                d.mkdir(exist_ok=True)
                save_png(Path(os.fsdecode(os.path.join(os.fsencode(d), name))),
                         rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    except (OSError, UnicodeError):
        pytest.skip("file system does not take non-UTF-8 names")
    out = tmp_path / "r.csv"
    res = cli("score", gt, sr, "-m", "psnr", "-q", "--out", out)
    assert res.exit_code == 0, res.output
    df = read_table(out)
    assert len(df) == 2 and df["key"].nunique() == 2 and df["psnr"].nunique() == 2
    res = cli("score", gt, sr, "-m", "psnr", "--out", out, "--resume")
    assert res.exit_code == 0 and "2 pairs already scored" in res.output and len(read_table(out)) == 2


# ---------------------------------------------------------------------------------------------------------
# 23. an unusable --cache folder
# ---------------------------------------------------------------------------------------------------------
def test_embedding_cache_in_unusable_folder_is_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "embeddings").write_text("")
    with pytest.raises(SRMetricsError, match=r"--cache: cannot write in .*embeddings"):
        EmbeddingCache("ns", tmp_path / "c")


def test_unusable_cache_fails_before_any_pair(tmp_path: Path, clip_env) -> None:
    model, _ = write_local_dir(tmp_path / "tiny", TINY_VIT, PREP, seed=0)
    gt, sr = make_pair_folders(tmp_path, n=2)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "embeddings").write_text("")  # a writable folder, unusable inside
    out = tmp_path / "r.csv"
    res = cli("score", gt, sr, "-m", f"clipscore:local-dir:{model}", "-q", "--cache", cache, "--out", out)
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "--cache: cannot write in" in res.output, res.output
    assert not out.exists()
