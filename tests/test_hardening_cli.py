"""Hostile or careless command lines get a one-line answer, never a traceback, and never lose a file: oversized
study scenes, spreadsheet formulas in names, negative seeds, outputs over a study's own files, unbounded priors."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from clipscore_sr.cli import main

from .test_study import make, make_folders


def _no_traceback(res) -> None:
    assert "Traceback" not in res.output and res.exception is None or isinstance(res.exception, SystemExit)


def test_study_make_refuses_scenes_too_large_to_show_before_any_work(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CLIPSCORE_SR_STUDY_MAX_PIXELS", "500")  # the 24x24 tiles are 576 px
    gt, dirs = make_folders(tmp_path)
    res = CliRunner().invoke(main, ["study", "make", str(gt), *[f"--method={m}={d}" for m, d in dirs.items()],
                                    "--trials", "4", "--out", str(tmp_path / "s"), "-q"])
    assert res.exit_code == 2 and "too large to show in a study" in res.output and "cut the scenes" in res.output
    assert not (tmp_path / "s").exists() or not any((tmp_path / "s").iterdir())
    _no_traceback(res)


FORMULA = "=HYPERLINK(\"http://x\",\"y\")"


def test_names_that_look_like_formulas_are_escaped_in_csv_outputs_and_read_back(tmp_path: Path) -> None:
    from clipscore_sr.csvcells import escape, unescape
    from clipscore_sr.human.judgements import read_judgements_csv, write_judgements
    from clipscore_sr.results import read_table, write_table

    for v in ("=1+1", "+x", "-x", "@x", "\tx", "'=x", "''=x", "'a", "plain", "", "a=b"):
        assert unescape(escape(v)) == v
    assert escape("'a") == "'a" and escape("=x") == "'=x" and escape("'=x") == "''=x"
    rows = [(f"p{i}", "d", "g.png", "a.png", "b.png", "a", FORMULA, "-m2") for i in range(3)]
    df = pd.DataFrame(rows, columns=["pair_id", "dataset", "gt", "a", "b", "choice", "a_method", "b_method"])
    write_judgements(df, tmp_path / "j.csv")
    raw = list(csv.reader(open(tmp_path / "j.csv", newline="")))
    assert raw[1][6] == "'" + FORMULA and raw[1][7] == "'-m2"  # a spreadsheet shows text, runs nothing
    back = read_judgements_csv(tmp_path / "j.csv")
    assert back["a_method"].tolist() == [FORMULA] * 3 and back["b_method"].tolist() == ["-m2"] * 3
    res = CliRunner().invoke(main, ["rank", str(tmp_path / "j.csv"), "--bootstrap", "0", "-q",
                                    "-o", str(tmp_path / "r.csv")])
    assert res.exit_code == 0, res.output
    cells = [r[1] for r in csv.reader(open(tmp_path / "r.csv", newline=""))][1:]
    assert sorted(cells) == sorted(["'" + FORMULA, "'-m2"])
    assert sorted(read_table(tmp_path / "r.csv")["method"]) == sorted([FORMULA, "-m2"])
    t = pd.DataFrame({"key": ["@a", "b"], "psnr": [-1.5, 2.0]})
    write_table(t, tmp_path / "t.csv")
    assert open(tmp_path / "t.csv").read().splitlines()[1:] == ["'@a,-1.5", "b,2.0"]  # numbers untouched
    assert read_table(tmp_path / "t.csv")["key"].tolist() == ["@a", "b"]


@pytest.mark.parametrize("cmd", [["rank", "{j}", "--seed", "-1"], ["agreement", "{j}", "--seed", "-3"],
                                 ["study", "make", "{gt}", "--method", "a={gt}", "--method", "b={gt}", "--trials",
                                  "2", "-o", "{out}", "--seed", "-5"]])
def test_a_negative_seed_is_a_usage_error(tmp_path: Path, cmd: list[str]) -> None:
    (tmp_path / "j.csv").write_text("pair_id,dataset,gt,a,b,choice\n")
    (tmp_path / "gt").mkdir()
    args = [c.format(j=tmp_path / "j.csv", gt=tmp_path / "gt", out=tmp_path / "o") for c in cmd]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2 and "--seed" in res.output and "Traceback" not in res.output


def test_export_amt_never_writes_over_the_study_or_itself(tmp_path: Path) -> None:
    study = make(tmp_path, "--trials", "4")
    manifest = (study / "study.json").read_bytes()
    for out, template in ((study / "study.json", tmp_path / "t.html"), (tmp_path / "h.csv", study / "judgements.csv"),
                          (tmp_path / "same.csv", tmp_path / "same.csv")):
        res = CliRunner().invoke(main, ["study", "export-amt", str(study), "--trials-per-hit", "2",
                                        "--image-base-url", "https://x/", "-o", str(out), "--template", str(template)])
        assert res.exit_code == 2 and "same file" in res.output, res.output
    assert (study / "study.json").read_bytes() == manifest and not (study / "judgements.csv").exists()
    assert not (tmp_path / "same.csv").exists()


@pytest.mark.parametrize("value", ["inf", "1e300", "1e-300", "0", "nan"])
def test_prior_sd_is_bounded(tmp_path: Path, value: str) -> None:
    (tmp_path / "j.csv").write_text("pair_id,dataset,gt,a,b,choice,a_method,b_method\np,d,g,a,b,a,x,y\n")
    res = CliRunner().invoke(main, ["rank", str(tmp_path / "j.csv"), "--prior-sd", value])
    assert res.exit_code == 2 and "--prior-sd" in res.output and "Traceback" not in res.output


def test_export_generator_on_a_wrong_file_says_what_it_is(tmp_path: Path) -> None:
    bad = tmp_path / "pop.pt"
    bad.write_bytes(b"\x80\x020.")  # a pickle that pops from an empty stack (the unpickler: IndexError)
    res = CliRunner().invoke(main, ["export-generator", str(bad), "-o", str(tmp_path / "g.safetensors")])
    assert res.exit_code == 2 and "not a PyTorch checkpoint, or a damaged one" in res.output
    assert "IndexError" not in res.output and "pop from empty list" not in res.output


def test_train_check_labels_custom_widths_as_custom(tmp_path: Path) -> None:
    import yaml

    from .train_support import make_config, make_s2naip

    data = make_s2naip(tmp_path / "data", n=4)
    cfg = make_config(tmp_path / "run", data, "esrgan")  # tiny widths in model.options
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(main, ["train", str(tmp_path / "c.yaml"), "--check"])
    assert res.exit_code == 0, res.output
    assert "esrgan (custom: " in res.output and "esrgan-small" not in res.output
