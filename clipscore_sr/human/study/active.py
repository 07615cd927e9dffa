"""Active pair sampling: the next trial maximises the expected information gain on the posterior of the method
scores (the model ``rank`` fits: Thurstone Case V in JOD, or Bradley-Terry), pooled and per scene.

Posterior (Laplace): the scores' penalised-ML estimate ``s`` (the fit ``rank`` makes, with a design prior
``N(0, sd^2)``, default sd 2 model units, so that early all-win pairs do not look settled; warm-started from the
previous estimate after each vote) with precision ``H = sum_votes f(d) x x^T + I / sd^2``, ``x = e_k - e_l``, ``f``
the Fisher information of one vote at the score difference ``d`` (BT ``p(1-p)``; Thurstone
``phi(z)^2 / (Phi(z)(1-Phi(z))) / c^2``, ``z = d / c``), averaged over the posterior of the pair's difference.
One more vote on pair (k, l) raises ``H`` by ``f x x^T``. Its pooled gain (``objective``):

- ``"variance"`` (default): the expected fall of the summed posterior variance of the centred scores,
  ``f |C H^-1 x|^2 / (1 + f x^T H^-1 x)`` (model units squared; the greedy A-optimal choice: the information
  that lowers the score errors and interval widths ``rank`` reports);
- ``"eig"``: the expected information gain (entropy fall), ``0.5 log(1 + f x^T H^-1 x)`` nats (the greedy
  D-optimal choice, as in ASAP). It favours close pairs more: with 12+ methods it orders neighbours with fewer
  votes, but leaves the ends of the scale loosely tied, so its scores are worse early (``bench_active.py``).

Per scene the same EIG with the scene's own votes (a scene-specific deviation with prior sd ``scene_sd`` around the
pooled scores). A candidate (scene, pair) scores ``gain_pooled + scene_weight * gain_scene``; with the default
``scene_weight = 0`` the pair is chosen on the pooled gain alone and the scene gain only chooses its scene (the
eligible scene where that pair is least known). A positive weight lets per-scene information compete with the
pooled ranking: per-scene gains do not shrink as the study grows (each scene gets few votes), so they soon
dominate and pull the design back towards uniform pairs, which costs pooled accuracy (see ``bench_active.py``).

Balanced phase: while :func:`design_bound` at the current estimate (refreshed every ``BOUND_EVERY`` = 10 real
votes, a function of the votes only) is above ``balance_above`` (default 0.85: even a design that knew the scores
would save under 15% of the votes), only the least-voted pairs are candidates, so pair counts stay within one as in
the balanced design and the gain only orders them. Greedy choices on a noisy early estimate cost more than they
save there: on pwcmp's real study (7 methods, bound 0.98) the greedy sampler needed 1.12-1.18x the votes' rmse of
random at 100-200 votes, with the phase 0.96-1.07x; with many or widely spread methods the estimate soon shows
the spread, the bound falls and the choice is greedy (``bench_active.py``). ``balance_above=None`` turns it off.

Constraints kept while maximising: only scenes with at most ``min(count) + spread`` trials so far (a minimum
spread over scenes; the minimum over scenes that still have a candidate); the side shown as ``a`` is the method
that has been ``a`` less often (sides stay balanced); sentinels and repeats are placed at the same rate as in the
balanced design (a deterministic schedule: trial ``t`` is the check kind that is a whole trial behind its share
``(t+1) f``; a repeat shows a real trial at least ``gap`` trials back, sides swapped).

Every choice is written to :attr:`ActiveSampler.log` (trial, scene, a, b, its gain, the pooled and scene parts,
the number of candidate cells, the best gain of any other pair the rules allowed, ``runner_up_gain``, NaN when
none, and the design ``bound`` then), so a study can be audited and replayed (:func:`replay`).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..fits import JOD_SCALE, fit_scores
from .manifest import StudyError

OBJECTIVES = ("eig", "variance")
BALANCE_ABOVE = 0.85  # keep pair counts balanced while the design bound at the estimate is above this
BOUND_EVERY = 10  # real votes between two evaluations of that bound
_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(7)  # nodes/weights for averages over a normal posterior
_GH_W = _GH_W / _GH_W.sum()


def fisher_information(d: np.ndarray, model: str) -> np.ndarray:
    """Fisher information of one vote about the score difference ``d`` (model units)."""
    from scipy.special import expit, ndtr

    if model == "bt":
        p = expit(d)
        return p * (1 - p)
    z = np.asarray(d) / JOD_SCALE
    p = np.clip(ndtr(z), 1e-12, 1 - 1e-12)
    phi = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    return phi * phi / (p * (1 - p)) / JOD_SCALE ** 2


def design_bound(truth: Sequence[float], model: str = "thurstone", iters: int = 300, *,
                 kind: str = "scores") -> float:
    """Large-sample votes ratio of the best design that knows ``truth`` to the design balanced over pairs: A-optimal
    pair frequencies at the true differences (multiplicative algorithm, ``w <- w sqrt(gradient)``) for the summed
    variance of the centred scores (``kind="scores"``: rmse, ci_width) or of the differences between neighbours in
    the true order (``"neighbours"``: what p_neighbours and tau depend on). Below 1 only because distant pairs carry
    little information; no design's variance can fall faster (an active design must first learn the scores)."""
    t = np.asarray(truth, float)
    m = len(t)
    iu, ju = np.triu_indices(m, 1)
    x = np.zeros((len(iu), m))
    x[np.arange(len(iu)), iu], x[np.arange(len(iu)), ju] = 1.0, -1.0
    f = np.maximum(fisher_information(t[iu] - t[ju], model), 1e-300)
    if kind == "scores":
        k = np.eye(m)
    elif kind == "neighbours":
        o = np.argsort(t)
        e = np.zeros((m - 1, m))
        e[np.arange(m - 1), o[1:]], e[np.arange(m - 1), o[:-1]] = 1.0, -1.0
        k = e.T @ e
    else:
        raise ValueError(f"kind {kind!r}: scores or neighbours")

    def crit(w: np.ndarray) -> tuple[float, np.ndarray]:
        cov = np.linalg.pinv((x.T * (w * f)) @ x)  # of the centred scores (the Laplacian's null space is 1)
        return float(np.trace(k @ cov)), f * np.einsum("pi,ij,pj->p", x, cov @ k @ cov, x)

    w = np.full(len(iu), 1.0 / len(iu))
    base = crit(w)[0]
    for _ in range(iters):
        w = w * np.sqrt(crit(w)[1])
        w /= w.sum()
    return crit(w)[0] / base


