"""`srmetrics study make --design active` and its server: the next trial chosen between answers from all answers
so far (pooled), per-annotator schedules (sentinels, repeats, no cell twice), the audit log, a restart that rebuilds
the same state, undo, and `rank` / `status` on the answers.

Annotators here are SIMULATED (a fixed rule: the output with less added noise is closer to the GT), never human.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from clipscore_sr.cli import main
from clipscore_sr.human.study.auditlog import LOG
from clipscore_sr.human.study.manifest import StudyError, load_study

from .test_study import METHODS, make_folders

QUALITY = {m: -k for k, m in enumerate(METHODS)}  # make_folders adds noise 5 + 10 k to method k: bicubic is best


def make_active(root: Path, *args: str, n: int = 6) -> Path:
    gt_dir, dirs = make_folders(root, n=n)
    out = root / "study"
    res = CliRunner().invoke(main, ["study", "make", str(gt_dir), *[f"--method={m}={d}" for m, d in dirs.items()],
                                    "--out", str(out), "--design", "active", *args])
    assert res.exit_code == 0, res.output
    return out


def client(study_dir: Path):
    from starlette.testclient import TestClient

    from clipscore_sr.human.study.app import create_app

    return TestClient(create_app(study_dir), base_url="http://127.0.0.1")


def log_of(study_dir: Path) -> list[dict]:
    p = study_dir / LOG
    text = p.read_text() if p.exists() else ""
    return [json.loads(line) for line in text[:text.rfind("\n") + 1].splitlines()]  # complete lines only


def rows_of(study_dir: Path) -> list[dict[str, str]]:
    p = study_dir / "judgements.csv"
    return list(csv.DictReader(open(p, newline=""))) if p.exists() else []


def pick(study_dir: Path, nxt: dict) -> str:
    """The simulated annotator's key: the candidate with less noise (the GT copy in a sentinel), as left/right."""
    e = next(e for e in reversed(log_of(study_dir)) if e["id"] == nxt["id"])
    t = e["trial"]
    if t["kind"] == "sentinel":
        side = t["expected"]
    else:
        side = "a" if QUALITY[t["a_method"]] > QUALITY[t["b_method"]] else "b"
    return "left" if side == nxt["shown_left"] else "right"


def answer(c, study_dir: Path, who: str, nxt: dict) -> dict:
    r = c.post("/api/answer", json={"annotator": who, "trial": nxt["id"], "shown_left": nxt["shown_left"],
                                    "choice": pick(study_dir, nxt), "rt_ms": 700})
    assert r.status_code == 200, r.text
    return r.json()


def first(c, who: str) -> dict | None:
    r = c.post("/api/next", json={"annotator": who})
    assert r.status_code == 200, r.text
    return r.json()["next"]


def test_make_active_keeps_the_schedule_and_renders_every_scene(tmp_path: Path) -> None:
    out = make_active(tmp_path, "--trials", "14", "--sentinels", "0.15", "--repeats", "0.15", "--seed", "3")
    raw = json.loads((out / "study.json").read_text())
    assert raw["version"] == 2 and raw["options"]["design"] == "active" and raw["active"]["model"] == "thurstone"
    study = load_study(out)
    sched = study.active["schedule"]
    assert study.design == "active" and study.n_trials == 14
    assert Counter(s["kind"] for s in sched) == {"real": 10, "sentinel": 2, "repeat": 2}  # as the balanced split
    assert [t.kind for t in study.trials] == ["sentinel", "sentinel"]
    for k, s in enumerate(sched):
        if s["kind"] == "repeat":
            assert sched[s["of_slot"]] == {"kind": "real"} and s["of_slot"] < k
    assert len(study.active["scenes"]) == 6  # any scene may be chosen: all rendered
    for sc in study.active["scenes"].values():
        assert all((out / r).is_file() for r in [sc["gt_render"], *sc["renders"].values()])
    # the same schedule as a balanced study of the same seed: only the real trials differ
    bal = tmp_path / "bal"
    res = CliRunner().invoke(main, ["study", "make", str(tmp_path / "gt"), *[f"--method={m}={tmp_path / m}" for m in METHODS],
                                    "--trials", "14", "--sentinels", "0.15", "--repeats", "0.15", "--seed", "3", "-o",
                                    str(bal), "-q"])
    assert res.exit_code == 0
    assert [t.kind for t in load_study(bal).trials] == [s["kind"] for s in sched]
    # an older reader's version, a broken schedule, AMT export: one-line errors
    for edit, msg in [(lambda d: d.update(version=1), "active study"),
                      (lambda d: d["active"]["schedule"].append({"kind": "real"}), "15 slot"),
                      (lambda d: next(x for x in d["active"]["schedule"] if x["kind"] == "repeat").update(of_slot=99),
                       r"schedule\[\d+\] is not"),
                      (lambda d: d["active"]["scenes"]["sub/img0"]["renders"].pop("sr3"), "files/renders")]:
        data = json.loads(json.dumps(raw))
        edit(data)
        (out / "study.json").write_text(json.dumps(data))
        with pytest.raises(StudyError, match=msg):
            load_study(out)
    (out / "study.json").write_text(json.dumps(raw))
    r = CliRunner().invoke(main, ["study", "export-amt", str(out), "--trials-per-hit", "2", "--image-base-url",
                                  "https://x/", "-o", str(tmp_path / "h.csv"), "--template", str(tmp_path / "h.html")])
    assert r.exit_code == 2 and "--design balanced" in r.output


