"""Journey 3: a crowd study on Amazon Mechanical Turk, end to end without AMT itself.

Covers the README flows "Collecting judgements: `srmetrics study`" (`demo --study`, `study export-amt`, the
import-amt command it prints, `study status`) and "`srmetrics rank`" / "`agreement --ranking`": the batch
results file is filled the way MTurk returns it (Input.<hits.csv column> copied per assignment, Answer.<radio
name> = the value of the radio the worker clicked, read from the exported template), by simulated workers who
always prefer srcnn-tiny > bicubic > nearest and, on attention checks, the GT copy.
"""

from __future__ import annotations

import csv
import json
import re
import shlex
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from ._cli import run

ORDER = ["srcnn-tiny", "bicubic", "nearest"]  # the simulated workers' taste, best first
BETTER = {m: i for i, m in enumerate(ORDER)} | {"gt": -1, "degraded": 99}  # sentinels: the GT copy wins


def _winner(a_method: str, b_method: str) -> str:
    assert a_method != b_method
    return "a" if BETTER[a_method] < BETTER[b_method] else "b"


def _fill_batch(hits: list[dict], template: str, workers: list[str], rejected: str | None) -> tuple[list, Counter]:
    """MTurk batch-results rows; returns them and the real-trial wins per method of the accepted workers."""
    radios: dict[str, dict[str, str]] = {}
    for name, value in re.findall(r'<input type="radio" name="([^"]+)" value="([^"]*)"', template):
        label = {0: "left", 1: "right", 2: "tie"}[len(radios.setdefault(name, {}))]
        radios[name][label] = value
    assert radios and all(set(v) == {"left", "right", "tie"} for v in radios.values()), radios

    def value(tmpl: str, row: dict) -> str:  # ${col} placeholders as AMT substitutes them
        return re.sub(r"\$\{([^}]+)\}", lambda m: row[m.group(1)], tmpl)

    rows, wins = [], Counter()
    for h, hit in enumerate(hits):
        for w in workers + ([rejected] if rejected else []):
            out = {"HITId": f"3HIT{h:04d}", "HITTypeId": "3TYPE", "AssignmentId": f"3ASG{h:04d}{w}",
                   "WorkerId": w, "AssignmentStatus": "Rejected" if w == rejected else "Submitted",
                   "WorkTimeInSeconds": "61"}
            out.update({f"Input.{k}": v for k, v in hit.items()})
            for name, vals in radios.items():
                k = name.rsplit("_", 1)[1]
                if not hit.get(f"pair_id_{k}"):
                    out[f"Answer.{name}"] = ""
                    continue
                a_m, b_m = hit[f"a_method_{k}"], hit[f"b_method_{k}"]
                win = _winner(a_m, b_m)
                if w == rejected:  # a spammer who always picks the other one: must be dropped
                    win = "b" if win == "a" else "a"
                side = "left" if value(vals["left"], hit) == win else "right"
                assert value(vals[side], hit) == win
                out[f"Answer.{name}"] = value(vals[side], hit)  # what the clicked radio submits
                if w != rejected and hit[f"trial_kind_{k}"] == "real":
                    wins[a_m if win == "a" else b_m] += 1
            rows.append(out)
    return rows, wins