@dataclass
class Choice:
    """One selected trial and why (its expected gain, in the units of the objective; the design bound then)."""

    trial: int
    kind: str
    scene: str
    a: str
    b: str
    gain: float = float("nan")
    gain_pooled: float = float("nan")
    gain_scene: float = float("nan")
    n_candidates: int = 0
    runner_up_gain: float = float("nan")
    repeat_of: int = -1
    bound: float = float("nan")  # design bound at the estimate when chosen (pairs balanced while above the limit)


class ActiveSampler:
    """Chooses trials one at a time from the votes so far (see the module docstring)."""

    def __init__(self, methods: Sequence[str], scenes: Sequence[str], *, model: str = "thurstone",
                 prior_sd: float = 2.0, scene_sd: float = 0.5, scene_weight: float = 0.0,
                 spread: int = 1, sentinels: float = 0.0, repeats: float = 0.0, gap: int = 5, seed: int = 0,
                 allowed: np.ndarray | None = None, objective: str = "variance",
                 balance_above: float | None = BALANCE_ABOVE) -> None:
        self.methods, self.scenes = list(methods), list(scenes)
        m, n_s = len(self.methods), len(self.scenes)
        if m < 2 or n_s < 1:
            raise ValueError("need two methods and one scene")
        if objective not in OBJECTIVES:
            raise StudyError(f"objective {objective!r}: one of {', '.join(OBJECTIVES)}")
        self.model, self.prior_sd, self.scene_sd, self.scene_weight = model, prior_sd, scene_sd, scene_weight
        self.spread, self.sentinels, self.repeats, self.gap = spread, sentinels, repeats, gap
        self.objective, self.balance_above = objective, balance_above
        self.bound = 1.0  # design_bound at the estimate: 1 before any vote (every design alike)
        self.rng = np.random.default_rng(seed)
        self.iu, self.ju = np.triu_indices(m, 1)
        self.wins = np.zeros((m, m))  # pooled (k beat l)
        self.scene_votes = np.zeros((n_s, m, m))  # per scene, symmetric vote counts
        self.scene_count = np.zeros(n_s, np.int64)
        self.a_count = np.zeros(m, np.int64)
        self.s = np.zeros(m)
        self.allowed = allowed  # optional [n_scenes, n_pairs] mask (replay: only recorded cells)
        self.log: list[Choice] = []
        self._real: list[int] = []  # trial numbers of the real trials, ascending
        self._n_kind = {"sentinel": 0, "repeat": 0}
        self._refresh()

    # posterior ------------------------------------------------------------------------------------
    def _refresh(self) -> None:
        m = len(self.methods)
        self._refresh_pooled_only()
        hs = -(self.scene_votes * self._f)  # [S, m, m]
        diag = (self.scene_votes * self._f).sum(2) + 1.0 / self.scene_sd ** 2
        hs[:, np.arange(m), np.arange(m)] = diag
        cs = np.linalg.inv(hs)
        self.var_scene = cs[:, self.iu, self.iu] + cs[:, self.ju, self.ju] - 2 * cs[:, self.iu, self.ju]

    def _refresh_scene(self, sc: int) -> None:
        m = len(self.methods)
        v = self.scene_votes[sc] * self._f
        h = -v
        h[np.diag_indices(m)] = v.sum(1) + 1.0 / self.scene_sd ** 2
        c = np.linalg.inv(h)
        self.var_scene[sc] = c[self.iu, self.iu] + c[self.ju, self.ju] - 2 * c[self.iu, self.ju]

    def _refresh_pooled_only(self) -> None:
        m = len(self.methods)
        d = self.s[:, None] - self.s[None, :]
        self._f = fisher_information(d, self.model)
        n = self.wins + self.wins.T
        h = -(n * self._f)
        h[np.diag_indices(m)] = (n * self._f).sum(1) + 1.0 / self.prior_sd ** 2
        self.cov = np.linalg.inv(h)
        c = self.cov
        self.var_pooled = c[self.iu, self.iu] + c[self.ju, self.ju] - 2 * c[self.iu, self.ju]
        self._fpair = self._expected_f()

    def _expected_f(self) -> np.ndarray:
        """Fisher information of a vote on each pair averaged over the posterior of its difference (Gauss-Hermite,
        7 points): a plug-in at the estimate would call a pair with two lucky early wins 'known' for good."""
        d = (self.s[self.iu] - self.s[self.ju])[:, None] + np.sqrt(np.maximum(self.var_pooled, 0))[:, None] * _GH_X
        return fisher_information(d, self.model) @ _GH_W

    def gains(self) -> tuple[np.ndarray, np.ndarray]:
        """Expected gains ``(pooled [n_pairs], per scene [n_scenes, n_pairs])`` of one more vote (the pooled one
        in the units of :attr:`objective`, the per-scene one in nats)."""
        fv = self._fpair * self.var_pooled
        if self.objective == "variance":
            cx = self.cov[self.iu] - self.cov[self.ju]  # rows H^-1 x, one per pair
            cx -= cx.mean(1, keepdims=True)  # C H^-1 x: the centred scores
            gp = self._fpair * (cx * cx).sum(1) / (1 + fv)
        else:
            gp = 0.5 * np.log1p(fv)
        gs = 0.5 * np.log1p(self._fpair[None, :] * self.var_scene)
        return gp, gs

    # choosing -------------------------------------------------------------------------------------
    def _kind(self, t: int) -> str:
        deficit = {k: (t + 1) * f - self._n_kind[k] for k, f in (("sentinel", self.sentinels),
                                                                 ("repeat", self.repeats))}
        if not bisect_right(self._real, t - self.gap):
            deficit["repeat"] = 0.0  # nothing old enough to repeat yet
        kind = max(deficit, key=deficit.get)
        return kind if deficit[kind] >= 1.0 else "real"

    def next_trial(self) -> Choice:
        """The next trial (also appended to :attr:`log`)."""
        t = len(self.log)
        kind = self._kind(t)
        if kind == "sentinel":
            sc = int(np.argmin(self.scene_count + self.rng.random(len(self.scenes)) * 0.5))
            ch = Choice(t, "sentinel", self.scenes[sc], "gt", "degraded") if self.rng.random() < 0.5 else \
                Choice(t, "sentinel", self.scenes[sc], "degraded", "gt")
        elif kind == "repeat":
            src = self.log[self._real[int(self.rng.integers(bisect_right(self._real, t - self.gap)))]]
            ch = Choice(t, "repeat", src.scene, src.b, src.a, repeat_of=src.trial)
        else:
            ch = self._best(t)
            self._real.append(t)
        if kind != "real":
            self._n_kind[kind] += 1
        self.log.append(ch)
        return ch

    def _best(self, t: int) -> Choice:
        gp, gs = self.gains()
        ok = np.ones(gs.shape, bool) if self.allowed is None else np.array(self.allowed, bool)  # a copy
        has = ok.any(1)
        if not has.any():
            raise ValueError("no candidate trial left")
        ok &= (self.scene_count <= self.scene_count[has].min() + self.spread)[:, None]
        if self.balance_above is not None and self.bound > self.balance_above:  # little to gain: balanced pairs
            n_pair = (self.wins + self.wins.T)[self.iu, self.ju]
            ok &= (n_pair <= n_pair[ok.any(0)].min())[None, :]
        total = np.where(ok, gp[None, :] + self.scene_weight * gs, -np.inf)
        jitter = self.rng.random(total.shape) * 1e-12  # seeded tie-break
        by_pair = (total + jitter).max(0)
        p = int(np.argmax(by_pair))
        # its scene: the best total, ties (all of them when scene_weight = 0) broken by the scene gain
        col = total[:, p]
        tie = col >= col.max() - 1e-12
        sc = int(np.argmax(np.where(tie, gs[:, p] + jitter[:, p], -np.inf)))
        others = np.delete(by_pair, p)
        runner = float(others.max()) if others.size and np.isfinite(others.max()) else float("nan")
        k, j = int(self.iu[p]), int(self.ju[p])
        a, b = (k, j) if self.a_count[k] <= self.a_count[j] else (j, k)
        return Choice(t, "real", self.scenes[sc], self.methods[a], self.methods[b], gain=float(total[sc, p]),
                      gain_pooled=float(gp[p]), gain_scene=float(gs[sc, p]), n_candidates=int(ok.sum()),
                      runner_up_gain=runner, bound=float(self.bound))

    def record(self, choice: Choice, outcome: str) -> None:
        """The answer to a real trial (``a``, ``b`` or ``tie``) updates the posterior (other kinds are ignored)."""
        if choice.kind != "real":
            return
        k, j = self.methods.index(choice.a), self.methods.index(choice.b)
        sc = self.scenes.index(choice.scene)
        w = {"a": 1.0, "b": 0.0, "tie": 0.5}[outcome]
        self.wins[k, j] += w
        self.wins[j, k] += 1 - w
        self.scene_votes[sc, k, j] += 1
        self.scene_votes[sc, j, k] += 1
        self.scene_count[sc] += 1
        self.a_count[k] += 1
        self.s = fit_scores(self.wins, model=self.model, prior_sd=self.prior_sd, tol=1e-8, init=self.s)
        if self.balance_above is not None and self.scene_count.sum() % BOUND_EVERY == 0:  # a function of the votes
            self.bound = design_bound(self.s, self.model, iters=20)
        self._refresh_pooled_only()
        self._refresh_scene(sc)

    def copy(self) -> ActiveSampler:
        """An independent copy of the state: what a fresh sampler fed the same answers would be (arrays copied;
        the log's records are shared, they never change)."""
        import copy

        new = copy.copy(self)
        for k, v in vars(self).items():
            if isinstance(v, np.ndarray):
                setattr(new, k, v.copy())
        new.log, new._real, new._n_kind, new.rng = list(self.log), list(self._real), dict(self._n_kind), \
            copy.deepcopy(self.rng)
        return new

    def log_records(self) -> list[dict[str, Any]]:
        return [asdict(c) for c in self.log]


