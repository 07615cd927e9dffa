"""Coverage of the two-way (scenes x annotators) bootstrap, by simulation with fixed seeds (SIMULATED votes,
never human): votes drawn from known method strengths with random scene and annotator effects; the 95%
intervals must cover the truth 92-98% of the time in every design where an interval is reported.

The truth is on the model's scale. Thurstone: with Gaussian effects (sd ``s`` per scene and method, ``a`` per
annotator and method) the marginal win probability is ``Phi(d / sqrt(c^2 + 2 s^2 + 2 a^2))`` (c = 1.4826, 1 JOD =
75%), so the pooled fit estimates ``d * c / sqrt(c^2 + 2 s^2 + 2 a^2)`` exactly. Bradley-Terry: the BT projection
of the marginal win probabilities (Gauss-Hermite) for the balanced pair design. A factor with one unit is fixed:
the truth then includes that scene's (or annotator's) effects, which is what such an interval is about.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clipscore_sr.human.fits import JOD_SCALE, fit_scores, win_probability
from clipscore_sr.human.ranking import rank_methods
from clipscore_sr.human.votes import Votes

STRENGTHS = np.array([0.0, 0.5, 1.0, 1.5])
SD_SCENE, SD_ANNOT = 0.5, 0.5
# (scenes, annotators, votes, bootstrap resamples, repetitions)
DESIGNS = {
    "many scenes x many annotators": (30, 20, 1500, 400, 200),
    "1 scene x many annotators": (1, 30, 1500, 400, 250),
    "many scenes x 1 annotator": (30, 1, 1500, 400, 250),
    "few scenes x few annotators": (5, 5, 1000, 1000, 200),
}


def _marginal_truth(strengths: np.ndarray, model: str, noise_var: float) -> np.ndarray:
    """Centred scores the pooled fit converges to when each method gets Gaussian noise of total variance
    ``noise_var`` on every comparison (both sides' effects together)."""
    if model == "thurstone":
        t = strengths * JOD_SCALE / np.sqrt(JOD_SCALE ** 2 + noise_var)
        return t - t.mean()
    x, w = np.polynomial.hermite_e.hermegauss(80)  # E[f(Z)], Z ~ N(0, 1)
    d = strengths[:, None] - strengths[None, :]
    p = (win_probability(d[..., None] + np.sqrt(noise_var) * x, "bt") * w).sum(-1) / w.sum()
    np.fill_diagonal(p, 0.0)
    return fit_scores(p * 1e6, model="bt", prior_sd=np.inf)


def _simulate(rng: np.random.Generator, n_scenes: int, n_annot: int, n_votes: int, model: str, *,
              strengths: np.ndarray = STRENGTHS, sd: float = SD_SCENE, first_share: float = 0.0
              ) -> tuple[Votes, np.ndarray]:
    """``first_share``: the fraction of the votes annotator 0 gives (the rest spread evenly); 0 = all even."""
    m = len(strengths)
    sc = rng.integers(0, n_scenes, n_votes)
    an = rng.integers(0, n_annot, n_votes)
    if first_share:
        an = np.where(rng.random(n_votes) < first_share, 0, rng.integers(1, n_annot, n_votes))
    a = rng.integers(0, m, n_votes)
    b = (a + rng.integers(1, m, n_votes)) % m
    es = rng.normal(0, sd, (n_scenes, m))
    ea = rng.normal(0, sd, (n_annot, m))
    d = strengths[a] - strengths[b] + es[sc, a] - es[sc, b] + ea[an, a] - ea[an, b]
    won = (rng.random(n_votes) < win_probability(d, model)).astype(np.float64)
    base, var = strengths.copy(), 0.0
    if n_scenes == 1:
        base = base + es[0]
    else:
        var += 2 * sd ** 2
    if n_annot == 1:
        base = base + ea[0]
    else:
        var += 2 * sd ** 2
    names = np.array([f"m{k:02d}" for k in range(m)], dtype=object)
    return (Votes.from_arrays(names[a], names[b], won, scene=sc, annotator=an), _marginal_truth(base, model, var))


def coverage(design: str, model: str, seed: int = 0) -> tuple[float, str, float]:
    """(fraction of method-score intervals that cover the truth, what was resampled, mean width)."""
    n_scenes, n_annot, n_votes, boot, reps = DESIGNS[design]
    rng = np.random.default_rng(seed)
    hits, widths, label = [], [], ""
    for r in range(reps):
        votes, truth = _simulate(rng, n_scenes, n_annot, n_votes, model)
        t = rank_methods(votes, model=model, bootstrap=boot, seed=r).table.sort_values("method")
        hits.append(((t["ci_low"] <= truth) & (truth <= t["ci_high"])).to_numpy())
        widths.append(float((t["ci_high"] - t["ci_low"]).mean()))
        label = t["resampled"].iat[0]
    return float(np.mean(hits)), label, float(np.mean(widths))


@pytest.mark.parametrize("design", list(DESIGNS))
def test_thurstone_intervals_cover_the_truth_in_every_design(design: str) -> None:
    cov, label, _ = coverage(design, "thurstone", seed=1)
    expect = {"many scenes x many annotators": "scenes x annotators", "1 scene x many annotators": "annotators",
              "many scenes x 1 annotator": "scenes", "few scenes x few annotators": "scenes x annotators"}
    assert label == expect[design]
    assert 0.92 <= cov <= 0.98, (design, cov)


@pytest.mark.slow
@pytest.mark.parametrize("design", list(DESIGNS))
def test_bradley_terry_intervals_cover_the_truth_in_every_design(design: str) -> None:
    cov, _, _ = coverage(design, "bt", seed=2)
    assert 0.92 <= cov <= 0.98, (design, cov)


# designs where the earlier intervals failed (measured with them: 3 x 3 covered 0.87-0.91, 30 x 2 0.82-0.85, the
# 12-method noise-dominated study 1.00 with intervals 2.5-3x the estimate's spread)
HARD = {
    "3 scenes x 3 annotators": dict(n_scenes=3, n_annot=3, n_votes=600),
    "30 scenes x 2 annotators": dict(n_scenes=30, n_annot=2, n_votes=1500),
    "one annotator gives 80% of the votes": dict(n_scenes=30, n_annot=10, n_votes=1500, first_share=0.8),
    "12 methods, vote noise dominates": dict(n_scenes=20, n_annot=5, n_votes=400, strengths=np.arange(12) * 0.5,
                                             sd=0.15),
}


@pytest.mark.parametrize("design", list(HARD))
def test_thurstone_coverage_in_designs_that_broke_percentile_intervals(design: str) -> None:
    kw = dict(HARD[design])
    shape = kw.pop("n_scenes"), kw.pop("n_annot"), kw.pop("n_votes")
    rng = np.random.default_rng(21)
    hits, widths, spread = [], [], []
    for r in range(300):
        votes, truth = _simulate(rng, *shape, "thurstone", **kw)
        t = rank_methods(votes, model="thurstone", bootstrap=400, seed=r).table.sort_values("method")
        hits.append(((t["ci_low"] <= truth) & (truth <= t["ci_high"])).to_numpy())
        widths.append(float((t["ci_high"] - t["ci_low"]).mean()))
        spread.append(t["score"].to_numpy() - truth)
    cov = float(np.mean(hits))
    assert 0.92 <= cov <= 0.985, (design, cov)
    if design.startswith("12 methods"):  # as wide as the estimates' spread needs, not 2.5-3x wider as before
        need = 2 * 1.96 * float(np.std(spread, axis=0).mean())  # (with 2 units t_1 makes the mean width large)
        assert 0.8 <= np.mean(widths) / need <= 1.3, (design, np.mean(widths), need)


def test_bradley_terry_coverage_many_by_many() -> None:  # the fast BT check (the others are marked slow)
    cov, _, _ = coverage("many scenes x many annotators", "bt", seed=3)
    assert 0.92 <= cov <= 0.98, cov


def test_one_scene_and_one_annotator_gives_no_interval_and_says_so() -> None:
    rng = np.random.default_rng(0)
    votes, _ = _simulate(rng, 1, 1, 300, "bt")
    r = rank_methods(votes, bootstrap=200, seed=0)
    assert r.table["ci_low"].isna().all() and (r.table["resampled"] == "none").all()
    assert r.table["ci_note"].str.startswith("no interval: 1 scene and 1 annotator").all()
    from clipscore_sr.human.ranking import format_ranking

    assert "no interval" in format_ranking(r)


def test_scene_bootstrap_alone_is_too_narrow_when_annotators_matter() -> None:
    """Why two factors: ignoring the annotators (as the old scene bootstrap did) undercovers."""
    n_scenes, n_annot, n_votes = 30, 8, 1500
    rng = np.random.default_rng(5)
    hits = []
    for r in range(120):
        votes, truth = _simulate(rng, n_scenes, n_annot, n_votes, "thurstone")
        votes.annotator, votes.annotators = None, []  # forget who voted
        t = rank_methods(votes, model="thurstone", bootstrap=300, seed=r).table.sort_values("method")
        hits.append(((t["ci_low"] <= truth) & (truth <= t["ci_high"])).to_numpy())
    assert np.mean(hits) < 0.9


def test_pwcmp_style_thurstone_scaling_reference() -> None:
    """Scores against a JOD scaling written from pwcmp's definition (Perez-Ortiz & Mantiuk 2017): maximise
    sum_ij C_ij log Phi((q_i - q_j) / sigma) with sigma = 1.4826 (so 1 JOD = 75%), q_0 = 0; compare differences."""
    from scipy.optimize import minimize
    from scipy.stats import norm

    rng = np.random.default_rng(3)
    q_true = np.array([0.0, 0.7, 1.1, 2.0, 2.4])
    m = len(q_true)
    c = np.zeros((m, m))
    for i in range(m):
        for j in range(m):
            if i != j:
                c[i, j] = rng.binomial(40, norm.cdf((q_true[i] - q_true[j]) / 1.4826))
    c = np.triu(c) + np.tril(40 - c.T, -1)  # c[i, j] + c[j, i] = 40 comparisons per pair
    np.fill_diagonal(c, 0)

    def nll(q: np.ndarray) -> float:
        qq = np.concatenate([[0.0], q])
        return -float((c * norm.logcdf((qq[:, None] - qq[None, :]) / 1.4826)).sum())

    ref = np.concatenate([[0.0], minimize(nll, np.zeros(m - 1), method="BFGS", options={"gtol": 1e-10}).x])
    ours = fit_scores(c, model="thurstone", prior_sd=np.inf)
    np.testing.assert_allclose(ours - ours[0], ref, atol=1e-4)
    # and the JOD convention: 1 JOD difference = 75% preference
    assert float(win_probability(np.array(1.0), "thurstone")) == pytest.approx(0.75, abs=1e-12)


def test_per_scene_ranking_of_a_single_scene_study_has_observer_intervals() -> None:
    """The published-study case: --by dataset where each dataset is one scene judged by many observers. Each
    per-scene interval resamples observers (as pwcmp's observer bootstrap), about 1 JOD wide here, not 0."""
    rng = np.random.default_rng(9)
    rows = []
    for scene in range(3):
        for obs in range(15):
            for i in range(4):
                for j in range(i + 1, 4):
                    d = STRENGTHS[i] - STRENGTHS[j] + rng.normal(0, 0.4)
                    won = rng.random() < win_probability(np.array(d), "thurstone")
                    rows.append((f"s{scene}", f"o{obs}", f"m{i}", f"m{j}", 1.0 if won else 0.0))
    df = pd.DataFrame(rows, columns=["scene", "obs", "a", "b", "o"])
    votes = Votes.from_arrays(df["a"], df["b"], df["o"], scene=df["scene"], dataset=df["scene"],
                              annotator=df["obs"])
    t = rank_methods(votes, model="thurstone", by_dataset=True, bootstrap=500, seed=0).table
    per = t[t["dataset"] != "all"]
    assert (per["resampled"] == "annotators").all() and (per["n_annotators"] == 15).all()
    width = (per["ci_high"] - per["ci_low"]).to_numpy()
    assert (width > 0.4).all() and (width < 2.5).all()
    assert per["ci_note"].str.contains("one scene").all()


# ---------------------------------------------------------------------------------------------------
# 2AFC agreement when many pairs share a scene (and annotators differ in how well they see)

def _agreement_world(rng: np.random.Generator, n_scenes: int, pairs_per_scene: int, n_annot: int,
                     votes_per_pair: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.DataFrame]:
    """Per pair: latent preference ``mu = scene effect + pair effect``; the metric sees ``mu`` plus noise whose
    sd is the scene's (some scenes fool the metric: pairs of a scene agree together); annotator ``j`` votes a
    with probability ``logistic(skill_j * mu / 0.6)`` (skill lognormal: one person's votes agree together)."""
    n = n_scenes * pairs_per_scene
    scene = np.repeat(np.arange(n_scenes), pairs_per_scene)
    mu = rng.normal(0, 0.5, n_scenes)[scene] + rng.normal(0, 1.0, n)
    metric = mu + rng.normal(size=n) * np.exp(rng.normal(-0.3, 0.8, n_scenes))[scene]
    skill = np.exp(rng.normal(0, 0.7, n_annot))
    who = rng.integers(0, n_annot, (n, votes_per_pair))
    vote_a = rng.random((n, votes_per_pair)) < 1 / (1 + np.exp(-skill[who] * mu[:, None] / 0.6))
    cells = pd.DataFrame({"pair": np.repeat(np.arange(n), votes_per_pair), "annotator": who.ravel(),
                          "n_a": vote_a.ravel().astype(int), "n_b": (~vote_a).ravel().astype(int)})
    cells = cells.groupby(["pair", "annotator"], as_index=False)[["n_a", "n_b"]].sum()
    return metric, scene, vote_a.sum(1), cells


def _agreement_truth(seed: int = 123, n: int = 2_000_000) -> float:
    """E over scenes, pairs and annotators of P(a vote agrees with the metric), by Monte Carlo (sd < 4e-4)."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(0, 0.5, n) + rng.normal(0, 1.0, n)
    metric = mu + rng.normal(size=n) * np.exp(rng.normal(-0.3, 0.8, n))
    p_a = 1 / (1 + np.exp(-np.exp(rng.normal(0, 0.7, n)) * mu / 0.6))
    return float(np.mean(np.where(metric > 0, p_a, 1 - p_a)))


def test_2afc_agreement_intervals_cover_the_truth_when_pairs_share_scenes() -> None:
    from clipscore_sr.human.agreement import agreement_from_scores

    truth = _agreement_truth()
    rng = np.random.default_rng(11)
    hits, hits_pairs_only, label = [], [], ""
    for r in range(200):
        metric, scene, n_a, cells = _agreement_world(rng, 25, 12, 15, 3)
        kw = dict(higher_is_better=True, bootstrap=400, seed=r)
        t = agreement_from_scores({"m": metric}, {"m": np.zeros(len(metric))}, n_a, 3 - n_a, scenes=scene,
                                  annotator_votes=cells, **kw)
        row = t[t["dataset"] == "all"].iloc[0]
        hits.append(row["ci_low"] <= truth <= row["ci_high"])
        label = row["resampled"]
        if r < 100:  # the old bootstrap over pairs ignores that pairs share scenes and annotators
            t0 = agreement_from_scores({"m": metric}, {"m": np.zeros(len(metric))}, n_a, 3 - n_a, **kw)
            row0 = t0[t0["dataset"] == "all"].iloc[0]
            hits_pairs_only.append(row0["ci_low"] <= truth <= row0["ci_high"])
    assert label == "scenes x annotators"
    assert 0.92 <= np.mean(hits) <= 0.98, np.mean(hits)
    assert np.mean(hits_pairs_only) < 0.9, np.mean(hits_pairs_only)


def test_krippendorff_alpha_bootstrap_interval_covers_the_population_alpha() -> None:
    """Units judged by every coder; coders differ in skill (their values agree together): the two-way interval
    (units x annotators) covers the population alpha (a 20,000 x 200 sample) about 95% of the time."""
    from clipscore_sr.human.reliability import alpha_bootstrap, krippendorff_alpha_nominal

    def world(rng: np.random.Generator, n_units: int, n_coders: int) -> np.ndarray:
        p = rng.beta(2, 2, n_units)
        skill = rng.uniform(0.5, 1.0, n_coders)
        truth = (p > 0.5).astype(int)[None, :]
        return np.where(rng.random((n_coders, n_units)) < skill[:, None], truth, rng.integers(0, 2, (n_coders, n_units)))

    big = world(np.random.default_rng(5), 20000, 200)
    pop = krippendorff_alpha_nominal(np.tile(np.arange(20000), 200), big.ravel())[0]
    n_units, n_coders = 60, 8
    units, coders = np.tile(np.arange(n_units), n_coders), np.repeat(np.arange(n_coders), n_units)
    rng = np.random.default_rng(99)
    hits = []
    for r in range(150):
        lo, hi, label = alpha_bootstrap(units, coders, world(rng, n_units, n_coders).ravel(), bootstrap=400, seed=r)
        hits.append(lo <= pop <= hi)
    assert label == "60 units x 8 annotators"  # what was resampled, and how many of each
    assert 0.92 <= np.mean(hits) <= 0.99, np.mean(hits)