def test_two_annotators_pooled_posterior_audit_log_and_rank(tmp_path: Path) -> None:
    out = make_active(tmp_path, "--trials", "14", "--sentinels", "0.15", "--repeats", "0.15", "-q")
    c = client(out)
    assert c.get("/api/config").json()["design"] == "active"
    assert c.get("/api/session", params={"annotator": "ann"}).json()["trials"] == []
    nxt = {"alice": first(c, "alice"), "bob": first(c, "bob")}
    assert nxt["alice"]["id"] != nxt["bob"]["id"]
    # a trial given to alice is not bob's to answer; asking again gives the same trial, nothing new is logged
    r = c.post("/api/answer", json={"annotator": "bob", "trial": nxt["alice"]["id"], "choice": "left",
                                    "shown_left": nxt["alice"]["shown_left"], "rt_ms": 5})
    assert r.status_code == 400 and "not given to bob" in r.json()["error"]
    assert first(c, "alice") == nxt["alice"] and len(log_of(out)) == 2
    for i in range(28):  # interleaved: each answer's reply carries the next trial, chosen from every answer so far
        who = ("alice", "bob")[i % 2]
        got = answer(c, out, who, nxt[who])
        nxt[who] = got["next"]
        assert got["n_answered"] == i // 2 + 1
    assert nxt == {"alice": None, "bob": None}
    log, rows = log_of(out), rows_of(out)
    assert len(log) == len(rows) == 28 and [e["n"] for e in log] == list(range(1, 29))
    assert {(r["annotator"], r["pair_id"]) for r in rows} == {(e["annotator"], e["id"]) for e in log}
    sched = load_study(out).active["schedule"]
    seen_rows = 0
    for who in ("alice", "bob"):
        mine = [e for e in log if e["annotator"] == who]
        assert [e["slot"] for e in mine] == list(range(14)) and [e["kind"] for e in mine] == [s["kind"] for s in sched]
        cells = [(e["trial"]["scene"], frozenset((e["trial"]["a_method"], e["trial"]["b_method"])))
                 for e in mine if e["kind"] == "real"]
        assert len(set(cells)) == len(cells) == 10  # no cell twice for one annotator
        for e in mine:
            if e["kind"] == "repeat":  # their own earlier real trial, same images
                orig = next(o for o in mine if o["id"] == e["trial"]["repeat_of"])
                assert orig["kind"] == "real" and orig["slot"] == sched[e["slot"]]["of_slot"]
                assert {k: e["trial"][k] for k in ("gt", "a", "b")} == {k: orig["trial"][k] for k in ("gt", "a", "b")}
    for e in log:  # the audit record of every chosen real trial
        if e["kind"] != "real":
            continue
        ch = e["choice"]
        assert ch["kind"] == "real" and ch["scene"] == e["trial"]["scene"] and ch["n_candidates"] > 0
        assert np.isfinite(ch["gain"]) and (ch["runner_up_gain"] is None or ch["gain"] >= ch["runner_up_gain"] - 1e-9)
        assert e["fallback"] == ""
        assert e["answers"] <= e["rows"] and e["answers"] >= seen_rows // 2 - 2  # pooled: both annotators' answers
        seen_rows = e["rows"]
    assert log[-1]["kind"] != "real" or log[-1]["answers"] > 10
    by_id = {(r["annotator"], r["pair_id"]): r for r in rows}
    for e in log:  # repeats on the opposite sides of their original, sentinels answered with the GT copy
        r = by_id[(e["annotator"], e["id"])]
        if e["kind"] == "repeat":
            assert r["shown_left"] != by_id[(e["annotator"], e["trial"]["repeat_of"])]["shown_left"]
        if e["kind"] == "sentinel":
            assert r["choice"] == e["trial"]["expected"]
    # the answers are ordinary judgements: rank reads them unchanged and finds the rule's order
    res = CliRunner().invoke(main, ["rank", str(out / "judgements.csv"), "--model", "thurstone", "--bootstrap", "50",
                                    "-o", str(tmp_path / "rank.csv")])
    assert res.exit_code == 0, res.output
    import pandas as pd

    table = pd.read_csv(tmp_path / "rank.csv")
    pooled = table[table["dataset"] == "all"].sort_values("rank")
    assert list(pooled["method"]) == list(METHODS) and pooled["n_votes"].sum() == 2 * 20
    res = CliRunner().invoke(main, ["study", "status", str(out), "--json"])
    assert res.exit_code == 0, res.output
    st = {a["annotator"]: a for a in json.loads(res.output)["annotators"]}
    assert st["alice"]["answers"] == 14 and st["alice"]["sentinel_accuracy"] == 1.0
    assert st["bob"]["repeat_consistency"] == 1.0 and st["bob"]["repeats"] == 2
    from clipscore_sr.human.study.live import replay_log

    checked, problems = replay_log(load_study(out))
    assert checked == 20 and problems == []


