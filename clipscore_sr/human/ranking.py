"""From pairwise votes to a ranking of methods: Bradley-Terry / Thurstone Case V, ties, scene bootstrap.

Conventions
-----------
* A vote compares method ``a_method`` (the row's ``a``) with ``b_method``; ``choice`` ``a``/``b``/``tie``
  refers to the row's own a/b (not the pair's canonical orientation).
* Bradley-Terry (``model="bt"``): ``P(k beats l) = 1 / (1 + exp(-(s_k - s_l)))``; ``score`` = ``s``, the
  natural-log strength, mean 0 over the methods. ``elo = 400 / ln(10) * score + 1000`` (a difference of 400
  Elo points is odds of 10:1).
* Thurstone Case V (``model="thurstone"``): ``P(k beats l) = Phi((s_k - s_l) / c)`` with
  ``c = 1 / Phi^-1(0.75) = 1.4826``, so ``score`` is in JOD: 1 JOD difference = 75% preference (as in pwcmp).
  ``elo`` is not defined (NaN).
* Prior: each score has an independent ``N(0, prior_sd^2)`` prior (default ``prior_sd = 10`` in the model's
  unit), i.e. the penalised likelihood ``loglik - sum(s^2) / (2 prior_sd^2)``. It is weak (a method with
  100 votes moves by < 1e-3 logit) but keeps a method that wins or loses every vote finite, and fixes the
  sum of the scores to 0 at the optimum. ``prior_sd = inf`` is the plain MLE (then the comparison graph
  must be strongly connected for a finite optimum).
* Ties: ``split`` (default) counts a tie as half a win for each side; ``drop`` removes tie votes (counted);
  ``davidson`` fits Davidson's (1970) model ``P(k beats l) = pi_k / (pi_k + pi_l + nu sqrt(pi_k pi_l))``,
  ``P(tie) = nu sqrt(pi_k pi_l) / (...)`` (BT only; ``nu`` is reported).
* Confidence intervals: two-way (scenes x annotators) bootstrap, :mod:`.resampling`: scenes are resampled
  within each dataset and annotators among those of the group, independently; a vote weighs the product of its
  scene's and its annotator's multiplicities. A factor with one unit present is held fixed; with one scene and one
  annotator there is no interval (``ci_note`` says why). Expanded percentile intervals (few units are not too
  narrow). Columns ``resampled`` (``scenes x annotators``, ``scenes``, ``annotators`` or ``none``), ``n_scenes``
  and ``n_annotators`` (0 = no annotator column) say what was resampled. ``numpy.random.default_rng(seed)``;
  every method, pair difference and p-value uses the same resamples. A scene is a (dataset, gt) combination.
* Pair table: for every ordered pair (row, col): ``p_beats`` = the model's P(row beats col) at the point
  estimate (Davidson: given no tie), ``diff = score_row - score_col`` with its CI, a two-sided bootstrap
  p-value, ``significant = p < 1 - confidence``, and the exact win/loss/tie counts of row against col.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from ..errors import JudgementError, SRMetricsError
from .judgements import OVERALL
from .resampling import (
    Design,
    cell_weights,
    design_of,
    percentile_ci,
    pigeonhole_correction,
    stratified_weights,
    unit_weights,
)

MODELS: tuple[str, ...] = ("bt", "thurstone")
TIES: tuple[str, ...] = ("split", "drop", "davidson")
JOD_SCALE = 1.482602218505602  # 1 / Phi^-1(0.75): Thurstone noise scale that makes 1 JOD = 75% preference
ELO_SCALE = 400.0 / math.log(10.0)
ELO_BASE = 1000.0
DEFAULT_PRIOR_SD = 10.0
TRIAL_KINDS_RANKED: tuple[str, ...] = ("real", "")
RANKING_COLUMNS: tuple[str, ...] = (
    "dataset", "method", "score", "ci_low", "ci_high", "elo", "wins", "losses", "ties", "n_votes", "rank",
    "model", "unit", "ties_mode", "nu", "n_scenes", "n_annotators", "resampled", "bootstrap", "seed", "confidence",
    "prior_sd", "ci_note",
)
PAIR_COLUMNS: tuple[str, ...] = (
    "dataset", "row", "col", "p_beats", "diff", "diff_ci_low", "diff_ci_high", "p_value", "significant",
    "wins", "losses", "ties", "n_votes",
)
_BOOT_CHUNK = 50  # resamples per chunk (memory: chunk x n_scenes float64 + chunk x m^2 counts)


class RankingError(JudgementError):
    """Votes cannot be turned into a ranking (no methods, one method, disconnected comparisons...)."""


# --------------------------------------------------------------------------------------------------
# Votes as arrays

@dataclass
class Votes:
    """Pairwise votes as arrays: method indices ``a``/``b`` into ``methods``, ``outcome`` (1 = a won,
    0 = b won, 0.5 = tie), ``scene`` indices into ``scenes``, ``dataset`` indices into ``datasets``
    (one per vote; a scene belongs to one dataset). ``info`` records what was excluded and why."""

    methods: list[str]
    a: np.ndarray
    b: np.ndarray
    outcome: np.ndarray
    scene: np.ndarray
    dataset: np.ndarray
    datasets: list[str]
    n_scenes: int
    info: dict[str, Any] = field(default_factory=dict)
    scene_keys: list[str] = field(default_factory=list)  # "dataset\x1fscene" of each scene index
    annotator: np.ndarray | None = None  # annotator index of each vote (None: unknown, one annotator)
    annotators: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.a)

    @classmethod
    def from_arrays(cls, a_method: Sequence[Any], b_method: Sequence[Any], outcome: Sequence[float],
                    scene: Sequence[Any] | None = None, dataset: Sequence[Any] | None = None,
                    annotator: Sequence[Any] | None = None) -> Votes:
        """Build from per-vote method names, outcomes (1/0/0.5), scene ids, dataset names and annotators."""
        am = np.asarray(a_method, dtype=object)
        bm = np.asarray(b_method, dtype=object)
        n = len(am)
        out = np.asarray(outcome, dtype=np.float64)
        if len(bm) != n or len(out) != n:
            raise RankingError(f"{n} a-methods, {len(bm)} b-methods and {len(out)} outcomes differ in length")
        if n and not np.isin(out, (0.0, 0.5, 1.0)).all():
            raise RankingError("outcomes must be 1 (a won), 0 (b won) or 0.5 (tie)")
        codes, uniq = pd.factorize(np.concatenate([am, bm]))
        names = [str(u) for u in uniq]
        order = sorted(range(len(names)), key=names.__getitem__)
        remap = np.empty(len(names), np.int64)
        remap[order] = np.arange(len(names))
        codes = remap[codes]
        ds = np.full(n, "default", dtype=object) if dataset is None else np.asarray(dataset, dtype=object)
        dcodes, dnames = pd.factorize(ds, sort=True)
        sc = np.zeros(n, np.int64) if scene is None else np.asarray(scene)
        scodes, snames = pd.factorize(sc, sort=True)  # sorted: resamples do not depend on the row order
        # scenes are per dataset: the same scene name in two datasets is two scenes
        key, first = pd.factorize(dcodes.astype(np.int64) * max(len(snames), 1) + scodes, sort=True)
        first = np.asarray(first, np.int64)
        dn = [str(d) for d in dnames]
        scene_keys = [f"{dn[k // max(len(snames), 1)]}\x1f{snames[k % max(len(snames), 1)]}" for k in first]
        acodes, anames = (None, []) if annotator is None else pd.factorize(np.asarray(annotator, dtype=object),
                                                                              sort=True)
        return cls(methods=[names[k] for k in order], a=codes[:n], b=codes[n:], outcome=out,
                   scene=key.astype(np.int64), dataset=dcodes.astype(np.int64), datasets=dn,
                   n_scenes=len(first), scene_keys=scene_keys,
                   annotator=None if acodes is None else acodes.astype(np.int64), annotators=[str(x) for x in anames])

    @property
    def n_annotators(self) -> int:
        return max(len(self.annotators), 1)

    def annotator_codes(self) -> np.ndarray:
        """Annotator index of each vote (all 0 when annotators are unknown)."""
        return np.zeros(len(self.a), np.int64) if self.annotator is None else self.annotator

    def subset(self, mask: np.ndarray) -> Votes:
        """The votes where ``mask`` holds, with methods and scenes renumbered (only those that remain)."""
        a, b = self.a[mask], self.b[mask]
        used = np.unique(np.concatenate([a, b]))
        remap = np.full(len(self.methods), -1, np.int64)
        remap[used] = np.arange(len(used))
        sc, s_new = np.unique(self.scene[mask], return_inverse=True)
        ann, names = None, []
        if self.annotator is not None:
            au, ann = np.unique(self.annotator[mask], return_inverse=True)
            names = [self.annotators[k] for k in au]
        return Votes(methods=[self.methods[k] for k in used], a=remap[a], b=remap[b], outcome=self.outcome[mask],
                     scene=s_new.astype(np.int64), dataset=self.dataset[mask], datasets=self.datasets,
                     n_scenes=len(sc), info=dict(self.info),
                     scene_keys=[self.scene_keys[k] for k in sc] if self.scene_keys else [],
                     annotator=None if ann is None else ann.astype(np.int64), annotators=names)


def load_method_judgements(
    judgements: pd.DataFrame | str | os.PathLike, *, skip_invalid: bool = False,
    root: str | os.PathLike | None = None, allow_outside_root: bool = False,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Validated judgement rows that name both methods (images are not opened), and ``info`` (rows read,
    rows dropped, problems).

    Needs ``a_method``/``b_method`` columns. A row with an empty method or with ``a_method == b_method``
    is a problem naming its line, as is any row :func:`~.judgements.validate_judgements` rejects; it is an
    error unless ``skip_invalid`` (then the row is dropped and counted; the other rows are kept).
    """
    from .judgements import Problem, read_judgements_csv, validate_judgements

    src = str(judgements) if not isinstance(judgements, pd.DataFrame) else "<judgements>"
    raw = judgements if isinstance(judgements, pd.DataFrame) else read_judgements_csv(judgements)
    missing = [c for c in ("a_method", "b_method") if c not in raw.columns]
    if missing:
        raise RankingError(f"{src}: no column(s) {', '.join(missing)}: ranking needs the method of each output "
                           f"(columns a_method, b_method; 'srmetrics study' writes them)")
    if not isinstance(judgements, pd.DataFrame):  # relative paths resolve against the CSV's folder; with
        raw.attrs["root"] = os.path.dirname(os.path.abspath(judgements))  # root=None a study's trusted_root applies
    report = validate_judgements(raw, root=root, check_images=False, source=src,
                                 allow_outside_root=allow_outside_root)
    problems = list(report.problems)
    df = report.judgements
    am = df["a_method"].astype(str).str.strip()
    bm = df["b_method"].astype(str).str.strip()
    bad = ((am == "") | (bm == "") | (am == bm)).to_numpy()
    for pos in np.flatnonzero(bad):
        col = "a_method" if am.iat[pos] == "" else "b_method"
        msg = (f"empty '{col}' (every ranked vote needs both methods)" if am.iat[pos] == "" or bm.iat[pos] == ""
               else f"a_method and b_method are both '{am.iat[pos]}' (a method cannot be ranked against itself)")
        problems.append(Problem(int(df["line"].iat[pos]), col, msg))
    problems.sort(key=lambda p: p.line)
    if problems and not skip_invalid:
        more = f" (+{len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise RankingError(f"{problems[0].format(src)}{more}; --skip-invalid ranks the other rows")
    out = df.loc[~bad].reset_index(drop=True)
    out["a_method"], out["b_method"] = am[~bad].to_numpy(), bm[~bad].to_numpy()
    info: dict[str, Any] = {"source": src, "n_rows": report.n_rows, "n_invalid": report.n_invalid + int(bad.sum()),
                            "problems": [p.format(src) for p in problems]}
    if out.empty:
        raise RankingError(f"{src}: no votes to rank" + (f" ({problems[0].format(src)})" if problems else ""))
    return out, info


