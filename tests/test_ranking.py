"""`srmetrics rank`: Bradley-Terry / Thurstone / Davidson fits against independent references, exact counts,
scene bootstrap (recovery and coverage on SIMULATED votes, never human), invariances, bad input, the CLI."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from clipscore_sr.cli import main
from clipscore_sr.errors import RankingError
from clipscore_sr.human.fits import ELO_BASE, ELO_SCALE, JOD_SCALE, fit_davidson, fit_scores
from clipscore_sr.human.ranking import RANKING_COLUMNS, rank_methods
from clipscore_sr.human.votes import Votes, simulate_votes, votes_from_judgements, win_matrix

EXAMPLE = Path(__file__).resolve().parents[1] / "judgements" / "example" / "judgements.csv"


def votes_of(df: pd.DataFrame) -> Votes:
    return Votes.from_arrays(df["a_method"], df["b_method"], df["choice"].map({"a": 1.0, "b": 0.0, "tie": 0.5}),
                             scene=df["gt"], dataset=df["dataset"])


def newton_reference(wins: np.ndarray, prior_sd: float) -> np.ndarray:
    """Plain float64 Newton loop from the definition: maximise sum W_kl log sigma(s_k - s_l) - |s|^2 / (2 sd^2)."""
    m = len(wins)
    s = np.zeros(m)
    for _ in range(500):
        g = -s / prior_sd ** 2
        h = -np.eye(m) / prior_sd ** 2
        for k in range(m):
            for j in range(m):
                if k == j:
                    continue
                p = 1.0 / (1.0 + math.exp(-(s[k] - s[j])))
                g[k] += wins[k, j] * (1 - p) - wins[j, k] * p
                c = (wins[k, j] + wins[j, k]) * p * (1 - p)
                h[k, k] -= c
                h[k, j] += c
        step = np.linalg.solve(h, g)
        s = s - step
        if np.abs(step).max() < 1e-13:
            break
    return s - s.mean()


def test_bt_matches_newton_loop_and_choix() -> None:
    choix = pytest.importorskip("choix")
    df = simulate_votes([-1.0, -0.3, 0.0, 0.4, 1.2], 600, 40, seed=3)
    v = votes_of(df)
    wins, _, split = win_matrix(v.a, v.b, v.outcome, len(v.methods))
    for sd in (10.0, 1.0):
        ours = fit_scores(split, prior_sd=sd)
        np.testing.assert_allclose(ours, newton_reference(wins, sd), atol=1e-9)
        data = [(k, j) for k in range(5) for j in range(5) for _ in range(int(wins[k, j]))]
        c = choix.opt_pairwise(5, data, alpha=1.0 / (2 * sd ** 2), tol=1e-12)
        np.testing.assert_allclose(ours, c - c.mean(), atol=1e-6)


def test_mle_without_prior_matches_expected_wins() -> None:
    df = simulate_votes([-0.5, 0.0, 0.7, 1.0], 800, 30, seed=5)
    v = votes_of(df)
    wins, _, _ = win_matrix(v.a, v.b, v.outcome, 4)
    s = fit_scores(wins, prior_sd=math.inf)
    n = wins + wins.T
    p = 1 / (1 + np.exp(-(s[:, None] - s[None, :])))
    np.testing.assert_allclose((n * p).sum(1), wins.sum(1), atol=1e-8)  # the likelihood equations
    assert abs(s.sum()) < 1e-12


def test_all_wins_stay_finite_with_the_prior() -> None:
    wins = np.array([[0.0, 5.0, 5.0], [0.0, 0.0, 5.0], [0.0, 0.0, 0.0]])
    s = fit_scores(wins)
    assert np.isfinite(s).all() and s[0] > s[1] > s[2]
    np.testing.assert_allclose(s, newton_reference(wins, 10.0), atol=1e-9)


def test_thurstone_jod_and_reference() -> None:
    from scipy.optimize import minimize
    from scipy.stats import norm

    # two methods, 75% preference: exactly 1 JOD apart (no prior)
    s = fit_scores(np.array([[0.0, 75.0], [25.0, 0.0]]), model="thurstone", prior_sd=math.inf)
    assert s[0] - s[1] == pytest.approx(1.0, abs=1e-9)
    assert norm.cdf(1.0 / JOD_SCALE) == pytest.approx(0.75, abs=1e-12)
    df = simulate_votes([-1.0, 0.0, 0.5, 1.5], 500, 20, seed=2, model="thurstone")
    v = votes_of(df)
    _, _, split = win_matrix(v.a, v.b, v.outcome, 4)

    def nll(x: np.ndarray) -> float:
        d = (x[:, None] - x[None, :]) / JOD_SCALE
        return -(split * norm.logcdf(d)).sum() + (x ** 2).sum() / (2 * 10.0 ** 2)

    ref = minimize(nll, np.zeros(4), method="BFGS", options={"gtol": 1e-10}).x
    np.testing.assert_allclose(fit_scores(split, model="thurstone"), ref - ref.mean(), atol=1e-5)


def test_davidson_matches_direct_likelihood() -> None:
    from scipy.optimize import minimize

    df = simulate_votes([-1.0, 0.0, 0.8], 900, 30, seed=4, tie_rate=0.2)
    v = votes_of(df)
    wins, ties, _ = win_matrix(v.a, v.b, v.outcome, 3)

    def nll(x: np.ndarray) -> float:
        s, nu = x[:3], math.exp(x[3])
        ll = 0.0
        for k in range(3):
            for j in range(3):
                if k != j:
                    pk, pj = math.exp(s[k]), math.exp(s[j])
                    den = pk + pj + nu * math.sqrt(pk * pj)
                    ll += wins[k, j] * math.log(pk / den) + 0.5 * ties[k, j] * math.log(nu * math.sqrt(pk * pj) / den)
        return -ll + (s ** 2).sum() / 200.0

    ref = minimize(nll, np.zeros(4), method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 20000}).x
    s, nu = fit_davidson(wins, ties)
    np.testing.assert_allclose(s, ref[:3] - ref[:3].mean(), atol=1e-4)
    assert nu == pytest.approx(math.exp(ref[3]), rel=1e-4)


def test_exact_counts_table_and_elo() -> None:
    df = simulate_votes([0.0, 0.5, 1.0, 1.5], 400, 25, seed=7, tie_rate=0.1)
    r = rank_methods(votes_of(df), bootstrap=0)
    t = r.table.set_index("method")
    assert list(r.table.columns) == list(RANKING_COLUMNS)
    for mth in t.index:
        as_a, as_b = df[df.a_method == mth], df[df.b_method == mth]
        wins = (as_a.choice == "a").sum() + (as_b.choice == "b").sum()
        losses = (as_a.choice == "b").sum() + (as_b.choice == "a").sum()
        ties = (as_a.choice == "tie").sum() + (as_b.choice == "tie").sum()
        assert (t.loc[mth, "wins"], t.loc[mth, "losses"], t.loc[mth, "ties"]) == (wins, losses, ties)
        assert t.loc[mth, "n_votes"] == len(as_a) + len(as_b)
    np.testing.assert_allclose(t["elo"], ELO_SCALE * t["score"] + ELO_BASE)
    assert abs(t["score"].mean()) < 1e-12
    assert list(r.table["rank"]) == [1, 2, 3, 4] and r.table["score"].is_monotonic_decreasing
    wc = r.win_counts()
    pair = df[(df.a_method == "m03") & (df.b_method == "m00")]
    rev = df[(df.a_method == "m00") & (df.b_method == "m03")]
    assert wc.loc["m03", "m00"] == (pair.choice == "a").sum() + (rev.choice == "b").sum()
    p = r.pairs.set_index(["row", "col"])
    assert p.loc[("m03", "m00"), "p_beats"] == pytest.approx(1 / (1 + math.exp(-p.loc[("m03", "m00"), "diff"])))


def test_invariant_to_row_order_and_ab_swap() -> None:
    df = simulate_votes([-0.4, 0.1, 0.3, 0.9, 1.3], 700, 50, seed=11, tie_rate=0.1, datasets=2)
    base = rank_methods(votes_of(df), bootstrap=100, seed=3, by_dataset=True).table
    shuffled = df.sample(frac=1.0, random_state=1).reset_index(drop=True)
    swap = shuffled.index % 2 == 0
    shuffled.loc[swap, ["a_method", "b_method"]] = shuffled.loc[swap, ["b_method", "a_method"]].to_numpy()
    shuffled.loc[swap, "choice"] = shuffled.loc[swap, "choice"].map({"a": "b", "b": "a", "tie": "tie"})
    other = rank_methods(votes_of(shuffled), bootstrap=100, seed=3, by_dataset=True).table
    pd.testing.assert_frame_equal(base, other, check_exact=False, atol=1e-9, rtol=0)


@pytest.mark.slow
def test_recovery_and_ci_coverage_on_simulated_votes() -> None:
    """Known strengths, independent votes: 40 seeded studies x 5 methods; the 95% scene-bootstrap CIs of the
    centred scores cover the truth in 0.90-0.99 of the 200 intervals (binomial sd at 0.95: 0.015)."""
    strengths = np.array([-1.0, -0.4, 0.0, 0.5, 0.9])
    true = strengths - strengths.mean()
    covered = total = 0
    errs = []
    for seed in range(40):
        df = simulate_votes(strengths, 1500, 300, seed=seed)
        t = rank_methods(votes_of(df), bootstrap=300, seed=seed).table.set_index("method").loc[
            [f"m{k:02d}" for k in range(5)]]
        covered += int(((t["ci_low"] <= true) & (true <= t["ci_high"])).sum())
        total += 5
        errs.append(t["score"].to_numpy() - true)
    coverage = covered / total
    assert 0.90 <= coverage <= 0.99, coverage
    assert np.abs(np.mean(errs, axis=0)).max() < 0.03  # unbiased within 0.03 logit


def test_scene_bootstrap_widens_cis_for_correlated_votes() -> None:
    # with a strong per-scene effect, votes on one scene are correlated: resampling scenes must give wider CIs
    df = simulate_votes([0.0, 0.5, 1.0], 3000, 30, seed=1, scene_sd=1.0)
    v = votes_of(df)
    scenes = rank_methods(v, bootstrap=300).table
    per_vote = Votes.from_arrays(df["a_method"], df["b_method"], (df["choice"] == "a").astype(float),
                                 scene=np.arange(len(df)))
    votes_ci = rank_methods(per_vote, bootstrap=300).table
    w_s = (scenes["ci_high"] - scenes["ci_low"]).mean()
    w_v = (votes_ci["ci_high"] - votes_ci["ci_low"]).mean()
    assert w_s > 1.5 * w_v
    np.testing.assert_allclose(scenes["score"], votes_ci["score"], atol=1e-12)


def test_by_dataset_and_pooled() -> None:
    df = simulate_votes([0.0, 1.0, 2.0], 600, 40, seed=2, datasets=2)
    r = rank_methods(votes_of(df), bootstrap=50, by_dataset=True)
    assert list(dict.fromkeys(r.table["dataset"])) == ["sim0", "sim1", "all"]
    sub = df[df.dataset == "sim0"]
    alone = rank_methods(votes_of(sub), bootstrap=0).table.set_index("method")["score"]
    got = r.table[r.table.dataset == "sim0"].set_index("method")["score"]
    np.testing.assert_allclose(got.loc[alone.index], alone, atol=1e-12)
    assert r.table[r.table.dataset == "all"]["n_votes"].sum() == 2 * len(df)


def judgement_frame(rows: list[tuple[str, str, str, str]], **extra: list) -> pd.DataFrame:
    """rows: (gt, a_method, b_method, choice)."""
    df = pd.DataFrame({
        "pair_id": [f"p{i}" for i in range(len(rows))], "dataset": "d",
        "gt": [r[0] for r in rows], "a": [f"{r[0]}-{r[1]}.png" for r in rows],
        "b": [f"{r[0]}-{r[2]}.png" for r in rows], "choice": [r[3] for r in rows],
        "a_method": [r[1] for r in rows], "b_method": [r[2] for r in rows]})
    for k, v in extra.items():
        df[k] = v
    return df


def test_bad_inputs_give_one_line_errors() -> None:
    ok = [("g1", "x", "y", "a"), ("g1", "y", "z", "b"), ("g2", "x", "z", "a")]
    no_methods = judgement_frame(ok).drop(columns=["a_method", "b_method"])
    with pytest.raises(RankingError, match="a_method, b_method"):
        votes_from_judgements(no_methods)
    bad = judgement_frame(ok)
    bad.loc[1, "b_method"] = ""
    with pytest.raises(RankingError, match=r"3: \[b_method\] empty 'b_method'.*--skip-invalid"):
        votes_from_judgements(bad)
    v = votes_from_judgements(bad, skip_invalid=True)
    assert len(v) == 2 and v.info["n_invalid"] == 1 and v.methods == ["x", "y", "z"]
    disc = judgement_frame([("g1", "x", "y", "a"), ("g1", "u", "w", "b")])
    with pytest.raises(RankingError, match=r"2 groups never compared.*\{u, w\} \| \{x, y\}"):
        rank_methods(disc, bootstrap=0)
    with pytest.raises(RankingError, match="only 1 method"):
        rank_methods(Votes.from_arrays(["x"], ["x"], [1.0]), bootstrap=0)
    ties = judgement_frame([("g1", "x", "y", "tie"), ("g2", "x", "y", "tie")])
    with pytest.raises(RankingError, match="all 2 vote.*ties.*--ties drop"):
        rank_methods(ties, ties="drop", bootstrap=0)
    some = judgement_frame([*ok, ("g3", "x", "y", "tie")])
    r = rank_methods(some, ties="drop", bootstrap=0)
    assert r.info["n_dropped_ties"] == 1 and r.table["ties"].sum() == 0
    with pytest.raises(Exception, match="davidson.*bt"):
        rank_methods(some, ties="davidson", model="thurstone")


def test_sentinel_and_repeat_trials_are_excluded() -> None:
    rows = [("g1", "x", "y", "a"), ("g1", "gt", "degraded", "a"), ("g2", "y", "x", "b"), ("g3", "x", "y", "a")]
    df = judgement_frame(rows, trial_kind=["real", "sentinel", "repeat", "real"], annotator=["u1"] * 4)
    v = votes_from_judgements(df)
    assert len(v) == 2 and v.methods == ["x", "y"]
    assert v.info["excluded_kinds"] == {"repeat": 1, "sentinel": 1}


def test_cli_rank_writes_tables_and_plot(tmp_path: Path) -> None:
    df = simulate_votes([0.0, 0.6, 1.4], 300, 20, seed=0, datasets=2)
    csv = tmp_path / "sim.csv"
    df.to_csv(csv, index=False)
    out, pairs, fig = tmp_path / "r.csv", tmp_path / "p.csv", tmp_path / "r.png"
    res = CliRunner().invoke(main, ["rank", str(csv), "-o", str(out), "--pairs-out", str(pairs), "--plot", str(fig),
                                    "--by", "dataset", "--bootstrap", "50"])
    assert res.exit_code == 0, res.output
    t = pd.read_csv(out)
    assert list(t.columns) == list(RANKING_COLUMNS) and set(t.dataset) == {"sim0", "sim1", "all"}
    assert t[t.dataset == "all"].iloc[0]["method"] == "m02"
    assert len(pd.read_csv(pairs)) == 3 * 6 and fig.stat().st_size > 0
    assert "rank  method" in res.output
    # bad input: one line, exit 2
    bad = tmp_path / "bad.csv"
    df.drop(columns=["a_method"]).to_csv(bad, index=False)
    res = CliRunner().invoke(main, ["rank", str(bad)])
    assert res.exit_code == 2
    err = res.output.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("Error:") and "a_method" in err[0]


def test_cli_rank_example_subset(tmp_path: Path) -> None:
    """The example set (constructed labels) is 4 disconnected groups: the error names them; one group ranks."""
    res = CliRunner().invoke(main, ["rank", str(EXAMPLE), "--bootstrap", "0"])
    assert res.exit_code == 2 and "4 groups never compared" in res.output and "{blur=0.7, blur=1, blur=1.4}" in res.output
    lines = [ln for ln in EXAMPLE.read_text().splitlines() if ln.startswith("pair_id") or ",blur=" in ln]
    sub = tmp_path / "blur.csv"
    sub.write_text("\n".join(lines) + "\n")
    res = CliRunner().invoke(main, ["rank", str(sub), "-o", str(tmp_path / "r.csv"), "--bootstrap", "20", "-q"])
    assert res.exit_code == 0, res.output
    t = pd.read_csv(tmp_path / "r.csv")
    assert list(t["method"]) == ["blur=0.7", "blur=1", "blur=1.4"]  # less blur is preferred by construction


def test_ranking_figure_is_deterministic(tmp_path: Path) -> None:
    from clipscore_sr.figures.ranking import ranking_figure

    r = rank_methods(votes_of(simulate_votes([0.0, 0.3, 1.0], 300, 20, seed=0)), bootstrap=50)
    a = ranking_figure(r.table, r.pairs, tmp_path / "a.svg")
    ranking_figure(r.table, r.pairs, tmp_path / "b.svg")
    assert (tmp_path / "a.svg").read_bytes() == (tmp_path / "b.svg").read_bytes()
    assert a["order"]["all"] == list(r.table["method"])


def test_a_method_that_won_every_vote_is_said_to_rest_on_the_prior() -> None:
    from clipscore_sr.human.ranking import format_ranking, rank_methods
    from clipscore_sr.human.votes import Votes

    rng = np.random.default_rng(0)
    a = np.array(["top"] * 20 + ["x"] * 20, dtype=object)
    b = np.array(["x"] * 10 + ["y"] * 10 + ["y"] * 20, dtype=object)
    won = np.concatenate([np.ones(20), (rng.random(20) < 0.6).astype(float)])
    r = rank_methods(Votes.from_arrays(a, b, won, scene=rng.integers(0, 5, 40), annotator=rng.integers(0, 3, 40)),
                     bootstrap=100, prior_sd=10)
    top = r.table[r.table["method"] == "top"].iloc[0]
    assert "top won all 20 of its votes: its score (and any interval) rests on the prior (--prior-sd 10)" in \
        top["ci_note"]
    assert "rests on the prior" not in r.table[r.table["method"] == "x"].iloc[0]["ci_note"]
    assert "(top won all 20 of its votes" in format_ranking(r)


def test_ranking_figure_says_no_interval_only_where_there_is_none(tmp_path) -> None:
    """A one-annotator study has intervals (over scenes) and a note: its panel must not read 'no interval'."""
    from clipscore_sr.figures.ranking import ranking_figure
    from clipscore_sr.human.ranking import rank_methods
    from clipscore_sr.human.votes import Votes

    rng = np.random.default_rng(1)
    a = rng.choice(["p", "q", "r"], 120)
    b = np.array([{"p": "q", "q": "r", "r": "p"}[x] for x in a], dtype=object)
    won = (rng.random(120) < 0.6).astype(float)
    one = rank_methods(Votes.from_arrays(a.astype(object), b, won, scene=rng.integers(0, 6, 120),
                                         annotator=np.zeros(120, int)), bootstrap=100)
    assert one.table["ci_note"].str.contains("interval over scenes only").all() and one.table["ci_low"].notna().all()
    assert ranking_figure(one.table, one.pairs, tmp_path / "one.png")["no_interval"] == []
    none = rank_methods(Votes.from_arrays(a.astype(object), b, won, scene=np.zeros(120, int),
                                          annotator=np.zeros(120, int)), bootstrap=100)
    assert ranking_figure(none.table, none.pairs, tmp_path / "none.png")["no_interval"] == ["all"]


def test_a_resample_without_a_methods_scenes_leaves_it_missing_not_at_the_prior_mean() -> None:
    from clipscore_sr.human.ranking import rank_methods
    from clipscore_sr.human.votes import Votes

    rng = np.random.default_rng(3)
    n = 600
    scene = rng.integers(0, 20, n)
    a = rng.choice(["p", "q", "r"], n).astype(object)
    b = np.array([{"p": "q", "q": "r", "r": "p"}[x] for x in a], dtype=object)
    rare = scene < 2  # method "z" is shown only on scenes 0 and 1
    b[rare] = "z"
    won = (rng.random(n) < 0.5).astype(float)
    r = rank_methods(Votes.from_arrays(a, b, won, scene=scene, annotator=rng.integers(0, 8, n)), bootstrap=300)
    j = list(r.table[r.table["dataset"] == "all"]["method"]).index("z")
    z = r.boot["all"][:, j]
    assert np.isnan(z).mean() > 0.05 and not (z == 0.0).any()  # (18/20)^20 = 12% of resamples draw neither scene
    row = r.table[r.table["method"] == "z"].iloc[0]
    assert np.isfinite(row["ci_low"]) and row["ci_low"] < row["score"] < row["ci_high"]
