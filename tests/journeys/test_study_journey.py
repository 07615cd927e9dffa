"""User journey, end to end: `srmetrics study make` -> `study serve` -> answers typed in Chromium (zoom, flicker,
a server restart with a page reload, an answer given while the server is down) -> `study status` -> `rank` ->
`agreement --ranking` -> `figure3`.

The inputs are what a user has: a GT folder of 64x64 RGB PNG tiles (cut from the shared Landsat sample) and
three method folders of clearly ordered quality: ``good`` (GT + tiny noise), ``mid`` (Gaussian blur, sigma 1),
``bad`` (x4 nearest down/up). Two simulated annotators (alice, bob) follow one known rule: pick the candidate
closer to the GT in pixels, i.e. good > mid > bad, and the GT copy in a sentinel. Which candidate is on which
side is worked out from the bytes of the images the page displays, compared with the study's render files,
so the expected judgements, ranking and agreement are known and checked as final numbers.

Every CLI step runs as a subprocess, exactly as typed, in the folder that holds the inputs.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ..browser_support import launch, playwright_or_skip
from ..study_support import free_port, start_server

METHOD_ORDER = {"gt": -1, "good": 0, "mid": 1, "bad": 2, "degraded": 3}  # lower is closer to the GT in pixels
N_TILES, TILE = 6, 64

pytestmark = pytest.mark.slow

# Runs in the page before its own script: notes the left caption at each key press (capture phase, before the
# page's handler) and every text the message line shows (the page clears it when the next trial is drawn).
PROBE = """
window.__msgs = [];
window.addEventListener("keydown", () => {
  const c = document.getElementById("cap-left"); window.__capAtKey = c ? c.textContent : null;
}, true);
document.addEventListener("DOMContentLoaded", () => {
  const m = document.getElementById("msg");
  new MutationObserver(() => window.__msgs.push(m.textContent)).observe(m, {childList: true, characterData: true,
                                                                          subtree: true});
});
"""


def _srmetrics() -> list[str]:
    exe = shutil.which("srmetrics")
    return [exe] if exe else [sys.executable, "-m", "clipscore_sr"]


def _cli(cwd: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([*_srmetrics(), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, f"srmetrics {' '.join(args)} -> exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def _stop(proc: subprocess.Popen) -> None:
    proc.kill()  # SIGKILL: no shutdown handler runs
    proc.wait(10)


def _make_inputs(root: Path, sample: Path) -> None:
    """gt/tileN.png and sr/{good,mid,bad}/tileN.png, the PSNR order checked per tile."""
    from scipy.ndimage import gaussian_filter

    from clipscore_sr.io import read_array

    rng = np.random.default_rng(0)
    if sample.is_file():
        src, _ = read_array(sample)
        src = np.asarray(src)[..., :3].astype(np.uint8)
    else:  # smooth random texture
        src = np.clip(gaussian_filter(rng.normal(128, 60, (400, 400, 3)), (1.5, 1.5, 0)) * 1.0, 0, 255)
        src = src.astype(np.uint8)
    h, w = src.shape[:2]
    for i in range(N_TILES):
        y = 10 + (i // 3) * (h - TILE - 20)
        x = 10 + (i % 3) * ((w - TILE - 20) // 2)
        gt = np.ascontiguousarray(src[y:y + TILE, x:x + TILE])
        g = gt.astype(np.float64)
        out = {
            "good": np.clip(g + rng.normal(0, 1.5, gt.shape), 0, 255).round().astype(np.uint8),
            "mid": np.clip(gaussian_filter(g, sigma=(1, 1, 0)), 0, 255).round().astype(np.uint8),
            "bad": np.repeat(np.repeat(gt[::4, ::4], 4, 0), 4, 1),
        }
        mse = {m: float(np.mean((a.astype(np.float64) - g) ** 2)) for m, a in out.items()}
        assert mse["good"] < mse["mid"] < mse["bad"], f"tile {i}: quality order not as built: {mse}"
        for name, arr in [("gt", gt), *((f"sr/{m}", a) for m, a in out.items())]:
            (root / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(root / name / f"tile{i}.png")


def test_study_journey(tmp_path: Path, shared_dir: Path) -> None:
    sync_api = playwright_or_skip()
    work = tmp_path
    _make_inputs(work, shared_dir / "samples" / "landsat" / "rmnp-rgb.tif")

    # --- study make, as typed --------------------------------------------------------------------------------
    made = _cli(work, "study", "make", "gt", "--method", "good=sr/good", "--method", "mid=sr/mid", "--method",
                "bad=sr/bad", "--trials", "18", "--sentinels", "0.15", "--repeats", "0.1", "--out", "study",
                "--seed", "0")
    assert "18 trials" in made.stdout + made.stderr
    study = work / "study"
    manifest = json.loads((study / "study.json").read_text())
    trials = {t["id"]: t for t in manifest["trials"]}
    n = len(trials)
    assert n == 18
    kinds = [t["kind"] for t in trials.values()]
    assert kinds.count("sentinel") >= 2 and kinds.count("repeat") >= 1
    render = {tid: {s: (study / t[f"{s}_render"]).read_bytes() for s in ("gt", "a", "b")} for tid, t in trials.items()}

    # (annotator, trial, choice) in the order answered; the rule's pick, as displayed at key-press time
    expected: list[tuple[str, str, str]] = []
    log = work / "server.log"
    port = free_port()
    server = start_server("study", port, argv=_srmetrics(), cwd=work, log=log)
    try:
        with sync_api.sync_playwright() as p:
            browser = launch(p)

            def session(name: str):
                ctx = browser.new_context(viewport={"width": 1280, "height": 600})
                ctx.add_init_script(PROBE)
                return ctx, ctx.new_page()

            def open_page(page, name: str) -> None:
                page.goto(f"http://127.0.0.1:{port}/")
                page.wait_for_selector("body[data-ready='1']")
                page.fill("#name", name)
                page.keyboard.press("Enter")
                page.wait_for_function("document.body.dataset.trial")

            def current(page) -> str:
                return page.evaluate("document.body.dataset.trial")

            def shown(page, role: str) -> bytes:
                src = page.evaluate(f"document.getElementById('img-{role}').src")
                return page.request.get(src).body()

            def sides(page, tid: str) -> dict[str, str]:
                """{'left': 'a'|'b', 'right': ...}: the candidate the server placed in each slot."""
                left, right, gt = shown(page, "left"), shown(page, "right"), shown(page, "gt")
                files = render[tid]
                assert gt == files["gt"]
                assert {left, right} == {files["a"], files["b"]} and left != right
                return {"left": "a" if left == files["a"] else "b", "right": "a" if right == files["a"] else "b"}

            def preferred(tid: str) -> str:
                t = trials[tid]
                return "a" if METHOD_ORDER[t["a_method"]] < METHOD_ORDER[t["b_method"]] else "b"

            def wait_next(page, tid: str, timeout: float = 30_000) -> None:
                page.wait_for_function(f"(document.body.dataset.trial && document.body.dataset.trial !== {tid!r})"
                                       " || document.body.dataset.screen === 'done'", timeout=timeout)

            def check_zoom(page) -> None:
                page.keyboard.press("+")
                assert page.text_content("#zoom-label") == "zoom 1.50x"
                page.keyboard.press("0")
                assert page.text_content("#zoom-label") == "fit"
                box = page.locator("#c-gt").bounding_box()
                page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
                page.mouse.wheel(0, -100)
                page.wait_for_function("document.getElementById('zoom-label').textContent === 'zoom 1.25x'")
                page.keyboard.press("0")
                assert page.text_content("#zoom-label") == "fit"

            def answer(page, name: str, flicker: str | None = None) -> str:
                """Answer the current trial by the rule; flicker: None, 'swapped' or 'plain' (flicker on, the
                key pressed while the candidates are where the server put them). Returns the trial id."""
                tid = current(page)
                done = sum(1 for a, _, _ in expected if a == name)
                assert page.text_content("#progress") == f"{done + 1} / {n}"
                assert page.text_content("#flicker-label") == ""  # flicker never carries over to a new trial
                slot = sides(page, tid)
                want = preferred(tid)
                server_slot = "left" if slot["left"] == want else "right"
                if flicker is None:
                    key_slot = server_slot
                else:
                    page.keyboard.press("f")
                    assert "flicker on" in page.text_content("#flicker-label")
                    if flicker == "swapped":  # the candidate the server put on the right now shows on the left
                        page.wait_for_function("document.getElementById('cap-left').textContent"
                                               ".includes('showing the')")
                        key_slot = "right" if server_slot == "left" else "left"
                    else:
                        assert "showing the" not in page.text_content("#cap-left")
                        key_slot = server_slot
                page.evaluate("window.__msgs = []")
                page.keyboard.press("ArrowLeft" if key_slot == "left" else "ArrowRight")
                wait_next(page, tid)
                cap = page.evaluate("window.__capAtKey")  # the left caption at the key press
                msgs = page.evaluate("window.__msgs")
                if flicker == "swapped":  # pressed while swapped; the page said the key picked the displayed one
                    assert "showing the" in cap, cap
                    assert f"saved: the one that was shown on the {key_slot} when you pressed the key" in msgs, msgs
                    assert page.text_content("#msg").startswith("saved: the one that was shown")  # stays visible
                else:
                    assert "showing the" not in cap, cap
                expected.append((name, tid, want))
                return tid

            def rows() -> list[dict[str, str]]:
                return list(csv.DictReader(open(study / "judgements.csv", newline="")))

            # ---- alice, phase 1 ------------------------------------------------------------------------------
            ctx, page = session("alice")
            open_page(page, "alice")
            check_zoom(page)
            answer(page, "alice")
            answer(page, "alice", flicker="swapped")
            answer(page, "alice", flicker="plain")
            answer(page, "alice", flicker="swapped")
            answer(page, "alice")
            assert page.text_content("#flicker-label") == ""
            # the recorded choice is the candidate displayed under the key at the press (the fixed flicker bug)
            assert [(r["annotator"], r["pair_id"], r["choice"]) for r in rows()] == expected

            # ---- server killed and restarted on the same port; page reloaded; alice resumes --------------------
            _stop(server)
            server = start_server("study", port, argv=_srmetrics(), cwd=work, log=log)
            open_page(page, "alice")
            first_unanswered = next(t for t in trials if t not in {tid for _, tid, _ in expected})
            assert current(page) == first_unanswered
            assert page.text_content("#progress") == f"{len(expected) + 1} / {n}"

            # ---- alice, phase 2: zoom and flicker again ------------------------------------------------------
            check_zoom(page)
            answer(page, "alice", flicker="swapped")
            answer(page, "alice")
            answer(page, "alice", flicker="plain")
            answer(page, "alice", flicker="swapped")

            # ---- an answer given while the server is down: kept by the page, saved when it is back ----------
            tid = current(page)
            slot = sides(page, tid)
            want = preferred(tid)
            _stop(server)
            pressed = time.monotonic()
            page.keyboard.press("ArrowLeft" if slot["left"] == want else "ArrowRight")
            page.wait_for_function("document.body.dataset.unsaved === '1'", timeout=10_000)
            assert "NOT saved" in page.text_content("#msg")
            assert current(page) == tid
            time.sleep(3)
            server = start_server("study", port, argv=_srmetrics(), cwd=work, log=log)  # the same port: the page retries the same URL
            wait_next(page, tid, timeout=15_000)
            saved = time.monotonic()
            assert page.evaluate("document.body.dataset.unsaved") is None
            expected.append(("alice", tid, want))
            outage_ms = (saved - pressed) * 1000
            down_row = next(r for r in rows() if r["annotator"] == "alice" and r["pair_id"] == tid)
            assert down_row["choice"] == want
            assert 0 <= int(down_row["rt_ms"]) < outage_ms, (down_row["rt_ms"], outage_ms)
            assert int(down_row["rt_ms"]) < 3000  # taken at the key press, not when the retry got through

            while page.evaluate("document.body.dataset.screen") != "done":
                answer(page, "alice")
            assert f"{n} of {n}" in page.text_content("#done-msg")
            ctx.close()

            # ---- bob, same rule, his own sides ----------------------------------------------------------------
            ctx, page = session("bob")
            open_page(page, "bob")
            answer(page, "bob", flicker="swapped")
            while page.evaluate("document.body.dataset.screen") != "done":
                answer(page, "bob")
            assert f"{n} of {n}" in page.text_content("#done-msg")
            ctx.close()
            browser.close()
    finally:
        _stop(server)

    # ---- judgements.csv: one row per answer, each the rule's pick ------------------------------------------
    got = rows()
    assert len(got) == 2 * n
    assert [(r["annotator"], r["pair_id"], r["choice"]) for r in got] == expected
    for r in got:
        t = trials[r["pair_id"]]
        assert (r["a_method"], r["b_method"], r["trial_kind"], r["dataset"]) == (t["a_method"], t["b_method"],
                                                                                 t["kind"], "gt")
        if t["kind"] == "sentinel":
            assert r["choice"] == t["expected"]

    # ---- study status ---------------------------------------------------------------------------------------
    st = _cli(work, "study", "status", "study").stdout
    n_sent = kinds.count("sentinel")
    for name in ("alice", "bob"):
        line = next(ln for ln in st.splitlines() if ln.startswith(name))
        assert f"{n}/{n}" in line and f"{n_sent}/{n_sent} (100%)" in line, st
        assert "FLAGGED" not in line
    assert "2 annotator(s), 2 finished, 0 flagged" in st
    js = json.loads(_cli(work, "study", "status", "study", "--json").stdout)
    assert {a["annotator"]: a["sentinel_accuracy"] for a in js["annotators"]} == {"alice": 1.0, "bob": 1.0}
    assert {a["annotator"]: a["repeat_consistency"] for a in js["annotators"]} == {"alice": 1.0, "bob": 1.0}
    assert js["krippendorff_alpha"] == pytest.approx(1.0)

    # ---- rank -----------------------------------------------------------------------------------------------
    _cli(work, "rank", "study/judgements.csv", "-o", "ranking.csv", "--bootstrap", "200")
    ranking = [r for r in csv.DictReader(open(work / "ranking.csv", newline="")) if r["dataset"] == "all"]
    ranking.sort(key=lambda r: float(r["rank"]))
    assert [r["method"] for r in ranking] == ["good", "mid", "bad"]
    wins = {m: 0 for m in ("good", "mid", "bad")}
    for _, tid, choice in expected:
        t = trials[tid]
        if t["kind"] == "real":
            wins[t[f"{choice}_method"]] += 1
    assert {r["method"]: int(float(r["wins"])) for r in ranking} == wins

    # ---- agreement with the ranking -------------------------------------------------------------------------
    _cli(work, "agreement", "study/judgements.csv", "-m", "psnr,ssim", "--ranking", "--ranking-out", "ra.csv",
         "-o", "agreement.csv", "--bootstrap", "200")
    acc = {(r["metric"], r["dataset"]): float(r["accuracy"])
           for r in csv.DictReader(open(work / "agreement.csv", newline=""))}
    assert acc[("psnr", "all")] >= 0.8, acc  # votes follow pixel closeness: 1.0 here
    taus = {r["metric"]: float(r["tau_b"]) for r in csv.DictReader(open(work / "ra.csv", newline=""))
            if r["dataset"] == "all"}
    assert taus["psnr"] == pytest.approx(1.0), taus

    # ---- figure3 --------------------------------------------------------------------------------------------
    _cli(work, "figure3", "agreement.csv", "-o", "fig3.png")
    fig = work / "fig3.png"
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert fig.stat().st_size > 5_000
    with Image.open(fig) as im:
        assert min(im.size) >= 200