def votes_from_frame(df: pd.DataFrame, info: dict[str, Any] | None = None, *,
                     kinds: Sequence[str] = TRIAL_KINDS_RANKED) -> Votes:
    """:class:`Votes` of validated judgement rows with methods (:func:`load_method_judgements`). With a
    ``trial_kind`` column only the ``kinds`` trials are kept (default: ``real``; sentinel/repeat trials are
    counted in ``info['excluded_kinds']``). The scene of a vote is its (dataset, gt)."""
    info = dict(info or {})
    src = info.get("source", "<judgements>")
    keep = np.ones(len(df), bool)
    info["excluded_kinds"] = {}
    if "trial_kind" in df.columns:
        kind = df["trial_kind"].astype(str).str.strip().str.lower()
        ok_kind = kind.isin([k.lower() for k in kinds]).to_numpy()
        info["excluded_kinds"] = {k: int(v) for k, v in kind[~ok_kind].value_counts().sort_index().items()}
        keep &= ok_kind
    df = df.loc[keep]
    if df.empty:
        raise RankingError(f"{src}: no votes to rank (trial kinds excluded: {info['excluded_kinds']})")
    choice = df["choice"].astype(str).str.lower().map({"a": 1.0, "b": 0.0, "tie": 0.5}).to_numpy()
    ann = None
    if "annotator" in df.columns:
        ann = df["annotator"].fillna("").astype(str).str.strip().to_numpy(dtype=object)
        if (ann == "").all():
            ann = None
    votes = Votes.from_arrays(df["a_method"].to_numpy(), df["b_method"].to_numpy(), choice,
                              scene=df["gt"].to_numpy(), dataset=df["dataset"].to_numpy(), annotator=ann)
    votes.info = info
    return votes


