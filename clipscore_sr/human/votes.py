"""Pairwise votes between methods as arrays (:class:`Votes`), read from judgement files that name each output's
method; exact win counts and the comparison graph; and SIMULATED votes from known strengths (for tests and
benchmarks, never presented as human).

A vote compares method ``a_method`` (the row's ``a``) with ``b_method``; ``choice`` ``a``/``b``/``tie`` refers to
the row's own a/b (not the pair's canonical orientation). The scene of a vote is its (dataset, gt).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..errors import RankingError
from .fits import win_probability

TRIAL_KINDS_RANKED: tuple[str, ...] = ("real", "")


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
# Counts and the comparison graph

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


__all__ = ["TRIAL_KINDS_RANKED", "Votes", "check_rankable", "connected_groups", "load_method_judgements",
           "simulate_votes", "votes_from_frame", "votes_from_judgements", "win_matrix"]
