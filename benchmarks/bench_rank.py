"""Benchmark `srmetrics rank`'s core: Bradley-Terry fit + scene bootstrap on SIMULATED votes (never human).

1,000,000 votes over 20 methods and 10,000 scenes (known strengths, a per-scene random effect so votes on one
scene are correlated): our fit plus 200 scene-bootstrap resamples, wall time and peak memory (VmHWM), against a
reference loop on the same votes in the same process: per resample, draw scenes, gather their votes, count wins
with ``np.add.at`` and fit with the plain MM algorithm (Hunter 2004) with the same prior; it is timed on
``--ref-resamples`` resamples and its cost for 1 + 200 fits extrapolated (stated as such). ``--choix`` also fits
once with ``choix.opt_pairwise`` (Newton-CG, same L2 prior; about 10 minutes on 1M votes).

Annotator reliability (``rank`` and ``study status`` run it on every judgement file) on the same simulated votes
with one annotator per vote (``--reliability-votes``, the worst case for a per-annotator loop: it was quadratic,
331 s for 100k votes): Krippendorff's alpha, leave-one-out agreement and a threshold, timed.

    python benchmarks/bench_rank.py [--votes 1000000] [--methods 20] [--scenes 10000] [--bootstrap 200] [--choix]
                                    [--reliability-votes 1000000]
Targets: < 30 s and < 2 GB on the development machine; reliability < 30 s for 1M votes.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def vm_hwm_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def mm_fit(wins: np.ndarray, prior_sd: float, tol: float = 1e-10, max_iter: int = 100_000) -> np.ndarray:
    """MM for Bradley-Terry (Hunter 2004): each iteration maximises the separable minoriser
    ``sum_k W_k t_k - D_k exp(t_k)`` (``D_k = sum_l n_kl / (pi_k + pi_l)``); with the N(0, sd^2) prior on ``t = log pi``
    the minoriser gets ``- t_k^2 / (2 sd^2)`` and is maximised by one Newton step per coordinate (without the prior
    that step is not the exact update ``pi_k = W_k / D_k``, but the fixed point is the same penalised optimum)."""
    m = wins.shape[0]
    n = wins + wins.T
    w = wins.sum(1)
    s = np.zeros(m)
    lam = 1.0 / prior_sd ** 2
    for _ in range(max_iter):
        p = np.exp(s)
        denom = (n / (p[:, None] + p[None, :])).sum(1)
        # MM surrogate of the penalised likelihood in t = log pi: W_k t - denom_k pi_k - lam t^2 / 2, one Newton
        # step in t per coordinate (the surrogate is separable and concave)
        g = w - denom * p - lam * s
        h = -denom * p - lam
        new = s - g / h
        new -= new.mean()
        if np.abs(new - s).max() < tol:
            return new
        s = new
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--votes", type=int, default=1_000_000)
    ap.add_argument("--methods", type=int, default=20)
    ap.add_argument("--scenes", type=int, default=10_000)
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--ref-resamples", type=int, default=10, help="resamples the reference loop is timed on")
    ap.add_argument("--choix", action="store_true", help="also fit once with choix.opt_pairwise (slow)")
    ap.add_argument("--reliability-votes", type=int, default=1_000_000,
                    help="votes (one annotator each) for the annotator-reliability timing; 0 = skip")
    args = ap.parse_args()

    from clipscore_sr.human.ranking import rank_methods
    from clipscore_sr.human.votes import Votes

    rng = np.random.default_rng(0)
    m, n, s = args.methods, args.votes, args.scenes
    strengths = np.linspace(-2.0, 2.0, m)
    scene = rng.integers(0, s, n)
    a = rng.integers(0, m, n)
    b = (a + rng.integers(1, m, n)) % m
    eff = rng.normal(0.0, 0.5, (s, m))
    d = strengths[a] + eff[scene, a] - strengths[b] - eff[scene, b]
    outcome = (rng.random(n) < 1.0 / (1.0 + np.exp(-d))).astype(np.float64)
    names = np.array([f"method{k:02d}" for k in range(m)], dtype=object)
    hwm0 = vm_hwm_mib()

    t0 = time.perf_counter()
    votes = Votes.from_arrays(names[a], names[b], outcome, scene=scene)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    rk = rank_methods(votes, bootstrap=args.bootstrap, seed=0)
    t_rank = time.perf_counter() - t0
    hwm = vm_hwm_mib()
    t0 = time.perf_counter()
    rank_methods(votes, bootstrap=0)
    t_point = time.perf_counter() - t0

    table = rk.table.set_index("method").loc[list(names)]
    true = strengths - strengths.mean()
    from clipscore_sr.human.ranking_agreement import kendall_tau_b

    tau = float(kendall_tau_b(table["score"].to_numpy(), true))
    print(f"{n:,} votes, {m} methods, {s:,} scenes, {args.bootstrap} scene-bootstrap resamples (simulated votes)")
    print(f"ours: build {t_build:.2f} s + fit and bootstrap {t_rank:.2f} s = {t_build + t_rank:.2f} s "
          f"(point fit alone {t_point:.3f} s); peak RSS (VmHWM) {hwm:.0f} MiB (before: {hwm0:.0f} MiB)")
    print(f"Kendall tau-b of fitted vs true order {tau:.3f} (scores are attenuated by the scene effect, "
          f"so they are not compared with the nominal strengths)")
    prior_sd = float(rk.table["prior_sd"].iat[0])
    ours = rk.table.set_index("method").loc[list(votes.methods), "score"].to_numpy()

    # reference loop: one resample at a time
    winner = np.where(outcome == 1, votes.a, votes.b)
    loser = np.where(outcome == 1, votes.b, votes.a)
    by_scene = np.argsort(votes.scene, kind="stable")
    bounds = np.searchsorted(votes.scene[by_scene], np.arange(votes.n_scenes + 1))
    ref_rng = np.random.default_rng(1)
    t0 = time.perf_counter()
    for r in range(args.ref_resamples + 1):
        if r == 0:
            idx = np.arange(n)
        else:
            pick = ref_rng.integers(0, votes.n_scenes, votes.n_scenes)
            idx = np.concatenate([by_scene[bounds[k]:bounds[k + 1]] for k in pick])
        w = np.zeros((m, m))
        np.add.at(w, (winner[idx], loser[idx]), 1.0)
        ref = mm_fit(w, prior_sd)
        if r == 0:
            ref0 = ref
    t_ref = (time.perf_counter() - t0) / (args.ref_resamples + 1)
    print(f"reference loop (np.add.at + MM per resample): {t_ref:.2f} s per fit (max |ours - MM| on the full data "
          f"= {np.abs(ours - ref0).max():.1e}); 1 + {args.bootstrap} fits extrapolated "
          f"{t_ref * (args.bootstrap + 1):.0f} s = {t_ref * (args.bootstrap + 1) / t_rank:.1f}x ours")
    if args.reliability_votes:
        import pandas as pd

        from clipscore_sr.human.reliability import annotator_reliability

        k = min(args.reliability_votes, n)
        judged = pd.DataFrame({"dataset": "sim", "gt": pd.Series(scene[:k]).astype(str) + ".png",
                               "a": names[a[:k]], "b": names[b[:k]], "choice": np.where(outcome[:k] == 1, "a", "b"),
                               "annotator": "u" + pd.Series(np.arange(k)).astype(str), "trial_kind": "real"})
        t0 = time.perf_counter()
        rel = annotator_reliability(judged, min_agreement=0.5)
        t_rel = time.perf_counter() - t0
        print(f"annotator reliability, {k:,} votes with one annotator each: {t_rel:.2f} s (target < 30 s); "
              f"{rel.summary().split(';')[0]}; {len(rel.dropped):,} annotator(s) below 0.5 leave-one-out agreement")
    if args.choix:
        import choix

        data = [(int(w), int(lo)) for w, lo in zip(np.where(outcome == 1, votes.a, votes.b),
                                                   np.where(outcome == 1, votes.b, votes.a))]
        t0 = time.perf_counter()
        c = choix.opt_pairwise(m, data, alpha=1.0 / (2 * prior_sd ** 2), tol=1e-10)
        t_choix = time.perf_counter() - t0
        print(f"choix.opt_pairwise, one fit on the same votes: {t_choix:.2f} s "
              f"(max |ours - choix| = {np.abs(ours - (c - c.mean())).max():.2e}); "
              f"point fit {t_choix / t_point:.0f}x slower than ours; 1 + {args.bootstrap} fits extrapolated "
              f"{t_choix * (args.bootstrap + 1):.0f} s = {t_choix * (args.bootstrap + 1) / t_rank:.0f}x ours")


if __name__ == "__main__":
    main()
