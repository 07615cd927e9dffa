"""Benchmark active pair sampling against the balanced-random design on SIMULATED studies (never human).

For 8, 12 and 20 methods (true Thurstone scores ``gap`` JOD apart, scene and annotator effects sd 0.3 JOD, 50
scenes, 20 annotators): the random design's accuracy with N votes (RMSE of the centred scores, mean over
``--reps`` studies), then the votes the active design needs to reach it (first checkpoint at or below), as a
ratio in one run. Target: <= 0.5. Then a replay on a recorded full design (every (scene, pair) cell voted
``--per-cell`` times): the active sampler may pick only cells with recorded votes left and takes the recorded vote;
its RMSE is compared with the random order of the same recorded votes at every budget (target: never worse).

    python benchmarks/bench_active.py [--reps 8] [--gap 0.5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from clipscore_sr.human.study.active import ActiveSampler, replay
    from clipscore_sr.human.study.plan import _metrics, make_world, plan_study

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=8)
    ap.add_argument("--gap", type=float, default=0.5)
    ap.add_argument("--scenes", type=int, default=50)
    ap.add_argument("--annotators", type=int, default=20)
    ap.add_argument("--per-cell", type=int, default=2)
    ap.add_argument("--methods", default="8,12,20", help="comma list of method counts to simulate")
    args = ap.parse_args()
    t0 = time.time()
    print(f"{'methods':>7} {'N random':>8} {'rmse random':>11} {'active votes':>12} {'ratio':>6}")
    for m in [int(x) for x in args.methods.split(",")]:
        n_rand = 40 * m
        grid = sorted({int(n_rand * f) for f in np.linspace(0.1, 1.5, 29)} | {n_rand})
        tab = plan_study(np.arange(m) * args.gap, args.scenes, args.annotators, grid, reps=args.reps, seed=m)
        target = float(tab[(tab.design == "random") & (tab.votes == n_rand)]["rmse"].iat[0])
        act = tab[tab.design == "active"]
        ok = act[act["rmse"] <= target]
        need = int(ok["votes"].iat[0]) if len(ok) else float("nan")
        print(f"{m:>7} {n_rand:>8} {target:>11.3f} {need:>12} {need / n_rand:>6.2f}", flush=True)
    # replay on a recorded full design
    m, n_s = 8, 10
    rng = np.random.default_rng(0)
    world = make_world(np.arange(m) * args.gap, n_s, args.annotators, rng)
    iu, ju = np.triu_indices(m, 1)
    budgets = [40, 80, 160, 320, 480]
    # the sampler continues between budgets; its wins after b votes are its state then
    res = {b: [] for b in budgets}
    for rep in range(args.reps):
        rr = np.random.default_rng([rep, 7])
        recorded = {(sc, int(k), int(j)): [world.vote(rr, sc, int(k), int(j)) for _ in range(args.per_cell)]
                    for sc in range(n_s) for k, j in zip(iu, ju)}
        flat = [(sc, k, j, o) for (sc, k, j), v in recorded.items() for o in v]
        order = rr.permutation(len(flat))
        sampler = ActiveSampler([str(k) for k in range(m)], [str(s) for s in range(n_s)], seed=rep)
        left = {k: list(v) for k, v in recorded.items()}
        done = 0
        for b in budgets:
            replay(sampler, left, b - done)
            done = b
            w_r = np.zeros((m, m))
            for i in order[:b]:
                sc, k, j, o = flat[i]
                w_r[k, j] += o
                w_r[j, k] += 1 - o
            res[b].append((_metrics(w_r, world.truth, "thurstone")[3], _metrics(sampler.wins, world.truth,
                                                                                  "thurstone")[3]))
    print("replay on a recorded full design (8 methods, 10 scenes, "
          f"{args.per_cell} votes per cell): rmse random order vs active")
    for b in budgets:
        r, a = np.mean(res[b], axis=0)
        print(f"  {b:>4} votes: random {r:.3f}  active {a:.3f}  ratio {a / r:.2f}")
    print(f"({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
