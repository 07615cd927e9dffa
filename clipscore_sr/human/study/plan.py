"""``srmetrics study plan``: how many votes a study needs, balanced-random vs active design, by simulation.

Truth: method scores from assumed gaps between neighbouring methods (model units: JOD for Thurstone) or from a
pilot judgement file (the scores ``rank`` fits to it). Each simulated vote draws its annotator uniformly and adds
Gaussian scene and annotator effects (sd ``scene_sd``, ``annotator_sd``) to every method's score. The random design
draws a (scene, pair) cell uniformly among the least used scenes; the active design is
:class:`~.active.ActiveSampler`. At every checkpoint the pooled fit (the one ``rank`` makes) is compared with the
truth: ``ci_width`` (mean 95% Laplace-posterior interval width of the scores), ``p_neighbours`` (all neighbouring
methods correctly ordered), ``tau`` (Kendall's tau-b to the truth) and ``rmse`` (of the centred scores), averaged
over ``reps`` simulated studies. SIMULATED votes, never human.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..fits import fit_scores, win_probability
from ..ranking_agreement import kendall_tau_b
from .active import ActiveSampler

PLAN_COLUMNS = ("design", "votes", "ci_width", "p_neighbours", "tau", "rmse")


@dataclass
class World:
    """A simulated population: true scores, scene and annotator effects."""

    truth: np.ndarray
    scene_eff: np.ndarray
    annot_eff: np.ndarray
    model: str

    def vote(self, rng: np.random.Generator, sc: int, k: int, j: int) -> float:
        ann = rng.integers(0, len(self.annot_eff))
        d = (self.truth[k] - self.truth[j] + self.scene_eff[sc, k] - self.scene_eff[sc, j]
             + self.annot_eff[ann, k] - self.annot_eff[ann, j])
        return 1.0 if rng.random() < float(win_probability(np.array(d), self.model)) else 0.0


def make_world(truth: np.ndarray, n_scenes: int, n_annotators: int, rng: np.random.Generator, *,
               scene_sd: float = 0.3, annotator_sd: float = 0.3, model: str = "thurstone") -> World:
    m = len(truth)
    return World(np.asarray(truth, float), rng.normal(0, scene_sd, (n_scenes, m)),
                 rng.normal(0, annotator_sd, (n_annotators, m)), model)


def _metrics(wins: np.ndarray, truth: np.ndarray, model: str, prior_sd: float = 10.0) -> tuple[float, ...]:
    from .active import fisher_information

    s = fit_scores(wins, model=model, prior_sd=prior_sd)
    t = truth - truth.mean()
    m = len(s)
    f = fisher_information(s[:, None] - s[None, :], model)
    n = wins + wins.T
    h = -(n * f)
    h[np.diag_indices(m)] = (n * f).sum(1) + 1 / prior_sd ** 2
    centre = np.eye(m) - 1.0 / m  # the scores are centred: the variance of s - mean(s)
    sd = np.sqrt(np.clip(np.diag(centre @ np.linalg.inv(h) @ centre), 0, None))
    order = np.argsort(t)
    neighbours = bool((np.diff(s[order]) > 0).all())
    return (float(2 * 1.96 * sd.mean()), float(neighbours), float(kendall_tau_b(s, t)),
            float(np.sqrt(np.mean((s - t) ** 2))))


def simulate_design(world: World, design: str, checkpoints: Sequence[int], rng: np.random.Generator
                    ) -> list[tuple[float, ...]]:
    """Accuracy at each checkpoint (number of real votes) of one simulated study."""
    m, n_s = len(world.truth), world.scene_eff.shape[0]
    wins = np.zeros((m, m))
    out, done = [], 0
    sampler = ActiveSampler([str(k) for k in range(m)], [str(k) for k in range(n_s)], model=world.model,
                            seed=int(rng.integers(1 << 31))) if design == "active" else None
    count = np.zeros(n_s, np.int64)
    iu, ju = np.triu_indices(m, 1)
    for target in checkpoints:
        while done < target:
            if sampler is not None:
                ch = sampler.next_trial()
                k, j, sc = int(ch.a), int(ch.b), int(ch.scene)
                o = world.vote(rng, sc, k, j)
                sampler.record(ch, "a" if o else "b")
            else:
                low = np.flatnonzero(count == count.min())
                sc = int(rng.choice(low))
                p = int(rng.integers(len(iu)))
                k, j = (int(iu[p]), int(ju[p])) if rng.random() < 0.5 else (int(ju[p]), int(iu[p]))
                o = world.vote(rng, sc, k, j)
                count[sc] += 1
            wins[k, j] += o
            wins[j, k] += 1 - o
            done += 1
        out.append(_metrics(wins, world.truth, world.model))
    return out


def plan_study(truth: Sequence[float], n_scenes: int, n_annotators: int, checkpoints: Sequence[int], *,
               reps: int = 10, seed: int = 0, scene_sd: float = 0.3, annotator_sd: float = 0.3,
               model: str = "thurstone", designs: Sequence[str] = ("random", "active")) -> pd.DataFrame:
    """Mean accuracy of each design at each checkpoint (:data:`PLAN_COLUMNS`), ``reps`` studies each (the
    designs share the simulated worlds)."""
    rows = []
    for design in designs:
        acc = np.zeros((len(checkpoints), 4))
        for r in range(reps):
            rng = np.random.default_rng([seed, r])
            world = make_world(np.asarray(truth, float), n_scenes, n_annotators, rng, scene_sd=scene_sd,
                               annotator_sd=annotator_sd, model=model)
            acc += np.array(simulate_design(world, design, checkpoints, np.random.default_rng([seed, r, 1])))
        acc /= reps
        rows += [dict(design=design, votes=int(n), ci_width=a[0], p_neighbours=a[1], tau=a[2], rmse=a[3])
                 for n, a in zip(checkpoints, acc)]
    return pd.DataFrame(rows, columns=list(PLAN_COLUMNS))


def votes_needed(table: pd.DataFrame, target: str, value: float) -> dict[str, float]:
    """Per design, the first checkpoint whose ``target`` column reaches ``value`` (``ci_width``/``rmse``: at most;
    ``p_neighbours``/``tau``: at least); NaN when no checkpoint does."""
    out = {}
    for design, g in table.groupby("design", sort=False):
        ok = g[target] <= value if target in ("ci_width", "rmse") else g[target] >= value
        out[str(design)] = float(g.loc[ok, "votes"].iloc[0]) if ok.any() else float("nan")
    return out


def truth_from_pilot(path: str, model: str = "thurstone") -> tuple[list[str], np.ndarray]:
    """Methods and scores fitted to a pilot judgement file (the truth of the simulation)."""
    from ..ranking import rank_methods

    t = rank_methods(path, model=model, bootstrap=0).table
    t = t[t["dataset"] == "all"]
    return list(t["method"]), t["score"].to_numpy(float)


def format_plan(table: pd.DataFrame, target: str, value: float) -> str:
    lines = [table.to_string(index=False, float_format=lambda v: f"{v:.3f}")]
    need = votes_needed(table, target, value)
    for d, n in need.items():
        lines.append(f"{d}: {'not reached within the budget' if np.isnan(n) else f'{int(n)} votes'} to reach "
                     f"{target} {'<=' if target in ('ci_width', 'rmse') else '>='} {value:g}")
    return "\n".join(lines)


__all__ = ["PLAN_COLUMNS", "World", "format_plan", "make_world", "plan_study", "simulate_design", "truth_from_pilot",
           "votes_needed"]
