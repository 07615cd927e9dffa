"""From pairwise votes to a ranking of methods (``srmetrics rank``): the fit per dataset and pooled, ties, the
two-way bootstrap, the pair table and the printed table.

Conventions
-----------
* Votes and what a vote means: :mod:`.votes`. Models (Bradley-Terry in logits with Elo, Thurstone Case V in JOD,
  the weak ``N(0, prior_sd^2)`` prior, Davidson's tie model): :mod:`.fits`.
* Ties: ``split`` (default) counts a tie as half a win for each side; ``drop`` removes tie votes (counted);
  ``davidson`` fits Davidson's (1970) model ``P(k beats l) = pi_k / (pi_k + pi_l + nu sqrt(pi_k pi_l))``,
  ``P(tie) = nu sqrt(pi_k pi_l) / (...)`` (BT only; ``nu`` is reported).
* Confidence intervals: two-way (scenes x annotators) bootstrap, :mod:`.resampling`: scenes are resampled
  within each dataset and annotators among those of the group, independently; a vote weighs the product of its
  scene's and its annotator's multiplicities. A factor with one unit present is held fixed; with one scene and one
  annotator there is no interval (``ci_note`` says why). Each resample is one Newton step from the fit
  (:func:`~.fits.one_step_scores`: no refit running off to the prior's edge on a sparse resample; ``davidson``
  refits); intervals are ``score -/+ t_df se`` (:meth:`~.resampling.Design.interval`: ``se`` unbiased and freed
  of the two-way bootstrap's surplus, ``df`` from the variance parts). Columns ``resampled`` (``scenes x
  annotators``, ``scenes``, ``annotators`` or ``none``), ``n_scenes`` and ``n_annotators`` (0 = no annotator column) say what was resampled. ``numpy.random.default_rng(seed)``;
  every method, pair difference and p-value uses the same resamples. A scene is a (dataset, gt) combination.
* Pair table: for every ordered pair (row, col): ``p_beats`` = the model's P(row beats col) at the point
  estimate (Davidson: given no tie), ``diff = score_row - score_col`` with its CI, a two-sided p-value with the
  same ``se`` and ``df`` (below ``1 - confidence`` exactly when the CI excludes 0), ``significant = p < 1 -
  confidence``, and the exact win/loss/tie counts of row against col.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from ..errors import RankingError, SRMetricsError
from .fits import (
    DEFAULT_PRIOR_SD,
    ELO_BASE,
    ELO_SCALE,
    MODELS,
    fit_davidson,
    fit_scores,
    one_step_scores,
    win_probability,
)
from .judgements import OVERALL
from .resampling import (
    Design,
    cell_weights,
    design_of,
    effective_units,
    pigeonhole_correction,
    stratified_weights,
    unit_weights,
)
from .votes import Votes, check_rankable, votes_from_judgements, win_matrix

TIES: tuple[str, ...] = ("split", "drop", "davidson")
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
    scenes, per_scene = np.unique(votes.scene[mask], return_counts=True)
    n_ann = len(np.unique(votes.annotator[mask])) if votes.annotator is not None else 1
    d = design_of(scene_ds[scenes], n_ann)
    if votes.annotator is None:
        return Design(d.n_scenes, 0, d.scenes, False)  # annotators unknown: say so
    per_ann = np.unique(votes.annotator[mask], return_counts=True)[1]
    return replace(d, eff_scenes=effective_units(per_scene), eff_annotators=effective_units(per_ann))


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


def one_sided(wins: int, losses: int, ties: int) -> bool:
    """Whether a method's votes all went one way (it won every one, or lost every one, and tied none): its
    penalised-ML score is then set by the prior, not by the votes."""
    return bool(wins + losses) and not ties and not (wins and losses)


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
    dataset, with two-way (scenes x annotators) bootstrap CIs (``bootstrap`` resamples; 0 = none). See the
    module docstring.
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
            out = one_step_scores(wb, f["s"], model=model, prior_sd=prior_sd)
            # a method none of whose scenes was drawn has no votes in that resample: missing, not the prior's 0
            return np.where((wb.sum(-1) + wb.sum(-2)) > 0, out, np.nan)

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
                k, df = pigeonhole_correction(main.var(0).mean(), v_s, v_a, des.n_scenes, des.n_annotators,
                                              des.unit_df)
                samples[f["name"]] = [f["s"] + k * (main - f["s"])]
                f["design"] = replace(des, scale=k, df_parts=df)
        boot = {k: np.concatenate(v) for k, v in samples.items()}

    rows: list[dict[str, Any]] = []
    prow: list[dict[str, Any]] = []
    unit = "logit" if model == "bt" else "jod"
    for f in fits:
        s, methods, wins, ties_m = f["s"], f["methods"], f["wins"], f["ties"]
        m = len(methods)
        b = boot.get(f["name"])
        des = f["design"]
        lo, hi = des.interval(s, b, confidence) if b is not None else (np.full(m, np.nan), np.full(m, np.nan))
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
            won, lost, tied = int(wins[k].sum()), int(wins[:, k].sum()), int(ties_m[k].sum())
            lone = ""
            if m > 1 and one_sided(won, lost, tied):  # the prior sets the score
                lone = (f"{methods[k]} {'won' if won else 'lost'} all {won + lost} of its votes: its score (and "
                        f"any interval) rests on the prior (--prior-sd {prior_sd:g}), not on the votes, which say "
                        f"only that it is {'above' if won else 'below'} the methods it met")
            rows.append(dict(
                dataset=f["name"], method=methods[k], score=float(s[k]), ci_low=float(lo[k]), ci_high=float(hi[k]),
                elo=float(ELO_SCALE * s[k] + ELO_BASE) if model == "bt" else np.nan,
                wins=int(wins[k].sum()), losses=int(wins[:, k].sum()), ties=int(ties_m[k].sum()),
                n_votes=int(wins[k].sum() + wins[:, k].sum() + ties_m[k].sum()), rank=int(rank[k]), model=model,
                unit=unit, ties_mode=ties, nu=float(f["nu"]), n_scenes=f["n_scenes"],
                n_annotators=des.n_annotators, resampled=des.label if b is not None else "none",
                bootstrap=int(bootstrap),
                seed=int(seed), confidence=float(confidence), prior_sd=float(prior_sd),
                ci_note="; ".join(x for x in (note, lone) if x)))
        diff = s[:, None] - s[None, :]
        if ties == "davidson":
            p_beats = win_probability(diff, "bt")
        else:
            p_beats = win_probability(diff, model)
        if b is not None:
            bd = (b[:, :, None] - b[:, None, :]).reshape(len(b), -1)
            dlo, dhi = (v.reshape(m, m) for v in des.interval(diff.ravel(), bd, confidence))
            pv = des.p_value(diff.ravel(), bd).reshape(m, m)
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
        notes = dict.fromkeys(part for n in (sub["ci_note"] if "ci_note" in sub else ())
                              for part in str(n).split("; ") if part and part != "nan")
        out += [f"  ({n})" for n in notes]
    return "\n".join(out)


__all__ = ["PAIR_COLUMNS", "RANKING_COLUMNS", "Ranking", "TIES", "format_ranking", "group_annotator_weights",
           "group_design", "one_sided", "rank_methods", "scene_resample_weights", "scene_win_counts", "vote_cells"]
