"""Does a metric rank the methods the way people do? Kendall's tau-b of each metric's method ranking against
the human Bradley-Terry ranking, with a two-way (scenes x annotators) bootstrap interval.

The human side is resampled like ``rank`` (:mod:`.resampling`: scenes within datasets, annotators, a vote weighs
the product of the multiplicities); the metric side has no annotators and uses the same scene draws. Tau takes
few values, so its interval bounds are resampled values (``percentile_ci(discrete=True)``), at the expanded level.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..errors import SRMetricsError
from .fits import DEFAULT_PRIOR_SD, fit_scores
from .judgements import OVERALL
from .ranking import (
    group_annotator_weights,
    group_design,
    scene_resample_weights,
    scene_win_counts,
    vote_cells,
)
from .resampling import cell_weights, percentile_ci
from .votes import check_rankable

RANKING_AGREEMENT_COLUMNS: tuple[str, ...] = (
    "metric", "dataset", "tau_b", "tau_ci_low", "tau_ci_high", "tau_b_mean", "pairs_concordant",
    "n_methods", "n_scenes", "n_annotators", "resampled", "bootstrap", "seed", "confidence", "ci_note",
)


@dataclass
class RankingAgreement:
    """Output of :func:`ranking_agreement`: ``summary`` (one row per metric and dataset,
    :data:`RANKING_AGREEMENT_COLUMNS`) and ``methods`` (one row per metric, dataset and method: human score
    and rank, the metric's mean, its fitted score and rank, and the rank by mean)."""

    summary: pd.DataFrame
    methods: pd.DataFrame


def kendall_tau_b(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's tau-b between ``x`` and ``y`` over the last axis (batched): ``sum sx*sy / sqrt(sum sx^2 *
    sum sy^2)`` over all pairs i < j with ``s = sign`` of the differences; NaN when either side is constant."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    iu, ju = np.triu_indices(x.shape[-1], 1)
    sx = np.sign(x[..., iu] - x[..., ju])
    sy = np.sign(y[..., iu] - y[..., ju])
    den = np.sqrt((sx * sx).sum(-1) * (sy * sy).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (sx * sy).sum(-1) / np.where(den > 0, den, 1.0), np.nan)


def _pairs_concordant(x: np.ndarray, human: np.ndarray) -> float:
    """Fraction of method pairs (with a human order) that ``x`` orders the same way; a tie in ``x`` counts 0.5."""
    iu, ju = np.triu_indices(len(x), 1)
    sh, sx = np.sign(human[iu] - human[ju]), np.sign(x[iu] - x[ju])
    use = sh != 0
    return float(np.mean(np.where(sx[use] == 0, 0.5, (sx[use] == sh[use]).astype(float)))) if use.any() else np.nan


def ranking_agreement(
    votes: Any,
    scene_values: pd.DataFrame,
    metrics: Sequence[str],
    higher_is_better: Mapping[str, bool],
    *,
    by_dataset: bool = True,
    bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    prior_sd: float | None = None,
) -> RankingAgreement:
    """How each metric ranks the methods compared with people.

    ``votes``: human :class:`~clipscore_sr.human.votes.Votes`; ``scene_values``: one row per (dataset,
    scene, method) with columns ``dataset, scene, method`` and one column per metric (the metric value of
    that method's output on that scene; ``scene`` as in the votes, i.e. the judgement's ``gt``). Per dataset
    (and pooled ``all``): the human Bradley-Terry ranking (ties split), the metric's ranking from
    per-scene pairwise wins (the metric prefers the better value on each scene where both methods have
    one; equal values split) fitted the same way, and from the mean per method; Kendall's tau-b of the
    fitted metric ranking against people, with a percentile CI over the same scene resamples for both
    (resampled within each dataset; annotators too on the human side: two-way), and the fraction of method pairs ordered as people order them.
    """
    sd = DEFAULT_PRIOR_SD if prior_sd is None else prior_sd
    methods = list(votes.methods)
    m_all = len(methods)
    mcode = {mm: k for k, mm in enumerate(methods)}
    ds_names = votes.datasets
    scene_ds = np.zeros(votes.n_scenes, np.int64)
    scene_ds[votes.scene] = votes.dataset
    vals = scene_values[scene_values["method"].isin(mcode)].drop_duplicates(["dataset", "scene", "method"])
    keys = vals["dataset"].astype(str) + "\x1f" + vals["scene"].astype(str)
    if not votes.scene_keys:
        raise SRMetricsError("votes lack scene keys (build them with Votes.from_arrays)")
    sc = keys.map({k: i for i, k in enumerate(votes.scene_keys)})
    vals = vals[sc.notna().to_numpy()]
    sc = sc.dropna().to_numpy(np.int64)
    mi = vals["method"].map(mcode).to_numpy(np.int64)

    from scipy.sparse import csr_matrix

    cell, cell_scene, cell_annot = vote_cells(votes)
    human_sc, _ = scene_win_counts(votes, "split", rows=cell, n_rows=len(cell_scene))
    metric_sc = {}
    metric_mean = {}
    for mname in metrics:
        v = np.full((votes.n_scenes, m_all), np.nan)
        v[sc, mi] = vals[mname].to_numpy(np.float64)
        if not higher_is_better[mname]:
            v = -v
        present = np.isfinite(v)
        metric_mean[mname] = (np.where(present, v, 0.0), present.astype(np.float64))
        # per-scene pairwise wins of the metric: for each scene, each ordered pair (k, l) both present
        rows_, cols_, w_ = [], [], []
        for k in range(m_all):
            for j in range(m_all):
                if k == j:
                    continue
                both = present[:, k] & present[:, j]
                win = np.where(v[both, k] > v[both, j], 1.0, np.where(v[both, k] == v[both, j], 0.5, 0.0))
                s_idx = np.flatnonzero(both)
                nz = win > 0
                rows_.append(s_idx[nz])
                cols_.append(np.full(int(nz.sum()), k * m_all + j))
                w_.append(win[nz])
        metric_sc[mname] = csr_matrix((np.concatenate(w_), (np.concatenate(rows_), np.concatenate(cols_))),
                                      shape=(votes.n_scenes, m_all * m_all))

    groups: list[tuple[str, np.ndarray]] = [(OVERALL, np.ones(votes.n_scenes, bool))]
    if by_dataset and len(ds_names) > 1:
        groups = [(d, scene_ds == k) for k, d in enumerate(ds_names)] + groups
    rng = np.random.default_rng(seed)
    r_boot = scene_resample_weights(scene_ds, bootstrap, rng) if bootstrap > 0 else None
    src = votes.info.get("source", "")

    def counts(mat: Any, weights: np.ndarray) -> np.ndarray:
        return np.asarray((mat.T @ weights.T).T).reshape(len(weights), m_all, m_all)

    def human_counts(scene_w: np.ndarray, annot_w: np.ndarray | None) -> np.ndarray:
        return counts(human_sc, cell_weights(scene_w, annot_w, cell_scene, cell_annot))

    summary_rows, method_rows = [], []
    for name, smask in groups:
        w1 = smask.astype(np.float64)[None, :]
        hw = human_counts(w1, None)[0]
        vmask = smask[votes.scene]
        des = group_design(votes, vmask, scene_ds)
        idx = np.flatnonzero((hw + hw.T).sum(1) > 0)
        sub_methods = [methods[k] for k in idx]
        hw = hw[np.ix_(idx, idx)]
        check_rankable(sub_methods, hw + hw.T, f"{src}: dataset '{name}'" if name != OVERALL else src)
        h_score = fit_scores(hw, prior_sd=sd)
        rb = None
        if r_boot is not None and des.any:
            rb = r_boot * smask[None, :] if des.scenes else np.repeat(w1, bootstrap, axis=0)
        aw = group_annotator_weights(votes, vmask, bootstrap, rng) if rb is not None and des.annotators else None
        h_boot = fit_scores(human_counts(rb, aw)[:, idx][:, :, idx], prior_sd=sd) if rb is not None else None
        for mname in metrics:
            mw = counts(metric_sc[mname], w1)[0][np.ix_(idx, idx)]
            m_score = fit_scores(mw, prior_sd=sd)
            num, den = metric_mean[mname]
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = ((w1 @ num) / (w1 @ den))[0][idx]
            tau = float(kendall_tau_b(m_score, h_score))
            lo = hi = np.nan
            if rb is not None:
                mb = fit_scores(counts(metric_sc[mname], rb)[:, idx][:, :, idx], prior_sd=sd)
                taus = kendall_tau_b(mb, h_boot)
                lo, hi = (float(v[0]) for v in percentile_ci(taus[:, None], des.level(confidence), discrete=True))
            sign = 1.0 if higher_is_better[mname] else -1.0
            summary_rows.append(dict(
                metric=mname, dataset=name, tau_b=tau, tau_ci_low=lo, tau_ci_high=hi,
                tau_b_mean=float(kendall_tau_b(np.nan_to_num(mean, nan=-np.inf), h_score)),
                pairs_concordant=_pairs_concordant(m_score, h_score), n_methods=len(idx),
                n_scenes=int(smask.sum()), n_annotators=des.n_annotators,
                resampled=des.label if rb is not None else "none", bootstrap=int(bootstrap), seed=int(seed),
                confidence=float(confidence), ci_note=des.note if bootstrap > 0 else ""))
            h_rank = (-h_score).argsort(kind="stable").argsort() + 1
            m_rank = (-m_score).argsort(kind="stable").argsort() + 1
            mean_rank = (-np.nan_to_num(mean, nan=-np.inf)).argsort(kind="stable").argsort() + 1
            for k, meth in enumerate(sub_methods):
                method_rows.append(dict(
                    metric=mname, dataset=name, method=meth, human_score=float(h_score[k]), human_rank=int(h_rank[k]),
                    metric_mean=float(sign * mean[k]), metric_score=float(m_score[k]), metric_rank=int(m_rank[k]),
                    mean_rank=int(mean_rank[k])))
    summary = pd.DataFrame(summary_rows, columns=list(RANKING_AGREEMENT_COLUMNS))
    return RankingAgreement(summary=summary, methods=pd.DataFrame(method_rows))


def format_ranking_agreement(result: RankingAgreement) -> str:
    """One line per metric and dataset: Kendall's tau-b [CI], tau-b of the mean ranking, concordant pairs."""
    s = result.summary
    conf = int(round(float(s["confidence"].iat[0]) * 100)) if len(s) else 95
    head = ["metric", "dataset", f"tau-b [{conf}% CI]", "tau-b (means)", "pairs as people", "methods"]

    def f(v: float) -> str:
        return "n/a" if pd.isna(v) else f"{v:+.2f}"

    lines = [[str(r.metric), str(r.dataset), f"{f(r.tau_b)} [{f(r.tau_ci_low)}, {f(r.tau_ci_high)}]",
              f(r.tau_b_mean), "n/a" if pd.isna(r.pairs_concordant) else f"{100 * r.pairs_concordant:.0f}%",
              str(r.n_methods)] for r in s.itertuples()]
    widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(head)] if lines else [len(h) for h in head]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
    out += ["  ".join(c.ljust(w) for c, w in zip(cells, widths)) for cells in lines]
    if len(s):  # what the intervals resampled, and how many of each (the first row: the pooled one)
        r = s.iloc[0]
        if r["resampled"] != "none":
            count = {"scenes": int(r["n_scenes"]), "annotators": int(r["n_annotators"])}
            out.append(f"CIs ({r['dataset']}): bootstrap over "
                       + " x ".join(f"{count.get(u, '?')} {u}" for u in str(r["resampled"]).split(" x ")))
        elif r["ci_note"]:
            out.append(f"CIs ({r['dataset']}): {r['ci_note']}")
    return "\n".join(out)


__all__ = ["RANKING_AGREEMENT_COLUMNS", "RankingAgreement", "format_ranking_agreement", "kendall_tau_b",
           "ranking_agreement"]
