"""End to end in a real browser: the demo study served by `srmetrics study serve` (a subprocess), answered
with the keyboard in Chromium (playwright, the system's /usr/bin/chromium), the server killed midway and
restarted, then judgements.csv checked row by row against what was on screen.

The choice expected for each row is worked out from the image bytes the page displayed on each side,
compared with the study's render files, so a wrong left/right -> a/b mapping anywhere fails the test.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from .browser_support import launch, playwright_or_skip
from .study_support import begin_study, free_port, shown_bytes, start_server

REPORTS = Path(__file__).resolve().parents[1] / "reports"

pytestmark = pytest.mark.slow


def test_study_in_chromium(tmp_path: Path) -> None:
    sync_api = playwright_or_skip()
    from clipscore_sr.human.study.demo import make_demo_study

    study_dir = tmp_path / "study"
    make_demo_study(study_dir, echo=lambda s: None)
    manifest = json.loads((study_dir / "study.json").read_text())
    trials = {t["id"]: t for t in manifest["trials"]}
    render_bytes = {t["id"]: {s: (study_dir / t[f"{s}_render"]).read_bytes() for s in ("gt", "a", "b")}
                    for t in manifest["trials"]}
    n = len(trials)
    expected: list[tuple[str, str]] = []  # (trial, choice) in the order answered
    shots: list[str] = []

    port = free_port()
    server = start_server(study_dir, port)
    try:
        with sync_api.sync_playwright() as p:
            browser = launch(p)
            page = browser.new_page(viewport={"width": 1280, "height": 600})

            def open_page(port: int) -> None:
                begin_study(page, port)

            def shown(role: str) -> bytes:
                return shown_bytes(page, role)

            def answer_one(i: int) -> None:
                tid = page.evaluate("document.body.dataset.trial")
                if trials[tid]["kind"] == "real" and not shots:  # the first real trial, for the README
                    page.screenshot(path=str(tmp_path / "study-page.png"))
                    shots.append(tid)
                assert page.text_content("#progress") == f"{len(expected) + 1} / {n}"
                left, right, gt = shown("left"), shown("right"), shown("gt")
                assert gt == render_bytes[tid]["gt"]
                files = render_bytes[tid]
                if trials[tid]["kind"] == "sentinel":  # the candidate that is the GT itself
                    key = "ArrowLeft" if left == gt else "ArrowRight"
                    assert (left == gt) != (right == gt)
                else:
                    key = ("ArrowLeft", "ArrowRight", "ArrowDown")[i % 3]
                pick = {"ArrowLeft": left, "ArrowRight": right}.get(key)
                choice = "tie" if pick is None else ("a" if pick == files["a"] else "b")
                assert pick is None or pick == files[choice]
                page.keyboard.press(key)
                page.wait_for_function(f"(document.body.dataset.trial && document.body.dataset.trial !== {tid!r}) || "
                                       "document.body.dataset.screen === 'done'")
                expected.append((tid, choice))

            open_page(port)
            # zoom and flicker keys change the view, not the answers
            page.keyboard.press("+")
            assert page.text_content("#zoom-label").startswith("zoom 1.50")
            page.keyboard.press("0")
            assert page.text_content("#zoom-label") == "fit"
            page.keyboard.press("f")
            assert "flicker on" in page.text_content("#flicker-label")
            page.keyboard.press("f")
            # undo: answer, take it back, answer again differently
            first = page.evaluate("document.body.dataset.trial")
            page.keyboard.press("ArrowLeft" if trials[first]["kind"] != "sentinel" else "ArrowDown")
            page.wait_for_function(f"document.body.dataset.trial && document.body.dataset.trial !== {first!r}")
            page.keyboard.press("Backspace")
            page.wait_for_function(f"document.body.dataset.trial === {first!r}")
            assert "undid your answer to trial 1" in page.text_content("#msg")  # said, not cleared by the redraw

            for i in range(n // 2):
                answer_one(i)
            REPORTS.mkdir(exist_ok=True)
            shutil.copy(tmp_path / "study-page.png", REPORTS / "study-page.png")
            server.kill()  # SIGKILL: no shutdown handler runs
            server.wait(10)
            rows = list(csv.DictReader(open(study_dir / "judgements.csv", newline="")))
            assert [(r["pair_id"], r["choice"]) for r in rows] == expected  # nothing lost

            port = free_port()
            server = start_server(study_dir, port)
            open_page(port)  # resumes where alice stopped
            for i in range(n // 2, n):
                answer_one(i)
            page.wait_for_selector("#done:not([hidden])")
            assert f"{n} of {n}" in page.text_content("#done-msg")
            browser.close()
    finally:
        server.kill()
        server.wait(10)

    rows = list(csv.DictReader(open(study_dir / "judgements.csv", newline="")))
    assert len(rows) == n
    assert [(r["pair_id"], r["choice"]) for r in rows] == expected
    for r in rows:
        t = trials[r["pair_id"]]
        assert r["annotator"] == "alice" and r["dataset"] == "landsat-demo"
        assert (r["gt"], r["a"], r["b"], r["a_method"], r["b_method"]) == (t["gt"], t["a"], t["b"], t["a_method"],
                                                                         t["b_method"])
        assert r["trial_kind"] == t["kind"] and r["shown_left"] in ("a", "b") and int(r["rt_ms"]) >= 0
        if t["kind"] == "sentinel":
            assert r["choice"] == t["expected"]
    by_id = {r["pair_id"]: r for r in rows}
    for r in rows:  # a repeat is shown with the sides of its original swapped
        if r["trial_kind"] == "repeat":
            assert r["shown_left"] != by_id[trials[r["pair_id"]]["repeat_of"]]["shown_left"]