def test_busy_cells_are_left_to_their_annotator_and_every_cell_once(tmp_path: Path) -> None:
    """Two scenes x three pairs = six cells and six real slots: an annotator must get each cell once (the
    sampler's candidate mask is in its own order), and a cell given to alice is left out for bob while open."""
    out = make_active(tmp_path, "--trials", "6", "-q", n=2)
    c = client(out)
    a1 = first(c, "alice")
    b1 = first(c, "bob")
    log = log_of(out)
    assert log[1]["excluded"] == [a1["id"]]
    cell = lambda e: (e["trial"]["scene"], frozenset((e["trial"]["a_method"], e["trial"]["b_method"])))  # noqa: E731
    assert cell(log[0]) != cell(log[1])
    nxt = {"alice": a1, "bob": b1}
    while any(nxt.values()):
        for who in ("alice", "bob"):
            if nxt[who]:
                nxt[who] = answer(c, out, who, nxt[who])["next"]
    for who in ("alice", "bob"):
        cells = [cell(e) for e in log_of(out) if e["annotator"] == who]
        assert len(cells) == 6 and len(set(cells)) == 6


def answered(root: Path, trials: int, n: int):
    """An active study (``trials`` per annotator) served by a test client, alice having given ``n`` answers (the
    SIMULATED rule); returns (folder, client, her next trial)."""
    out = make_active(root, "--trials", str(trials), "-q")
    c = client(out)
    nxt = first(c, "alice")
    for _ in range(n):
        nxt = answer(c, out, "alice", nxt)["next"]
    return out, c, nxt


def _script(study_dir: Path, restarts: set[int], torn: int = -1) -> None:
    """Alice and bob answer 3:1 (SIMULATED); the server is rebuilt from the folder after the steps in
    ``restarts`` (and a half-written log line is left at step ``torn``, as a crash mid-append would)."""
    c = client(study_dir)
    nxt: dict[str, dict | None] = {}
    for step in range(32):
        who = "bob" if step % 4 == 3 else "alice"
        if step in restarts:
            c = client(study_dir)  # a new server on the same folder: its state comes from the files only
            nxt = {}
        if step == torn:
            with open(study_dir / LOG, "ab") as fh:
                fh.write(b'{"n": 999, "id": "at0009')
        if who not in nxt:
            nxt[who] = first(c, who)
        if nxt[who] is None:
            continue
        nxt[who] = answer(c, study_dir, who, nxt[who])["next"]


def test_a_restart_rebuilds_the_same_state(tmp_path: Path) -> None:
    dirs = []
    for name in ("straight", "restarted"):
        (tmp_path / name).mkdir()
        dirs.append(make_active(tmp_path / name, "--trials", "16", "--sentinels", "0.1", "--repeats", "0.1", "-q"))
    _script(dirs[0], restarts=set())
    _script(dirs[1], restarts={3, 9, 10, 21}, torn=15)

    def strip(d: Path) -> tuple[list, list]:
        log = [{k: v for k, v in e.items() if k != "time"} for e in log_of(d)]
        rows = [{k: v for k, v in r.items() if k != "timestamp"} for r in rows_of(d)]
        return log, rows
    straight, restarted = strip(dirs[0]), strip(dirs[1])
    assert len(straight[0]) == 25 and len(straight[1]) == 24  # alice done (16), bob 8 answers and one open
    assert restarted == straight  # same choices, same gains, same answers
    assert (dirs[1] / LOG).read_bytes().count(b"\n") == 25 and b'{"n": 999' not in (dirs[1] / LOG).read_bytes()


def test_undo_gives_the_trial_back_and_the_posterior_forgets_the_answer(tmp_path: Path) -> None:
    out, c, nxt = answered(tmp_path, 12, 4)
    open_id = nxt["id"]
    undone = c.post("/api/undo", json={"annotator": "alice"}).json()["undone"]
    again = first(c, "alice")
    assert again["id"] == undone != open_id and len(rows_of(out)) == 3
    flipped = "right" if pick(out, again) == "left" else "left"
    r = c.post("/api/answer", json={"annotator": "alice", "trial": again["id"], "shown_left": again["shown_left"],
                                    "choice": flipped, "rt_ms": 9}).json()
    assert r["next"]["id"] == open_id  # the open trial comes back before anything new is chosen
    nxt = answer(c, out, "alice", r["next"])["next"]
    e = log_of(out)[-1]
    assert e["id"] == nxt["id"] and e["answers"] == 5  # rebuilt from the 5 answers in the file, the flip included
    live = c.app.state.live
    assert live.n_answers == 5 and live._sampler.wins.sum() == 5
    flipped_row = next(r for r in rows_of(out) if r["pair_id"] == undone)
    t = next(x for x in log_of(out) if x["id"] == undone)["trial"]
    k, j = live.cells.methods.index(t["a_method"]), live.cells.methods.index(t["b_method"])
    winner = (k, j) if flipped_row["choice"] == "a" else (j, k)
    assert live._sampler.wins[winner] >= 1  # the flipped answer is in the posterior


