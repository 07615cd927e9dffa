"""Benchmark the active design's answer latency through the real server, against the balanced design's, same run.

One set of inputs (default 20 methods x 500 scenes, small PNGs: the images are not what is measured) becomes two
studies with the same trials per annotator (5% sentinels, 5% repeats): ``--design balanced`` and
``--design active``. Each is served by ``srmetrics study serve`` (a uvicorn subprocess) and answered through one
keep-alive HTTP client, the annotators taking turns; every answer is fsynced before its reply. For the active
study the reply to an answer carries the next trial, so its latency includes bringing the posterior up to date
with the new answer, the choice of the next trial among all (scene, method pair) cells, and the fsynced line of
the audit log. Reported: median and p99 of ``POST /api/answer`` for both designs and their ratio; then the time
an active server takes to restart (rebuilding its state from the answers and the log).

``--undo-every K`` (default 50): every K-th answer of an annotator is taken back (``POST /api/undo``, as Backspace
does) and answered again, in both designs. In the active design the answer after an undo brings the posterior
back from the last copy of the sampler before the undone answer, so the p99 includes those rebuilds; the undo
requests are timed apart. ``--undo-every 0``: no undos.

The answers are SIMULATED (a seeded coin for left/right): latency does not depend on them.

Usage: python benchmarks/bench_study_active.py [--methods 20] [--scenes 500] [--trials 2000] [--annotators 4]
       [--submissions 2000] [--size 16] [--undo-every 50]
"""

from __future__ import annotations

import argparse
import csv
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_study import inputs, pct, start_server

from clipscore_sr.human.study.make import make_study


def answer_all(url: str, design: str, annotators: list[str], n: int, seed: int = 0, undo_every: int = 0
               ) -> tuple[list[float], list[float]]:
    """``n`` answers, annotators in turn, every ``undo_every``-th answer of each taken back and answered again;
    seconds per ``POST /api/answer`` and per ``POST /api/undo``."""
    import httpx

    rng = np.random.default_rng(seed)
    lat, undo_lat = [], []
    total = dict.fromkeys(annotators, 0)
    with httpx.Client(base_url=url, timeout=60) as c:
        if design == "active":
            nxt = {a: c.post("/api/next", json={"annotator": a}).json()["next"] for a in annotators}
        else:
            order = {a: c.get("/api/session", params={"annotator": a}).json()["trials"] for a in annotators}
            nxt = {a: order[a][0] for a in annotators}
        done = dict.fromkeys(annotators, 0)
        for i in range(n):
            a = annotators[i % len(annotators)]
            t = nxt[a]
            if t is None:
                break
            body = {"annotator": a, "trial": t["id"], "shown_left": t["shown_left"],
                    "choice": "left" if rng.random() < 0.5 else "right", "rt_ms": 800}
            t0 = time.perf_counter()
            r = c.post("/api/answer", json=body)
            lat.append(time.perf_counter() - t0)
            r.raise_for_status()
            done[a] += 1
            total[a] += 1
            nxt[a] = r.json()["next"] if design == "active" else (
                order[a][done[a]] if done[a] < len(order[a]) else None)
            if undo_every and total[a] % undo_every == 0:
                t0 = time.perf_counter()
                u = c.post("/api/undo", json={"annotator": a})
                undo_lat.append(time.perf_counter() - t0)
                u.raise_for_status()
                done[a] -= 1
                nxt[a] = c.post("/api/next", json={"annotator": a}).json()["next"] if design == "active" else \
                    order[a][done[a]]
                if nxt[a] is None or nxt[a]["id"] != u.json()["undone"]:
                    raise SystemExit(f"{design}: the undone trial did not come back for {a}")
    return lat, undo_lat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", type=int, default=20)
    ap.add_argument("--scenes", type=int, default=500)
    ap.add_argument("--trials", type=int, default=2000, help="trials per annotator")
    ap.add_argument("--annotators", type=int, default=4)
    ap.add_argument("--submissions", type=int, default=2000, help="answers per design, all annotators")
    ap.add_argument("--size", type=int, default=16)
    ap.add_argument("--undo-every", type=int, default=50, help="every K-th answer of an annotator is undone (0: none)")
    args = ap.parse_args()
    methods = tuple(f"m{k:02d}" for k in range(args.methods))
    annotators = [f"ann{k}" for k in range(args.annotators)]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        gt_dir, dirs = inputs(tmp / "in", args.scenes, args.size, methods)
        res: dict[str, tuple[float, float, int]] = {}
        for design in ("balanced", "active"):
            t0 = time.perf_counter()
            make_study(gt_dir, dirs, args.trials, tmp / design, seed=0, sentinels=0.05, repeats=0.05, design=design)
            t_make = time.perf_counter() - t0
            proc, url = start_server(tmp / design)
            try:
                lat, undo_lat = answer_all(url, design, annotators, args.submissions, undo_every=args.undo_every)
            finally:
                proc.kill()
                proc.wait()
            rows = list(csv.DictReader(open(tmp / design / "judgements.csv", newline="")))
            if len(rows) != len(lat) - len(undo_lat):
                raise SystemExit(f"{design}: {len(rows)} rows for {len(lat)} answers and {len(undo_lat)} undos")
            p50, p99 = pct(lat)
            res[design] = (p50, p99, len(lat))
            undos = f"; {len(undo_lat)} undos, POST /api/undo p99 {pct(undo_lat)[1]:.1f} ms" if undo_lat else ""
            print(f"{design}: make {t_make:.1f} s; {len(lat)} answers by {len(annotators)} annotator(s) "
                  f"({args.methods} methods x {args.scenes} scenes): POST /api/answer median {p50:.2f} ms, "
                  f"p99 {p99:.2f} ms{undos}")
        (b50, b99, _), (a50, a99, n_act) = res["balanced"], res["active"]
        print(f"active / balanced: median {a50 / b50:.2f}x, p99 {a99 / b99:.2f}x; active p99 {a99:.1f} ms "
              f"({'meets' if a99 < 50 else 'MISSES'} the 50 ms target)")
        log_lines = (tmp / "active" / "active-log.jsonl").read_text().count("\n")
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", (
            "import sys, time; t0 = time.perf_counter()\n"
            "from clipscore_sr.human.study.app import create_app\n"
            f"app = create_app({str(tmp / 'active')!r}); live = app.state.live\n"
            "print(live.n_answers, len(live.log.entries), f'{live.rebuild_s:.3f}', f'{time.perf_counter() - t0:.3f}')")],
            capture_output=True, text=True, check=True).stdout.split()
        print(f"restart: the active server rebuilt its state from {out[0]} real answers and {out[1]} log lines "
              f"({log_lines} in the file) in {float(out[3]):.2f} s (posterior replay {float(out[2]):.2f} s; "
              f"process start {time.perf_counter() - t0:.2f} s)")
        if int(out[1]) != log_lines or not re.fullmatch(r"\d+", out[0]) or n_act == 0:
            raise SystemExit("the restarted state does not match the files")


if __name__ == "__main__":
    main()
