"""Journey 4: the bundled demo, the README's `srmetrics rank` example, and a study answered through the web app.

Covers the README flows "Quickstart" (`srmetrics demo --out D`: what it writes and prints), "`srmetrics rank`:
which methods people prefer" (the `grep ... ,blur=` example with `--bootstrap 200 --seed 0`: three scenes with
identical votes give no interval) and "Collecting judgements" (`demo --study`, `study serve` answered over HTTP
the way the page does it: `/api/session`, `/img/...`, `/api/answer`; then `study status` and `rank` on the
study's judgements.csv).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ._cli import popen, run

ORDER = ["srcnn-tiny", "bicubic", "nearest"]  # the simulated annotators' taste, best first
BETTER = {m: i for i, m in enumerate(ORDER)} | {"gt": -1, "degraded": 99}  # sentinels: the GT copy wins


def test_demo_writes_what_it_names(tmp_path: Path):
    p = run("srmetrics demo --out D", tmp_path, timeout=240)
    written = dict(re.findall(r"^\s+(\w+)\s+(D/\S+)$", p.stdout.split("written:")[-1], flags=re.M))
    for name in ("scores", "summary", "montage", "agreement", "figure3"):
        assert (tmp_path / written[name]).is_file(), (name, p.stdout)
    for f in ("scores.csv", "summary.csv", "montage.png", "agreement.csv"):
        assert (tmp_path / "D" / f).is_file()
    # learned metrics are skipped with where to put the weights: the user's TORCH_HOME, not a default
    lp = next(ln for ln in p.stdout.splitlines() if ln.startswith("not run: lpips"))
    assert str(tmp_path / ".home" / "torch") in lp

    scores = pd.read_csv(tmp_path / "D" / "scores.csv")
    assert scores["error"].isna().all() and len(scores) == 18
    assert all((tmp_path / s).is_file() for s in scores["sr"])  # paths name the copied data, from the cwd
    summary = pd.read_csv(tmp_path / "D" / "summary.csv")
    assert set(summary["method"]) == set(ORDER)
    means = scores.groupby("method")[["psnr", "ssim", "cpsnr"]].mean()
    for _, r in summary[summary["metric"].isin(["psnr", "ssim", "cpsnr"])].iterrows():
        assert r["mean"] == pytest.approx(means.loc[r["method"], r["metric"]], abs=1e-9)
        assert r["count"] == 6 and r["ci95_low"] <= r["mean"] <= r["ci95_high"]
    best = next(ln for ln in p.stdout.splitlines() if ln.startswith("best method per metric"))
    assert f"psnr {means['psnr'].idxmax()}" in best and f"ssim {means['ssim'].idxmax()}" in best

    agr = pd.read_csv(tmp_path / "D" / "agreement.csv")
    assert {"psnr", "ssim"} <= set(agr["metric"])

    from PIL import Image

    m = np.asarray(Image.open(tmp_path / "D" / "montage.png").convert("L"), dtype=np.float64)
    nonwhite = m < 235
    assert nonwhite.mean() > 0.2 and np.median(m[nonwhite]) > 40  # tiles drawn, not black

    # the README's rank example, on the copied example set
    jdir = tmp_path / "D" / "data" / "judgements"
    lines = (jdir / "judgements.csv").read_text().splitlines(keepends=True)
    (jdir / "blur.csv").write_text("".join(ln for ln in lines if re.search(r"^pair_id|,blur=", ln)))
    p = run("srmetrics rank D/data/judgements/blur.csv --out r.csv --bootstrap 200 --seed 0", tmp_path)
    assert "-0.000" not in p.stdout
    assert "no interval" in p.stdout
    r = pd.read_csv(tmp_path / "r.csv").sort_values("rank")
    assert r["method"].tolist() == ["blur=0.7", "blur=1", "blur=1.4"]
    assert r["ci_low"].isna().all() and r["ci_high"].isna().all()
    assert r["ci_note"].fillna("").str.contains("no interval").all()
    assert r["n_scenes"].eq(3).all() and r["wins"].tolist() == [6, 3, 0]
    assert r.loc[r["method"] == "blur=1", "score"].abs().item() < 1e-9


def _serve(study: str, cwd: Path) -> tuple[subprocess.Popen, str]:
    proc = popen(f"srmetrics study serve {study} --port 0", cwd)
    line = proc.stdout.readline()  # the banner names the real port once the socket is bound
    m = re.search(r"at (http://127\.0\.0\.1:\d+/)", line)
    if not m:
        proc.kill()
        raise AssertionError(f"no banner: {line!r} {proc.stderr.read()!r}")
    return proc, m.group(1)


def test_study_answered_over_http_then_ranked(tmp_path: Path):
    import httpx

    run("srmetrics demo --study --out D2", tmp_path)
    sdir = tmp_path / "D2" / "study"
    trials = {t["id"]: t for t in json.loads((sdir / "study.json").read_text())["trials"]}
    proc, url = _serve("D2/study", tmp_path)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            assert client.get("api/config").json()["n_trials"] == 24
            for who in ("alice", "bob"):
                sess = client.get("api/session", params={"annotator": who}).json()
                assert sess["answered"] == [] and len(sess["trials"]) == 24
                for i, t in enumerate(sess["trials"]):
                    tr = trials[t["id"]]
                    left = t["shown_left"]
                    right = "b" if left == "a" else "a"
                    if i < 3:  # the page shows the side it was told: left image = that candidate's render
                        img = client.get(f"img/{t['id']}/left", params={"annotator": who})
                        assert img.status_code == 200
                        assert img.content == (sdir / tr[f"{left}_render"]).read_bytes()
                    winner = "a" if BETTER[tr["a_method"]] < BETTER[tr["b_method"]] else "b"
                    choice = "left" if winner == left else "right"
                    assert winner in (left, right)
                    resp = client.post("api/answer", json={"annotator": who, "trial": t["id"], "shown_left": left,
                                                           "choice": choice, "rt_ms": 900 + i})
                    assert resp.status_code == 200, resp.text
                    assert resp.json()["choice"] == winner
                assert len(client.get("api/session", params={"annotator": who}).json()["answered"]) == 24
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl+C
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    judg = pd.read_csv(sdir / "judgements.csv")
    assert len(judg) == 48 and set(judg["annotator"]) == {"alice", "bob"}
    sentinels = judg[judg["trial_kind"] == "sentinel"]
    assert len(sentinels) == 6 and (sentinels["choice"] == np.where(sentinels["a_method"] == "gt", "a", "b")).all()

    p = run("srmetrics study status D2/study", tmp_path)
    assert "3/3 (100%)" in p.stdout and "0 flagged" in p.stdout, p.stdout
    p = run("srmetrics study status D2/study --json", tmp_path)
    st = json.loads(p.stdout)
    assert [a["answers"] for a in st["annotators"]] == [24, 24]
    assert all(a["sentinel_accuracy"] == 1.0 and a["repeat_consistency"] == 1.0 for a in st["annotators"])

    p = run("srmetrics rank D2/study/judgements.csv -o r2.csv", tmp_path)  # once refused: 'image path leaves the root'
    assert "leaves the root" not in p.stdout + p.stderr and "-0.000" not in p.stdout
    r2 = pd.read_csv(tmp_path / "r2.csv").sort_values("rank")
    assert r2["method"].tolist() == ORDER and r2["rank"].tolist() == [1, 2, 3]
    assert r2["wins"].tolist() == [24, 12, 0] and r2["n_votes"].eq(24).all()  # 18 real trials x 2 annotators
