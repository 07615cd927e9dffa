"""`srmetrics study`: sampling, rendering, manifest, the judgement store, the app's checks, AMT round trip,
status and agreement on a study's judgements."""

from __future__ import annotations

import csv
import itertools
import json
import multiprocessing as mp
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from clipscore_sr.cli import main
from clipscore_sr.human.study.manifest import StudyError, load_study
from clipscore_sr.human.study.sampling import balanced_cells, sample_trials
from clipscore_sr.human.study.store import COLUMNS, JudgementStore

from .conftest import save_png

METHODS = ("bicubic", "esrgan", "sr3")


def make_folders(root: Path, n: int = 6, size: int = 24, seed: int = 0) -> tuple[Path, dict[str, Path]]:
    rng = np.random.default_rng(seed)
    gt_dir = root / "gt"
    dirs = {m: root / m for m in METHODS}
    for i in range(n):
        gt = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        save_png(gt_dir / f"sub/img{i}.png", gt)
        for j, m in enumerate(METHODS):
            noisy = np.clip(gt + rng.normal(0, 5 + 10 * j, gt.shape), 0, 255).astype(np.uint8)
            save_png(dirs[m] / f"sub/img{i}.png", noisy)
    return gt_dir, dirs


def make(root: Path, *args: str, n: int = 6) -> Path:
    gt_dir, dirs = make_folders(root, n=n)
    out = root / "study"
    res = CliRunner().invoke(main, ["study", "make", str(gt_dir), *[f"--method={m}={d}" for m, d in dirs.items()],
                                    "--out", str(out), "-q", *args])
    assert res.exit_code == 0, res.output
    return out


# ---------------------------------------------------------------------------------------------- sampling

def test_balanced_cells_every_prefix_is_balanced() -> None:
    for r, c in itertools.product(range(1, 8), range(1, 10)):
        cells = list(balanced_cells(r, c))
        assert sorted(cells) == sorted(itertools.product(range(r), range(c)))
        for k in range(1, len(cells) + 1):
            rows, cols = Counter(x for x, _ in cells[:k]), Counter(y for _, y in cells[:k])
            assert max(rows.get(i, 0) for i in range(r)) - min(rows.get(i, 0) for i in range(r)) <= 1
            assert max(cols.get(j, 0) for j in range(c)) - min(cols.get(j, 0) for j in range(c)) <= 1


@pytest.mark.parametrize("n_methods,n_scenes,n_trials", [(3, 6, 18), (3, 6, 10), (4, 9, 40), (2, 5, 3), (5, 4, 33)])
def test_sampling_balance_and_determinism(n_methods: int, n_scenes: int, n_trials: int) -> None:
    methods = [f"m{i}" for i in range(n_methods)]
    scenes = [f"s{i}" for i in range(n_scenes)]
    trials = sample_trials(scenes, methods, n_trials, seed=3)
    assert trials == sample_trials(scenes, methods, n_trials, seed=3)
    cells = [(t.scene, frozenset((t.a, t.b))) for t in trials]
    assert len(set(cells)) == n_trials  # distinct (scene, pair)
    per_pair = Counter(frozenset(p) for _, p in cells)
    per_scene = Counter(s for s, _ in cells)
    pair_counts = [per_pair.get(frozenset(p), 0) for p in itertools.combinations(methods, 2)]
    scene_counts = [per_scene.get(s, 0) for s in scenes]
    assert max(pair_counts) - min(pair_counts) <= 1 and max(scene_counts) - min(scene_counts) <= 1
    sides = Counter(t.a for t in trials if t.a == min(t.a, t.b))
    assert 0 < sum(sides.values()) < n_trials or n_trials < 4  # orientation is randomised
    others = [sample_trials(scenes, methods, n_trials, seed=s) for s in range(4, 8)]
    assert any(o != trials for o in others)


