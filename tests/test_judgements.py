"""Judgement files: schema, every validation problem with its line number, AMT import, the CLI commands."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from clipscore_sr.cli import main
from clipscore_sr.errors import JudgementError
from clipscore_sr.human.amt import AmtMapping, import_amt
from clipscore_sr.human.judgements import load_judgements, validate_judgements, write_judgements
from clipscore_sr.human.vote_tables import vote_table

HEADER = ["pair_id", "dataset", "gt", "a", "b", "choice", "annotator"]
REPO = Path(__file__).resolve().parents[1]


def _img(path: Path, size: tuple[int, int] = (16, 16), channels: int = 3, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], channels) if channels > 1 else (size[1], size[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(path)
    return path.name


@pytest.fixture
def study(tmp_path: Path) -> Path:
    """images/ with gt, a, b, c (16x16 RGB), big (20x16), gray (16x16, 1 band), broken (not an image)."""
    img = tmp_path / "images"
    for i, name in enumerate(["gt", "a", "b", "c"]):
        _img(img / f"{name}.png", seed=i)
    _img(img / "big.png", size=(20, 16))
    _img(img / "gray.png", channels=1)
    (img / "broken.png").write_bytes(b"this is not a PNG file")
    return tmp_path


def _write(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return path


GOOD = [
    ["p1", "s2", "images/gt.png", "images/a.png", "images/b.png", "a", "w1"],
    ["p1", "s2", "images/gt.png", "images/a.png", "images/b.png", "B", "w2"],
    ["p1", "s2", "images/gt.png", "images/b.png", "images/a.png", "a", "w3"],  # swapped orientation
    ["p2", "s2", "images/gt.png", "images/a.png", "images/c.png", "tie", "w1"],
    ["p3", "ws", "images/gt.png", "images/b.png", "images/c.png", "b", "w4"],
]


def test_valid_file_loads_with_canonical_votes(study: Path) -> None:
    path = _write(study / "j.csv", GOOD)
    report = validate_judgements(path)
    assert report.ok, report.lines()
    df = load_judgements(path)
    assert list(df["line"]) == [2, 3, 4, 5, 6]
    assert list(df["vote"]) == ["a", "b", "b", "tie", "b"]  # line 4 mirrored onto p1's a/b
    assert df["gt_path"].iat[0] == str((study / "images/gt.png").resolve())
    votes = vote_table(df)
    assert list(votes["pair_id"]) == ["p1", "p2", "p3"]
    assert votes[["n_a", "n_b", "n_tie"]].values.tolist() == [[1, 2, 0], [0, 0, 1], [0, 1, 0]]


def test_root_option_and_absolute_paths(study: Path) -> None:
    sub = study / "csvs"
    sub.mkdir()
    path = _write(sub / "j.csv", [GOOD[0], ["p9", "s2", str(study / "images/gt.png"), "images/a.png",
                                            "images/c.png", "a", "w1"]])
    assert not validate_judgements(path).ok  # relative to the CSV's folder: not found
    assert validate_judgements(path, root=study).ok


@pytest.mark.parametrize("row, line, column, message", [
    (["p9", "s2", "images/gt.png", "images/a.png", "images/b.png", "left", "w1"], 3, "choice", "unknown choice 'left'"),
    (["p9", "s2", "images/gt.png", "images/a.png", "images/b.png", "", "w1"], 3, "choice", "empty 'choice'"),
    (["p9", "s2", "images/gt.png", "images/a.png", "images/nope.png", "a", "w1"], 3, "b", "image not found"),
    (["p9", "s2", "images/gt.png", "images/broken.png", "images/b.png", "a", "w1"], 3, "a", "unreadable image"),
    (["p9", "s2", "images/gt.png", "images/a.png", "images/a.png", "a", "w1"], 3, "b", "name the same file"),
    (["p9", "s2", "images/gt.png", "images/a.png", "images/../images/a.png", "a", "w1"], 3, "b",
     "name the same file"),
    (["p9", "s2", "images/gt.png", "images/a.png", "images/big.png", "a", "w1"], 3, "b",
     "image size 20x16 of 'b'"),
    (["p9", "s2", "images/gt.png", "images/gray.png", "images/b.png", "a", "w1"], 3, "a", "1 band(s), gt has 3"),
    (["p1", "s2", "images/gt.png", "images/a.png", "images/b.png", "b", "w1"], 3, "annotator",
     "annotator 'w1' already voted on pair 'p1' (line 2)"),
    (["p1", "ws", "images/gt.png", "images/a.png", "images/b.png", "b", "w7"], 3, "dataset",
     "pair_id 'p1' has dataset 'ws' here but 's2' on line 2"),
    (["p1", "s2", "images/c.png", "images/a.png", "images/b.png", "b", "w7"], 3, "gt", "names gt"),
    (["p1", "s2", "images/gt.png", "images/a.png", "images/c.png", "b", "w7"], 3, "a", "compares"),
    (["p9", "all", "images/gt.png", "images/a.png", "images/b.png", "a", "w1"], 3, "dataset", "reserved"),
    (["", "s2", "images/gt.png", "images/a.png", "images/b.png", "a", "w1"], 3, "pair_id", "empty 'pair_id'"),
    (["p9", "s2", "images/gt.png", "images/a.png", "images/b.png", "a", ""], 3, "annotator",
     "empty 'annotator' while other rows name one"),
    (["p9", "s2", "images/gt.png", "images/a.png", "images/b.png", "a", "w1", "surplus"], 3, None,
     "1 more field(s)"),
])
def test_each_problem_is_reported_with_its_line(study: Path, row, line, column, message) -> None:
    path = _write(study / "j.csv", [GOOD[0], row, GOOD[3]])
    report = validate_judgements(path)
    assert not report.ok
    assert [(p.line, p.column) for p in report.problems] == [(line, column)], report.lines()
    assert message in report.problems[0].message
    text = report.lines()[0]
    assert text.startswith(f"{path}:{line}:")
    assert list(report.judgements["line"]) == [2, 5 - 1]  # the good rows survive
    with pytest.raises(JudgementError, match=rf"j\.csv:{line}:"):
        load_judgements(path)
    kept = load_judgements(path, skip_invalid=True)
    assert len(kept) == 2 and kept.attrs["n_invalid"] == 1 and kept.attrs["problems"] == report.lines()


def test_missing_columns_are_reported_on_line_1(study: Path) -> None:
    path = _write(study / "j.csv", [r[:5] for r in GOOD], header=["pair_id", "dataset", "gt", "a", "b"])
    report = validate_judgements(path)
    assert [(p.line, p.column) for p in report.problems] == [(1, None)]
    assert "missing required column(s) choice" in report.problems[0].message
    assert report.judgements.empty
    with pytest.raises(JudgementError, match=r"j\.csv:1: missing required column\(s\) choice"):
        load_judgements(path)
    with pytest.raises(JudgementError, match="no valid judgement rows"):
        load_judgements(path, skip_invalid=True)


def test_line_numbers_count_physical_lines_and_several_problems(study: Path) -> None:
    header = [*HEADER, "comment"]
    rows = [
        [*GOOD[0], "a comment\nspanning\nthree lines"],  # lines 2-4
        ["p2", "s2", "images/gt.png", "images/a.png", "images/a.png", "maybe", "w1", ""],  # line 5, 2 problems
        [],  # blank line 6
        ["p3", "s2", "images/gt.png", "images/missing.png", "images/b.png", "a", "w1", ""],  # line 7
    ]
    path = _write(study / "j.csv", rows, header=header)
    report = validate_judgements(path)
    assert sorted((p.line, p.column) for p in report.problems) == [(5, "b"), (5, "choice"), (7, "a")]
    assert report.bad_lines == [5, 7] and report.n_invalid == 2
    assert "2 of" not in report.summary() and "1 of 3" in report.summary()


def test_dataframe_input_and_check_images_off(study: Path) -> None:
    df = pd.DataFrame([dict(zip(HEADER, r)) for r in GOOD])
    assert validate_judgements(df, root=study).ok
    df.loc[1, "a"] = "images/nowhere.png"
    report = validate_judgements(df, root=study)
    assert [(p.line, p.column) for p in report.problems] == [(3, "a")]
    assert validate_judgements(df, root=study, check_images=False).problems[0].column == "a"  # p1 mismatch
    df2 = pd.DataFrame([dict(zip(HEADER, r)) for r in GOOD])
    df2.loc[1, "a"], df2.loc[1, "b"] = "images/missing1.png", "images/missing2.png"
    assert validate_judgements(df2.iloc[1:2], root=study, check_images=False).ok


def test_samefile_through_a_symlink(study: Path) -> None:
    os.symlink(study / "images" / "a.png", study / "images" / "link.png")
    path = _write(study / "j.csv", [["p1", "s2", "images/gt.png", "images/a.png", "images/link.png", "a", "w"]])
    report = validate_judgements(path)
    assert [(p.line, p.column) for p in report.problems] == [(2, "b")]


def test_write_judgements_round_trip(study: Path) -> None:
    df = load_judgements(_write(study / "j.csv", GOOD))
    write_judgements(df, study / "out.csv")
    back = pd.read_csv(study / "out.csv", keep_default_na=False, dtype=str)
    assert list(back.columns)[:6] == ["pair_id", "dataset", "gt", "a", "b", "choice"]
    assert "vote" not in back.columns and "line" not in back.columns
    assert validate_judgements(study / "out.csv").ok


# ---------------------------------------------------------------------------------------------------
# Amazon Mechanical Turk batch results

AMT_STANDARD = ["HITId", "HITTypeId", "Title", "Description", "Keywords", "Reward", "CreationTime",
                "MaxAssignments", "RequesterAnnotation", "AssignmentDurationInSeconds",
                "AutoApprovalDelayInSeconds", "Expiration", "NumberOfSimilarHITs", "LifetimeInSeconds",
                "AssignmentId", "WorkerId", "AssignmentStatus", "AcceptTime", "SubmitTime", "AutoApprovalTime",
                "ApprovalTime", "RejectionTime", "RequesterFeedback", "WorkTimeInSeconds", "LifetimeApprovalRate",
                "Last30DaysApprovalRate", "Last7DaysApprovalRate"]
URL = "https://my-bucket.s3.us-west-2.amazonaws.com/sr%20study"


def _amt_file(path: Path, answers: list[tuple[str, str, str, str]], *, onehot: bool = False) -> Path:
    """Rows: (HITId, WorkerId, AssignmentStatus, answer in {left,right,same}); 2 HITs with fixed images."""
    inputs = {"H1": ("gt.png", "a.png", "b.png", "s2naip", "esrgan", "sr3"),
              "H2": ("gt.png", "b.png", "c.png", "worldstrat", "sr3", "bicubic")}
    answer_cols = (["Answer.pref.left", "Answer.pref.right", "Answer.pref.same"] if onehot
                   else ["Answer.preference"])
    header = [*AMT_STANDARD, "Input.gt_url", "Input.left_url", "Input.right_url", "Input.dataset",
              "Input.left_method", "Input.right_method", *answer_cols, "Answer.comments", "Approve", "Reject"]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        for k, (hit, worker, status, ans) in enumerate(answers):
            gt, a, b, ds, ma, mb = inputs[hit]
            std = {c: "" for c in AMT_STANDARD}
            std.update(HITId=hit, HITTypeId="3XYZ", Title="Which image is closer to the reference?",
                       Description="Compare two\nsuper-resolved images", Reward="$0.05", MaxAssignments="3",
                       AssignmentId=f"A{k}", WorkerId=worker, AssignmentStatus=status,
                       SubmitTime="Tue Mar 05 10:00:00 PST 2024", WorkTimeInSeconds="12",
                       LifetimeApprovalRate="100% (12/12)", RejectionTime="" if status != "Rejected" else "x")
            if onehot:
                ans_cells = [str(ans.lower() == v).lower() for v in ("left", "right", "same")]
            else:
                ans_cells = [ans]
            w.writerow([*(std[c] for c in AMT_STANDARD), f"{URL}/{gt}", f"{URL}/{a}", f"{URL}/{b}", ds, ma, mb,
                        *ans_cells, "looks, \"fine\"", "", ""])
    return path


ANSWERS = [
    ("H1", "W1", "Approved", "left"),
    ("H1", "W2", "Rejected", "right"),
    ("H1", "W3", "Submitted", "Right"),
    ("H2", "W1", "Approved", "same"),
    ("H2", "W4", "Rejected", "left"),
    ("H2", "W5", "Approved", "left"),
]
MAPS = ["gt=Input.gt_url", "a=Input.left_url", "b=Input.right_url", "choice=Answer.preference",
        "value.a=left", "value.b=right", "value.tie=same|equal", "dataset=Input.dataset",
        "a_method=Input.left_method", "b_method=Input.right_method"]


def test_import_amt_drops_rejected_and_maps_everything(study: Path) -> None:
    batch = _amt_file(study / "Batch_1_batch_results.csv", ANSWERS)
    mapping = AmtMapping.from_options(MAPS, prefixes=[f"{URL}/=images/"])
    res = import_amt(batch, mapping)
    assert (res.n_assignments, res.n_rejected, res.n_other_status) == (6, 2, 0)
    df = res.judgements
    assert df.values.tolist() == [
        ["H1", "s2naip", "images/gt.png", "images/a.png", "images/b.png", "a", "W1", "esrgan", "sr3"],
        ["H1", "s2naip", "images/gt.png", "images/a.png", "images/b.png", "b", "W3", "esrgan", "sr3"],
        ["H2", "worldstrat", "images/gt.png", "images/b.png", "images/c.png", "tie", "W1", "sr3", "bicubic"],
        ["H2", "worldstrat", "images/gt.png", "images/b.png", "images/c.png", "a", "W5", "sr3", "bicubic"],
    ]
    assert "dropped 2 rejected" in res.summary()
    write_judgements(df, study / "judgements.csv")
    assert validate_judgements(study / "judgements.csv").ok
    approved = import_amt(batch, mapping, statuses=("Approved",))
    assert len(approved.judgements) == 3 and approved.n_other_status == 1


def test_import_amt_onehot_answers_and_several_files(study: Path) -> None:
    b1 = _amt_file(study / "b1.csv", ANSWERS[:3], onehot=True)
    b2 = _amt_file(study / "b2.csv", ANSWERS[3:], onehot=True)
    mapping = AmtMapping.from_options(
        ["gt=Input.gt_url", "a=Input.left_url", "b=Input.right_url", "onehot.a=Answer.pref.left",
         "onehot.b=Answer.pref.right", "onehot.tie=Answer.pref.same"], prefixes=[f"{URL}/=images/"],
        dataset_name="study")
    res = import_amt([b1, b2], mapping)
    assert list(res.judgements["choice"]) == ["a", "b", "tie", "a"]
    assert set(res.judgements["dataset"]) == {"study"} and "a_method" not in res.judgements.columns


def test_import_amt_errors_name_file_and_line(study: Path) -> None:
    batch = _amt_file(study / "batch.csv", [*ANSWERS[:2], ("H2", "W9", "Approved", "dunno")])
    mapping = AmtMapping.from_options(MAPS, prefixes=[f"{URL}/=images/"])
    # rows span two lines each (a quoted newline in Description): the third row starts on line 6
    with pytest.raises(JudgementError, match=r"batch\.csv:6: Answer\.preference value 'dunno' is not mapped"):
        import_amt(batch, mapping)
    ok = _amt_file(study / "ok.csv", ANSWERS[:1])
    with pytest.raises(JudgementError, match=r"ok\.csv:2: Input\.gt_url URL .* matches no --prefix"):
        import_amt(ok, AmtMapping.from_options(MAPS))
    with pytest.raises(JudgementError, match=r"ok\.csv:1: column\(s\) Input\.nope not found"):
        import_amt(ok, AmtMapping.from_options([*MAPS[:3], "choice=Input.nope"]))
    with pytest.raises(JudgementError, match="unknown key 'choise'; did you mean 'choice'"):
        AmtMapping.from_options([*MAPS[:3], "choise=Answer.preference"])
    with pytest.raises(JudgementError, match="'b=COLUMN' is required"):
        AmtMapping.from_options(["gt=x", "a=y", "choice=z"])
    with pytest.raises(JudgementError, match="mapped to both"):
        import_amt(ok, AmtMapping.from_options([*MAPS[:4], "value.a=left", "value.b=left"],
                                               prefixes=[f"{URL}/=images/"]))


# ---------------------------------------------------------------------------------------------------
# CLI

def test_cli_validate(study: Path) -> None:
    runner = CliRunner()
    good = _write(study / "good.csv", GOOD)
    r = runner.invoke(main, ["judgements", "validate", str(good)])
    assert r.exit_code == 0, r.output
    assert "no problems" in r.output and "3 pair(s) in 2 dataset(s)" in r.output
    bad = _write(study / "bad.csv", [GOOD[0], ["p1", "s2", "images/gt.png", "images/a.png", "images/b.png", "x", "w1"]])
    r = runner.invoke(main, ["judgements", "validate", str(bad)])
    assert r.exit_code == 1
    assert f"{bad}:3: [choice] unknown choice 'x'" in r.output
    assert f"{bad}:3: [annotator]" not in r.output  # an invalid row does not also count as a vote
    r = runner.invoke(main, ["judgements", "validate", str(study / "absent.csv")])
    assert r.exit_code == 2 and "judgements file not found" in r.output


def test_cli_import_amt(study: Path) -> None:
    runner = CliRunner()
    batch = _amt_file(study / "Batch_7_batch_results.csv", ANSWERS)
    out = study / "judgements.csv"
    args = ["judgements", "import-amt", str(batch), *(x for m in MAPS for x in ("--map", m)),
            "--prefix", f"{URL}/=images/", "-o", str(out)]
    r = runner.invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "4 judgement(s) from 6 assignment(s) in 1 file(s); dropped 2 rejected" in r.output
    assert len(pd.read_csv(out)) == 4
    r = runner.invoke(main, [*args[:-4], "--prefix", f"{URL}/=elsewhere/", "-o", str(out)])
    assert r.exit_code == 1 and "image not found" in r.output
    r = runner.invoke(main, ["judgements", "import-amt", str(batch), "--map", "gt=Input.gt_url", "-o", str(out)])
    assert r.exit_code == 2 and "'a=COLUMN' is required" in r.output


def test_cli_agreement_and_figure3_on_a_small_study(study: Path) -> None:
    rows = []
    for i, name in enumerate(["a", "b", "c"]):  # noise growing a < b < c relative to gt
        gt = np.asarray(Image.open(study / "images/gt.png"), dtype=np.float64)
        noisy = np.clip(gt + np.random.default_rng(i).normal(0, 10 * (i + 1), gt.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(study / f"images/n{name}.png")
    for pid, (x, y) in enumerate([("na", "nb"), ("nb", "nc"), ("na", "nc")]):
        for w in range(3):
            rows.append([f"p{pid}", "ds1" if pid < 2 else "ds2", "images/gt.png", f"images/{x}.png",
                         f"images/{y}.png", "a" if w < 2 else "b", f"w{w}"])
    path = _write(study / "j.csv", rows)
    runner = CliRunner()
    out, pairs = study / "agreement.csv", study / "pairs.csv"
    r = runner.invoke(main, ["agreement", str(path), "--metrics", "psnr,ssim", "--out", str(out),
                             "--pairs-out", str(pairs), "--bootstrap", "100", "--device", "cpu", "--workers", "0",
                             "--quiet"])
    assert r.exit_code == 0, r.output
    table = pd.read_csv(out)
    assert set(table["dataset"]) == {"ds1", "ds2", "all"}
    # every pair: 2 of 3 votes for the less noisy output, which psnr prefers -> 2/3
    assert table.loc[(table.metric == "psnr") & (table.dataset == "all"), "accuracy"].item() == pytest.approx(2 / 3)
    assert table["human_ceiling"].iloc[0] == pytest.approx(2 / 3)
    assert len(pd.read_csv(pairs)) == 3
    r = runner.invoke(main, ["agreement", str(path), "--metrics", "psnr", "--bootstrap", "50", "--device", "cpu",
                             "--workers", "0", "--quiet"])
    assert r.exit_code == 0 and r.output == ""
    r = runner.invoke(main, ["agreement", str(path), "--metrics", "psnr", "--bootstrap", "50", "--device", "cpu",
                             "--workers", "0"])
    assert r.exit_code == 0 and "rank" in r.output and "human ceiling 66.7%" in r.output
    fig = study / "fig.png"
    r = runner.invoke(main, ["figure3", str(out), "-o", str(fig)])
    assert r.exit_code == 0, r.output
    assert fig.stat().st_size > 1000 and "worst to best" in r.output
    bad = _write(study / "bad.csv", [*rows, ["p0", "ds1", "images/gt.png", "images/na.png", "images/nb.png", "?", "w9"]])
    r = runner.invoke(main, ["agreement", str(bad), "--metrics", "psnr", "--device", "cpu", "--quiet"])
    assert r.exit_code == 2 and "bad.csv:11: [choice] unknown choice '?'" in r.output
    r = runner.invoke(main, ["agreement", str(bad), "--metrics", "psnr", "--device", "cpu", "--quiet",
                             "--skip-invalid", "--bootstrap", "10", "--workers", "0"])
    assert r.exit_code == 0 and "skipped 1 of 10 judgement row(s)" in r.output
    r = runner.invoke(main, ["agreement", str(path), "--metrics", "psnrr"])
    assert r.exit_code == 2 and "unknown metric 'psnrr'" in r.output


def test_shipped_example_is_valid_and_labelled_as_constructed() -> None:
    example = REPO / "judgements" / "example"
    csv_path = example / "judgements.csv"
    if not csv_path.is_file():
        pytest.skip("example set not built")
    report = validate_judgements(csv_path)
    assert report.ok, report.lines(10)
    df = report.judgements
    assert set(df["annotator"]) == {"construct-severity"}
    assert df["dataset"].nunique() >= 2
    assert "constructed" in (example / "PROVENANCE.md").read_text().lower()
    size = sum(p.stat().st_size for p in example.rglob("*") if p.is_file())
    assert size < 400 * 1024
    # by construction the preferred image has the smaller severity number
    for _, r in df.iterrows():
        chosen, other = (r["a"], r["b"]) if r["choice"] == "a" else (r["b"], r["a"])
        assert Path(chosen).stem[-1] < Path(other).stem[-1]
