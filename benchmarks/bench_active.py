"""Benchmark active pair sampling against random designs on SIMULATED studies (never human).

For 8, 12 and 20 methods (true Thurstone scores ``gap`` JOD apart, scene and annotator effects sd 0.3 JOD, 50
scenes, 20 annotators), every design is simulated on the same ``--reps`` worlds (same truth, noise model, fit and
seeds): ``random`` (uniform pairs, the baseline), ``balanced`` (what ``study make`` writes: pair and scene counts
within one), the active sampler with ``objective="variance"`` (default) and ``"eig"``, and the ``oracle`` (knows the
true scores; greedy A-optimal). For each accuracy measure (rmse, ci_width, tau, p_neighbours) and each reference
budget N0 (10, 20, 40 x methods) the target is random's mean accuracy at N0; a design's ratio is the votes it needs
to reach that target (linear between checkpoints) over N0, with a 90% bootstrap interval over the worlds for the
active designs. Targets where random is saturated (p_neighbours < 0.1 or tau > 0.985) are skipped. The
large-sample bound (``design_bound``) is the votes ratio of the best design that knew the scores for the score
variance (rmse, ci_width) and for the variance of the neighbours' differences (tau, p_neighbours). Target of
issue 23: active <= 0.5x. ``--gaps 0.5,1.0,1.5`` repeats the simulations at each gap and ends with one table
of the default sampler's ratios beside the bound: where the target can hold at all (the bound falls with the
spread of the scores).

Then a replay on a recorded full design (every (scene, pair) cell of 8 methods x 10 scenes voted ``--per-cell``
times): the sampler may pick only cells with recorded votes left and takes the recorded vote; its rmse and tau
are compared with a random order of the same recorded votes at every budget (target: never worse), mean over
``--replay-reps`` recordings with a 90% bootstrap interval of the ratio.

Last a replay on a REAL recorded study: pwcmp's example 3 (``tests/data/pwcmp_tmo``: 7 tone-mapping operators, 5
scenes, 1,213 human votes; not SR). The votes of every (scene, pair) cell are split in two halves at random; one
half is the pool the designs draw from (active: cells with votes left, their recorded votes in order; random: a
random order of the pool's votes; balanced: round robin over the cells), the other half's pooled fit is the
reference. (Against the fit of all the votes, a random subset would get an edge no design can have: it is part
of the reference's own data.) ``--real-reps`` splits, rmse ratio to random with a 90% bootstrap interval.

The default seeds (``--seed 7``) differ from those the sampler's settings were chosen on (simulations: ``100 +
methods``; replay: seed 3).

    python benchmarks/bench_active.py [--reps 40] [--gap 0.5 | --gaps 0.5,1.0,1.5] [--methods 8,12,20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

MEASURES = ("rmse", "ci_width", "tau", "p_neighbours")


def _ratio(r: float, most: float) -> str:
    """A votes ratio, or '>most' where the design did not get there within the simulated votes."""
    return f"{r:.2f}" if np.isfinite(r) else f">{most:.1f}"


def main() -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import pandas as pd

    from clipscore_sr.human.study.active import BALANCE_ABOVE, ActiveSampler, design_bound, replay
    from clipscore_sr.human.study.plan import LOWER_IS_BETTER, _metrics, first_reach, make_world, plan_study

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=40)
    ap.add_argument("--gap", type=float, default=0.5, help="JOD between neighbouring methods (and of the replay)")
    ap.add_argument("--gaps", default="", help="comma list of gaps to simulate in turn (default: --gap)")
    ap.add_argument("--scenes", type=int, default=50)
    ap.add_argument("--annotators", type=int, default=20)
    ap.add_argument("--per-cell", type=int, default=2)
    ap.add_argument("--replay-reps", type=int, default=100, help="recorded designs replayed")
    ap.add_argument("--methods", default="8,12,20", help="comma list of method counts to simulate")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--boot", type=int, default=200, help="bootstrap resamples of the worlds for the intervals")
    ap.add_argument("--real-reps", type=int, default=100, help="random splits of the real study replayed")
    args = ap.parse_args()
    t0 = time.time()
    brng = np.random.default_rng(0)
    designs = [("random", "random", "variance"), ("balanced", "balanced", "variance"), ("active", "active", "variance"),
               ("active-eig", "active", "eig"), ("active-greedy", "active", "variance"),
               ("oracle", "oracle", "variance")]  # objective: active only; greedy: no balanced phase
    summary: dict[tuple, float] = {}  # (gap, methods, measure, N0, design) -> votes ratio
    vs_bal: dict[tuple, float] = {}
    interval: dict[tuple, tuple[float, float]] = {}
    bounds = {}
    gaps = [float(x) for x in args.gaps.split(",")] if args.gaps else [args.gap]
    for gap, m in [(g, int(x)) for g in gaps for x in args.methods.split(",")]:
        refs = [10 * m, 20 * m, 40 * m]
        grid = sorted({max(2, int(m * f)) for f in np.geomspace(2.5, 60, 24)} | set(refs))
        truth = np.arange(m) * gap
        t1 = time.time()
        tabs = []
        for name, design, objective in designs:
            t = plan_study(truth, args.scenes, args.annotators, grid, reps=args.reps, seed=args.seed * 1000 + m,
                           designs=(design,), objective=objective, per_rep=True,
                           balance_above=None if name == "active-greedy" else BALANCE_ABOVE)
            tabs.append(t.assign(design=name))
        tab = pd.concat(tabs)
        cube = {name: g.pivot(index="rep", columns="votes", values=list(MEASURES))
                for name, g in tab.groupby("design", sort=False)}
        bounds[gap, m] = {c: design_bound(truth, kind="scores" if c in LOWER_IS_BETTER else "neighbours") for c in MEASURES}
        print(f"\n{m} methods {gap:g} JOD apart ({args.reps} simulated studies per design, {time.time() - t1:.0f} s); "
              f"large-sample bound (best design knowing the scores, x balanced): score variance "
              f"{bounds[gap, m]['rmse']:.2f}, neighbour-difference variance {bounds[gap, m]['tau']:.2f}")
        print(f"  {'measure':<12} {'N0':>5} {'random@N0':>9} " + " ".join(f"{n:>22}" for n, _, _ in designs[1:]))
        for col in MEASURES:
            lower = col in LOWER_IS_BETTER
            for n0 in refs:
                target = cube["random"][col][n0].mean()
                if (col == "p_neighbours" and target < 0.1) or (col == "tau" and target > 0.985):
                    continue
                cells = []
                for name, _, _ in designs[1:]:
                    y = cube[name][col].to_numpy()
                    r = first_reach(grid, y.mean(0), target, lower, interpolate=True) / n0
                    txt = _ratio(r, grid[-1] / n0)
                    summary[gap, m, col, n0, name] = r
                    if n0 == refs[-1]:  # the same against the balanced design's accuracy at N0
                        tb = cube["balanced"][col][n0].mean()
                        vs_bal[gap, m, col, name] = first_reach(grid, y.mean(0), tb, lower, interpolate=True) / n0
                    if name.startswith("active"):
                        yr = cube["random"][col].to_numpy()
                        bs = []
                        for _ in range(args.boot):
                            i = brng.integers(args.reps, size=args.reps)
                            tb = yr[i, grid.index(n0)].mean()
                            bs.append(first_reach(grid, y[i].mean(0), tb, lower, interpolate=True) / n0)
                        lo, hi = np.nanpercentile(bs, [5, 95]) if np.isfinite(bs).mean() > 0.9 else (np.nan,) * 2
                        txt += f" [{lo:.2f},{hi:.2f}]" if np.isfinite(lo) else " [n/a]"
                        if name == "active":
                            interval[gap, m, col, n0] = (lo, hi)
                    cells.append(txt)
                print(f"  {col:<12} {n0:>5} {target:>9.3f} " + " ".join(f"{c:>22}" for c in cells), flush=True)
    print("\nsummary: votes to reach random's accuracy at N0 = 40 x methods, over N0 (issue 23 target: active <= 0.5)")
    print(f"  {'gap':>4} {'methods':>7} {'measure':<12} " + " ".join(f"{n:>15}" for n, _, _ in designs[1:])
          + f" {'bound':>6}")
    for gap, m in bounds:
        for col in MEASURES:
            if (gap, m, col, 40 * m, "active") in summary:
                print(f"  {gap:>4g} {m:>7} {col:<12} " + " ".join(
                    f"{_ratio(summary[gap, m, col, 40 * m, n], 1.5):>15}" for n, _, _ in designs[1:])
                    + f" {bounds[gap, m][col]:>6.2f}")
    print("the same against balanced's accuracy at N0 = 40 x methods (what study make writes), over N0")
    for gap, m in bounds:
        for col in MEASURES:
            if (gap, m, col, "active") in vs_bal:
                print(f"  {gap:>4g} {m:>7} {col:<12} {'1.00':>15} " + " ".join(
                    f"{_ratio(vs_bal[gap, m, col, n], 1.5):>15}" for n, _, _ in designs[2:]))
    print("\nwhere the target can hold: the default sampler's votes ratio to random at N0 = 40 x methods [90% interval]"
          " beside the large-sample bound for the score variance")
    print(f"  {'gap':>4} {'methods':>7} {'rmse':>18} {'ci_width':>18} {'bound':>6}")
    for gap, m in bounds:
        cells = []
        for col in ("rmse", "ci_width"):
            lo, hi = interval.get((gap, m, col, 40 * m), (np.nan, np.nan))
            cells.append(_ratio(summary.get((gap, m, col, 40 * m, "active"), np.nan), 1.5)
                         + (f" [{lo:.2f},{hi:.2f}]" if np.isfinite(lo) else ""))
        print(f"  {gap:>4g} {m:>7} {cells[0]:>18} {cells[1]:>18} {bounds[gap, m]['rmse']:>6.2f}")

    # replay on a recorded full design
    m, n_s = 8, 10
    world = make_world(np.arange(m) * args.gap, n_s, args.annotators, np.random.default_rng(0))
    iu, ju = np.triu_indices(m, 1)
    budgets = [40, 80, 160, 320, 480]
    for objective in ("variance", "eig"):
        res = np.zeros((args.replay_reps, len(budgets), 2, 2))  # rep, budget, (random, active), (rmse, tau)
        for rep in range(args.replay_reps):
            rr = np.random.default_rng([args.seed, rep, 7])
            recorded = {(sc, int(k), int(j)): [world.vote(rr, sc, int(k), int(j)) for _ in range(args.per_cell)]
                        for sc in range(n_s) for k, j in zip(iu, ju)}
            flat = [(k, j, o) for (_, k, j), v in recorded.items() for o in v]
            order = rr.permutation(len(flat))
            sampler = ActiveSampler([str(k) for k in range(m)], [str(s) for s in range(n_s)], seed=rep,
                                    objective=objective)
            left = {k: list(v) for k, v in recorded.items()}
            done = 0
            for bi, b in enumerate(budgets):
                replay(sampler, left, b - done)  # the sampler continues between budgets
                done = b
                w_r = np.zeros((m, m))
                for i in order[:b]:
                    k, j, o = flat[i]
                    w_r[k, j] += o
                    w_r[j, k] += 1 - o
                for di, w in enumerate((w_r, sampler.wins)):
                    ci, _, tau, rmse = _metrics(w, world.truth, "thurstone")
                    res[rep, bi, di] = rmse, tau
        print(f"replay on a recorded full design (8 methods, 10 scenes, {args.per_cell} votes per cell, "
              f"objective {objective}): random order vs active, mean over {args.replay_reps} recordings")
        for bi, b in enumerate(budgets):
            r, a = res[:, bi].mean(0)
            i = brng.integers(args.replay_reps, size=(args.boot, args.replay_reps))
            ratio = res[i, bi, 1, 0].mean(1) / res[i, bi, 0, 0].mean(1)
            lo, hi = np.percentile(ratio, [5, 95])
            print(f"  {b:>4} votes: rmse random {r[0]:.3f} active {a[0]:.3f} ratio {a[0] / r[0]:.2f} "
                  f"[{lo:.2f},{hi:.2f}]  tau random {r[1]:.3f} active {a[1]:.3f}", flush=True)
    real_replay(args.real_reps, args.boot, brng)
    print(f"({time.time() - t0:.0f} s)")


def real_replay(reps: int, boot: int, brng: np.random.Generator, budgets: tuple[int, ...] = (50, 100, 200, 300, 400, 500)
                ) -> None:
    """The replay on pwcmp's real study (see the module docstring); nothing for ``reps`` 0."""
    if reps < 1:
        return
    from pathlib import Path

    import pandas as pd

    from clipscore_sr.human.fits import fit_scores
    from clipscore_sr.human.study.active import BALANCE_ABOVE, ActiveSampler, replay

    d = pd.read_csv(Path(__file__).resolve().parents[1] / "tests/data/pwcmp_tmo/ex3_tmo_cmp_data.csv")
    methods, scenes = sorted(set(d.condition_A) | set(d.condition_B)), sorted(set(d.scene))
    m = len(methods)
    cells: dict[tuple[int, int, int], list[float]] = {}
    for sc, a, b, o in zip(d.scene, d.condition_A, d.condition_B, d.is_A_selected):
        k, j = methods.index(a), methods.index(b)
        cells.setdefault((scenes.index(sc), min(k, j), max(k, j)), []).append(float(o) if k < j else 1.0 - o)

    def fit(votes: list[tuple[int, int, int, float]]) -> np.ndarray:
        w = np.zeros((m, m))
        for _, k, j, o in votes:
            w[k, j] += o
            w[j, k] += 1 - o
        s = fit_scores(w, model="thurstone", prior_sd=10.0)
        return s - s.mean()

    res = np.zeros((reps, len(budgets), 4))  # random, balanced, active, active without its balanced phase
    for rep in range(reps):
        rr = np.random.default_rng([rep, 11])
        pool, held = {}, []
        for key, outs in cells.items():
            outs = list(rr.permutation(outs))
            h = len(outs) // 2 + int(rr.random() < 0.5) * (len(outs) % 2)
            held += [(*key, o) for o in outs[:h]]
            pool[key] = outs[h:]
        ref = fit(held)
        flat = [(*key, o) for key, v in pool.items() for o in v]
        flat = [flat[i] for i in rr.permutation(len(flat))]
        keys = [list(pool)[i] for i in rr.permutation(len(pool))]
        bal = [(*key, pool[key][r]) for r in range(max(map(len, pool.values()))) for key in keys if r < len(pool[key])]
        samplers = [ActiveSampler(methods, scenes, seed=rep, balance_above=x) for x in (BALANCE_ABOVE, None)]
        lefts = [{k: list(v) for k, v in pool.items()} for _ in samplers]
        actives: list[list[tuple[int, int, int, float]]] = [[], []]
        for bi, b in enumerate(budgets):
            for sampler, left, active in zip(samplers, lefts, actives):
                n0 = len(sampler.log)
                outs = replay(sampler, left, b - len(active))
                for ch, o in zip(sampler.log[n0:], outs):
                    active.append((0, methods.index(ch.a), methods.index(ch.b), o))
            res[rep, bi] = [float(np.sqrt(np.mean((fit(v[:b]) - ref) ** 2))) for v in (flat, bal, *actives)]
    print(f"replay on a real recorded study (pwcmp example 3: {m} methods, {len(scenes)} scenes, 1,213 human votes, "
          f"halves of every cell: pool {len(flat)} votes, reference {len(held)}), mean rmse over {reps} splits")
    for bi, b in enumerate(budgets):
        r, bl, a, g = res[:, bi].mean(0)
        i = brng.integers(reps, size=(boot, reps))
        lo, hi = np.percentile(res[i, bi, 2].mean(1) / res[i, bi, 0].mean(1), [5, 95])
        print(f"  {b:>4} votes: random {r:.3f}  balanced {bl:.3f} ({bl / r:.2f})  active {a:.3f} ratio {a / r:.2f} "
              f"[{lo:.2f},{hi:.2f}]  active-greedy {g:.3f} ({g / r:.2f})", flush=True)


if __name__ == "__main__":
    main()