def replay(sampler: ActiveSampler, recorded: dict[tuple[int, int, int], list[float]], n: int) -> list[float]:
    """Replay an active study on a recorded full design: the sampler may pick only (scene, k, l) cells with
    recorded votes left (``recorded[(scene, k, l)]``: outcomes for k, consumed in order); returns the outcomes."""
    pair_index = {(int(k), int(j)): p for p, (k, j) in enumerate(zip(sampler.iu, sampler.ju))}
    left = np.zeros((len(sampler.scenes), len(sampler.iu)), bool)
    for (sc, k, j), v in recorded.items():
        left[sc, pair_index[min(k, j), max(k, j)]] |= bool(v)
    got = []
    for _ in range(n):
        if not left.any():
            break
        sampler.allowed = left
        ch = sampler._best(len(sampler.log))
        sampler.log.append(ch)
        k, j, sc = sampler.methods.index(ch.a), sampler.methods.index(ch.b), sampler.scenes.index(ch.scene)
        key = (sc, min(k, j), max(k, j))
        o = recorded[key].pop(0)
        if not recorded[key]:
            left[sc, pair_index[key[1:]]] = False
        o = o if k == key[1] else 1 - o
        sampler.record(ch, "a" if o == 1 else "b" if o == 0 else "tie")
        got.append(o)
    return got


__all__ = ["OBJECTIVES", "ActiveSampler", "Choice", "design_bound", "fisher_information", "replay"]