def _undo_midway(out: Path, c) -> str:
    """Alice and bob (SIMULATED) answer in turns; alice takes back an answer that choices were made from while bob
    answered after it (so it sits mid-file), answers it the other way, and both finish. Returns the undone id."""
    nxt = {"alice": first(c, "alice"), "bob": first(c, "bob")}
    for who in ("alice", "bob", "alice", "alice", "bob", "alice", "bob"):
        nxt[who] = answer(c, out, who, nxt[who])["next"]
    undone = c.post("/api/undo", json={"annotator": "alice"}).json()["undone"]
    again = first(c, "alice")
    assert again["id"] == undone
    flipped = "right" if pick(out, again) == "left" else "left"
    nxt["alice"] = c.post("/api/answer", json={"annotator": "alice", "trial": undone, "rt_ms": 9, "choice": flipped,
                                               "shown_left": again["shown_left"]}).json()["next"]
    while any(nxt.values()):
        for who in ("alice", "bob"):
            if nxt[who]:
                nxt[who] = answer(c, out, who, nxt[who])["next"]
    return undone


def test_an_undo_is_logged_and_the_replay_stays_exact(tmp_path: Path, monkeypatch) -> None:
    out = make_active(tmp_path, "--trials", "12", "-q")
    rows_before: list[dict[str, str]] = []
    c = client(out)
    orig = c.app.state.store.undo

    def spy(annotator, before=None):  # the file just before the undo: where the answer stood
        rows_before.extend(rows_of(out))
        return orig(annotator, before=before)
    monkeypatch.setattr(c.app.state.store, "undo", spy)
    undone = _undo_midway(out, c)
    log = log_of(out)
    (u,) = [e for e in log if e.get("event") == "undo"]
    real_before = [r for r in rows_before if r["trial_kind"] == "real"]
    assert u["id"] == undone and u["row"] in real_before and u["row"]["choice"] != \
        next(r for r in rows_of(out) if r["pair_id"] == undone)["choice"]
    assert real_before.index(u["row"]) == u["real_index"] < len(real_before) - 1  # bob answered after it
    after = [e for e in log if e["n"] < u["n"] and e.get("choice") and e["answers"] > u["real_index"]]
    assert after, "no choice was made from the answer taken back: the test shows nothing"
    from clipscore_sr.human.study import live as live_mod

    checked, problems = live_mod.replay_log(load_study(out))
    assert checked == 24 and problems == []  # two annotators x 12 real trials
    res = CliRunner().invoke(main, ["study", "audit", str(out)])
    assert res.exit_code == 0 and "24 trial(s) given, 1 undo(s)" in res.output, res.output
    assert "24 real choice(s) re-derived from the answers before them: all agree with the log" in res.output
    # without the undo line the same study does not replay: the line is what makes it exact
    with monkeypatch.context() as mp:
        mp.setattr(live_mod, "_answers_ever", lambda rows, entries: [(r, float("inf")) for r in rows])
        assert live_mod.replay_log(load_study(out))[1]
    # a log line changed after the fact (sides of a choice swapped) is named, and audit exits 1
    lines = (out / LOG).read_text().splitlines()
    k = next(i for i, line in enumerate(lines) if json.loads(line).get("choice") and json.loads(line)["n"] > 3)
    e = json.loads(lines[k])
    t = e["trial"]
    t["a_method"], t["b_method"], t["a"], t["b"] = t["b_method"], t["a_method"], t["b"], t["a"]
    lines[k] = json.dumps(e)
    (out / LOG).write_text("\n".join(lines) + "\n")
    res = CliRunner().invoke(main, ["study", "audit", str(out), "--json"])
    assert res.exit_code == 1 and json.loads(res.output)["mismatches"][0].startswith(f"line {e['n']}: the log has")
    # `study status` and `rank` count the answers in the file (the undone one once, as re-answered)
    res = CliRunner().invoke(main, ["study", "status", str(out), "--json"])
    st = {a["annotator"]: a for a in json.loads(res.output)["annotators"]}
    assert st["alice"]["answers"] == st["bob"]["answers"] == 12


def test_an_undo_cut_short_is_finished_at_the_next_start(tmp_path: Path, monkeypatch) -> None:
    """The server stops after logging an undo and before rewriting judgements.csv: the next start finishes it."""
    from clipscore_sr.human.study.store import JudgementStore

    out, c, nxt = answered(tmp_path, 8, 3)
    last = rows_of(out)[-1]

    def crash(self, row):
        raise OSError("stopped between the two writes")
    monkeypatch.setattr(JudgementStore, "_remove", crash)
    from starlette.testclient import TestClient

    quiet = TestClient(c.app, base_url="http://127.0.0.1", raise_server_exceptions=False)
    assert quiet.post("/api/undo", json={"annotator": "alice"}).status_code == 500
    monkeypatch.undo()
    assert log_of(out)[-1]["event"] == "undo" and rows_of(out)[-1] == last  # logged, not yet removed
    res = CliRunner().invoke(main, ["study", "audit", str(out)])  # read-only: says so, removes nothing
    assert res.exit_code == 0 and "1 undo(s) in the log whose answer a stop left in judgements.csv" in res.output
    res = CliRunner().invoke(main, ["study", "status", str(out)])
    assert res.exit_code == 0 and "Warning: 1 answer(s) the audit log says were taken back" in res.output
    assert rows_of(out)[-1] == last
    c = client(out)
    assert "finished 1 undo" in c.app.state.live.repaired and last not in rows_of(out)
    again = first(c, "alice")
    assert again["id"] == last["pair_id"]
    while again:
        again = answer(c, out, "alice", again)["next"]
    from clipscore_sr.human.study.live import replay_log

    assert replay_log(load_study(out)) == (8, []) and len(rows_of(out)) == 8