def votes_from_judgements(judgements: pd.DataFrame | str | os.PathLike, *, skip_invalid: bool = False,
                          kinds: Sequence[str] = TRIAL_KINDS_RANKED) -> Votes:
    """:func:`load_method_judgements` then :func:`votes_from_frame`."""
    df, info = load_method_judgements(judgements, skip_invalid=skip_invalid)
    return votes_from_frame(df, info, kinds=kinds)


# --------------------------------------------------------------------------------------------------
# Counts

def win_matrix(a: np.ndarray, b: np.ndarray, outcome: np.ndarray, n_methods: int,
               weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact counts ``(wins, ties)``, ``[m, m]`` each: ``wins[k, l]`` = votes where k beat l, ``ties[k, l]``
    = ties between k and l (symmetric); and ``split = wins + ties / 2``."""
    w = np.ones(len(a)) if weights is None else np.asarray(weights, np.float64)
    m = n_methods
    win_k = np.where(outcome == 1.0, a, b)
    lose_k = np.where(outcome == 1.0, b, a)
    strict = outcome != 0.5
    wins = np.bincount(win_k[strict] * m + lose_k[strict], weights=w[strict], minlength=m * m).reshape(m, m)
    tie = ~strict
    t = np.bincount(a[tie] * m + b[tie], weights=w[tie], minlength=m * m).reshape(m, m)
    ties = t + t.T
    return wins, ties, wins + ties / 2.0


def connected_groups(n_methods: int, pairs_compared: np.ndarray) -> list[np.ndarray]:
    """Connected components of the comparison graph (``pairs_compared``: ``[m, m]`` counts, > 0 = edge)."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    n, labels = connected_components(csr_matrix(pairs_compared > 0), directed=False)
    return [np.flatnonzero(labels == g) for g in range(n)]


def check_rankable(methods: Sequence[str], compared: np.ndarray, where: str = "") -> None:
    """One-line errors for a single method and for a disconnected comparison graph (naming the groups)."""
    tag = f"{where}: " if where else ""
    if len(methods) < 2:
        only = f" ({methods[0]})" if methods else ""
        raise RankingError(f"{tag}only {len(methods)} method{only}: a ranking needs votes between at least 2 methods")
    groups = connected_groups(len(methods), compared)
    if len(groups) > 1:
        shown = " | ".join("{" + ", ".join(methods[k] for k in g) + "}" for g in groups)
        raise RankingError(f"{tag}methods form {len(groups)} groups never compared with each other: {shown}; "
                           f"scores across groups are meaningless: rank each group separately or add votes between them")


# --------------------------------------------------------------------------------------------------
# Fitting (batched over bootstrap resamples)

def _link(d: np.ndarray, model: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """log F(d), its first and second derivative for the win probability F of the model."""
    from scipy.special import expit, log_expit, log_ndtr

    if model == "bt":
        p = expit(d)
        return log_expit(d), 1.0 - p, -p * (1.0 - p)
    z = d / JOD_SCALE
    logf = log_ndtr(z)
    r = np.exp(-0.5 * z * z - 0.5 * math.log(2 * math.pi) - logf)  # phi(z) / Phi(z), stable for z << 0
    return logf, r / JOD_SCALE, -(r * (z + r)) / JOD_SCALE ** 2


def fit_scores(wins: np.ndarray, *, model: str = "bt", prior_sd: float = DEFAULT_PRIOR_SD, tol: float = 1e-10,
               max_iter: int = 200) -> np.ndarray:
    """Penalised-ML scores from (fractional) win counts ``wins[..., k, l]`` (k beat l), batched over
    leading axes: ``[m, m] -> [m]``, ``[B, m, m] -> [B, m]``. Newton's method with steps capped at 2 units
    (the objective is concave); scores are centred to mean 0."""
    if model not in MODELS:
        raise SRMetricsError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
    w = np.asarray(wins, dtype=np.float64)
    single = w.ndim == 2
    if single:
        w = w[None]
    bsz, m, _ = w.shape
    lam = 0.0 if not np.isfinite(prior_sd) else 1.0 / prior_sd ** 2
    s = np.zeros((bsz, m))
    eye = np.eye(m)
    active = np.ones(bsz, bool)
    for _ in range(max_iter):
        sa, wa = s[active], w[active]
        d = sa[:, :, None] - sa[:, None, :]
        _, g, h = _link(d, model)
        a = wa * g
        grad = a.sum(-1) - a.sum(-2) - lam * sa
        c = wa * h
        c = c + np.swapaxes(c, -1, -2)
        hess = c.sum(-1)[:, :, None] * eye - c - lam * eye
        if lam == 0.0:  # fix the free translation: add -1/m on every entry (the gradient is orthogonal to it)
            hess = hess - 1.0 / m
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        big = np.abs(step).max(-1, keepdims=True)
        step = np.where(big > 2.0, step * (2.0 / np.maximum(big, 1e-300)), step)
        s[active] = sa - step
        done = big[:, 0] < tol
        idx = np.flatnonzero(active)
        active[idx[done]] = False
        if not active.any():
            break
    s -= s.mean(-1, keepdims=True)
    return s[0] if single else s


def _davidson_nll(x: np.ndarray, wins: np.ndarray, ties: np.ndarray, lam: float) -> tuple[float, np.ndarray]:
    m = wins.shape[0]
    s, theta = x[:m], x[m]
    nu = math.exp(theta)
    d = s[:, None] - s[None, :]
    dd = 2.0 * np.cosh(d / 2.0) + nu
    n = wins + wins.T + ties
    iu = np.triu_indices(m, 1)
    ll = (wins * d / 2.0).sum() - (n[iu] * np.log(dd[iu])).sum() + theta * ties[iu].sum()
    ll -= 0.5 * lam * (s ** 2).sum()
    g = ((wins - wins.T) / 2.0 - n * np.sinh(d / 2.0) / dd).sum(1) - lam * s
    g_theta = ties[iu].sum() - (n[iu] * nu / dd[iu]).sum()
    return -ll, -np.concatenate([g, [g_theta]])


def fit_davidson(wins: np.ndarray, ties: np.ndarray, *, prior_sd: float = DEFAULT_PRIOR_SD
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Davidson's tie model: ``(scores, nu)`` from strict wins ``[..., m, m]`` and symmetric tie counts;
    batched over leading axes; L-BFGS-B per fit, ``log nu`` bounded to [-20, 5]."""
    from scipy.optimize import minimize

    w = np.asarray(wins, np.float64)
    t = np.asarray(ties, np.float64)
    single = w.ndim == 2
    if single:
        w, t = w[None], t[None]
    bsz, m, _ = w.shape
    lam = 0.0 if not np.isfinite(prior_sd) else 1.0 / prior_sd ** 2
    scores = np.empty((bsz, m))
    nus = np.empty(bsz)
    bounds = [(None, None)] * m + [(-20.0, 5.0)]
    for i in range(bsz):
        res = minimize(_davidson_nll, np.zeros(m + 1), args=(w[i], t[i], lam), jac=True, method="L-BFGS-B",
                       bounds=bounds, options={"maxiter": 2000, "ftol": 1e-14, "gtol": 1e-9})
        scores[i] = res.x[:m] - res.x[:m].mean()
        nus[i] = math.exp(res.x[m])
    return (scores[0], nus[0]) if single else (scores, nus)


def win_probability(diff: np.ndarray, model: str = "bt") -> np.ndarray:
    """P(row beats col) from a score difference (BT logit or Thurstone JOD)."""
    from scipy.special import expit, ndtr

    return expit(diff) if model == "bt" else ndtr(np.asarray(diff) / JOD_SCALE)


# --------------------------------------------------------------------------------------------------
# Scene bootstrap

def scene_win_counts(votes: Votes, ties: str, rows: np.ndarray | None = None, n_rows: int | None = None
                     ) -> tuple[Any, Any]:
    """Sparse per-scene counts ``[n_scenes, m*m]``: (split or strict) wins, and ties (davidson only). With
    ``rows`` (one row index per vote) and ``n_rows``: per-row counts instead (e.g. (scene, annotator) cells)."""
    from scipy.sparse import csr_matrix

    m = len(votes.methods)
    out = votes.outcome
    keep = out != 0.5 if ties == "drop" else np.ones(len(out), bool)
    rows = votes.scene if rows is None else rows
    a, b, o, sc = votes.a[keep], votes.b[keep], out[keep], rows[keep]
    win_k = np.where(o >= 0.5, a, b)
    lose_k = np.where(o >= 0.5, b, a)
    shape = (votes.n_scenes if n_rows is None else n_rows, m * m)
    if ties == "davidson":
        strict = o != 0.5
        w = csr_matrix((np.ones(int(strict.sum())), (sc[strict], win_k[strict] * m + lose_k[strict])), shape=shape)
        tt = ~strict
        t = csr_matrix((np.ones(int(tt.sum())), (sc[tt], a[tt] * m + b[tt])), shape=shape)
        return w, t
    val = np.where(o == 0.5, 0.5, 1.0)
    # a split tie: half a win for each side
    rows_ = np.concatenate([sc, sc[o == 0.5]])
    cols = np.concatenate([win_k * m + lose_k, (lose_k * m + win_k)[o == 0.5]])
    vals = np.concatenate([val, np.full(int((o == 0.5).sum()), 0.5)])
    return csr_matrix((vals, (rows_, cols)), shape=shape), None


def vote_cells(votes: Votes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (scene, annotator) cell of each vote: ``(cell index per vote, scene of each cell, annotator of each
    cell)``; cells are numbered in sorted (scene, annotator) order."""
    ann = votes.annotator_codes()
    key = votes.scene.astype(np.int64) * votes.n_annotators + ann
    uniq, cell = np.unique(key, return_inverse=True)
    return cell.astype(np.int64), uniq // votes.n_annotators, uniq % votes.n_annotators


def scene_resample_weights(scene_dataset: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``[n_boot, n_scenes]`` multiplicities: scenes resampled with replacement within each dataset."""
    return stratified_weights(scene_dataset, n_boot, rng)


def group_design(votes: Votes, mask: np.ndarray, scene_ds: np.ndarray) -> Design:
    """Which factors the two-way bootstrap resamples for the votes in ``mask`` (see :mod:`.resampling`)."""
    scenes = np.unique(votes.scene[mask])
    n_ann = len(np.unique(votes.annotator[mask])) if votes.annotator is not None else 1
    d = design_of(scene_ds[scenes], n_ann)
    if votes.annotator is None:
        d = Design(d.n_scenes, 0, d.scenes, False)  # annotators unknown: say so
    return d


def group_annotator_weights(votes: Votes, mask: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``[n_boot, n_annotators]`` multiplicities: the annotators present in ``mask`` resampled among themselves
    (absent annotators weigh 0)."""
    present = np.unique(votes.annotator[mask])
    out = np.zeros((n_boot, votes.n_annotators))
    out[:, present] = unit_weights(len(present), n_boot, rng)
    return out


# --------------------------------------------------------------------------------------------------
# The ranking

@dataclass
class Ranking:
    """Output of :func:`rank_methods`: ``table`` (one row per dataset and method, :data:`RANKING_COLUMNS`),
    ``pairs`` (:data:`PAIR_COLUMNS`), ``boot`` (dataset -> ``[B, m]`` bootstrap scores in ``table`` order of
    methods), ``info`` (what was excluded and why)."""

    table: pd.DataFrame
    pairs: pd.DataFrame
    boot: dict[str, np.ndarray]
    info: dict[str, Any]

    def win_counts(self, dataset: str = OVERALL) -> pd.DataFrame:
        """The exact win-count matrix (row beat col) of a dataset as a DataFrame."""
        p = self.pairs[self.pairs["dataset"] == dataset]
        methods = list(self.table.loc[self.table["dataset"] == dataset, "method"])
        mat = p.pivot(index="row", columns="col", values="wins").reindex(index=methods, columns=methods)
        return mat.fillna(0).astype(np.int64)


def _fit(wins_split: np.ndarray, wins: np.ndarray, ties_m: np.ndarray, model: str, ties: str, prior_sd: float
         ) -> tuple[np.ndarray, np.ndarray]:
    if ties == "davidson":
        return fit_davidson(wins, ties_m, prior_sd=prior_sd)
    s = fit_scores(wins_split, model=model, prior_sd=prior_sd)
    return s, np.full(s.shape[:-1], np.nan)


def rank_methods(
    votes: Votes | pd.DataFrame | str | os.PathLike,
    *,
    model: str = "bt",
    ties: str = "split",
    by_dataset: bool = False,
    bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    prior_sd: float = DEFAULT_PRIOR_SD,
    skip_invalid: bool = False,
) -> Ranking:
    """Rank the methods of ``votes`` (a :class:`Votes`, or a judgements CSV/DataFrame with methods).

    Returns a :class:`Ranking`: the pooled ranking (dataset ``all``) and, with ``by_dataset``, one per
    dataset, with scene-bootstrap CIs (``bootstrap`` resamples; 0 = none). See the module docstring.
    """
    if model not in MODELS:
        raise SRMetricsError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
    if ties not in TIES:
        raise SRMetricsError(f"ties must be one of {', '.join(TIES)}, got {ties!r}")
    if ties == "davidson" and model != "bt":
        raise SRMetricsError("--ties davidson is Davidson's extension of Bradley-Terry: use it with --model bt")
    if bootstrap < 0:
        raise SRMetricsError(f"bootstrap must be >= 0, got {bootstrap}")
    if not 0 < confidence < 1:
        raise SRMetricsError(f"confidence must be in (0, 1), got {confidence}")
    if not 0.01 <= prior_sd <= 100:  # beyond: no prior at all (all-win scores run off) or a numerically flat one
        raise SRMetricsError(f"--prior-sd must be between 0.01 and 100 (model units), got {prior_sd}")
    if seed < 0:
        raise SRMetricsError(f"seed must be >= 0, got {seed}")
    if not isinstance(votes, Votes):
        votes = votes_from_judgements(votes, skip_invalid=skip_invalid)
    info = dict(votes.info)
    src = info.get("source", "")
    n_tie = int((votes.outcome == 0.5).sum())
    info["n_tie_votes"] = n_tie
    if ties == "drop":
        info["n_dropped_ties"] = n_tie
        if n_tie == len(votes):
            raise RankingError(f"{src or 'votes'}: all {n_tie} vote(s) are ties and --ties drop removes them")
        if n_tie:
            votes = votes.subset(votes.outcome != 0.5)
            votes.info = info
    m_all = len(votes.methods)
    groups = [(OVERALL, np.ones(len(votes), bool))]
    if by_dataset:
        groups = [(d, votes.dataset == k) for k, d in enumerate(votes.datasets)] + groups
    # per-scene dataset (a scene lies in one dataset)
    scene_ds = np.zeros(votes.n_scenes, np.int64)
    scene_ds[votes.scene] = votes.dataset

    # point fits and exact counts per group, methods restricted to those the group has
    fits = []
    for name, mask in groups:
        sub = votes if mask.all() else votes.subset(mask)
        wins, ties_m, split = win_matrix(sub.a, sub.b, sub.outcome, len(sub.methods))
        where = f"{src}: dataset '{name}'" if name != OVERALL else src
        check_rankable(sub.methods, wins + wins.T + ties_m, where)
        s, nu = _fit(split, wins, ties_m, model, ties, prior_sd)
        idx = np.array([votes.methods.index(x) for x in sub.methods], np.int64)
        fits.append(dict(name=name, mask=mask, methods=sub.methods, idx=idx, wins=wins, ties=ties_m, s=s, nu=nu,
                         n_scenes=int(len(np.unique(votes.scene[mask]))),
                         design=group_design(votes, mask, scene_ds)))

    boot: dict[str, np.ndarray] = {}
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        cell, cell_scene, cell_annot = vote_cells(votes)
        w_sc, t_sc = scene_win_counts(votes, ties, rows=cell, n_rows=len(cell_scene))
        ds_of_group = {f["name"]: (None if f["name"] == OVERALL else votes.datasets.index(f["name"])) for f in fits}
        samples: dict[str, list[np.ndarray]] = {f["name"]: [] for f in fits if f["design"].any}

        def resample(f: dict[str, Any], r: np.ndarray | None, nb: int, scenes: bool, annotators: bool) -> np.ndarray:
            d = ds_of_group[f["name"]]
            member = np.ones(votes.n_scenes) if d is None else (scene_ds == d).astype(np.float64)
            sw = r * member[None, :] if scenes else np.broadcast_to(member, (nb, votes.n_scenes))
            aw = group_annotator_weights(votes, f["mask"], nb, rng) if annotators else None
            rr = cell_weights(sw, aw, cell_scene, cell_annot)  # [nb, n_cells]
            wb = np.asarray((w_sc.T @ rr.T).T).reshape(nb, m_all, m_all)[:, f["idx"]][:, :, f["idx"]]
            if ties == "davidson":
                tb = np.asarray((t_sc.T @ rr.T).T).reshape(nb, m_all, m_all)[:, f["idx"]][:, :, f["idx"]]
                tb = tb + np.swapaxes(tb, -1, -2)
                return fit_davidson(wb, tb, prior_sd=prior_sd)[0]
            return fit_scores(wb, model=model, prior_sd=prior_sd)

        for start in range(0, bootstrap, _BOOT_CHUNK):
            nb = min(_BOOT_CHUNK, bootstrap - start)
            r = scene_resample_weights(scene_ds, nb, rng)  # [nb, n_scenes]
            for f in fits:
                des: Design = f["design"]
                if des.any:
                    samples[f["name"]].append(resample(f, r, nb, des.scenes, des.annotators))
        # both factors: how much of the spread each one brings (one-factor bootstraps), for the df of the expansion
        n_part = max(100, bootstrap // 4)
        for f in fits:
            des = f["design"]
            if des.scenes and des.annotators:
                v_s = resample(f, scene_resample_weights(scene_ds, n_part, rng), n_part, True, False).var(0).mean()
                v_a = resample(f, None, n_part, False, True).var(0).mean()
                main = np.concatenate(samples[f["name"]])
                k = pigeonhole_correction(main.var(0).mean(), v_s, v_a, des.n_scenes, des.n_annotators)
                samples[f["name"]] = [f["s"] + k * (main - f["s"])]
                f["design"] = replace(des, scale=k)
        boot = {k: np.concatenate(v) for k, v in samples.items()}

    rows: list[dict[str, Any]] = []
    prow: list[dict[str, Any]] = []
    unit = "logit" if model == "bt" else "jod"
    for f in fits:
        s, methods, wins, ties_m = f["s"], f["methods"], f["wins"], f["ties"]
        m = len(methods)
        b = boot.get(f["name"])
        des = f["design"]
        level = des.level(confidence)
        lo, hi = percentile_ci(b, level) if b is not None else (np.full(m, np.nan), np.full(m, np.nan))
        note = des.note if bootstrap > 0 else ""
        if b is not None and not (np.nanmax(b, axis=0) - np.nanmin(b, axis=0) > 1e-9).any():
            # every resample gave the same fit: no interval, which is not certainty
            note = (f"no interval: the bootstrap resamples {des.label} and all {f['n_scenes']} scene(s) give "
                    "the same votes, so every resample is alike")
            lo, hi, b = np.full(m, np.nan), np.full(m, np.nan), None
        order = np.argsort(-s, kind="stable")
        rank = np.empty(m, np.int64)
        rank[order] = np.arange(1, m + 1)
        for k in order:
            rows.append(dict(
                dataset=f["name"], method=methods[k], score=float(s[k]), ci_low=float(lo[k]), ci_high=float(hi[k]),
                elo=float(ELO_SCALE * s[k] + ELO_BASE) if model == "bt" else np.nan,
                wins=int(wins[k].sum()), losses=int(wins[:, k].sum()), ties=int(ties_m[k].sum()),
                n_votes=int(wins[k].sum() + wins[:, k].sum() + ties_m[k].sum()), rank=int(rank[k]), model=model,
                unit=unit, ties_mode=ties, nu=float(f["nu"]), n_scenes=f["n_scenes"],
                n_annotators=des.n_annotators, resampled=des.label if b is not None else "none",
                bootstrap=int(bootstrap),
                seed=int(seed), confidence=float(confidence), prior_sd=float(prior_sd), ci_note=note))
        diff = s[:, None] - s[None, :]
        if ties == "davidson":
            p_beats = win_probability(diff, "bt")
        else:
            p_beats = win_probability(diff, model)
        if b is not None:
            bd = b[:, :, None] - b[:, None, :]
            dlo, dhi = percentile_ci(bd.reshape(len(b), -1), level)
            dlo, dhi = dlo.reshape(m, m), dhi.reshape(m, m)
            pv = des.p_value(bd.reshape(len(b), -1)).reshape(m, m)
        else:
            dlo = dhi = pv = np.full((m, m), np.nan)
        for k in order:
            for j in order:
                if j == k:
                    continue
                prow.append(dict(
                    dataset=f["name"], row=methods[k], col=methods[j], p_beats=float(p_beats[k, j]),
                    diff=float(diff[k, j]), diff_ci_low=float(dlo[k, j]), diff_ci_high=float(dhi[k, j]),
                    p_value=float(pv[k, j]), significant=bool(pv[k, j] < 1 - confidence) if b is not None else False,
                    wins=int(wins[k, j]), losses=int(wins[j, k]), ties=int(ties_m[k, j]),
                    n_votes=int(wins[k, j] + wins[j, k] + ties_m[k, j])))
        if b is not None:  # reorder columns of the bootstrap samples to the table's method order
            boot[f["name"]] = b[:, order]
        else:
            boot.pop(f["name"], None)
    table = pd.DataFrame(rows, columns=list(RANKING_COLUMNS))
    pairs = pd.DataFrame(prow, columns=list(PAIR_COLUMNS))
    info.update(n_votes=len(votes), n_methods=m_all, n_scenes=votes.n_scenes)
    return Ranking(table=table, pairs=pairs, boot=boot, info=info)


def format_ranking(ranking: Ranking) -> str:
    """A plain-text table per dataset: rank, method, score [CI], Elo, wins/losses/ties."""
    t = ranking.table
    out: list[str] = []

    def f3(v: float) -> str:  # no '-0.000': round first, then drop the sign of zero
        return f"{round(float(v), 3) + 0.0:+.3f}"
    for ds in dict.fromkeys(t["dataset"]):
        sub = t[t["dataset"] == ds]
        unit = sub["unit"].iat[0]
        conf = int(round(float(sub["confidence"].iat[0]) * 100))
        head = ["rank", "method", f"score ({unit}) [{conf}% CI]"] + (["elo"] if unit == "logit" else []) + \
            ["wins", "losses", "ties"]
        lines = []
        for _, r in sub.iterrows():
            ci = "" if pd.isna(r["ci_low"]) else f" [{f3(r['ci_low'])}, {f3(r['ci_high'])}]"
            cells = [str(r["rank"]), str(r["method"]), f"{f3(r['score'])}{ci}"]
            if unit == "logit":
                cells.append(f"{r['elo']:.0f}")
            cells += [str(r["wins"]), str(r["losses"]), str(r["ties"])]
            lines.append(cells)
        widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(head)]
        n_ann = int(sub["n_annotators"].iat[0]) if "n_annotators" in sub else 0
        res = str(sub["resampled"].iat[0]) if "resampled" in sub else ""
        ann = f", {n_ann} annotator{'s' * (n_ann != 1)}" if n_ann else ", annotators unknown"
        out.append(f"dataset {ds}: {int(sub['n_votes'].sum() // 2)} votes, {int(sub['n_scenes'].iat[0])} scenes{ann}"
                   + (f"; CIs resample {res}" if res and res != "none" else ""))
        out.append("  ".join(h.ljust(w) for h, w in zip(head, widths)))
        out += ["  ".join(c.ljust(w) for c, w in zip(cells, widths)) for cells in lines]
        note = str(sub["ci_note"].iat[0]) if "ci_note" in sub else ""
        if note:
            out.append(f"  ({note})")
    return "\n".join(out)


def simulate_votes(strengths: Sequence[float], n_votes: int, n_scenes: int, *, seed: int = 0,
                   scene_sd: float = 0.0, tie_rate: float = 0.0, datasets: int = 1, model: str = "bt",
                   n_annotators: int = 1, annotator_sd: float = 0.0) -> pd.DataFrame:
    """SIMULATED votes (never human) from known strengths: a judgements-like DataFrame with
    ``dataset, gt, a_method, b_method, choice, annotator``. Each vote draws a scene, an annotator and an
    unordered method pair uniformly; ``scene_sd`` adds a per-scene random effect to each method's strength
    (correlated votes within a scene), ``annotator_sd`` a per-annotator one (each person's taste);
    ``tie_rate`` turns that fraction of votes into ties. Annotators are ``simulated`` (one) or ``ann000``..."""
    rng = np.random.default_rng(seed)
    st = np.asarray(strengths, np.float64)
    m = len(st)
    scene = rng.integers(0, n_scenes, n_votes)
    a = rng.integers(0, m, n_votes)
    b = (a + rng.integers(1, m, n_votes)) % m
    eff = rng.normal(0.0, scene_sd, (n_scenes, m)) if scene_sd > 0 else np.zeros((n_scenes, m))
    d = st[a] + eff[scene, a] - st[b] - eff[scene, b]
    ann = np.zeros(n_votes, np.int64)
    if n_annotators > 1 or annotator_sd > 0:
        ann = rng.integers(0, n_annotators, n_votes)
        aeff = rng.normal(0.0, annotator_sd, (n_annotators, m)) if annotator_sd > 0 else np.zeros((n_annotators, m))
        d = d + aeff[ann, a] - aeff[ann, b]
    p = win_probability(d, model)
    out = np.where(rng.random(n_votes) < p, "a", "b").astype(object)
    if tie_rate > 0:
        out[rng.random(n_votes) < tie_rate] = "tie"
    names = np.array([f"m{k:02d}" for k in range(m)], dtype=object)
    ds = np.array([f"sim{k}" for k in range(datasets)], dtype=object)[scene % datasets]
    gt = np.char.add("scene", (scene).astype(str)).astype(object)
    annot = (np.full(n_votes, "simulated", dtype=object) if n_annotators == 1 and annotator_sd == 0 else
             np.char.add("ann", np.char.zfill(ann.astype(str), 3)).astype(object))
    return pd.DataFrame({
        "pair_id": np.char.add("v", np.arange(n_votes).astype(str)).astype(object), "dataset": ds,
        "gt": np.char.add(gt.astype(str), ".png").astype(object),
        "a": np.char.add(names[a].astype(str), ".png").astype(object),
        "b": np.char.add(names[b].astype(str), ".png").astype(object),
        "choice": out, "annotator": annot, "a_method": names[a], "b_method": names[b]})


__all__ = [
    "DEFAULT_PRIOR_SD", "ELO_BASE", "ELO_SCALE", "JOD_SCALE", "MODELS", "PAIR_COLUMNS", "RANKING_COLUMNS", "Ranking",
    "RankingError", "TIES", "Votes", "check_rankable", "connected_groups", "fit_davidson", "fit_scores",
    "format_ranking", "group_design", "load_method_judgements", "rank_methods", "scene_resample_weights",
    "scene_win_counts", "simulate_votes", "vote_cells",
    "votes_from_frame", "votes_from_judgements", "win_matrix", "win_probability",
]
