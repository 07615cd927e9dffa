"""``srmetrics study plan``: how many votes a study needs, balanced-random vs active design, by simulation.

Truth: method scores from assumed gaps between neighbouring methods (model units: JOD for Thurstone) or from a
pilot judgement file (the scores ``rank`` fits to it). Each simulated vote draws its annotator uniformly and adds
Gaussian scene and annotator effects (sd ``scene_sd``, ``annotator_sd``) to every method's score. Designs:
``random`` draws a pair uniformly and a scene uniformly among the least used scenes; ``balanced`` is the design
``study make`` writes (:func:`~.sampling.balanced_cells`: pair counts and scene counts differ by at most one);
``active`` is :class:`~.active.ActiveSampler` (``objective``); ``oracle`` knows the true scores and picks the pair
whose vote, at the true score differences, most lowers the summed variance of the centred scores (greedy
A-optimal: what knowing the scores is worth; not a strict bound at small budgets, where the fit's behaviour
matters). :func:`design_bound` gives the large-sample bound for the score variance.

At every checkpoint the pooled fit (the one ``rank`` makes) is compared with the truth: ``ci_width`` (mean 95%
Laplace-posterior interval width of the scores, votes taken as independent: ``rank``'s two-way bootstrap adds the
spread of scenes and annotators), ``p_neighbours`` (all neighbouring methods correctly ordered),
``tau`` (Kendall's tau-b to the truth) and ``rmse`` (of the centred scores), averaged over ``reps`` simulated
studies. The effects make the fitted scale shrink (the fit sees noise sd ``sqrt(c^2 + 2 scene_sd^2 + 2
annotator_sd^2)`` where it assumes ``c``), so ``rmse`` has a floor that no number of votes removes (about
0.10 / 0.14 / 0.22 JOD for 8 / 12 / 20 methods 0.5 JOD apart with sd 0.3 effects). SIMULATED votes, never human.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..fits import fit_scores, win_probability
from ..ranking_agreement import kendall_tau_b
from .active import BALANCE_ABOVE, ActiveSampler, fisher_information
from .sampling import balanced_cells

DESIGNS = ("random", "balanced", "active", "oracle")
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
    tau = kendall_tau_b(s, t)  # NaN when the fit ties every method: not ordered, counted as 0
    return (float(2 * 1.96 * sd.mean()), float(neighbours), float(tau) if np.isfinite(tau) else 0.0,
            float(np.sqrt(np.mean((s - t) ** 2))))


class _Oracle:
    """Greedy A-optimal choice with the Fisher information at the TRUE score differences (see the module
    docstring); the design prior as in :class:`~.active.ActiveSampler`."""

    def __init__(self, truth: np.ndarray, model: str, prior_sd: float = 2.0) -> None:
        m = len(truth)
        self.iu, self.ju = np.triu_indices(m, 1)
        self.f = fisher_information(truth[self.iu] - truth[self.ju], model)
        self.cov = np.eye(m) * prior_sd ** 2

    def pick(self, rng: np.random.Generator) -> tuple[int, int]:
        cx = self.cov[self.iu] - self.cov[self.ju]  # rows cov @ x, one per pair
        rows = np.arange(len(self.iu))
        v = cx[rows, self.iu] - cx[rows, self.ju]
        cc = cx - cx.mean(1, keepdims=True)
        p = int(np.argmax(self.f * (cc * cc).sum(1) / (1 + self.f * v) + rng.random(len(v)) * 1e-15))
        self.cov -= self.f[p] * np.outer(cx[p], cx[p]) / (1 + self.f[p] * v[p])
        return int(self.iu[p]), int(self.ju[p])


def _chooser(design: str, world: World, rng: np.random.Generator, objective: str,
             balance_above: float | None = BALANCE_ABOVE):
    """A function giving the next ``(scene, k, l, choice)`` of a design; ``choice`` (active only) gets the vote."""
    m, n_s = len(world.truth), world.scene_eff.shape[0]
    iu, ju = np.triu_indices(m, 1)
    count = np.zeros(n_s, np.int64)
    if design == "active":
        sampler = ActiveSampler([str(k) for k in range(m)], [str(k) for k in range(n_s)], model=world.model,
                                seed=int(rng.integers(1 << 31)), objective=objective, balance_above=balance_above)

        def nxt():
            ch = sampler.next_trial()
            return int(ch.scene), int(ch.a), int(ch.b), (sampler, ch)
        return nxt
    if design == "balanced":  # the order study make uses, after a seeded relabelling; again once all are used
        po, so = rng.permutation(len(iu)), rng.permutation(n_s)
        cells = (cell for _ in iter(int, 1) for cell in balanced_cells(len(iu), n_s))
    elif design == "oracle":
        oracle = _Oracle(world.truth, world.model)
    elif design != "random":
        raise ValueError(f"design {design!r}: one of {', '.join(DESIGNS)}")

    def nxt():
        if design == "balanced":
            p, c = next(cells)
            sc, k, j = int(so[c]), int(iu[po[p]]), int(ju[po[p]])
        else:
            sc = int(rng.choice(np.flatnonzero(count == count.min())))
            count[sc] += 1
            if design == "oracle":
                k, j = oracle.pick(rng)
            else:
                p = int(rng.integers(len(iu)))
                k, j = int(iu[p]), int(ju[p])
        return (sc, k, j, None) if rng.random() < 0.5 else (sc, j, k, None)
    return nxt


def simulate_design(world: World, design: str, checkpoints: Sequence[int], rng: np.random.Generator, *,
                    objective: str = "variance", balance_above: float | None = BALANCE_ABOVE
                    ) -> list[tuple[float, ...]]:
    """Accuracy at each checkpoint (number of real votes) of one simulated study (:data:`DESIGNS`; ``objective``
    and ``balance_above`` of the active design, :class:`~.active.ActiveSampler`)."""
    m = len(world.truth)
    wins = np.zeros((m, m))
    out, done = [], 0
    nxt = _chooser(design, world, rng, objective, balance_above)
    for target in checkpoints:
        while done < target:
            sc, k, j, ch = nxt()
            o = world.vote(rng, sc, k, j)
            if ch is not None:
                ch[0].record(ch[1], "a" if o else "b")
            wins[k, j] += o
            wins[j, k] += 1 - o
            done += 1
        out.append(_metrics(wins, world.truth, world.model))
    return out


def plan_study(truth: Sequence[float], n_scenes: int, n_annotators: int, checkpoints: Sequence[int], *,
               reps: int = 10, seed: int = 0, scene_sd: float = 0.3, annotator_sd: float = 0.3,
               model: str = "thurstone", designs: Sequence[str] = ("random", "active"), objective: str = "variance",
               per_rep: bool = False, balance_above: float | None = BALANCE_ABOVE) -> pd.DataFrame:
    """Mean accuracy of each design (:data:`DESIGNS`) at each checkpoint (:data:`PLAN_COLUMNS`), ``reps``
    studies each (the designs share the simulated worlds; ``objective`` of the active design); ``per_rep``: one
    row per study (column ``rep``) instead of the mean."""
    rows = []
    for design in designs:
        acc = []
        for r in range(reps):
            rng = np.random.default_rng([seed, r])
            world = make_world(np.asarray(truth, float), n_scenes, n_annotators, rng, scene_sd=scene_sd,
                               annotator_sd=annotator_sd, model=model)
            acc.append(simulate_design(world, design, checkpoints, np.random.default_rng([seed, r, 1]),
                                       objective=objective, balance_above=balance_above))
        per = np.array(acc) if per_rep else np.mean(acc, axis=0)[None]
        rows += [dict(design=design, votes=int(n), ci_width=a[0], p_neighbours=a[1], tau=a[2], rmse=a[3],
                      **({"rep": r} if per_rep else {}))
                 for r, run in enumerate(per) for n, a in zip(checkpoints, run)]
    return pd.DataFrame(rows, columns=list(PLAN_COLUMNS) + (["rep"] if per_rep else []))


LOWER_IS_BETTER = ("ci_width", "rmse")


def first_reach(votes: np.ndarray, values: np.ndarray, value: float, lower_is_better: bool, *,
                interpolate: bool = False) -> float:
    """The first vote count whose value reaches ``value`` (at most / at least), or with ``interpolate`` the count
    where the straight line from the checkpoint before reaches it; NaN when none does."""
    y, n = np.asarray(values, float), np.asarray(votes, float)
    ok = y <= value if lower_is_better else y >= value
    if not ok.any():
        return float("nan")
    i = int(np.argmax(ok))
    if i == 0:
        return float(n[0])
    frac = (value - y[i - 1]) / (y[i] - y[i - 1]) if interpolate and y[i] != y[i - 1] else 1.0
    return float(n[i - 1] + frac * (n[i] - n[i - 1]))


def votes_needed(table: pd.DataFrame, target: str, value: float, *, interpolate: bool = False) -> dict[str, float]:
    """Per design, the votes needed to reach ``value`` of ``target`` (``ci_width``/``rmse``: at most;
    ``p_neighbours``/``tau``: at least; :func:`first_reach`)."""
    return {str(d): first_reach(g["votes"], g[target], value, target in LOWER_IS_BETTER, interpolate=interpolate)
            for d, g in table.groupby("design", sort=False)}


def truth_from_pilot(path: str, model: str = "thurstone", notes: list[str] | None = None
                     ) -> tuple[list[str], np.ndarray]:
    """Methods and scores fitted to a pilot judgement file (the truth of the simulation). ``notes`` (a list)
    receives a line for each method that won or lost every pilot vote: its score is the prior's, not the data's."""
    from ..ranking import one_sided, rank_methods

    t = rank_methods(path, model=model, bootstrap=0).table
    t = t[t["dataset"] == "all"]
    if notes is not None:
        for r in t.itertuples():
            if len(t) > 1 and one_sided(r.wins, r.losses, r.ties):
                notes.append(f"{path}: {r.method} {'won' if r.wins else 'lost'} all {r.wins + r.losses} of its "
                             f"pilot votes, so its score ({r.score:+.2f}) comes from the fit's prior, not the votes: "
                             "the simulated gap to it is a guess")
    return list(t["method"]), t["score"].to_numpy(float)


def format_plan(table: pd.DataFrame, target: str, value: float) -> str:
    lines = [table.to_string(index=False, float_format=lambda v: f"{v:.3f}")]
    need = votes_needed(table, target, value)
    for d, n in need.items():
        lines.append(f"{d}: {f'not within {int(table.votes.max())}' if np.isnan(n) else int(n)} votes to reach "
                     f"{target} {'<=' if target in LOWER_IS_BETTER else '>='} {value:g}")
    return "\n".join(lines)


__all__ = ["DESIGNS", "LOWER_IS_BETTER", "PLAN_COLUMNS", "World", "first_reach", "format_plan",
           "make_world", "plan_study", "simulate_design", "truth_from_pilot", "votes_needed"]
