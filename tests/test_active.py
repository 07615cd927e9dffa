"""Active pair sampling (SIMULATED votes, never human): selection latency, the audit record, constraints,
replay on recorded votes, and ``srmetrics study plan``."""

from __future__ import annotations

import time

import numpy as np
import pytest
from click.testing import CliRunner

from clipscore_sr.human.ranking import win_probability
from clipscore_sr.human.study.active import ActiveSampler, replay


def _run(sampler: ActiveSampler, strengths: np.ndarray, n: int, rng: np.random.Generator) -> list[float]:
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        ch = sampler.next_trial()
        o = "a"
        if ch.kind == "real":
            k, j = sampler.methods.index(ch.a), sampler.methods.index(ch.b)
            o = "a" if rng.random() < float(win_probability(np.array(strengths[k] - strengths[j]), "thurstone")) else "b"
        sampler.record(ch, o)
        lat.append(time.perf_counter() - t0)
    return lat


def test_selection_and_update_latency_for_20_methods_and_500_scenes() -> None:
    m, n_s = 20, 500
    s = ActiveSampler([f"m{k:02d}" for k in range(m)], [f"s{k}" for k in range(n_s)], sentinels=0.05, repeats=0.05)
    lat = np.array(_run(s, np.linspace(0, 4, m), 600, np.random.default_rng(0))) * 1000
    assert np.percentile(lat, 99) < 50, np.percentile(lat, 99)


def test_every_choice_is_recorded_with_its_gain_and_constraints_hold() -> None:
    m, n_s = 6, 12
    s = ActiveSampler([f"m{k}" for k in range(m)], [f"s{k}" for k in range(n_s)], sentinels=0.1, repeats=0.1, gap=5)
    _run(s, np.arange(m) * 0.4, 300, np.random.default_rng(1))
    log = s.log_records()
    assert len(log) == 300
    real = [r for r in log if r["kind"] == "real"]
    assert all(np.isfinite(r["gain"]) and r["gain"] >= r["runner_up_gain"] - 1e-9 and r["n_candidates"] > 0
               for r in real)
    kinds = [r["kind"] for r in log]
    assert 25 <= kinds.count("sentinel") <= 35 and 20 <= kinds.count("repeat") <= 35
    for r in log:
        if r["kind"] == "repeat":
            src = log[r["repeat_of"]]
            assert src["kind"] == "real" and r["trial"] - src["trial"] >= 5 and (r["a"], r["b"]) == (src["b"], src["a"])
    assert s.scene_count.max() - s.scene_count.min() <= 2  # spread over scenes
    assert s.a_count.max() - s.a_count.min() <= 0.25 * s.a_count.mean() + 2  # sides balanced
    # same seed, same answers: same trials (replayable)
    s2 = ActiveSampler([f"m{k}" for k in range(m)], [f"s{k}" for k in range(n_s)], sentinels=0.1, repeats=0.1, gap=5)
    _run(s2, np.arange(m) * 0.4, 300, np.random.default_rng(1))
    assert s2.log_records() == log


def test_replay_picks_only_recorded_cells_and_takes_their_votes() -> None:
    m, n_s = 5, 4
    rng = np.random.default_rng(2)
    recorded = {(sc, k, j): [float(rng.random() < 0.6)] for sc in range(n_s) for k in range(m)
                for j in range(k + 1, m) if (sc + k + j) % 3}
    s = ActiveSampler([str(k) for k in range(m)], [str(x) for x in range(n_s)])
    left = {k: list(v) for k, v in recorded.items()}
    got = replay(s, left, 1000)
    assert len(got) == len(recorded) and not any(left.values())
    cells = [(int(c.scene), min(int(c.a), int(c.b)), max(int(c.a), int(c.b))) for c in s.log]
    assert sorted(cells) == sorted(recorded)


def test_study_plan_cli_prints_votes_needed_per_design(tmp_path) -> None:
    from clipscore_sr.cli import main

    res = CliRunner().invoke(main, ["study", "plan", "--methods", "5", "--gap", "0.6", "--scenes", "10",
                                    "--annotators", "4", "--budgets", "40,80,160", "--reps", "2",
                                    "-o", str(tmp_path / "plan.csv")])
    assert res.exit_code == 0, res.output
    assert "random:" in res.output and "active:" in res.output and "SIMULATED" in res.output
    assert (tmp_path / "plan.csv").is_file()
    bad = CliRunner().invoke(main, ["study", "plan"])
    assert bad.exit_code != 0 and "--methods" in bad.output


@pytest.mark.parametrize("model", ["thurstone", "bt"])
def test_fisher_information_matches_numerical_second_derivative(model: str) -> None:
    from clipscore_sr.human.study.active import fisher_information

    d, h = 0.7, 1e-4
    p = lambda x: float(win_probability(np.array(x), model))  # noqa: E731
    dp = (p(d + h) - p(d - h)) / (2 * h)
    assert fisher_information(np.array(d), model) == pytest.approx(dp * dp / (p(d) * (1 - p(d))), rel=1e-6)
