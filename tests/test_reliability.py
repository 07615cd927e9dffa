"""Annotator reliability (Krippendorff's alpha vs the `krippendorff` package, leave-one-out majority, sentinels,
repeats, dropping) and ranking agreement of metrics (tau-b vs scipy, synthetic metrics, the CLI). Votes here
are constructed or SIMULATED, never human."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from clipscore_sr.cli import main
from clipscore_sr.human.ranking_agreement import kendall_tau_b, ranking_agreement
from clipscore_sr.human.reliability import annotator_reliability, drop_annotators, krippendorff_alpha_nominal
from clipscore_sr.human.votes import Votes, simulate_votes

EXAMPLE = Path(__file__).resolve().parents[1] / "judgements" / "example"


def test_alpha_matches_krippendorff_package() -> None:
    kd = pytest.importorskip("krippendorff")
    rng = np.random.default_rng(0)
    for _ in range(5):
        n_coders, n_units = 4, 60
        truth = rng.integers(0, 3, n_units)
        data = np.where(rng.random((n_coders, n_units)) < 0.7, truth, rng.integers(0, 3, (n_coders, n_units)))
        data = data.astype(float)
        data[rng.random(data.shape) < 0.3] = np.nan  # missing values; some units have < 2 values
        ref = kd.alpha(reliability_data=data, level_of_measurement="nominal")
        units = [u for c in range(n_coders) for u in range(n_units) if not np.isnan(data[c, u])]
        values = [data[c, u] for c in range(n_coders) for u in range(n_units) if not np.isnan(data[c, u])]
        ours, n = krippendorff_alpha_nominal(units, values)
        assert ours == pytest.approx(ref, abs=1e-12)
        assert n == int(((~np.isnan(data)).sum(0) >= 2).sum())


def study_frame() -> pd.DataFrame:
    """4 annotators on 3 real pairs (u3 disagrees on everything), a sentinel each, a repeat each."""
    rows = []

    def add(ann: str, kind: str, gt: str, a: str, b: str, am: str, bm: str, choice: str) -> None:
        rows.append(dict(pair_id=f"{ann}-{len(rows)}", dataset="d", gt=gt, a=a, b=b, choice=choice, annotator=ann,
                         a_method=am, b_method=bm, trial_kind=kind))

    for ann, flip in (("u1", False), ("u2", False), ("u3", True), ("u4", False)):
        for k in range(3):
            # u2 sees the sides swapped: its 'b' is the same image as u1's 'a'
            if ann == "u2":
                add(ann, "real", f"g{k}.png", f"y{k}.png", f"x{k}.png", "y", "x", "b")
            else:
                add(ann, "real", f"g{k}.png", f"x{k}.png", f"y{k}.png", "x", "y", "b" if flip else "a")
        add(ann, "sentinel", "g9.png", "s_gt.png", "s_bad.png", "gt", "degraded", "b" if ann == "u3" else "a")
        # repeat of pair 0 with sides swapped; u1 consistent, u2 and u3 not
        add(ann, "repeat", "g0.png", "y0.png", "x0.png", "y", "x",
            {"u1": "b", "u2": "a", "u3": "b", "u4": "b"}[ann])
    return pd.DataFrame(rows)


def test_reliability_measures_by_hand() -> None:
    df = study_frame()
    rel = annotator_reliability(df)
    t = rel.annotators.set_index("annotator")
    assert list(t["n_votes"]) == [5, 5, 5, 5] and list(t["n_real"]) == [3, 3, 3, 3]
    # u1's others on each pair: u2 x, u3 y, u4 x -> majority x = u1's choice
    assert t.loc["u1", "loo_agreement"] == 1.0 and t.loc["u2", "loo_agreement"] == 1.0
    # for u3 the others (u1, u2, u4) agree with each other: u3 never matches
    assert t.loc["u3", "loo_agreement"] == 0.0 and t.loc["u3", "n_loo"] == 3
    assert list(t["sentinel_accuracy"]) == [1.0, 1.0, 0.0, 1.0]
    # u1 chose x0 (as 'a') then x0 again (as 'b' in the swapped repeat); u2 chose x0 then y0; u3 chose y0 then x0
    assert list(t["repeat_consistency"]) == [1.0, 0.0, 0.0, 1.0]
    # alpha by hand: 3 units x 4 coders, values (x, x, y, x) in each: D_o = 3*(16-10)/3 = 6, n = 12, n_x = 9, n_y = 3
    assert rel.alpha == pytest.approx(1 - 11 * 6 / (144 - 81 - 9))
    assert rel.n_alpha_units == 3


def test_thresholds_drop_annotators_and_count_votes() -> None:
    df = study_frame()
    rel = annotator_reliability(df, min_agreement=0.5, min_sentinel_accuracy=0.8)
    assert list(rel.dropped) == ["u3"] and "leave-one-out agreement 0.00 < 0.5" in rel.dropped["u3"]
    assert "sentinel accuracy 0.00 < 0.8" in rel.dropped["u3"] and rel.n_dropped_votes == 5
    kept = drop_annotators(df, list(rel.dropped))
    assert set(kept["annotator"]) == {"u1", "u2", "u4"} and len(kept) == 15
    assert annotator_reliability(df, min_agreement=0.0).dropped == {}


def test_cli_rank_reports_reliability_and_drops(tmp_path: Path) -> None:
    csv = tmp_path / "study.csv"
    study_frame().to_csv(csv, index=False)
    ann = tmp_path / "annotators.csv"
    res = CliRunner().invoke(main, ["rank", str(csv), "--bootstrap", "0", "--min-agreement", "0.5",
                                    "--annotators-out", str(ann)])
    assert res.exit_code == 0, res.output
    assert "excluded 3 repeat, 3 sentinel trial(s)" in res.output
    assert "dropped 5 vote(s) of 1 annotator(s): u3: leave-one-out agreement 0.00 < 0.5" in res.output
    assert "Krippendorff's alpha (nominal) -0.222 over 3 trial(s)" in res.output
    t = pd.read_csv(ann)
    assert list(t["dropped"]) == [False, False, True, False]


def test_kendall_tau_b_matches_scipy() -> None:
    from scipy.stats import kendalltau

    rng = np.random.default_rng(1)
    x = rng.integers(0, 4, (20, 7)).astype(float)  # with ties
    y = rng.integers(0, 4, (20, 7)).astype(float)
    ours = kendall_tau_b(x, y)
    for i in range(20):
        ref = kendalltau(x[i], y[i], variant="b").statistic
        assert (np.isnan(ref) and np.isnan(ours[i])) or ours[i] == pytest.approx(ref, abs=1e-12)


def test_ranking_agreement_of_synthetic_metrics() -> None:
    strengths = [0.0, 0.5, 1.0, 1.5]
    df = simulate_votes(strengths, 2000, 60, seed=0)
    votes = Votes.from_arrays(df["a_method"], df["b_method"], (df["choice"] == "a").astype(float), scene=df["gt"],
                              dataset=df["dataset"])
    rng = np.random.default_rng(0)
    rows = []
    for scene in sorted(set(df["gt"])):
        for k, s in enumerate(strengths):
            noise = rng.normal(0, 0.1)
            rows.append(dict(dataset="sim0", scene=scene, method=f"m{k:02d}", good=s + noise, reversed=-s + noise,
                             lower=10 - s + noise))
    vals = pd.DataFrame(rows)
    res = ranking_agreement(votes, vals, ["good", "reversed", "lower"],
                            {"good": True, "reversed": True, "lower": False}, bootstrap=100, seed=0)
    s = res.summary.set_index("metric")
    assert s.loc["good", "tau_b"] == 1.0 and s.loc["good", "pairs_concordant"] == 1.0
    assert s.loc["reversed", "tau_b"] == -1.0 and s.loc["reversed", "pairs_concordant"] == 0.0
    assert s.loc["lower", "tau_b"] == 1.0  # lower is better: direction respected
    assert s.loc["good", "tau_ci_low"] <= 1.0 <= s.loc["good", "tau_ci_high"]
    m = res.methods[res.methods.metric == "good"].set_index("method")
    assert list(m.sort_values("metric_rank").index) == ["m03", "m02", "m01", "m00"]
    np.testing.assert_allclose(m.loc["m03", "metric_mean"], vals[vals.method == "m03"]["good"].mean())


@pytest.mark.slow
def test_cli_agreement_ranking_on_example_subset(tmp_path: Path) -> None:
    """Constructed labels (less blur preferred): psnr orders the blur levels the same way (tau-b = 1)."""
    import shutil

    data = tmp_path / "ex"
    shutil.copytree(EXAMPLE, data)
    lines = [ln for ln in (data / "judgements.csv").read_text().splitlines()
             if ln.startswith("pair_id") or ",blur=" in ln]
    (data / "blur.csv").write_text("\n".join(lines) + "\n")
    out, fig = tmp_path / "ra.csv", tmp_path / "ra.png"
    res = CliRunner().invoke(main, ["agreement", str(data / "blur.csv"), "--metrics", "psnr", "--ranking",
                                    "--ranking-out", str(out), "--ranking-plot", str(fig), "--bootstrap", "50"])
    assert res.exit_code == 0, res.output
    assert "CIs (all): bootstrap over 3 scenes" in res.output  # what was resampled, and how many
    t = pd.read_csv(out)
    assert t.loc[0, "metric"] == "psnr" and t.loc[0, "tau_b"] == 1.0 and fig.stat().st_size > 0
    res = CliRunner().invoke(main, ["agreement", str(data / "blur.csv"), "--ranking-out", str(out)])
    assert res.exit_code == 2 and "need --ranking" in res.output


def test_alpha_summary_says_why_a_resampled_alpha_has_no_interval() -> None:
    import pandas as pd

    from clipscore_sr.human.reliability import Reliability

    r = Reliability(annotators=pd.DataFrame(), alpha=1.0, n_alpha_units=3, alpha_ci=(float("nan"), float("nan")),
                    alpha_resampled="3 scenes x 2 annotators")
    assert "no interval: every resample over 3 scenes x 2 annotators gives the same alpha" in r.summary()
    r.alpha_resampled = "none"
    assert "no interval: nothing to resample" in r.summary()