def test_amt_round_trip_ranks_by_the_workers_rule(tmp_path: Path):
    p = run("srmetrics demo --study --out D", tmp_path)
    assert "srmetrics study serve D/study" in p.stdout
    study = json.loads((tmp_path / "D" / "study" / "study.json").read_text())
    assert sorted(study["methods"]) == sorted(ORDER)
    kinds = Counter(t["kind"] for t in study["trials"])
    assert sum(kinds.values()) == 24 and kinds["sentinel"] == 3 and kinds["repeat"] == 3

    p = run("srmetrics study export-amt D/study --trials-per-hit 6 --image-base-url https://example.org/s/ "
            "-o hits.csv --template hit.html", tmp_path)
    assert "4 HIT(s)" in p.stdout
    cmd = next(ln.strip() for ln in p.stdout.splitlines() if ln.strip().startswith("srmetrics judgements import-amt"))
    hits = list(csv.DictReader((tmp_path / "hits.csv").open(newline="")))
    assert len(hits) == 4
    assert {h[f"pair_id_{k}"] for h in hits for k in range(1, 7)} == {t["id"] for t in study["trials"]}
    assert all(h[f"gt_url_{k}"].startswith("https://example.org/s/renders/") for h in hits for k in range(1, 7))
    template = (tmp_path / "hit.html").read_text()

    rows, wins = _fill_batch(hits, template, ["WORKER1", "WORKER2"], rejected="SPAMMER")
    with (tmp_path / "Batch_4242_batch_results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    argv = shlex.split(cmd)
    assert argv[3] == "Batch_results.csv" and argv[-2] == "-o"
    argv[3], argv[-1] = "Batch_4242_batch_results.csv", "D/study/amt-judgements.csv"
    p = run(shlex.join(argv), tmp_path)
    assert "48 judgement(s) from 12 assignment(s)" in p.stdout and "dropped 4 rejected" in p.stdout, p.stdout
    judg = pd.read_csv(tmp_path / "D" / "study" / "amt-judgements.csv")
    assert len(judg) == 48 and set(judg["annotator"]) == {"WORKER1", "WORKER2"}
    assert (judg["choice"] == [_winner(a, b) for a, b in zip(judg["a_method"], judg["b_method"])]).all()

    p = run("srmetrics study status D/study --judgements D/study/amt-judgements.csv --json", tmp_path)
    status = json.loads(p.stdout)
    for ann in status["annotators"]:
        assert ann["sentinel_accuracy"] == 1.0 and ann["sentinels"] == 3  # the rule picked the GT copy
        assert ann["repeat_consistency"] == 1.0 and not ann["flagged"]
    assert status["krippendorff_alpha"] == pytest.approx(1.0)

    p = run("srmetrics rank D/study/amt-judgements.csv -o ranking.csv", tmp_path)
    assert "-0.000" not in p.stdout
    rk = pd.read_csv(tmp_path / "ranking.csv")
    rk = rk[rk["dataset"] == "all"].sort_values("rank")
    assert rk["method"].tolist() == ORDER and rk["rank"].tolist() == [1, 2, 3]
    assert rk["score"].is_monotonic_decreasing
    real = judg[judg["trial_kind"] == "real"]
    n_votes = Counter(real["a_method"]) + Counter(real["b_method"])
    for _, r in rk.iterrows():
        assert r["wins"] == wins[r["method"]], r["method"]
        assert r["n_votes"] == n_votes[r["method"]] and r["losses"] == n_votes[r["method"]] - wins[r["method"]]
        assert r["ties"] == 0
    assert sum(wins.values()) == len(real) == 36
    assert wins["srcnn-tiny"] == 24 and wins["nearest"] == 0

    p = run("srmetrics agreement D/study/amt-judgements.csv -m psnr,ssim --ranking --ranking-out ra.csv "
            "--bootstrap 200", tmp_path)
    ra = pd.read_csv(tmp_path / "ra.csv")
    assert sorted(ra["metric"]) == ["psnr", "ssim"]
    for col in ("tau_b", "tau_ci_low", "tau_ci_high"):
        assert ra[col].between(-1, 1).all(), ra
    assert (ra["tau_ci_low"] <= ra["tau_b"]).all() and (ra["tau_b"] <= ra["tau_ci_high"]).all()
    assert (ra["n_methods"] == 3).all()
    # on the demo data PSNR orders the methods as these workers do (srcnn-tiny > bicubic > nearest)
    assert ra.set_index("metric").loc["psnr", "tau_b"] == pytest.approx(1.0)
    assert "psnr" in p.stdout and "ssim" in p.stdout