def test_a_foreign_log_line_is_one_error_naming_it(tmp_path: Path) -> None:
    out = make_active(tmp_path, "--trials", "6", "-q")
    c = client(out)
    answer(c, out, "alice", first(c, "alice"))
    lines = (out / LOG).read_text().splitlines()
    bad = json.loads(lines[1])
    bad["trial"]["scene"] = "elsewhere"
    (out / LOG).write_text(lines[0] + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(StudyError, match=rf"{LOG}:2: the trial does not belong to this study"):
        client(out)
    (out / LOG).write_text(lines[0] + "\nnot json\n")
    with pytest.raises(StudyError, match=rf"{LOG}:2: not a JSON line"):
        client(out)


def test_objective_eig_is_kept_in_the_study_and_used_by_the_server(tmp_path: Path) -> None:
    out = make_active(tmp_path, "--trials", "6", "--objective", "eig", "-q")
    assert load_study(out).active["objective"] == "eig"
    c = client(out)
    assert c.app.state.live._posterior([]).objective == "eig"
    nxt = first(c, "alice")
    for _ in range(3):
        nxt = answer(c, out, "alice", nxt)["next"]
    gains = [e["choice"]["gain"] for e in log_of(out) if e.get("choice")]
    assert gains and all(0 < g < 5 for g in gains)  # nats of one vote: 0.5 log(1 + f x'H^-1 x)
    bad = json.loads((out / "study.json").read_text())
    bad["active"]["objective"] = "luck"
    (out / "study.json").write_text(json.dumps(bad))
    with pytest.raises(StudyError, match="active.objective must be 'variance' or 'eig'"):
        load_study(out)


def test_agreement_counts_one_pair_per_stimulus_in_an_active_study(tmp_path: Path) -> None:
    """Every trial of an active study has its own id; agreement must pool the votes on one (scene, pair) cell."""
    import pandas as pd

    out = make_active(tmp_path, "--trials", "8", "-q", n=3)
    c = client(out)
    for who in ("alice", "bob", "carol"):
        nxt = first(c, who)
        while nxt:
            nxt = answer(c, out, who, nxt)["next"]
    rows = [r for r in rows_of(out) if r["trial_kind"] == "real"]
    cells = {(r["gt"], frozenset((r["a"], r["b"]))) for r in rows}
    assert len(cells) < len(rows) == 24  # three annotators over few cells: some cells judged more than once
    res = CliRunner().invoke(main, ["agreement", str(out / "judgements.csv"), "--metrics", "psnr", "--bootstrap",
                                    "50", "--pairs-out", str(tmp_path / "pairs.csv"), "-q"])
    assert res.exit_code == 0, res.output
    pairs = pd.read_csv(tmp_path / "pairs.csv", dtype=str, keep_default_na=False)
    assert len(pairs) == len(cells) and sum(int(p.n_a) + int(p.n_b) + int(p.n_tie) for p in pairs.itertuples()) == 24
    for p in pairs.itertuples():  # each pair's counts are the votes on its cell, in the first id's orientation
        chosen = [r[r["choice"]] for r in rows if (r["gt"], frozenset((r["a"], r["b"]))) == (p.gt, {p.a, p.b})]
        assert (int(p.n_a), int(p.n_b)) == (chosen.count(p.a), chosen.count(p.b)), p
    assert max(int(p.n_a) + int(p.n_b) for p in pairs.itertuples()) >= 2


@pytest.mark.parametrize("opt", [["--objective", "eig"], ["--model", "bt"]])
def test_sampler_options_without_design_active_are_refused_not_ignored(tmp_path: Path, opt) -> None:
    gt_dir, dirs = make_folders(tmp_path, n=3)
    res = CliRunner().invoke(main, ["study", "make", str(gt_dir), *[f"--method={m}={d}" for m, d in dirs.items()],
                                    "--trials", "4", "--out", str(tmp_path / "s"), *opt])
    assert res.exit_code == 2 and f"{opt[0]}: only with --design active" in res.output
    assert not (tmp_path / "s").exists()


def test_a_deleted_audit_log_with_answers_is_refused_not_served(tmp_path: Path) -> None:
    out, c, nxt = answered(tmp_path, 6, 3)
    rows = (out / "judgements.csv").read_bytes()
    (out / LOG).unlink()  # a user tidying the folder
    with pytest.raises(StudyError, match=rf"{LOG}: missing, but judgements.csv answers \d+ trial\(s\) it does not "
                                         r"list .*restore the audit log"):
        client(out)
    res = CliRunner().invoke(main, ["study", "serve", str(out), "--port", "1"])
    assert res.exit_code == 2 and "restore the audit log" in res.output and res.output.count("\n") <= 2
    assert (out / "judgements.csv").read_bytes() == rows and not (out / LOG).exists()  # nothing written


@pytest.mark.parametrize("keep", [0, 2])  # the log deleted, or cut to its first 2 lines
def test_audit_fails_when_the_log_does_not_list_answered_trials(tmp_path: Path, keep: int) -> None:
    out, c, nxt = answered(tmp_path, 6, 6)
    assert nxt is None and len(log_of(out)) == len(rows_of(out)) == 6
    lines = (out / LOG).read_text().splitlines(keepends=True)
    assert json.loads(CliRunner().invoke(main, ["study", "audit", str(out), "--json"]).output)["mismatches"] == []
    if keep:
        (out / LOG).write_text("".join(lines[:keep]))
    else:
        (out / LOG).unlink()
    res = CliRunner().invoke(main, ["study", "audit", str(out)])
    assert res.exit_code == 1, res.output
    assert f"answers {6 - keep} trial(s) that {LOG} does not list" in res.output
    assert ("the log is missing" if not keep else "the log is cut short") in res.output


@pytest.mark.slow  # a real server process
def test_ctrl_c_stops_the_server_with_exit_0(tmp_path: Path) -> None:
    import signal

    from .study_support import free_port, start_server

    out = make_active(tmp_path, "--trials", "6", "-q")
    server = start_server(out, free_port())
    server.send_signal(signal.SIGINT)  # what Ctrl+C sends
    text = server.communicate(timeout=60)[0].decode()
    assert server.returncode == 0 and "Aborted" not in text, text


@pytest.mark.slow  # a real server process, killed with SIGKILL
def test_kill_and_restart_a_real_server(tmp_path: Path) -> None:
    import httpx

    from .study_support import free_port, start_server

    out = make_active(tmp_path, "--trials", "10", "--sentinels", "0.1", "-q")
    port = free_port()
    server = start_server(out, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as h:
            nxt = h.post("/api/next", json={"annotator": "alice"}).json()["next"]
            for _ in range(5):
                nxt = h.post("/api/answer", json={"annotator": "alice", "trial": nxt["id"], "rt_ms": 1,
                                                  "shown_left": nxt["shown_left"], "choice": pick(out, nxt)}).json()["next"]
        server.kill()
        server.wait(10)
        port = free_port()
        server = start_server(out, port)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as h:
            again = h.post("/api/next", json={"annotator": "alice"}).json()["next"]
            assert again == nxt  # the open trial survives the kill, sides and all
            while again:
                again = h.post("/api/answer", json={"annotator": "alice", "trial": again["id"], "rt_ms": 1,
                                                    "shown_left": again["shown_left"],
                                                    "choice": pick(out, again)}).json()["next"]
    finally:
        server.kill()
        server.wait(10)
    assert len(rows_of(out)) == len(log_of(out)) == 10
    from clipscore_sr.human.study.live import replay_log

    assert replay_log(load_study(out)) == (9, [])
    shutil.rmtree(out / "renders")


def test_when_busy_cells_are_all_that_is_left_and_when_the_sampler_finds_none(tmp_path: Path, monkeypatch) -> None:
    out = make_active(tmp_path, "--trials", "3", "-q", n=1)  # one scene, three pairs: three cells
    c = client(out)
    for who in ("alice", "bob", "carol", "dave"):
        first(c, who)
    log = log_of(out)
    cells = [frozenset((e["trial"]["a_method"], e["trial"]["b_method"])) for e in log]
    assert len(set(cells[:3])) == 3 and [e["fallback"] for e in log[:3]] == ["", "", ""]
    assert log[3]["fallback"].startswith("every cell left was given to another annotator")
    assert log[3]["choice"]["gain"] > 0 and len(log[3]["excluded"]) == 3
    from clipscore_sr.human.study.active import ActiveSampler

    def none_left(self):
        raise ValueError("no candidate trial left")
    monkeypatch.setattr(ActiveSampler, "next_trial", none_left)
    got = answer(c, out, "alice", first(c, "alice"))["next"]  # her second trial: a seeded cell she has not seen
    e = log_of(out)[-1]
    assert e["id"] == got["id"] and e["choice"] == {} and "spread over scenes" in e["fallback"]
    assert frozenset((e["trial"]["a_method"], e["trial"]["b_method"])) != cells[0]


# --- review: two server processes, failed undo writes, malformed logs -------------------------------------------
def _flip(c, who: str, nxt: dict, out: Path) -> dict:
    key = "right" if pick(out, nxt) == "left" else "left"
    r = c.post("/api/answer", json={"annotator": who, "trial": nxt["id"], "shown_left": nxt["shown_left"],
                                    "choice": key, "rt_ms": 9})
    assert r.status_code == 200, r.text
    return r.json()


def _same_posterior(out: Path, live) -> bool:
    from clipscore_sr.human.study.live import LiveDesign
    from clipscore_sr.human.study.store import JudgementStore

    fresh = LiveDesign(load_study(out), JudgementStore(out))
    with fresh.store.locked() as rows:
        fresh._sync(rows)
        want = fresh._posterior(rows)
    with live.store.locked() as rows:
        live._sync(rows)
        got = live._posterior(rows)
    return np.array_equal(got.wins, want.wins) and np.array_equal(got.s, want.s)


def test_an_answer_undone_and_given_again_in_another_process_reaches_every_posterior(tmp_path: Path) -> None:
    """Server B fed alice's last answer; server A takes it back and she answers it the other way (same trial id): B
    must rebuild (its posterior held the old choice, and every choice it made for bob after differed)."""
    from clipscore_sr.human.study.live import replay_log

    out = make_active(tmp_path, "--trials", "12", "-q")
    a, b = client(out), client(out)
    na = first(a, "alice")
    for _ in range(3):
        na = answer(a, out, "alice", na)["next"]
    nb = first(b, "bob")  # B's posterior holds alice's three answers, the last one last
    assert a.post("/api/undo", json={"annotator": "alice"}).json()["undone"]
    na = _flip(a, "alice", first(a, "alice"), out)["next"]
    nb = answer(b, out, "bob", nb)["next"]
    assert _same_posterior(out, b.app.state.live)
    while na or nb:
        nb = answer(b, out, "bob", nb)["next"] if nb else None
        na = answer(a, out, "alice", na)["next"] if na else None
    assert replay_log(load_study(out)) == (24, [])


def test_a_store_sees_a_replaced_file_whose_inode_number_came_back(tmp_path: Path) -> None:
    """ext4 gives a new file the inode number of one just deleted: after two rewrites by another store the file can
    have the number this store last saw, and be longer: it must still be read afresh, not from the old offset."""
    from clipscore_sr.human.study.store import COLUMNS, JudgementStore

    def row(i: int, who: str) -> dict[str, str]:
        return {**{c: "x" for c in COLUMNS}, "pair_id": f"at{i:06d}", "annotator": who, "choice": "a",
                "trial_kind": "real", "rt_ms": str(100 + 7 * i), "timestamp": f"2026-12-06T19:21:{i:02d}.{i:03d}"}
    s1, s2 = JudgementStore(tmp_path), JudgementStore(tmp_path)
    for i in range(1, 6):
        s2.append(row(i, "alice"))
    assert len(s1.answers()) == 5
    s2.undo("alice")
    s2.undo("alice")
    for i in range(6, 9):
        s2.append(row(i, "bob"))
    ids = [r["pair_id"] for r in JudgementStore(tmp_path).answers()]
    assert ids == ["at000001", "at000002", "at000003", "at000006", "at000007", "at000008"]
    assert [r["pair_id"] for r in s1.answers()] == ids
    assert s1.append(row(5, "alice"))[1]  # answered again after the undo: new, not a duplicate
    s1.undo("bob")
    assert [r["pair_id"] for r in JudgementStore(tmp_path).answers()] == [*ids[:-1], "at000005"]


def test_a_sentinel_given_by_another_server_process_can_be_answered(tmp_path: Path) -> None:
    out = make_active(tmp_path, "--trials", "6", "--sentinels", "0.5", "-q")
    a, b = client(out), client(out)
    nxt = first(a, "alice")
    while load_study(out).by_id.get(nxt["id"]) is None:  # up to her first sentinel, all on A
        nxt = answer(a, out, "alice", nxt)["next"]
    answer(b, out, "alice", nxt)  # B has not read the log line that gave it


def test_an_undo_whose_rewrite_failed_is_finished_before_anything_else(tmp_path: Path, monkeypatch) -> None:
    """The undo line is written, rewriting judgements.csv fails (disk full) and the server goes on: the answer must
    not stay in the posterior (choices the replay cannot re-derive) only to vanish at the next start, and pressing
    Backspace again must not log a second undo of the same answer."""
    from starlette.testclient import TestClient

    from clipscore_sr.human.study.live import replay_log
    from clipscore_sr.human.study.store import JudgementStore

    for retry in (False, True):
        out = make_active(tmp_path / str(retry), "--trials", "10", "--seed", "3", "-q")
        c = client(out)
        na, nb = first(c, "alice"), first(c, "bob")
        for _ in range(3):
            na = answer(c, out, "alice", na)["next"]
        nb = answer(c, out, "bob", nb)["next"]
        undone = rows_of(out)[-2]
        with monkeypatch.context() as mp:
            mp.setattr(JudgementStore, "_remove", lambda self, row: (_ for _ in ()).throw(OSError("disk full")))
            quiet = TestClient(c.app, base_url="http://127.0.0.1", raise_server_exceptions=False)
            assert quiet.post("/api/undo", json={"annotator": "alice"}).status_code == 500
        if retry:
            assert c.post("/api/undo", json={"annotator": "alice"}).json()["undone"] == undone["pair_id"]
        while na or nb:
            na = answer(c, out, "alice", na)["next"] if na else None
            nb = answer(c, out, "bob", nb)["next"] if nb else None
        na = first(c, "alice")  # the undone trial, asked again
        while na:
            na = answer(c, out, "alice", na)["next"]
        assert sum(e.get("event") == "undo" for e in log_of(out)) == 1 and undone not in rows_of(out)
        assert replay_log(load_study(out)) == (20, [])
        assert client(out).app.state.live.repaired == ""


@pytest.mark.parametrize("edit", [
    lambda e: e.update(real_index="2"), lambda e: e.update(real_index=None), lambda e: e["row"].pop("choice"),
    lambda e: e["row"].update(choice="x"), lambda e: e.update(row=[]),
])
def test_a_malformed_undo_line_is_one_error_in_audit_and_at_start(tmp_path: Path, edit) -> None:
    out, c, nxt = answered(tmp_path, 6, 2)
    c.post("/api/undo", json={"annotator": "alice"})
    lines = (out / LOG).read_text().splitlines()
    e = json.loads(lines[-1])
    edit(e)
    (out / LOG).write_text("\n".join([*lines[:-1], json.dumps(e)]) + "\n")
    res = CliRunner().invoke(main, ["study", "audit", str(out)])
    assert res.exit_code == 2 and f"{LOG}:{e['n']}: not an undo" in res.output, (res.output, res.exception)
    with pytest.raises(StudyError, match=f"{LOG}:{e['n']}: not an undo"):
        client(out)


@pytest.mark.parametrize("edit", [lambda e: e.pop("excluded"), lambda e: e.update(answers=None),
                                  lambda e: e.update(excluded=[[1]]), lambda e: e.update(choice=[1])])
def test_a_malformed_choice_line_is_one_error_in_audit(tmp_path: Path, edit) -> None:
    out, c, nxt = answered(tmp_path, 6, 3)
    lines = (out / LOG).read_text().splitlines()
    e = json.loads(lines[2])
    edit(e)
    lines[2] = json.dumps(e)
    (out / LOG).write_text("\n".join(lines) + "\n")
    res = CliRunner().invoke(main, ["study", "audit", str(out)])
    assert res.exit_code == 2 and f"{LOG}:3: a chosen trial without" in res.output, (res.output, res.exception)


def test_audit_of_a_log_served_before_the_balanced_phase(tmp_path: Path, monkeypatch) -> None:
    """A study made before the balanced phase has no active.balance_above in study.json: it is served and replayed
    greedy, as it was (the phase is a setting of the study, like its objective)."""
    from clipscore_sr.human.study import live as live_mod
    from clipscore_sr.human.study.active import ActiveSampler
    from clipscore_sr.human.study.live import LiveDesign
    from clipscore_sr.human.study.store import JudgementStore, answer_row, shown_left

    from .conftest import save_png

    rng = np.random.default_rng(0)
    methods = [f"m{k}" for k in range(6)]
    for i in range(10):
        gt = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
        save_png(tmp_path / "gt" / f"img{i}.png", gt)
        for k, m in enumerate(methods):
            save_png(tmp_path / m / f"img{i}.png", np.clip(gt + rng.normal(0, 5 + 10 * k, gt.shape), 0, 255).astype(np.uint8))
    out = tmp_path / "study"
    res = CliRunner().invoke(main, ["study", "make", str(tmp_path / "gt"), *[f"--method={m}={tmp_path / m}" for m in methods],
                                    "--out", str(out), "--design", "active", "--trials", "30", "-q"])
    assert res.exit_code == 0, res.output
    manifest = json.loads((out / "study.json").read_text())
    assert manifest["active"].pop("balance_above") == 0.85
    (out / "study.json").write_text(json.dumps(manifest))  # as study make wrote it before the phase existed
    with monkeypatch.context() as mp:  # the server as it was before fc1ec68: greedy from the first vote
        mp.setattr(live_mod, "new_sampler", lambda study, cells: ActiveSampler(
            cells.methods, cells.scenes, model=study.active["model"], seed=study.seed,
            objective=study.active.get("objective", "variance"), balance_above=None))
        study = load_study(out)
        live = LiveDesign(study, JudgementStore(out))
        for step in range(90):  # SIMULATED annotators: the method with less noise wins
            who = f"ann{step % 3}"
            t = live.next_trial(who)
            ch = "a" if methods.index(t.a_method) < methods.index(t.b_method) else "b"
            live.store.append(answer_row(study, t, who, ch, shown_left(study, who, t, live.trials), 500, f"{step:06d}"))
    res = live_mod.audit(load_study(out))  # served greedy (its choices record bound 1.0): none in a balanced phase
    assert res["mismatches"] == [] and res["balanced_phase"] == 0 and res["choices"] > 50
    lines = [json.loads(x) for x in (out / LOG).read_text().splitlines()]
    for e in lines:
        (e.get("choice") or {}).pop("bound", None)
    (out / LOG).write_text("".join(json.dumps(e) + "\n" for e in lines))
    assert live_mod.replay_log(load_study(out))[1] == []


def test_an_undo_rebuilds_from_the_last_copy_before_it(tmp_path: Path, monkeypatch) -> None:
    """With a copy of the sampler every 3 answers, taking back a recent answer restarts from the last copy before
    it (not from the first answer) and gives exactly the posterior and choices of a full rebuild."""
    from clipscore_sr.human.study import live as live_mod

    monkeypatch.setattr(live_mod, "SNAPSHOT_EVERY", 3)
    restored = []
    orig = live_mod._Snapshots.restore

    def spy(self, still):
        n, s = orig(self, still)
        restored.append(n)
        return n, s
    monkeypatch.setattr(live_mod._Snapshots, "restore", spy)
    out = make_active(tmp_path, "--trials", "12", "-q")
    c = client(out)
    _undo_midway(out, c)
    assert restored and max(restored) >= 3  # the server rebuilt from a copy, not from nothing
    assert _same_posterior(out, c.app.state.live)
    restored.clear()
    assert live_mod.replay_log(load_study(out)) == (24, []) and max(restored) >= 3  # the audit too
