"""End to end in a real browser, an active study as a user runs it: `study make --design active` -> `study serve`
(a subprocess) -> trials answered with key presses in Chromium (an undo, the server killed midway and restarted,
the page reloaded) -> `rank` on the answers.

The annotator is SIMULATED by a fixed rule (the output with less added noise is closer to the GT; the GT copy in
a sentinel), applied to what the page displays: which method is on which side is worked out from the image bytes
the page shows, compared with the study's render files. So the expected rows of judgements.csv and the ranking are
known, and a wrong left/right -> a/b mapping or a trial the server chose but did not log fails the test.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .browser_support import launch, playwright_or_skip
from .study_support import begin_study, free_port, shown_bytes, start_server
from .test_study import METHODS, make_folders

QUALITY = {m: -k for k, m in enumerate(METHODS)} | {"gt": 1, "degraded": -9}

pytestmark = pytest.mark.slow


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "clipscore_sr", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, f"srmetrics {' '.join(args)}: {proc.stdout}\n{proc.stderr}"
    return proc


def test_active_study_in_chromium(tmp_path: Path) -> None:
    sync_api = playwright_or_skip()
    make_folders(tmp_path, n=6)
    _cli(tmp_path, "study", "make", "gt", *[f"--method={m}={m}" for m in METHODS], "--trials", "12",
         "--sentinels", "0.17", "--repeats", "0.17", "--design", "active", "--seed", "4", "-o", "study")
    study_dir = tmp_path / "study"
    manifest = json.loads((study_dir / "study.json").read_text())
    n = len(manifest["active"]["schedule"])
    # bytes of every image the page can show -> what it is (scene, method)
    what: dict[bytes, tuple[str, str]] = {}
    for key, sc in manifest["active"]["scenes"].items():
        what[(study_dir / sc["gt_render"]).read_bytes()] = (key, "gt")
        for m, rel in sc["renders"].items():
            what[(study_dir / rel).read_bytes()] = (key, m)
    for t in manifest["trials"]:  # sentinels: the GT copy and the degraded copy
        for side, m in (("a", t["a_method"]), ("b", t["b_method"])):
            what.setdefault((study_dir / t[f"{side}_render"]).read_bytes(), (t["scene"], m))
    expected: list[tuple[str, str]] = []  # (trial, method picked) in the order answered

    port = free_port()
    server = start_server(study_dir, port)
    try:
        with sync_api.sync_playwright() as p:
            browser = launch(p)
            page = browser.new_page(viewport={"width": 1280, "height": 600})

            def open_page(port: int) -> None:
                begin_study(page, port)

            def shown(role: str) -> tuple[str, str]:
                return what[shown_bytes(page, role)]

            def answer_one(better: bool = True) -> str:
                tid = page.evaluate("document.body.dataset.trial")
                assert page.text_content("#progress") == f"{len(expected) + 1} / {n}"
                (s_left, left), (s_right, right), (s_gt, _) = shown("left"), shown("right"), shown("gt")
                assert s_left == s_right == s_gt and left != right  # one scene, two different candidates
                take_left = (QUALITY[left] > QUALITY[right]) == better
                page.keyboard.press("ArrowLeft" if take_left else "ArrowRight")
                page.wait_for_function(f"(document.body.dataset.trial && document.body.dataset.trial !== {tid!r}) || "
                                       "document.body.dataset.screen === 'done'")
                expected.append((tid, left if take_left else right))
                return tid

            open_page(port)
            # undo: answer the worse one, take it back, the same trial comes back and is answered by the rule
            first = answer_one(better=False)
            expected.pop()
            page.keyboard.press("Backspace")
            page.wait_for_function(f"document.body.dataset.trial === {first!r}")
            assert "undid your answer to trial 1" in page.text_content("#msg")  # said, not cleared by the redraw
            for _ in range(n // 2):
                answer_one()
            open_trial = page.evaluate("document.body.dataset.trial")
            server.kill()  # SIGKILL: no shutdown handler runs
            server.wait(10)
            rows = list(csv.DictReader(open(study_dir / "judgements.csv", newline="")))
            assert [r["pair_id"] for r in rows] == [t for t, _ in expected]  # nothing lost

            port = free_port()
            server = start_server(study_dir, port)
            open_page(port)  # a reload: the trial that was open comes back, then the study goes on
            assert page.evaluate("document.body.dataset.trial") == open_trial
            while len(expected) < n:
                answer_one()
            page.wait_for_selector("#done:not([hidden])")
            assert f"{n} of {n}" in page.text_content("#done-msg")
            browser.close()
    finally:
        server.kill()
        server.wait(10)

    rows = list(csv.DictReader(open(study_dir / "judgements.csv", newline="")))
    log = [json.loads(line) for line in (study_dir / "active-log.jsonl").read_text().splitlines()]
    (undo,) = [e for e in log if e.get("event") == "undo"]  # the Backspace, logged with the answer it took back
    assert undo["row"]["pair_id"] == expected[0][0] and undo["real_index"] == 0
    log = [e for e in log if e is not undo]
    assert len(rows) == len(log) == n
    assert [r["pair_id"] for r in rows] == [t for t, _ in expected] == [e["id"] for e in log]
    for r, (_, picked) in zip(rows, expected):  # the recorded choice is the candidate the page showed and was picked
        assert r["annotator"] == "alice" and {"a": r["a_method"], "b": r["b_method"]}[r["choice"]] == picked
    kinds = [r["trial_kind"] for r in rows]
    assert kinds == [s["kind"] for s in manifest["active"]["schedule"]]
    assert all(e["choice"]["gain"] > 0 for e in log if e["kind"] == "real")
    proc = _cli(tmp_path, "study", "audit", "study")  # every choice re-derived, the undo and the SIGKILL included
    assert f"{n} trial(s) given, 1 undo(s)" in proc.stdout
    assert f"{sum(k == 'real' for k in kinds)} real choice(s) re-derived from the answers before them: all agree" \
        in proc.stdout
    proc = _cli(tmp_path, "rank", "study/judgements.csv", "--model", "thurstone", "--bootstrap", "50", "-o", "rank.csv")
    assert "excluded 2 repeat, 2 sentinel" in proc.stdout + proc.stderr
    table = list(csv.DictReader(open(tmp_path / "rank.csv", newline="")))
    pooled = sorted((r for r in table if r["dataset"] == "all"), key=lambda r: int(r["rank"]))
    assert [r["method"] for r in pooled] == list(METHODS)