def test_sentinels_and_repeats_placement() -> None:
    scenes = [f"s{i}" for i in range(10)]
    trials = sample_trials(scenes, list(METHODS), 40, seed=1, sentinels=0.1, repeats=0.15, gap=5)
    kinds = Counter(t.kind for t in trials)
    assert len(trials) == 40 and kinds == {"real": 30, "sentinel": 4, "repeat": 6}
    for i, t in enumerate(trials):
        if t.kind == "repeat":
            orig = trials[t.repeat_of]
            assert orig.kind == "real" and (orig.scene, orig.a, orig.b) == (t.scene, t.a, t.b)
            assert t.repeat_of < i
        if t.kind == "sentinel":
            assert t.expected in ("a", "b")
    assert len({t.repeat_of for t in trials if t.kind == "repeat"}) == 6
    assert Counter(t.expected for t in trials if t.kind == "sentinel").keys() <= {"a", "b"}


def test_sampling_errors() -> None:
    with pytest.raises(StudyError, match="at least two methods"):
        sample_trials(["s"], ["only"], 1)
    with pytest.raises(StudyError, match="only 6 distinct"):
        sample_trials(["s0", "s1"], list(METHODS), 7)
    with pytest.raises(StudyError, match="lower the fractions"):
        sample_trials(["s0", "s1"], list(METHODS), 4, repeats=0.7)


# ---------------------------------------------------------------------------------------------- make, render

def test_make_writes_manifest_and_renders(tmp_path: Path) -> None:
    out = make(tmp_path, "--trials", "12", "--sentinels", "0.25", "--repeats", "0.17", "--allow-tie", "--seed", "5")
    study = load_study(out)
    assert len(study.trials) == 12 and study.allow_tie and study.methods == list(METHODS)
    assert Counter(t.kind for t in study.trials) == {"real": 7, "sentinel": 3, "repeat": 2}
    assert [t.id for t in study.trials] == [f"t{i:04d}" for i in range(1, 13)]
    for t in study.trials:
        if t.kind == "sentinel":  # the GT copy is byte-identical to the GT render, the other is not
            gt_copy = t.a_render if t.expected == "a" else t.b_render
            other = t.b_render if t.expected == "a" else t.a_render
            assert (out / gt_copy).read_bytes() == (out / t.gt_render).read_bytes() != (out / other).read_bytes()
        else:
            assert (out / t.gt).resolve() == (tmp_path / "gt" / f"{t.scene}.png").resolve()
            assert (out / t.a).resolve() == (tmp_path / t.a_method / f"{t.scene}.png").resolve()
    # 8-bit input and --stretch auto: the render is the image itself
    from PIL import Image

    t = next(t for t in study.trials if t.kind == "real")
    assert np.array_equal(np.asarray(Image.open(out / t.a_render)), np.asarray(Image.open(out / t.a)))
    # same seed, same study
    again = tmp_path / "again"
    res = CliRunner().invoke(main, ["study", "make", str(tmp_path / "gt"), *[f"--method={m}={tmp_path / m}" for m in METHODS],
                                    "--trials", "12", "--sentinels", "0.25", "--repeats", "0.17", "--allow-tie",
                                    "--seed", "5", "-o", str(again), "-q"])
    assert res.exit_code == 0
    strip = lambda s: [(t.kind, t.scene, t.a_method, t.b_method, t.repeat_of, t.expected) for t in s.trials]  # noqa: E731
    assert strip(load_study(again)) == strip(study)


