"""2AFC agreement: arithmetic against hand-computed values, bootstrap against a plain per-resample loop,
statistical correctness by simulation, and the end-to-end path through the scoring pipeline."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import integrate, stats

from clipscore_sr.errors import JudgementError, SRMetricsError, UnknownMetricError
from clipscore_sr.human.agreement import (
    agreement_from_pairs,
    agreement_from_scores,
    format_table,
    metric_preference,
    pair_agreement,
)
from clipscore_sr.human.agreement_run import agreement, run_agreement
from clipscore_sr.human.resampling import (
    bootstrap_indices,
    bootstrap_sums,
)
from clipscore_sr.metrics.base import Metric


def _row(table: pd.DataFrame, metric: str, dataset: str = "all") -> pd.Series:
    sub = table[(table["metric"] == metric) & (table["dataset"] == dataset)]
    assert len(sub) == 1, (metric, dataset)
    return sub.iloc[0]


# ---------------------------------------------------------------------------------------------------
# Arithmetic on handmade sets

def test_single_vote_per_pair_hand_computed() -> None:
    # metric prefers a, b, a, a ; humans chose a, a, b, a -> agreement 1, 0, 0, 1 = 0.5
    t = agreement_from_scores({"m": [3, 1, 5, 2]}, {"m": [1, 2, 4, 0]}, [1, 1, 0, 1], [0, 0, 1, 0],
                              higher_is_better=True, bootstrap=0)
    assert list(t["dataset"]) == ["default", "all"]
    r = _row(t, "m")
    assert r["accuracy"] == pytest.approx(0.5, abs=1e-15)
    assert (r["n_pairs"], r["n_votes"], r["n_tie_votes"], r["n_metric_ties"]) == (4, 4, 0, 0)
    assert math.isnan(r["human_ceiling"]) and r["n_ceiling_pairs"] == 0
    assert math.isnan(r["ci_low"])  # bootstrap=0: no interval


def test_several_votes_use_the_vote_fraction() -> None:
    # pair 1: 3 votes a, 1 vote b, metric prefers a -> 3/4 ; pair 2: 1 a, 4 b, metric prefers a -> 1/5
    # pair 3: 2 a, 2 b, metric prefers b -> 1/2
    t = agreement_from_scores({"m": [2.0, 9.0, 0.0]}, {"m": [1.0, 3.0, 1.0]}, [3, 1, 2], [1, 4, 2],
                              higher_is_better=True, bootstrap=0)
    r = _row(t, "m")
    assert r["accuracy"] == pytest.approx((3 / 4 + 1 / 5 + 1 / 2) / 3, abs=1e-15)
    assert r["n_votes"] == 13
    # ceiling: mean of max(h, 1-h) over pairs with >= 2 votes: (3/4 + 4/5 + 1/2) / 3
    assert r["human_ceiling"] == pytest.approx((3 / 4 + 4 / 5 + 1 / 2) / 3, abs=1e-15)
    assert r["n_ceiling_pairs"] == 3


def test_metric_tie_counts_half_and_human_ties_are_excluded_and_counted() -> None:
    # pair 1: metric tie (equal values), votes 2a 1b 1tie -> 0.5 ; pair 2: only tie votes -> excluded
    # pair 3: metric prefers b, votes 0a 2b 3tie -> 1.0 ; pair 4: +inf vs +inf is a tie, 1 vote a -> 0.5
    t = agreement_from_scores({"m": [1.0, 5.0, 0.0, np.inf]}, {"m": [1.0, 0.0, 1.0, np.inf]},
                              [2, 0, 0, 1], [1, 0, 2, 0], n_tie=[1, 4, 3, 0], higher_is_better=True, bootstrap=0)
    r = _row(t, "m")
    assert r["accuracy"] == pytest.approx((0.5 + 1.0 + 0.5) / 3, abs=1e-15)
    assert (r["n_pairs"], r["n_votes"], r["n_tie_votes"], r["n_tie_only_pairs"], r["n_metric_ties"]) == (3, 6, 8, 1, 2)
    # ceiling over pairs with >= 2 non-tie votes: pair 1 (2/3) and pair 3 (1.0)
    assert r["human_ceiling"] == pytest.approx((2 / 3 + 1.0) / 2, abs=1e-15)


def test_human_ties_as_half_votes() -> None:
    # pair 1: metric prefers a, votes 1a 0b 2tie -> h = (1 + 1) / 3 ; pair 2: only 2 tie votes, metric prefers b
    # -> h = 1/2 -> agreement 1/2 (included now, not left out)
    t = agreement_from_scores({"m": [2.0, 0.0]}, {"m": [1.0, 1.0]}, [1, 0], [0, 0], n_tie=[2, 2],
                              higher_is_better=True, bootstrap=0, human_ties="half")
    r = _row(t, "m")
    assert r["accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2, abs=1e-15)
    assert (r["n_pairs"], r["n_votes"], r["n_tie_votes"], r["n_tie_only_pairs"]) == (2, 5, 4, 0)
    assert r["human_ceiling"] == pytest.approx((2 / 3 + 1 / 2) / 2, abs=1e-15)
    with pytest.raises(SRMetricsError, match="human_ties"):
        agreement_from_scores([1.0], [0.0], [1], [0], higher_is_better=True, human_ties="ignore")


def test_lower_is_better_flips_the_preference() -> None:
    va, vb = [0.1, 0.5, 0.3], [0.2, 0.4, 0.3]
    na, nb = [1, 1, 0], [0, 0, 1]
    low = agreement_from_scores({"d": va}, {"d": vb}, na, nb, higher_is_better=False, bootstrap=0)
    # lower better: prefers a, b, tie -> agreement 1, 0, 0.5
    assert _row(low, "d")["accuracy"] == pytest.approx(0.5, abs=1e-15)
    high = agreement_from_scores({"d": va}, {"d": vb}, na, nb, higher_is_better=True, bootstrap=0)
    assert _row(high, "d")["accuracy"] == pytest.approx((0 + 1 + 0.5) / 3, abs=1e-15)
    neg = agreement_from_scores({"d": -np.array(va)}, {"d": -np.array(vb)}, na, nb, higher_is_better=True,
                                bootstrap=0)
    assert _row(neg, "d")["accuracy"] == _row(low, "d")["accuracy"]


def test_tie_tolerance() -> None:
    pref = metric_preference([[1.0], [1.0]], [[1.0 + 1e-12], [1.1]], [True], tie_tol=1e-9)
    np.testing.assert_array_equal(pref[:, 0], [0.5, 0.0])
    assert np.isnan(metric_preference([[np.nan]], [[1.0]], [True])[0, 0])


def test_per_dataset_rows_and_pooled_mean() -> None:
    rng = np.random.default_rng(3)
    n = 50
    va, vb = rng.normal(size=(n, 2)), rng.normal(size=(n, 2))
    na, nb = rng.integers(0, 4, n), rng.integers(0, 4, n)
    nb[(na + nb) == 0] = 1
    ds = np.where(np.arange(n) < 20, "s2naip", "worldstrat")
    t = agreement_from_scores(va, vb, na, nb, metrics=["x", "y"], higher_is_better=[True, False],
                              datasets=ds, bootstrap=0)
    assert list(zip(t["metric"], t["dataset"])) == [
        ("x", "s2naip"), ("x", "worldstrat"), ("x", "all"), ("y", "s2naip"), ("y", "worldstrat"), ("y", "all")]
    # independent float64 loop
    for j, (name, hib) in enumerate([("x", True), ("y", False)]):
        per = []
        for i in range(n):
            if va[i, j] == vb[i, j]:
                p = 0.5
            else:
                p = 1.0 if ((va[i, j] > vb[i, j]) == hib) else 0.0
            per.append((p * na[i] + (1 - p) * nb[i]) / (na[i] + nb[i]))
        per = np.array(per)
        assert _row(t, name, "s2naip")["accuracy"] == pytest.approx(per[:20].mean(), abs=1e-12)
        assert _row(t, name, "worldstrat")["accuracy"] == pytest.approx(per[20:].mean(), abs=1e-12)
        assert _row(t, name, "all")["accuracy"] == pytest.approx(per.mean(), abs=1e-12)


def test_unscored_pairs_are_left_out_for_every_metric() -> None:
    t = agreement_from_scores({"m": [1.0, np.nan, 3.0], "k": [1.0, 2.0, 0.0]},
                              {"m": [0.0, 1.0, 4.0], "k": [0.0, 1.0, 1.0]}, [1, 1, 1], [0, 0, 0],
                              higher_is_better=True, bootstrap=0)
    for m in ("m", "k"):
        r = _row(t, m)
        assert r["n_pairs"] == 2 and r["n_pairs_unscored"] == 1
    assert _row(t, "m")["accuracy"] == pytest.approx(0.5)
    assert _row(t, "k")["accuracy"] == pytest.approx(0.5)


def test_bad_inputs_raise() -> None:
    with pytest.raises(SRMetricsError, match="reserved"):
        agreement_from_scores([1.0], [0.0], [1], [0], higher_is_better=True, datasets=["all"])
    with pytest.raises(SRMetricsError, match="no pair"):
        agreement_from_scores([1.0], [0.0], [0], [0], n_tie=[2], higher_is_better=True)
    with pytest.raises(SRMetricsError, match="higher_is_better"):
        agreement_from_scores({"a": [1]}, {"a": [0]}, [1], [0], higher_is_better={"b": True})
    with pytest.raises(SRMetricsError, match="vote counts"):
        agreement_from_scores([1.0, 2.0], [0.0, 1.0], [1], [0], higher_is_better=True)


# ---------------------------------------------------------------------------------------------------
# Bootstrap: the vectorised path equals a plain per-resample loop on the same resamples

def test_bootstrap_matches_naive_loop_on_the_same_resamples() -> None:
    rng = np.random.default_rng(11)
    n, b, seed = 137, 300, 5
    va, vb = rng.normal(size=(n, 3)), rng.normal(size=(n, 3))
    na, nb = rng.integers(0, 5, n), rng.integers(0, 5, n)
    nb[(na + nb) == 0] = 2
    t = agreement_from_scores(va, vb, na, nb, metrics=["p", "q", "r"], higher_is_better=[True, True, False],
                              bootstrap=b, seed=seed)
    # plain loop: regenerate the same index matrix (single dataset) and average per resample
    idx = np.random.default_rng(seed).integers(0, n, size=(b, n))
    pref = metric_preference(va, vb, [True, True, False])
    per = pair_agreement(pref, na, nb)
    h = na / (na + nb)
    ceil = np.maximum(h, 1 - h)
    has2 = (na + nb) >= 2
    boot = np.array([per[i].mean(axis=0) for i in idx])
    boot_ceil = np.array([ceil[i][has2[i]].mean() for i in idx])
    # estimate -/+ t_{n-1} se over n pairs, se = the resamples' sd x sqrt(n / (n - 1)) (clipscore_sr.human.resampling)
    from scipy.stats import t as student

    q, f = student.ppf(0.975, n - 1), np.sqrt(n / (n - 1))
    acc = per.mean(axis=0)
    for j, name in enumerate("pqr"):
        r = _row(t, name, "default")
        assert r["ci_low"] == pytest.approx(acc[j] - q * f * boot[:, j].std(), abs=1e-12)
        assert r["ci_high"] == pytest.approx(acc[j] + q * f * boot[:, j].std(), abs=1e-12)
        assert _row(t, name, "all")["ci_low"] == pytest.approx(r["ci_low"], abs=1e-12)
    r0 = _row(t, "p", "default")
    c0 = ceil[has2].mean()
    assert r0["ceiling_ci_low"] == pytest.approx(c0 - q * f * boot_ceil.std(), abs=1e-12)
    assert r0["ceiling_ci_high"] == pytest.approx(min(c0 + q * f * boot_ceil.std(), 1.0), abs=1e-12)
    # paired comparison on the same resamples
    best = int(np.argmax(acc))
    for j, name in enumerate("pqr"):
        r = _row(t, name, "default")
        assert r["best_metric"] == "pqr"[best]
        if j == best:
            assert r["diff_vs_best"] == 0 and math.isnan(r["p_vs_best"])
            continue
        d = boot[:, best] - boot[:, j]
        dd = acc[best] - acc[j]
        assert r["diff_vs_best"] == pytest.approx(dd, abs=1e-12)
        assert r["diff_ci_low"] == pytest.approx(dd - q * f * d.std(), abs=1e-12)
        assert r["diff_ci_high"] == pytest.approx(dd + q * f * d.std(), abs=1e-12)
        assert r["p_vs_best"] == pytest.approx(2 * student.sf(abs(dd) / (f * d.std()), n - 1), rel=1e-9)
        # the p-value and the interval tell the same story
        assert (r["p_vs_best"] < 0.05) == (r["diff_ci_low"] > 0 or r["diff_ci_high"] < 0)


def test_stratified_bootstrap_pooled_row_is_union_of_dataset_resamples() -> None:
    rng = np.random.default_rng(2)
    n1, n2, b = 40, 25, 200
    va, vb = rng.normal(size=n1 + n2), rng.normal(size=n1 + n2)
    na = rng.integers(1, 3, n1 + n2)
    nb = rng.integers(0, 3, n1 + n2)
    ds = np.array(["a"] * n1 + ["b"] * n2)
    t = agreement_from_scores({"m": va}, {"m": vb}, na, nb, higher_is_better=True, datasets=ds, bootstrap=b, seed=9)
    g = np.random.default_rng(9)
    idx1 = g.integers(0, n1, size=(b, n1))  # datasets are resampled in sorted order
    idx2 = g.integers(0, n2, size=(b, n2))
    per = pair_agreement(metric_preference(va, vb, True), na, nb)
    pooled = (per[:n1][idx1].sum(1) + per[n1:][idx2].sum(1)) / (n1 + n2)
    r = _row(t, "m", "all")
    from scipy.stats import t as student

    n = n1 + n2  # pairs are the units: estimate -/+ t_{n-1} sd sqrt(n / (n - 1))
    half = student.ppf(0.975, n - 1) * pooled.std() * np.sqrt(n / (n - 1))
    assert r["ci_low"] == pytest.approx(per.mean() - half, abs=1e-12)
    assert r["ci_high"] == pytest.approx(per.mean() + half, abs=1e-12)
    half_b = student.ppf(0.975, n2 - 1) * per[n1:][idx2].mean(1).std() * np.sqrt(n2 / (n2 - 1))
    assert _row(t, "m", "b")["ci_high"] == pytest.approx(min(per[n1:].mean() + half_b, 1.0), abs=1e-12)


def test_bootstrap_sums_and_indices() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 2))
    idx = bootstrap_indices(30, 7, np.random.default_rng(1))
    assert idx.shape == (7, 30) and idx.min() >= 0 and idx.max() < 30
    np.testing.assert_allclose(bootstrap_sums(x, idx, chunk=3), np.stack([x[i].sum(0) for i in idx]), atol=1e-12)


def test_same_seed_same_table_other_seed_other_intervals() -> None:
    rng = np.random.default_rng(4)
    va, vb = rng.normal(size=80), rng.normal(size=80)
    na, nb = rng.integers(0, 3, 80), rng.integers(1, 3, 80)
    kw = dict(higher_is_better=True, bootstrap=200)
    t1 = agreement_from_scores({"m": va}, {"m": vb}, na, nb, seed=1, **kw)
    t2 = agreement_from_scores({"m": va}, {"m": vb}, na, nb, seed=1, **kw)
    t3 = agreement_from_scores({"m": va}, {"m": vb}, na, nb, seed=2, **kw)
    pd.testing.assert_frame_equal(t1, t2)
    assert t1["accuracy"].equals(t3["accuracy"]) and not t1["ci_low"].equals(t3["ci_low"])


# ---------------------------------------------------------------------------------------------------
# Statistical correctness by simulation (Bradley-Terry / logistic latent preference)

TAU, SIGMA, VOTES = 0.6, 0.8, 3


def _true_agreement() -> float:
    """E over d ~ N(0,1) of Phi(d/SIGMA) s(d) + (1 - Phi(d/SIGMA)) (1 - s(d)), s = logistic(d/TAU)."""
    def f(d: float) -> float:
        p = stats.norm.cdf(d / SIGMA)
        s = 1 / (1 + math.exp(-d / TAU))
        return (p * s + (1 - p) * (1 - s)) * stats.norm.pdf(d)
    return integrate.quad(f, -10, 10, epsabs=1e-12)[0]


def _true_ceiling() -> float:
    """E of max(h, 1-h) for h = (votes for a) / VOTES, votes ~ Binomial(VOTES, s(d))."""
    def f(d: float) -> float:
        s = 1 / (1 + math.exp(-d / TAU))
        e = sum(stats.binom.pmf(j, VOTES, s) * max(j / VOTES, 1 - j / VOTES) for j in range(VOTES + 1))
        return e * stats.norm.pdf(d)
    return integrate.quad(f, -10, 10, epsabs=1e-12)[0]


def _simulate(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = rng.normal(size=n)  # latent quality of a minus b
    votes_a = rng.binomial(VOTES, 1 / (1 + np.exp(-d / TAU)))
    metric = d + rng.normal(scale=SIGMA, size=n)  # metric's score difference a - b
    return metric, votes_a, VOTES - votes_a


def test_simulation_recovers_truth_and_ci_covers_it_about_95_percent() -> None:
    truth, ceiling_truth = _true_agreement(), _true_ceiling()
    rng = np.random.default_rng(2024)
    n, reps = 400, 200
    est, ceil, covered, ceil_covered = [], [], 0, 0
    for r in range(reps):
        metric, na, nb = _simulate(rng, n)
        t = agreement_from_scores({"m": metric}, {"m": np.zeros(n)}, na, nb, higher_is_better=True,
                                  bootstrap=400, seed=r)
        row = _row(t, "m")
        est.append(row["accuracy"])
        ceil.append(row["human_ceiling"])
        covered += row["ci_low"] <= truth <= row["ci_high"]
        ceil_covered += row["ceiling_ci_low"] <= ceiling_truth <= row["ceiling_ci_high"]
    est, ceil = np.array(est), np.array(ceil)
    se = est.std(ddof=1) / math.sqrt(reps)
    assert abs(est.mean() - truth) < 4 * se, (est.mean(), truth, se)
    assert abs(ceil.mean() - ceiling_truth) < 4 * ceil.std(ddof=1) / math.sqrt(reps)
    # nominal 95%; binomial sd over 200 repetitions is 1.5 points
    assert 0.90 <= covered / reps <= 0.99, covered / reps
    assert 0.90 <= ceil_covered / reps <= 0.99, ceil_covered / reps


def test_paired_p_value_is_calibrated_under_the_null_and_powerful_otherwise() -> None:
    rng = np.random.default_rng(77)
    n, reps = 300, 150
    null_p, alt_p = [], []
    for r in range(reps):
        d = rng.normal(size=n)
        na = rng.binomial(VOTES, 1 / (1 + np.exp(-d / TAU)))
        nb = VOTES - na
        same1 = d + rng.normal(scale=SIGMA, size=n)
        same2 = d + rng.normal(scale=SIGMA, size=n)  # equally good metric
        worse = d + rng.normal(scale=4.0, size=n)  # much noisier metric
        z = np.zeros(n)
        t = agreement_from_scores({"s1": same1, "s2": same2, "w": worse}, {"s1": z, "s2": z, "w": z}, na, nb,
                                  higher_is_better=True, bootstrap=300, seed=r)
        pooled = t[t["dataset"] == "all"].set_index("metric")
        best = pooled["best_metric"].iat[0]
        if best in ("s1", "s2"):
            other = "s2" if best == "s1" else "s1"
            null_p.append(pooled.loc[other, "p_vs_best"])
            alt_p.append(pooled.loc["w", "p_vs_best"])
    null_p, alt_p = np.array(null_p), np.array(alt_p)
    assert len(null_p) > 0.9 * reps
    assert 0.01 <= (null_p < 0.05).mean() <= 0.12, (null_p < 0.05).mean()
    assert (alt_p < 0.05).mean() > 0.9


# ---------------------------------------------------------------------------------------------------
# End to end: judgements on disk -> pipeline (unique (gt, image) pairs) -> statistics

class CountingMAD(Metric):
    """Test metric: mean |sr - gt| (lower is better); records every (gt, sr) content it scores."""

    name = "counting-mad-test"
    higher_is_better = False
    uses_image_ids = True

    def __init__(self, spec=None, *, device="cpu"):
        super().__init__(spec, device=device)
        self.seen: list[tuple[str, str]] = []

    def compute(self, sr, gt, *, mask=None, data_range=None, sr_ids=None, gt_ids=None):
        self.seen += list(zip(gt_ids, sr_ids))
        return (sr.double() - gt.double()).abs().flatten(1).mean(1)


def _write_study(root: Path, seed: int = 0) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """4 GT tiles, 3 outputs each (noise of different strength); every pair of outputs judged by 1-3 people."""
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    rows = []
    for t in range(4):
        gt = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
        gt_rel = f"img/t{t}/gt.png"
        (root / gt_rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(gt).save(root / gt_rel)
        arrays[gt_rel] = gt
        outs = []
        for k, s in enumerate((5, 12, 30)):
            o = np.clip(gt + rng.normal(0, s, gt.shape), 0, 255).astype(np.uint8)
            rel = f"img/t{t}/o{k}.png"
            Image.fromarray(o).save(root / rel)
            arrays[rel] = o
            outs.append(rel)
        for i in range(3):
            for j in range(i + 1, 3):
                pid = f"t{t}-{i}{j}"
                for v in range(1 + (i + j + t) % 3):
                    choice = ["a", "b", "tie"][(v + t + j) % 3]
                    rows.append(dict(pair_id=pid, dataset="d1" if t < 2 else "d2", gt=gt_rel, a=outs[i], b=outs[j],
                                     choice=choice, annotator=f"w{v}"))
    df = pd.DataFrame(rows)
    df.to_csv(root / "judgements.csv", index=False)
    return df, arrays


def test_end_to_end_scores_each_unique_image_pair_once_and_matches_direct_computation(tmp_path: Path) -> None:
    df, arrays = _write_study(tmp_path)
    metric = CountingMAD()
    res = run_agreement(tmp_path / "judgements.csv", ["psnr", metric], bootstrap=200, seed=3, device="cpu",
                        workers=0, batch_size=5, pairs_out=tmp_path / "pairs.csv")
    # 4 tiles x 3 outputs = 12 unique (gt, image) combinations, each scored exactly once
    assert res.n_image_pairs == 12 and res.n_unique_images == 16
    assert len(metric.seen) == 12 and len(set(metric.seen)) == 12
    # independent computation of the same statistics from the raw arrays
    def psnr(gt: np.ndarray, o: np.ndarray) -> float:
        mse = np.mean((gt.astype(np.float64) - o.astype(np.float64)) ** 2)
        return 10 * math.log10(255.0 ** 2 / mse)
    def mad(gt: np.ndarray, o: np.ndarray) -> float:
        return float(np.mean(np.abs(gt.astype(np.float64) - o.astype(np.float64)))) / 255.0
    by_pair = df.groupby("pair_id", sort=False)
    va = {"psnr": [], metric.id: []}
    vb = {"psnr": [], metric.id: []}
    na, nb, nt, ds, gts, cells = [], [], [], [], [], []
    for k, (_, g) in enumerate(by_pair):
        r = g.iloc[0]
        gts.append(r["gt"])
        for who, gg in g.groupby("annotator"):  # two-way bootstrap: the votes of each annotator on the pair
            cells.append(dict(pair=k, annotator=who, n_a=int((gg.choice == "a").sum()),
                              n_b=int((gg.choice == "b").sum()), n_tie=int((gg.choice == "tie").sum())))
        for fn, key in ((psnr, "psnr"), (mad, metric.id)):
            va[key].append(fn(arrays[r["gt"]], arrays[r["a"]]))
            vb[key].append(fn(arrays[r["gt"]], arrays[r["b"]]))
        na.append(int((g.choice == "a").sum()))
        nb.append(int((g.choice == "b").sum()))
        nt.append(int((g.choice == "tie").sum()))
        ds.append(r["dataset"])
    expect = agreement_from_scores(va, vb, na, nb, n_tie=nt, datasets=ds, metrics=["psnr", metric.id],
                                   higher_is_better={"psnr": True, metric.id: False}, bootstrap=200, seed=3,
                                   scenes=gts, annotator_votes=pd.DataFrame(cells))
    assert set(expect["resampled"]) <= {"scenes x annotators", "pairs x annotators", "scene/pairs x annotators"}
    got = res.table
    np.testing.assert_allclose(got["accuracy"], expect["accuracy"], atol=1e-9)
    np.testing.assert_allclose(got["ci_low"], expect["ci_low"], atol=1e-9)
    assert list(got["n_tie_votes"]) == list(expect["n_tie_votes"])
    pairs = pd.read_csv(tmp_path / "pairs.csv", keep_default_na=False)
    assert {"pair_id", "n_a", "n_b", "n_tie", "a:psnr", "b:psnr", "agree:psnr", "error"} <= set(pairs.columns)
    np.testing.assert_allclose(pairs["a:psnr"].astype(float), va["psnr"], rtol=1e-6)
    # the per-pair table alone reproduces the agreement table
    again = agreement_from_pairs(pairs, ["psnr"], bootstrap=200, seed=3)
    np.testing.assert_allclose(again["accuracy"], got[got["metric"] == "psnr"]["accuracy"], atol=1e-9)
    text = format_table(got)
    assert "psnr" in text and "tie votes excluded" in text


def test_agreement_api_returns_the_table_and_refuses_bad_rows(tmp_path: Path) -> None:
    df, _ = _write_study(tmp_path)
    t = agreement(tmp_path / "judgements.csv", ["psnr"], bootstrap=50, device="cpu", workers=0)
    assert set(t["dataset"]) == {"d1", "d2", "all"}
    bad = df.copy()
    bad.loc[3, "choice"] = "left"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(JudgementError, match=r"bad\.csv:5: \[choice\] unknown choice 'left'"):
        agreement(tmp_path / "bad.csv", ["psnr"], bootstrap=0, device="cpu", workers=0)
    res = run_agreement(tmp_path / "bad.csv", ["psnr"], bootstrap=0, device="cpu", workers=0, skip_invalid=True)
    assert res.n_invalid == 1 and res.n_rows == len(df) and "bad.csv:5:" in res.problems[0]
    assert int(res.table["n_votes"].iat[-1]) + int(res.table["n_tie_votes"].iat[-1]) == len(df) - 1
    with pytest.raises(UnknownMetricError, match="did you mean"):
        agreement(tmp_path / "judgements.csv", ["psnrr"])


def test_one_scene_says_its_pairs_are_the_units_and_a_constant_accuracy_has_no_interval() -> None:
    rng = np.random.default_rng(4)
    n = 30
    va, vb = rng.normal(size=n), rng.normal(size=n)
    na = np.where(va > vb, 3, 0)  # people always side with the higher score: the metric agrees on every pair
    nb = 3 - na
    t = agreement_from_scores({"m": va, "r": rng.normal(size=n)}, {"m": vb, "r": rng.normal(size=n)}, na, nb,
                              higher_is_better=True, scenes=np.zeros(n), bootstrap=200, seed=0)
    m, r = _row(t, "m", "all"), _row(t, "r", "all")
    assert m["accuracy"] == 1.0 and np.isnan(m["ci_low"]) and m["ci_note"].startswith("no interval: every resample")
    assert r["ci_note"].startswith(f"one scene: its {n} pairs are the units resampled") and r["ci_low"] < r["ci_high"]
    text = format_table(t)
    assert "100.0 [no interval]" in text and "n/a, n/a" not in text


def test_merge_same_stimulus_pools_people_but_keeps_a_persons_repeat_apart() -> None:
    from clipscore_sr.human.vote_tables import merge_same_stimulus, vote_table

    rows = pd.DataFrame({
        "pair_id": ["t1", "t2", "t3", "t4", "t5"],
        "dataset": ["d"] * 5, "gt_path": ["/g.png"] * 5,
        "a_path": ["/x.png", "/y.png", "/x.png", "/y.png", "/x.png"],
        "b_path": ["/y.png", "/x.png", "/y.png", "/x.png", "/y.png"],
        "annotator": ["ann", "bob", "cat", "ann", "dan"],  # t4: ann again (a repeat, sides swapped)
        "vote": ["a", "a", "tie", "b", "b"], "choice": ["a", "a", "tie", "b", "b"], "gt": ["g"] * 5,
        "a": ["x", "y", "x", "y", "x"], "b": ["y", "x", "y", "x", "y"],
    })
    merged, n = merge_same_stimulus(rows)
    assert n == 3 and list(merged["pair_id"]) == ["t1", "t1", "t1", "t4", "t1"]
    assert list(merged["vote"]) == ["a", "b", "tie", "b", "b"]  # bob chose y, in t1's orientation that is 'b'
    t = vote_table(merged).set_index("pair_id")
    assert (t.loc["t1", "n_a"], t.loc["t1", "n_b"], t.loc["t1", "n_tie"]) == (1, 2, 1)
    assert (t.loc["t4", "n_a"], t.loc["t4", "n_b"]) == (0, 1)  # ann's repeat: its own pair, not self-agreement