def test_render_16bit_4band_same_stretch_for_all(tmp_path: Path) -> None:
    import tifffile
    from PIL import Image

    rng = np.random.default_rng(0)
    gt = rng.integers(1000, 3000, (20, 20, 4)).astype(np.uint16)
    gt_dir = tmp_path / "gt"
    gt_dir.mkdir()
    tifffile.imwrite(gt_dir / "x.tif", gt)
    srs = {"bright": np.clip(gt.astype(np.int64) + 800, 0, 65535), "dark": np.clip(gt.astype(np.int64) - 500, 0, 65535)}
    for m, arr in srs.items():
        (tmp_path / m).mkdir()
        tifffile.imwrite(tmp_path / m / "x.tif", arr.astype(np.uint16))
    args = ["study", "make", str(gt_dir), f"--method=bright={tmp_path / 'bright'}", f"--method=dark={tmp_path / 'dark'}",
            "--trials", "1", "-q", "--percentiles", "5,95"]
    res = CliRunner().invoke(main, [*args, "-o", str(tmp_path / "nobands")])
    assert res.exit_code == 2 and "4 bands cannot be displayed" in res.output and "--bands" in res.output
    res = CliRunner().invoke(main, [*args, "--bands", "3,2,1", "-o", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    study = load_study(tmp_path / "s")
    t = study.trials[0]
    band_idx = [2, 1, 0]
    g = gt[..., band_idx].astype(np.float64) / 65535
    lo = np.array([np.percentile(g[..., c], 5) for c in range(3)])
    hi = np.array([np.percentile(g[..., c], 95) for c in range(3)])
    renders = {"gt": t.gt_render, t.a_method: t.a_render, t.b_method: t.b_render}
    for name, rel in renders.items():
        src = g if name == "gt" else srs[name][..., band_idx].astype(np.float64) / 65535
        want = np.rint(np.clip((src - lo) / (hi - lo), 0, 1) * 255)  # the GT's limits for every image
        got = np.asarray(Image.open(tmp_path / "s" / rel)).astype(np.float64)
        assert np.abs(got - want).max() <= 1, name  # 1 level: float32 reading vs the float64 reference
    bright = np.asarray(Image.open(tmp_path / "s" / renders["bright"])).astype(float)
    dark = np.asarray(Image.open(tmp_path / "s" / renders["dark"])).astype(float)
    assert bright.mean() > dark.mean() + 50  # a per-image stretch would have equalised them


def test_make_errors_and_unmatched(tmp_path: Path) -> None:
    gt_dir, dirs = make_folders(tmp_path, n=4)
    save_png(gt_dir / "sub/extra.png", np.zeros((24, 24, 3), np.uint8))
    save_png(dirs["sr3"] / "sub/orphan.png", np.zeros((24, 24, 3), np.uint8))
    base = ["study", "make", str(gt_dir), *[f"--method={m}={d}" for m, d in dirs.items()], "-q"]
    r = CliRunner().invoke(main, [*base, "--trials", "6", "-o", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    assert "sub/extra" in r.output and "sub/orphan" in r.output
    assert load_study(tmp_path / "a").unmatched
    r = CliRunner().invoke(main, [*base, "--trials", "13", "-o", str(tmp_path / "b")])
    assert r.exit_code == 2 and "only 12 distinct" in r.output
    r = CliRunner().invoke(main, [*base, "--trials", "6", "-o", str(tmp_path / "a")])
    assert r.exit_code == 2 and "already exists" in r.output
    r = CliRunner().invoke(main, ["study", "make", str(gt_dir), f"--method=x={dirs['sr3']}", "--trials", "1",
                                  "-o", str(tmp_path / "c")])
    assert r.exit_code == 2 and "at least two" in r.output
    (dirs["sr3"] / "sub/img0.png").write_bytes(b"not a png")
    r = CliRunner().invoke(main, [*base, "--trials", "12", "-o", str(tmp_path / "d")])
    assert r.exit_code == 2 and "img0.png" in r.output and "cannot decode" in r.output
    empty = tmp_path / "empty"
    empty.mkdir()
    r = CliRunner().invoke(main, ["study", "make", str(gt_dir), f"--method=x={empty}", f"--method=y={dirs['sr3']}",
                                  "--trials", "1", "-o", str(tmp_path / "e")])
    assert r.exit_code == 2 and "no images found" in r.output


def test_manifest_validation(tmp_path: Path) -> None:
    out = make(tmp_path, "--trials", "10", "--repeats", "0.2")
    path = out / "study.json"
    good = json.loads(path.read_text())

    def broken(edit) -> str:
        data = json.loads(json.dumps(good))
        edit(data)
        path.write_text(json.dumps(data))
        with pytest.raises(StudyError) as exc:
            load_study(out)
        return str(exc.value)

    rep = next(i for i, t in enumerate(good["trials"]) if t["kind"] == "repeat")
    assert "not an earlier real trial" in broken(lambda d: d["trials"][rep].update(repeat_of="t9999"))
    assert "outside" in broken(lambda d: d["trials"][0].update(a_render="../../etc/passwd"))
    assert "unknown kind" in broken(lambda d: d["trials"][0].update(kind="bogus"))
    assert "format version" in broken(lambda d: d.update(version=99))
    assert "duplicated id" in broken(lambda d: d["trials"][1].update(id=d["trials"][0]["id"]))
    path.write_text("{not json")
    with pytest.raises(StudyError, match="not valid JSON"):
        load_study(out)


# ---------------------------------------------------------------------------------------------- the store

def _row(ann: str, trial: str, choice: str = "a") -> dict[str, str]:
    return {c: "" for c in COLUMNS} | {"pair_id": trial, "annotator": ann, "choice": choice, "dataset": "d",
                                       "gt": "g, with comma.png", "a": "a.png", "b": "b.png"}


def _append_many(root: str, ann: str, n: int) -> None:
    store = JudgementStore(root)
    for i in range(n):
        store.append(_row(ann, f"t{i:04d}"))
        store.append(_row(ann, f"t{i:04d}"))  # a retried request


@pytest.mark.slow  # spawns processes (each imports the package)
def test_store_idempotent_concurrent_and_crash_safe(tmp_path: Path) -> None:
    store = JudgementStore(tmp_path)
    assert store.append(_row("x", "t1"))[1] and not store.append(_row("x", "t1", "b"))[1]
    assert store.answers("x")[0]["choice"] == "a"
    threads = [threading.Thread(target=_append_many, args=(str(tmp_path), f"th{i}", 20)) for i in range(4)]
    procs = [mp.get_context("spawn").Process(target=_append_many, args=(str(tmp_path), f"pr{i}", 20)) for i in range(2)]
    for w in [*threads, *procs]:
        w.start()
    for w in [*threads, *procs]:
        w.join()
    assert all(p.exitcode == 0 for p in procs)
    rows = list(csv.DictReader(open(tmp_path / "judgements.csv", newline="")))
    assert len(rows) == 1 + 6 * 20
    assert len({(r["annotator"], r["pair_id"]) for r in rows}) == len(rows)
    assert all(r["gt"] == "g, with comma.png" for r in rows)
    # a line cut short by a crash is ignored and overwritten; a restart resumes
    with open(tmp_path / "judgements.csv", "ab") as fh:
        fh.write(b"t0099,d,half a li")
    fresh = JudgementStore(tmp_path)
    assert len(fresh.answers()) == len(rows)
    fresh.append(_row("x", "t2"))
    rows2 = list(csv.DictReader(open(tmp_path / "judgements.csv", newline="")))
    assert len(rows2) == len(rows) + 1 and rows2[-1]["pair_id"] == "t2"
    # undo removes the annotator's last answer only
    assert fresh.undo("x")["pair_id"] == "t2"
    assert [r["pair_id"] for r in JudgementStore(tmp_path).answers("x")] == ["t1"]


# ---------------------------------------------------------------------------------------------- the app

@pytest.fixture
def client_study(tmp_path: Path):
    from starlette.testclient import TestClient

    from clipscore_sr.human.study.app import create_app

    out = make(tmp_path, "--trials", "12", "--sentinels", "0.17", "--repeats", "0.17")
    return out, TestClient(create_app(out), base_url="http://127.0.0.1")


def test_app_refuses_tampering_and_traversal(client_study) -> None:
    out, c = client_study
    trials = c.get("/api/session", params={"annotator": "ann"}).json()["trials"]
    t = trials[0]
    ok = {"annotator": "ann", "trial": t["id"], "shown_left": t["shown_left"], "choice": "left", "rt_ms": 900}
    other = "a" if t["shown_left"] == "b" else "b"
    bad = [
        ({**ok, "shown_left": other}, "shown_left"), ({**ok, "trial": "t9999"}, "unknown trial"),
        ({**ok, "choice": "tie"}, "choice"), ({**ok, "choice": "a"}, "choice"), ({**ok, "rt_ms": -1}, "rt_ms"),
        ({**ok, "rt_ms": "fast"}, "rt_ms"), ({**ok, "annotator": "../x"}, "annotator"),
        ({**ok, "extra": 1}, "exactly the keys"),
    ]
    for body, msg in bad:
        r = c.post("/api/answer", json=body)
        assert r.status_code == 400 and msg in r.json()["error"], (body, r.text)
    r = c.post("/api/answer", content=b"{oops", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert not (out / "judgements.csv").exists()  # nothing written by bad submissions
    assert c.post("/api/answer", json=ok).json()["duplicate"] is False
    assert c.post("/api/answer", json=ok).json()["duplicate"] is True
    assert c.post("/api/answer", json={**ok, "choice": "right"}).status_code == 409
    rows = list(csv.DictReader(open(out / "judgements.csv", newline="")))
    assert len(rows) == 1 and rows[0]["choice"] == t["shown_left"]
    for url in ["/img/t0001/../../study.json", "/img/..%2F..%2Fstudy.json/gt", "/img/t0001/a", "/static/index.html",
                "/static/..%2F..%2Fmanifest.py", "/img/t0001/%2E%2E"]:
        assert c.get(url, params={"annotator": "ann"}).status_code == 404, url
    assert c.get("/img/t0001/gt").status_code == 200
    assert c.get("/api/config", headers={"host": "attacker.example:8765"}).status_code == 400


def test_token_and_host(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from clipscore_sr.human.study.app import create_app

    out = make(tmp_path, "--trials", "4")
    c = TestClient(create_app(out, token="s3cret", loopback=False), base_url="http://192.0.2.7")
    assert c.get("/api/config").status_code == 403
    assert c.get("/img/t0001/gt").status_code == 403
    assert c.get("/api/config", headers={"x-study-token": "wrong"}).status_code == 403
    assert c.get("/", params={"token": "s3cret"}).status_code == 200  # sets the cookie
    assert c.get("/api/config").status_code == 200 and c.get("/img/t0001/gt").status_code == 200
    r = CliRunner().invoke(main, ["study", "serve", str(out), "--host", "0.0.0.0"])
    assert r.exit_code == 2 and "--token" in r.output


# ---------------------------------------------------------------------------------------------- AMT, status, agreement

def _answer_all(c, annotator: str, pick) -> list[dict[str, str]]:
    trials = c.get("/api/session", params={"annotator": annotator}).json()["trials"]
    for t in trials:
        side = pick(t)
        r = c.post("/api/answer", json={"annotator": annotator, "trial": t["id"], "shown_left": t["shown_left"],
                                        "choice": side, "rt_ms": 1500})
        assert r.status_code == 200, r.text
    return trials


def test_amt_round_trip_matches_local_session(client_study, tmp_path: Path) -> None:
    from clipscore_sr.human.amt import IMPORT_MAPS

    out, c = client_study
    study = load_study(out)
    rng = np.random.default_rng(0)
    want = {t.id: ("a", "b")[int(rng.integers(2))] for t in study.trials}  # a/b answer per trial
    _answer_all(c, "W1", lambda t: "left" if t["shown_left"] == want[t["id"]] else "right")
    local = list(csv.DictReader(open(out / "judgements.csv", newline="")))

    r = CliRunner().invoke(main, ["study", "export-amt", str(out), "--trials-per-hit", "5", "--image-base-url",
                                  "https://bucket.example/my-study", "-o", str(tmp_path / "hits.csv"),
                                  "--template", str(tmp_path / "hit.html")])
    assert r.exit_code == 0, r.output
    hits = list(csv.DictReader(open(tmp_path / "hits.csv", newline="")))
    assert len(hits) == 3 and hits[-1]["pair_id_3"] == "" and hits[-1]["pair_id_2"] == "t0012"
    template = (tmp_path / "hit.html").read_text()
    for k in range(1, 6):
        assert f'name="choice_{k}" value="${{left_{k}}}"' in template and f"${{right_url_{k}}}" in template
    assert "${gt_url_1}" in template and "crowd-form" in template
    assert hits[0]["gt_url_1"].startswith("https://bucket.example/my-study/renders/")
    # a batch results file as AMT writes it: Input.<column> for every HIT field, Answer.choice_<k>
    rows = []
    for n, h in enumerate(hits):
        rec = {"HITId": f"H{n}", "WorkerId": "W1", "AssignmentStatus": "Submitted"}
        rec |= {f"Input.{k}": v for k, v in h.items()}
        for k in range(1, 6):
            tid = h[f"pair_id_{k}"]
            side = "" if not tid else ("left" if h[f"left_{k}"] == want[tid] else "right")
            rec[f"Answer.choice_{k}"] = h[f"{side}_{k}"] if side else ""  # the value the radio button submits
        rows.append(rec)
    rows.append({**rows[0], "WorkerId": "W2", "AssignmentStatus": "Rejected"})
    with open(tmp_path / "Batch_results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    args = ["judgements", "import-amt", str(tmp_path / "Batch_results.csv"), *[f"--map={m}" for m in IMPORT_MAPS],
            "-o", str(out / "amt-judgements.csv")]
    assert f"--map '{IMPORT_MAPS[0]}'" in r.output  # export-amt prints the exact command
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    amt = list(csv.DictReader(open(out / "amt-judgements.csv", newline="")))
    keys = ("pair_id", "dataset", "gt", "a", "b", "choice", "annotator", "a_method", "b_method", "trial_kind")
    assert [tuple(x[k] for k in keys) for x in amt] == [tuple(x[k] for k in keys) for x in local]
    # every sentinel was answered as wanted; consistency of the side mapping
    assert all(x["choice"] == want[x["pair_id"]] for x in amt)


def test_status_flags_and_filters(client_study) -> None:
    out, c = client_study
    study = load_study(out)
    by_id = study.by_id
    good = _answer_all(c, "good", lambda t: "left" if by_id[t["id"]].expected in ("", t["shown_left"]) else "right")
    assert good
    _answer_all(c, "bad", lambda t: "right" if by_id[t["id"]].expected == t["shown_left"] else "left")
    r = CliRunner().invoke(main, ["study", "status", str(out), "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    table = {x["annotator"]: x for x in report["annotators"]}
    n_sent = sum(t.kind == "sentinel" for t in study.trials)
    assert table["good"]["sentinel_accuracy"] == 1.0 and table["good"]["sentinel_correct"] == n_sent
    assert table["bad"]["sentinel_accuracy"] == 0.0 and table["bad"]["flagged"] and not table["good"]["flagged"]
    # "good" always presses left on real trials; a repeat swaps sides, so "left" twice means opposite answers
    rows = list(csv.DictReader(open(out / "judgements.csv", newline="")))
    mine = {x["pair_id"]: x["choice"] for x in rows if x["annotator"] == "good"}
    reps = [t for t in study.trials if t.kind == "repeat"]
    same = sum(mine[t.id] == mine[t.repeat_of] for t in reps)
    assert table["good"]["repeats"] == len(reps) and table["good"]["repeat_consistent"] == same == 0
    assert table["good"]["median_rt_s"] == 1.5 and table["good"]["answers"] == len(study.trials)
    # reliability on the real trials both annotators judged: with two annotators the leave-one-out majority is
    # the other one's vote; alpha against the krippendorff package
    import krippendorff

    real = [t.id for t in study.trials if t.kind == "real"]
    votes = {(x["annotator"], x["pair_id"]): x["choice"] for x in rows}
    same_real = np.mean([votes[("good", p)] == votes[("bad", p)] for p in real])
    assert table["good"]["loo_agreement"] == pytest.approx(same_real, abs=1e-12)
    assert table["bad"]["loo_agreement"] == pytest.approx(same_real, abs=1e-12)
    # nominal alpha depends on the coding: the module codes each vote as the first or second file of the pair in
    # sorted path order (the same labels in every unit), so code it the same way here
    ab = {x["pair_id"]: (x["a"], x["b"]) for x in rows}
    data = np.array([[float((votes[(who, p)] == "a") != (ab[p][0] <= ab[p][1])) for p in real]
                     for who in ("good", "bad")])
    want = krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")
    assert report["alpha_units"] == len(real)
    assert report["krippendorff_alpha"] == pytest.approx(want, abs=1e-12)
    r = CliRunner().invoke(main, ["study", "status", str(out)])
    assert "Krippendorff's alpha (nominal)" in r.output and "agrees w/ others" in r.output
    r = CliRunner().invoke(main, ["study", "status", str(out), "--min-sentinel-accuracy", "0", "--min-agreement",
                                  "1.01" if same_real == 1 else str(same_real + 0.01), "--json"])
    flagged = {x["annotator"]: x["flagged"] for x in json.loads(r.output)["annotators"]}
    assert flagged == {"good": True, "bad": True}
    r = CliRunner().invoke(main, ["study", "status", str(out), "--exclude-failed", "-o", str(out / "clean.csv")])
    assert r.exit_code == 0 and "FLAGGED" in r.output
    clean = list(csv.DictReader(open(out / "clean.csv", newline="")))
    assert {x["annotator"] for x in clean} == {"good"} and len(clean) == len(study.trials)


def test_agreement_on_study_judgements_excludes_checks(client_study) -> None:
    out, c = client_study
    study = load_study(out)
    _answer_all(c, "p1", lambda t: "left")
    n_real = sum(t.kind == "real" for t in study.trials)
    r = CliRunner().invoke(main, ["agreement", str(out / "judgements.csv"), "--metrics", "psnr", "--bootstrap", "0",
                                  "-q", "-o", str(out / "agreement.csv")])
    assert r.exit_code == 0, r.output
    assert "excluded 2 sentinel and 2 repeat" in r.output
    import pandas as pd

    table = pd.read_csv(out / "agreement.csv")
    assert int(table.loc[table["dataset"] == "all", "n_pairs"].iat[0]) == n_real
    r = CliRunner().invoke(main, ["agreement", str(out / "judgements.csv"), "--metrics", "psnr", "--bootstrap", "0",
                                  "-q", "--include-checks", "-o", str(out / "all.csv")])
    assert r.exit_code == 0, r.output
    table = pd.read_csv(out / "all.csv")
    # a repeat shows its real trial's stimulus to the same person again: its own pair (pooled, it would count
    # the person agreeing with themself)
    assert int(table.loc[table["dataset"] == "all", "n_pairs"].iat[0]) == len(study.trials)


def test_demo_study(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["demo", "--study", "-o", str(tmp_path / "demo")])
    assert r.exit_code == 0, r.output
    study = load_study(tmp_path / "demo" / "study")
    assert len(study.trials) == 24 and Counter(t.kind for t in study.trials) == {"real": 18, "sentinel": 3, "repeat": 3}
    assert "srmetrics study serve" in r.output and "srmetrics agreement" in r.output


def test_import_amt_slots_need_a_per_slot_pair_id(tmp_path: Path) -> None:
    from clipscore_sr.errors import JudgementError
    from clipscore_sr.human.amt import AmtMapping

    m = AmtMapping.from_options(["gt=Input.gt_{k}", "a=Input.a_{k}", "b=Input.b_{k}", "choice=Answer.c_{k}"])
    with pytest.raises(JudgementError, match="pair_id"):
        m.slots(["Input.gt_1", "Input.a_1", "Input.b_1", "Answer.c_1"])
    m = AmtMapping.from_options(["gt=Input.gt_{k}", "a=Input.a_{k}", "b=Input.b_{k}", "choice=Answer.c_{k}",
                                 "pair_id=Input.p_{k}"])
    header = [f"{c}_{k}" for k in (1, 2) for c in ("Input.gt", "Input.a", "Input.b", "Answer.c", "Input.p")]
    assert [s.gt for s in m.slots(header)] == ["Input.gt_1", "Input.gt_2"]
    with pytest.raises(JudgementError, match="no slot k = 1"):
        m.slots(["Input.gt_2"])
