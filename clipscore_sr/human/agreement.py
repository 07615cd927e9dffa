"""How often a metric picks the same SR output as people did (2AFC agreement), with bootstrap CIs.

Conventions
-----------
* For a pair (gt, a, b) a metric *prefers* the output it scores better (``higher_is_better`` from the
  registry): preference ``p = 1`` for ``a``, ``0`` for ``b``, ``0.5`` when the two values are equal
  (within ``tie_tol``).
* Human votes: ``h = n_a / (n_a + n_b)``; ``tie`` votes are excluded from accuracy and counted
  (``n_tie_votes``); a pair with only tie votes is left out (``n_tie_only_pairs``). With
  ``human_ties="half"`` a tie vote counts half for each side instead.
* Per-pair agreement is the 2AFC score of LPIPS/BAPPS, ``p*h + (1-p)*(1-h)`` = the fraction of the
  pair's votes the metric agrees with. A dataset's ``accuracy`` is the mean over its pairs, in [0, 1];
  the pooled row (dataset ``all``) is the mean over all pairs of all datasets.
* ``human_ceiling`` = mean over pairs with at least 2 non-tie votes of ``max(h, 1-h)``: the best any
  metric could score on those pairs.
* Confidence intervals: percentile bootstrap over pairs, resampled within each dataset (the pooled
  row is the union of the per-dataset resamples), ``bootstrap`` resamples from ``numpy.random.default_rng(seed)``.
  Every metric, the ceiling and the paired differences use the same resamples.
* Paired comparison: in each dataset (and pooled), the metric with the highest accuracy is ``best_metric``;
  for every other metric, ``diff_vs_best`` = accuracy(best) - accuracy(metric) with its bootstrap CI and a
  two-sided bootstrap p-value ``p_vs_best = min(1, 2*min(P*(d <= 0), P*(d >= 0)))`` with the ``(k+1)/(B+1)``
  correction: ``p_vs_best < 1 - confidence`` exactly when the CI of the difference excludes 0.
* Pairs whose metric values are missing (NaN: the image could not be scored) are left out for every
  metric, so all metrics are compared on the same pairs (``n_pairs_unscored``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import JudgementError, SRMetricsError
from ..metrics.base import metric_direction
from .judgements import OVERALL, load_judgements, vote_table
from .resampling import (  # noqa: F401  (bootstrap helpers: re-exported for callers of the old place)
    Design,
    bootstrap_indices,
    bootstrap_p_value,
    bootstrap_sums,
    design_of,
    percentile_ci,
    pigeonhole_correction,
    resample_counts,
    unit_weights,
)

RESULT_COLUMNS: tuple[str, ...] = (
    "metric", "dataset", "higher_is_better", "accuracy", "ci_low", "ci_high", "n_pairs", "n_votes",
    "n_tie_votes", "n_tie_only_pairs", "n_metric_ties", "n_pairs_unscored", "human_ceiling",
    "ceiling_ci_low", "ceiling_ci_high", "n_ceiling_pairs", "rank", "best_metric", "diff_vs_best",
    "diff_ci_low", "diff_ci_high", "p_vs_best", "bootstrap", "seed", "confidence", "resampled", "n_scenes",
    "n_annotators", "ci_note",
)
_CHUNK = 256  # bootstrap resamples turned into count matrices at a time (memory: _CHUNK x n_pairs float64)


# --------------------------------------------------------------------------------------------------
# Pure, vectorised statistics

def metric_preference(values_a: np.ndarray, values_b: np.ndarray, higher_is_better: np.ndarray | Sequence[bool] | bool,
                      *, tie_tol: float = 0.0) -> np.ndarray:
    """Probability that each metric prefers ``a``: 1.0, 0.0 or 0.5 (tie, ``|a-b| <= tie_tol``).

    ``values_a``/``values_b`` are ``[n_pairs, n_metrics]`` (or ``[n_pairs]``); ``higher_is_better`` one
    flag per metric. NaN where either value is NaN. ``+inf == +inf`` counts as a tie.
    """
    va = np.asarray(values_a, dtype=np.float64)
    vb = np.asarray(values_b, dtype=np.float64)
    hib = np.broadcast_to(np.asarray(higher_is_better, dtype=bool), va.shape[-1:] if va.ndim > 1 else ())
    with np.errstate(invalid="ignore"):
        diff = np.where(hib, va - vb, vb - va)
        equal = (va == vb) | (np.abs(diff) <= tie_tol)
    pref = np.where(equal, 0.5, np.where(diff > 0, 1.0, 0.0))
    pref[np.isnan(va) | np.isnan(vb)] = np.nan
    return pref


def pair_agreement(pref: np.ndarray, n_a: np.ndarray, n_b: np.ndarray) -> np.ndarray:
    """2AFC agreement per pair ``(p*n_a + (1-p)*n_b) / (n_a + n_b)``; NaN for pairs without non-tie votes.

    ``pref`` is ``[n_pairs]`` or ``[n_pairs, n_metrics]``; ``n_a``/``n_b`` are vote counts ``[n_pairs]``.
    """
    pref = np.asarray(pref, dtype=np.float64)
    na = np.asarray(n_a, dtype=np.float64)
    nb = np.asarray(n_b, dtype=np.float64)
    if pref.ndim == 2:
        na, nb = na[:, None], nb[:, None]
    total = na + nb
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (pref * na + (1.0 - pref) * nb) / total, np.nan)


def _pair_scenes(scenes: Any, ds: np.ndarray, n: int) -> np.ndarray | None:
    """Scene code of each pair (a scene is a (dataset, scene) combination), or None without scenes."""
    if scenes is None:
        return None
    sc = np.asarray(scenes, dtype=object)
    if len(sc) != n:
        raise SRMetricsError(f"{len(sc)} scenes for {n} pairs")
    return pd.factorize(pd.Series(ds.astype(str)) + "\x1f" + pd.Series(sc.astype(str)))[0]


def _annotator_cells(annotator_votes: pd.DataFrame | None, n: int, human_ties: str
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """(pair, annotator code, votes for a, votes for b) per (pair, annotator) cell, ties as ``human_ties``."""
    if annotator_votes is None:
        return None
    av = annotator_votes
    missing = [c for c in ("pair", "annotator", "n_a", "n_b") if c not in av.columns]
    if missing:
        raise SRMetricsError(f"annotator_votes lacks column(s) {', '.join(missing)}")
    pair = av["pair"].to_numpy(np.int64)
    if len(pair) and (pair.min() < 0 or pair.max() >= n):
        raise SRMetricsError("annotator_votes: 'pair' must index the pairs (0 .. n_pairs - 1)")
    na, nb = av["n_a"].to_numpy(np.float64), av["n_b"].to_numpy(np.float64)
    if human_ties == "half" and "n_tie" in av.columns:
        na, nb = na + 0.5 * av["n_tie"].to_numpy(np.float64), nb + 0.5 * av["n_tie"].to_numpy(np.float64)
    return pair, pd.factorize(av["annotator"].astype(str))[0].astype(np.int64), na, nb


def _agreement_boot(x_all: np.ndarray, order: np.ndarray, pair_cl: np.ndarray, cw: np.ndarray | None,
                    aw: np.ndarray | None, ann: Any, pref: np.ndarray, m: int, nb: int, chunk: int = 64) -> np.ndarray:
    """``[nb, m + 3]`` resampled sums ``[agreement x m, ceiling value, ceiling pairs, pairs]`` of the pairs
    ``order`` (global indices; ``pair_cl`` their clusters): cluster multiplicities ``cw`` ``[nb, n_clusters]``
    (None: not resampled) times, with ``aw`` ``[nb, n_annotators]``, each pair's votes re-weighted by annotator."""
    from scipy.sparse import csr_matrix

    n_cl = int(pair_cl.max()) + 1
    if aw is None:  # per-pair values are fixed: cluster sums, then one product
        agg = csr_matrix((np.ones(len(order)), (pair_cl, np.arange(len(order)))), shape=(n_cl, len(order)))
        return cw @ (agg @ x_all[order])
    pos = np.full(len(x_all), -1, np.int64)
    pos[order] = np.arange(len(order))
    pe, ae, na_e, nb_e = ann
    keep = pos[pe] >= 0
    pe, ae, na_e, nb_e = pos[pe[keep]], ae[keep], na_e[keep], nb_e[keep]
    to_pair = csr_matrix((np.ones(len(pe)), (np.arange(len(pe)), pe)), shape=(len(pe), len(order)))
    p = pref[order]
    out = np.empty((nb, m + 3))
    for start in range(0, nb, chunk):
        a = aw[start:start + chunk][:, ae]
        n_a = np.asarray((to_pair.T @ (a * na_e).T).T)
        n_b = np.asarray((to_pair.T @ (a * nb_e).T).T)
        tot = n_a + n_b
        valid = tot > 0
        h = np.where(valid, n_a / np.where(valid, tot, 1.0), 0.0)
        pw = cw[start:start + chunk][:, pair_cl] if cw is not None else np.ones_like(tot)
        w = pw * valid
        c2 = pw * (tot >= 2 - 1e-9)
        out[start:start + chunk, :m] = (w * (1 - h)).sum(1)[:, None] + (w * (2 * h - 1)) @ p
        out[start:start + chunk, m] = (c2 * np.maximum(h, 1 - h)).sum(1)
        out[start:start + chunk, m + 1] = c2.sum(1)
        out[start:start + chunk, m + 2] = w.sum(1)
    return out



def _as_matrix(scores: Mapping[str, Any] | pd.DataFrame | np.ndarray, metrics: Sequence[str] | None
               ) -> tuple[np.ndarray, list[str]]:
    if isinstance(scores, pd.DataFrame):
        names = list(metrics) if metrics is not None else list(scores.columns)
        return scores[names].to_numpy(dtype=np.float64), names
    if isinstance(scores, Mapping):
        names = list(metrics) if metrics is not None else list(scores)
        return np.column_stack([np.asarray(scores[m], dtype=np.float64) for m in names]), names
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    names = list(metrics) if metrics is not None else [f"metric{i}" for i in range(arr.shape[1])]
    return arr, names


def agreement_from_scores(
    scores_a: Mapping[str, Any] | pd.DataFrame | np.ndarray,
    scores_b: Mapping[str, Any] | pd.DataFrame | np.ndarray,
    n_a: Sequence[int] | np.ndarray,
    n_b: Sequence[int] | np.ndarray,
    *,
    higher_is_better: Mapping[str, bool] | Sequence[bool] | bool,
    datasets: Sequence[str] | np.ndarray | None = None,
    n_tie: Sequence[int] | np.ndarray | None = None,
    metrics: Sequence[str] | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    tie_tol: float = 0.0,
    human_ties: str = "exclude",
    scenes: Sequence[Any] | np.ndarray | None = None,
    annotator_votes: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """2AFC agreement of each metric with human votes, from per-pair metric values (no images needed).

    ``scores_a``/``scores_b``: metric values of output a / b per pair (``{metric: [n_pairs]}``, a
    DataFrame with one column per metric, or an array ``[n_pairs, n_metrics]``); ``n_a``/``n_b``/``n_tie``:
    human vote counts per pair; ``datasets``: dataset name per pair (default: one dataset ``default``).
    Returns one row per (metric, dataset) plus a pooled ``all`` row per metric, with the columns of
    :data:`RESULT_COLUMNS` (see the module docstring for every definition). ``bootstrap=0`` skips CIs.
    ``human_ties="half"`` counts each tie vote as half a vote for a and half for b instead of excluding it
    (``n_votes`` then includes them; ``n_tie_votes`` still counts them).
    ``scenes``: the scene of each pair (pairs on one scene are resampled together); ``annotator_votes``: one row
    per (pair, annotator) with columns ``pair`` (row index into the pairs), ``annotator``, ``n_a``, ``n_b``,
    ``n_tie`` (then annotators are resampled too, two-way). Without them each pair is its own unit.
    """
    va, names = _as_matrix(scores_a, metrics)
    vb, names_b = _as_matrix(scores_b, metrics if metrics is not None else names)
    if names_b != names or va.shape != vb.shape:
        raise SRMetricsError(f"scores for a and b differ in shape/metrics: {va.shape} {names} vs {vb.shape} {names_b}")
    n_pairs_all, m = va.shape
    if m == 0:
        raise SRMetricsError("no metrics to evaluate")
    if len(set(names)) != len(names):
        raise SRMetricsError(f"metric listed twice: {', '.join(names)}")
    if isinstance(higher_is_better, Mapping):
        missing = [n for n in names if n not in higher_is_better]
        if missing:
            raise SRMetricsError(f"higher_is_better not given for metric(s) {', '.join(missing)}")
        hib = np.array([bool(higher_is_better[n]) for n in names])
    else:
        hib = np.broadcast_to(np.asarray(higher_is_better, dtype=bool), (m,)).copy()
    na = np.asarray(n_a, dtype=np.int64)
    nb = np.asarray(n_b, dtype=np.int64)
    nt = np.zeros(n_pairs_all, np.int64) if n_tie is None else np.asarray(n_tie, dtype=np.int64)
    if not (len(na) == len(nb) == len(nt) == n_pairs_all):
        raise SRMetricsError(f"vote counts ({len(na)}, {len(nb)}, {len(nt)}) do not match {n_pairs_all} pairs")
    if (na < 0).any() or (nb < 0).any() or (nt < 0).any():
        raise SRMetricsError("vote counts must be >= 0")
    if human_ties not in ("exclude", "half"):
        raise SRMetricsError(f"human_ties must be 'exclude' or 'half', got {human_ties!r}")
    if human_ties == "half":
        na, nb = na + 0.5 * nt, nb + 0.5 * nt
    ds = (np.full(n_pairs_all, "default", dtype=object) if datasets is None
          else np.asarray(datasets, dtype=object))
    if len(ds) != n_pairs_all:
        raise SRMetricsError(f"{len(ds)} dataset names for {n_pairs_all} pairs")
    if OVERALL in set(ds):
        raise SRMetricsError(f"dataset name '{OVERALL}' is reserved for the pooled rows")
    if bootstrap < 0:
        raise SRMetricsError(f"bootstrap must be >= 0, got {bootstrap}")
    if not 0 < confidence < 1:
        raise SRMetricsError(f"confidence must be in (0, 1), got {confidence}")

    pref = metric_preference(va, vb, hib, tie_tol=tie_tol)
    voted = (na + nb) > 0
    scored = ~np.isnan(pref).any(axis=1)
    use = voted & scored
    agree = pair_agreement(pref, na, nb)  # [n, m]
    tot = (na + nb).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        h = np.where(tot > 0, na / np.where(tot > 0, tot, 1.0), np.nan)
    ceil_mask = use & ((na + nb) >= 2)
    ceil_val = np.where(ceil_mask, np.maximum(h, 1 - h), 0.0)

    groups = sorted(set(ds.tolist()))
    scene_codes = _pair_scenes(scenes, ds, n_pairs_all)
    ann = _annotator_cells(annotator_votes, n_pairs_all, human_ties)
    rng = np.random.default_rng(seed)
    x_all = np.concatenate([np.where(use[:, None], agree, 0.0), ceil_val[:, None],
                            ceil_mask[:, None].astype(np.float64), np.ones((n_pairs_all, 1))], axis=1)
    # per group: point sums and bootstrap sums of [agreement x m, ceiling value, ceiling indicator, pairs]
    stats: dict[str, dict[str, Any]] = {}
    clusters: dict[str, np.ndarray] = {}  # per dataset: the resampled cluster (scene, or pair) of each used pair
    cl_w: dict[str, np.ndarray] = {}
    for g in groups:
        gmask = ds == g
        sel = gmask & use
        n = int(sel.sum())
        sc = scene_codes[sel] if scene_codes is not None else None
        by_scene = sc is not None and len(np.unique(sc)) >= 2
        clusters[g] = pd.factorize(sc if by_scene else np.arange(n))[0]
        if bootstrap > 0 and n > 0:
            cl_w[g] = resample_counts(bootstrap_indices(int(clusters[g].max()) + 1, bootstrap, rng),
                                      int(clusters[g].max()) + 1)
        stats[g] = dict(
            n=n, sel=sel, sums=x_all[sel].sum(axis=0), by_scene=by_scene,
            n_votes=int(round(tot[sel].sum())), n_tie=int(nt[gmask].sum()),
            n_tie_only=int((gmask & ~voted).sum()), n_unscored=int((gmask & voted & ~scored).sum()),
            n_metric_ties=(pref[sel] == 0.5).sum(axis=0),
        )
    all_stats = dict(
        n=sum(s["n"] for s in stats.values()), sel=use.copy(),
        sums=sum(s["sums"] for s in stats.values()), by_scene=None,
        n_votes=sum(s["n_votes"] for s in stats.values()), n_tie=sum(s["n_tie"] for s in stats.values()),
        n_tie_only=sum(s["n_tie_only"] for s in stats.values()),
        n_unscored=sum(s["n_unscored"] for s in stats.values()),
        n_metric_ties=sum(s["n_metric_ties"] for s in stats.values()),
    )
    if all_stats["n"] == 0:
        raise SRMetricsError(
            f"no pair has both a non-tie human vote and metric values for every metric "
            f"({n_pairs_all} pair(s); {all_stats['n_tie_only']} with only tie votes, "
            f"{all_stats['n_unscored']} unscored)")
    for g, st in [*stats.items(), (OVERALL, all_stats)]:
        sel = st["sel"]
        gs = groups if g == OVERALL else [g]
        n_cl = [int(clusters[d].max()) + 1 if stats[d]["n"] else 0 for d in gs]
        words = {("scene" if stats[d]["by_scene"] else "pair") for d in gs if stats[d]["n"]}
        n_ann = len(np.unique(ann[1][sel[ann[0]]])) if ann is not None else 0
        des = design_of(np.repeat(np.arange(len(gs)), n_cl), max(n_ann, 1),
                        scene_word="scene" if words == {"scene"} else "pair" if words == {"pair"} else "scene/pair")
        if ann is None:
            des = Design(des.n_scenes, 0, des.scenes, False, des.scene_word)
        st["design"], st["boot"] = des, None
        if bootstrap <= 0 or st["n"] == 0 or not des.any:
            continue
        # cluster of each selected pair, numbered across the group's datasets
        offs = np.concatenate([[0], np.cumsum(n_cl)])
        pair_cl = np.concatenate([clusters[d] + offs[i] for i, d in enumerate(gs) if stats[d]["n"]])
        order = np.concatenate([np.flatnonzero(stats[d]["sel"]) for d in gs if stats[d]["n"]])
        cw = np.concatenate([cl_w[d] for d in gs if stats[d]["n"]], axis=1)

        def run(cw_: np.ndarray | None, annotators: bool, nb: int, sel: np.ndarray = sel, order: np.ndarray = order,
                pair_cl: np.ndarray = pair_cl) -> np.ndarray:
            aw = None
            if annotators:
                present = np.unique(ann[1][sel[ann[0]]])
                aw = np.zeros((nb, int(ann[1].max()) + 1))
                aw[:, present] = unit_weights(len(present), nb, rng)
            return _agreement_boot(x_all, order, pair_cl, cw_, aw, ann, pref, m, nb)

        boot = run(cw if des.scenes else None, des.annotators, bootstrap)
        if des.scenes and des.annotators:  # remove the pigeonhole's surplus (see resampling)
            n_part = max(100, bootstrap // 4)
            cw_part = np.concatenate([resample_counts(bootstrap_indices(k, n_part, rng), k) for k in n_cl if k],
                                     axis=1)
            acc0 = st["sums"][:m] / st["n"]

            def acc_var(bb: np.ndarray) -> float:
                with np.errstate(invalid="ignore", divide="ignore"):
                    return float(np.nanmean(np.nanvar(bb[:, :m] / bb[:, [m + 2]], axis=0)))
            k = pigeonhole_correction(acc_var(boot), acc_var(run(cw_part, False, n_part)),
                                      acc_var(run(None, True, n_part)), des.n_scenes, des.n_annotators)
            st["design"] = replace(des, scale=k)
            st["scale_center"] = acc0
        st["boot"] = boot

    rows: list[dict[str, Any]] = []
    for g, st in [*stats.items(), (OVERALL, all_stats)]:
        n = st["n"]
        with np.errstate(invalid="ignore", divide="ignore"):
            acc = st["sums"][:m] / n if n else np.full(m, np.nan)
            n_ceil = st["sums"][m + 1]
            ceiling = st["sums"][m] / n_ceil if n_ceil > 0 else np.nan
        des: Design = st["design"]
        level = des.level(confidence)
        if st["boot"] is not None:
            boot = st["boot"]
            with np.errstate(invalid="ignore", divide="ignore"):
                boot_acc = boot[:, :m] / boot[:, [m + 2]]
                boot_ceil = np.where(boot[:, m + 1] > 0, boot[:, m] / boot[:, m + 1], np.nan)
            if des.scale != 1.0:
                boot_acc = acc + des.scale * (boot_acc - acc)
                boot_ceil = ceiling + des.scale * (boot_ceil - ceiling)
            lo, hi = percentile_ci(boot_acc, level)
            if n_ceil > 0:
                c_lo, c_hi = (float(v[0]) for v in percentile_ci(boot_ceil[:, None], level))
            else:
                c_lo = c_hi = np.nan
        else:
            boot_acc = None
            lo = hi = np.full(m, np.nan)
            c_lo = c_hi = np.nan
        if n:
            best = int(np.argmax(acc))  # first of equals: metric order breaks ties
            order = np.argsort(-acc, kind="stable")
            rank = np.empty(m, np.int64)
            rank[order] = np.arange(1, m + 1)
            diff = acc[best] - acc
            if boot_acc is not None:
                bdiff = boot_acc[:, [best]] - boot_acc
                d_lo, d_hi = percentile_ci(bdiff, level)
                pval = des.p_value(bdiff)
            else:
                d_lo = d_hi = pval = np.full(m, np.nan)
        else:
            best, rank = -1, np.zeros(m, np.int64)
            diff = d_lo = d_hi = pval = np.full(m, np.nan)
        for j, name in enumerate(names):
            is_best = j == best
            rows.append(dict(
                metric=name, dataset=g, higher_is_better=bool(hib[j]), accuracy=float(acc[j]),
                ci_low=float(lo[j]), ci_high=float(hi[j]), n_pairs=n, n_votes=st["n_votes"],
                n_tie_votes=st["n_tie"], n_tie_only_pairs=st["n_tie_only"],
                n_metric_ties=int(st["n_metric_ties"][j]) if n else 0, n_pairs_unscored=st["n_unscored"],
                human_ceiling=float(ceiling), ceiling_ci_low=c_lo, ceiling_ci_high=c_hi,
                n_ceiling_pairs=int(n_ceil), rank=int(rank[j]),
                best_metric=names[best] if best >= 0 else "",
                diff_vs_best=float(diff[j]) if not is_best else 0.0,
                diff_ci_low=float(d_lo[j]) if not is_best else np.nan,
                diff_ci_high=float(d_hi[j]) if not is_best else np.nan,
                p_vs_best=float(pval[j]) if not is_best else np.nan,
                bootstrap=int(bootstrap), seed=int(seed), confidence=float(confidence),
                resampled=des.label if st["boot"] is not None else "none", n_scenes=des.n_scenes,
                n_annotators=des.n_annotators, ci_note=des.note if bootstrap > 0 else "",
            ))
    df = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    order = {name: i for i, name in enumerate(names)}
    gorder = {g: i for i, g in enumerate([*groups, OVERALL])}
    df = df.sort_values(by=["metric", "dataset"], key=lambda s: s.map(order) if s.name == "metric" else s.map(gorder),
                        kind="stable").reset_index(drop=True)
    return df


def agreement_from_pairs(pairs: pd.DataFrame, metrics: Sequence[str] | None = None, *,
                         higher_is_better: Mapping[str, bool] | None = None, **kwargs: Any) -> pd.DataFrame:
    """Agreement from a per-pair table as written by ``--pairs-out`` (columns ``dataset, n_a, n_b,
    n_tie`` and ``a:<metric>``, ``b:<metric>`` per metric). Directions default to the registry."""
    if metrics is None:
        metrics = [c[2:] for c in pairs.columns if c.startswith("a:") and f"b:{c[2:]}" in pairs.columns]
    if not metrics:
        raise SRMetricsError("per-pair table has no 'a:<metric>'/'b:<metric>' columns")
    for col in ("n_a", "n_b"):
        if col not in pairs.columns:
            raise SRMetricsError(f"per-pair table lacks column '{col}'")
    hib = dict(higher_is_better) if higher_is_better else {}
    for mname in metrics:
        if mname not in hib:
            hib[mname] = metric_direction(mname)
    return agreement_from_scores(
        {mname: pairs[f"a:{mname}"] for mname in metrics}, {mname: pairs[f"b:{mname}"] for mname in metrics},
        pairs["n_a"], pairs["n_b"], n_tie=pairs["n_tie"] if "n_tie" in pairs.columns else None,
        datasets=pairs["dataset"].astype(str) if "dataset" in pairs.columns else None,
        higher_is_better=hib, metrics=list(metrics), **kwargs)


# --------------------------------------------------------------------------------------------------
# The whole job: judgements -> unique (gt, image) scoring -> statistics

def annotator_vote_table(judgements: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame | None:
    """One row per (pair, annotator): ``pair`` (row of ``pairs``, as :func:`~.judgements.vote_table` makes it),
    ``annotator``, ``n_a``, ``n_b``, ``n_tie`` in the pair's canonical orientation; None without annotators."""
    if "annotator" not in judgements.columns:
        return None
    ann = judgements["annotator"].fillna("").astype(str).str.strip()
    if (ann == "").all():
        return None
    vote = judgements["vote" if "vote" in judgements.columns else "choice"].astype(str).str.lower()
    pos = pd.Series(np.arange(len(pairs)), index=pairs["pair_id"].to_numpy())
    df = pd.DataFrame({"pair": pos.reindex(judgements["pair_id"].to_numpy()).to_numpy(), "annotator": ann.to_numpy(),
                       "n_a": (vote == "a").to_numpy(int), "n_b": (vote == "b").to_numpy(int),
                       "n_tie": (vote == "tie").to_numpy(int)})
    df = df.dropna(subset=["pair"])
    out = df.groupby(["pair", "annotator"], sort=True, as_index=False)[["n_a", "n_b", "n_tie"]].sum()
    out["pair"] = out["pair"].astype(np.int64)
    return out


def unique_image_pairs(pairs: pd.DataFrame) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """The unique (gt, image) combinations of a vote table, as :class:`clipscore_sr.io.Pair` objects.

    Returns ``(unique_pairs, index_a, index_b)``: ``unique_pairs[index_a[i]]`` is (gt, a) of pair ``i``.
    Keys are ``u000000``, ``u000001``... in first-appearance order.
    """
    from ..io import Pair

    lookup: dict[tuple[str, str], int] = {}
    uniq: list[Pair] = []
    ia = np.empty(len(pairs), np.int64)
    ib = np.empty(len(pairs), np.int64)
    gts = pairs["gt_path"].tolist()
    for target, col in ((ia, "a_path"), (ib, "b_path")):
        for i, (gt, img) in enumerate(zip(gts, pairs[col].tolist())):
            k = (gt, img)
            j = lookup.get(k)
            if j is None:
                j = lookup[k] = len(uniq)
                uniq.append(Pair(f"u{j:06d}", gt, img))
            target[i] = j
    return uniq, ia, ib


def _relpath(p: str, root: str) -> str:
    try:
        return Path(os.path.relpath(p, root)).as_posix()
    except ValueError:  # other drive on Windows
        return p


@dataclass
class AgreementRun:
    """Everything :func:`run_agreement` produced.

    ``table``: the agreement table (:func:`agreement_from_scores`); ``pairs``: one row per judged pair
    (``pair_id, dataset, gt, a, b, n_a, n_b, n_tie``, ``a:<metric>``, ``b:<metric>``, ``agree:<metric>``,
    ``error``); ``n_rows``/``n_invalid``/``problems``: judgement rows read, rows skipped with
    ``skip_invalid`` and the formatted problems; ``n_image_pairs``: unique (gt, image) combinations
    scored; ``n_unique_images``: distinct image files among them.
    """

    table: pd.DataFrame
    pairs: pd.DataFrame
    n_rows: int
    n_invalid: int
    problems: list[str]
    n_image_pairs: int
    n_unique_images: int
    metric_ids: list[str]
    ranking: RankingAgreement | None = None

    @property
    def n_failed_pairs(self) -> int:
        return int((self.pairs["error"] != "").sum())


def run_agreement(
    judgements: pd.DataFrame | str | os.PathLike,
    metrics: Sequence[Any] | str = ("psnr", "ssim"),
    *,
    root: str | os.PathLike | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    skip_invalid: bool = False,
    check_images: bool = True,
    tie_tol: float = 0.0,
    human_ties: str = "exclude",
    pairs_out: str | os.PathLike | None = None,
    scores_out: str | os.PathLike | None = None,
    batch_size: int = 16,
    workers: int = 2,
    bands: Sequence[int] | str | None = None,
    data_range: float | None = None,
    device: str = "auto",
    precision: str = "fp32",
    metric_options: dict[str, Any] | None = None,
    progress: bool = False,
    ranking: bool = False,
    allow_outside_root: bool = False,
) -> AgreementRun:
    """The whole job behind :func:`agreement`, returning the per-pair table and counts as well.

    ``ranking=True`` also computes :func:`ranking_agreement` (the judgements need ``a_method``/``b_method``;
    only ``real`` trials count) with the same ``bootstrap``/``seed``/``confidence``, in ``.ranking``.
    """
    from ..metrics.base import parse_metric_list
    from ..pipeline import score_pairs

    if isinstance(metrics, str):
        metrics = parse_metric_list(metrics)
    metrics = list(metrics)
    if not metrics:
        raise SRMetricsError("no metrics given")
    directions = [metric_direction(m) for m in metrics]  # unknown ids fail here, before any work

    judg = load_judgements(judgements, root=root, skip_invalid=skip_invalid, check_images=check_images,
                           allow_outside_root=allow_outside_root)
    votes = vote_table(judg)
    uniq, ia, ib = unique_image_pairs(votes)
    scored = score_pairs(uniq, metrics, out=scores_out, batch_size=batch_size, workers=workers, bands=bands,
                         data_range=data_range, device=device, precision=precision,
                         metric_options=metric_options, progress=progress,
                         lr_from_gt=True)  # a gt that is the LR input (no HR) feeds metrics with an LR reference
    run = scored.attrs.get("run")
    metric_ids = list(run.metric_ids) if run is not None else [m if isinstance(m, str) else m.id for m in metrics]
    by_key = scored.set_index("key")
    keys = [p.key for p in uniq]
    if not set(keys) <= set(by_key.index):
        raise SRMetricsError(f"scoring returned no row for {len(set(keys) - set(by_key.index))} image pair(s)")
    vals = by_key.loc[keys, metric_ids].to_numpy(dtype=np.float64)
    errors = by_key.loc[keys, "error"].fillna("").astype(str).to_numpy()
    va, vb = vals[ia], vals[ib]
    table = agreement_from_scores(
        va, vb, votes["n_a"].to_numpy(), votes["n_b"].to_numpy(), n_tie=votes["n_tie"].to_numpy(),
        datasets=votes["dataset"].to_numpy(), higher_is_better=dict(zip(metric_ids, directions)),
        metrics=metric_ids, bootstrap=bootstrap, seed=seed, confidence=confidence, tie_tol=tie_tol,
        human_ties=human_ties, scenes=votes["gt"].to_numpy(), annotator_votes=annotator_vote_table(judg, votes))

    per_pair = votes[["pair_id", "dataset", "gt", "a", "b", "n_a", "n_b", "n_tie"]].copy()
    per_pair.attrs = {}
    half = 0.5 * votes["n_tie"].to_numpy() if human_ties == "half" else 0.0
    agree = pair_agreement(metric_preference(va, vb, np.array(directions), tie_tol=tie_tol),
                           votes["n_a"].to_numpy() + half, votes["n_b"].to_numpy() + half)
    extra = {}
    for j, mid in enumerate(metric_ids):
        extra[f"a:{mid}"] = va[:, j]
        extra[f"b:{mid}"] = vb[:, j]
        extra[f"agree:{mid}"] = agree[:, j]
    per_pair = pd.concat([per_pair, pd.DataFrame(extra, index=per_pair.index)], axis=1)
    per_pair["error"] = ["; ".join(dict.fromkeys(e for e in (errors[i], errors[j]) if e)) for i, j in zip(ia, ib)]
    if pairs_out is not None:
        from ..results import write_table

        write_table(per_pair, pairs_out)
    result = AgreementRun(
        table=table, pairs=per_pair, n_rows=int(judg.attrs.get("n_rows", len(judg))),
        n_invalid=int(judg.attrs.get("n_invalid", 0)), problems=list(judg.attrs.get("problems", [])),
        n_image_pairs=len(uniq), n_unique_images=len({p.sr for p in uniq} | {p.gt for p in uniq}),
        metric_ids=metric_ids)
    if result.n_failed_pairs == len(per_pair):
        raise SRMetricsError(f"no pair could be scored; first error: {per_pair['error'].iat[0]}")
    if ranking:
        result.ranking = _ranking_of_run(judgements, root, skip_invalid, allow_outside_root, uniq, vals, metric_ids, directions,
                                         bootstrap=bootstrap, seed=seed, confidence=confidence)
    return result


def _ranking_of_run(judgements: Any, root: Any, skip_invalid: bool, allow_outside_root: bool, uniq: Sequence[Any], vals: np.ndarray,
                    metric_ids: Sequence[str], directions: Sequence[bool], **kwargs: Any) -> RankingAgreement:
    """Per-(dataset, scene, method) metric values from the scored unique (gt, image) pairs, then
    :func:`ranking_agreement` against the human votes."""
    from .ranking import TRIAL_KINDS_RANKED, load_method_judgements, votes_from_frame

    df, info = load_method_judgements(judgements, skip_invalid=skip_invalid, root=root,
                                      allow_outside_root=allow_outside_root)
    votes = votes_from_frame(df, info)
    if "trial_kind" in df.columns:
        df = df[df["trial_kind"].astype(str).str.strip().str.lower().isin(TRIAL_KINDS_RANKED)]
    where = {(p.gt, p.sr): i for i, p in enumerate(uniq)}
    parts = []
    for side in ("a", "b"):
        pos = [where.get(k, -1) for k in zip(df["gt_path"], df[f"{side}_path"])]
        part = pd.DataFrame({"dataset": df["dataset"].to_numpy(), "scene": df["gt"].to_numpy(),
                             "method": df[f"{side}_method"].to_numpy()})
        v = np.full((len(df), len(metric_ids)), np.nan)
        ok = np.array(pos) >= 0
        v[ok] = vals[np.array(pos)[ok]]
        parts.append(pd.concat([part, pd.DataFrame(v, columns=list(metric_ids))], axis=1))
    scene_values = pd.concat(parts, ignore_index=True)
    return ranking_agreement(votes, scene_values, list(metric_ids), dict(zip(metric_ids, directions)), **kwargs)


def agreement(
    judgements: pd.DataFrame | str | os.PathLike,
    metrics: Sequence[Any] | str = ("psnr", "ssim"),
    *,
    root: str | os.PathLike | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    skip_invalid: bool = False,
    check_images: bool = True,
    tie_tol: float = 0.0,
    human_ties: str = "exclude",
    pairs_out: str | os.PathLike | None = None,
    scores_out: str | os.PathLike | None = None,
    batch_size: int = 16,
    workers: int = 2,
    bands: Sequence[int] | str | None = None,
    data_range: float | None = None,
    device: str = "auto",
    precision: str = "fp32",
    metric_options: dict[str, Any] | None = None,
    progress: bool = False,
    allow_outside_root: bool = False,
) -> pd.DataFrame:
    """Agreement of each metric with the human judgements in ``judgements`` (CSV path or DataFrame).

    Validates the judgements first (any bad row raises :class:`JudgementError`, or is skipped with
    ``skip_invalid=True``), scores each unique (gt, image) combination once with
    :func:`clipscore_sr.pipeline.score_pairs` (so embedding metrics embed each image once per model), and
    returns :func:`agreement_from_scores`'s table (one row per metric and dataset plus pooled ``all``
    rows). ``metrics`` are ids (``psnr``, ``clipscore:clip-rn50``) or :class:`Metric` instances.
    ``root``: image paths are relative to it and must stay inside it unless ``allow_outside_root``
    (default: the CSV's folder; the current folder for a DataFrame). ``bootstrap``/``seed``/``confidence``: the percentile bootstrap over pairs. ``tie_tol``:
    metric values closer than this are a tie. ``human_ties``: ``exclude`` (default) or ``half``.
    ``pairs_out``/``scores_out``: write the per-pair / per-image tables. The remaining options go to
    :func:`~clipscore_sr.pipeline.score_pairs`. :func:`run_agreement` also returns the per-pair table.
    """
    return run_agreement(
        judgements, metrics, root=root, bootstrap=bootstrap, seed=seed, confidence=confidence,
        skip_invalid=skip_invalid, check_images=check_images, tie_tol=tie_tol, human_ties=human_ties,
        pairs_out=pairs_out, scores_out=scores_out, batch_size=batch_size, workers=workers, bands=bands,
        data_range=data_range, device=device, precision=precision, metric_options=metric_options,
        progress=progress, allow_outside_root=allow_outside_root).table


def format_table(table: pd.DataFrame, *, percent: bool = True) -> str:
    """A ranked plain-text table: one line per metric (pooled accuracy with CI, each dataset, the
    difference to the best metric with its p-value), best first, then the human ceiling."""
    if table.empty:
        raise JudgementError("empty agreement table")
    pooled = table[table["dataset"] == OVERALL].sort_values("accuracy", ascending=False, kind="stable")
    datasets = [d for d in dict.fromkeys(table["dataset"]) if d != OVERALL]
    k = 100.0 if percent else 1.0
    fmt = (lambda v: "n/a" if pd.isna(v) else f"{v * k:.1f}") if percent else \
        (lambda v: "n/a" if pd.isna(v) else f"{v:.3f}")
    conf = int(round(float(table["confidence"].iat[0]) * 100))
    head = ["rank", "metric", f"accuracy [{conf}% CI]"]
    if len(datasets) > 1:
        head += datasets
    head += ["diff vs best [CI]", "p"]
    lines: list[list[str]] = []
    for _, r in pooled.iterrows():
        cells = [str(r["rank"]), r["metric"], f"{fmt(r['accuracy'])} [{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]"]
        if len(datasets) > 1:
            for d in datasets:
                sub = table[(table["metric"] == r["metric"]) & (table["dataset"] == d)]
                cells.append(fmt(sub["accuracy"].iat[0]) if len(sub) else "")
        if r["metric"] == r["best_metric"]:
            cells += ["(best)", ""]
        else:
            p = r["p_vs_best"]
            cells += [f"{fmt(r['diff_vs_best'])} [{fmt(r['diff_ci_low'])}, {fmt(r['diff_ci_high'])}]",
                      "n/a" if pd.isna(p) else (f"{p:.3f}" if p >= 0.001 else "<0.001")]
        lines.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(head)]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
    out += ["  ".join(c.ljust(w) for c, w in zip(cells, widths)) for cells in lines]
    first = pooled.iloc[0]
    unit = "%" if percent else ""
    tail = (f"{int(first['n_pairs'])} pairs, {int(first['n_votes'])} votes"
            f" ({int(first['n_tie_votes'])} tie votes excluded"
            + (f", {int(first['n_tie_only_pairs'])} tie-only pairs" if first["n_tie_only_pairs"] else "")
            + (f", {int(first['n_pairs_unscored'])} unscored pairs" if first["n_pairs_unscored"] else "") + ")")
    if "resampled" in first and first["resampled"] != "none":
        tail += f"; CIs: bootstrap over {first['resampled']} ({int(first['n_scenes'])} x {int(first['n_annotators'])})" \
            if " x " in str(first["resampled"]) else f"; CIs: bootstrap over {int(first['n_scenes']) if 'annotators' != first['resampled'] else int(first['n_annotators'])} {first['resampled']}"
    elif "ci_note" in first and first["ci_note"]:
        tail += f"; {first['ci_note']}"
    if not pd.isna(first["human_ceiling"]):
        tail += (f"; human ceiling {fmt(first['human_ceiling'])}{unit} [{fmt(first['ceiling_ci_low'])}, "
                 f"{fmt(first['ceiling_ci_high'])}] over {int(first['n_ceiling_pairs'])} pairs with >= 2 votes")
    else:
        tail += "; no human ceiling (no pair has 2 or more non-tie votes)"
    out.append(tail)
    return "\n".join(out)


__all__ = [
    "RANKING_AGREEMENT_COLUMNS", "RESULT_COLUMNS", "AgreementRun", "RankingAgreement", "agreement",
    "annotator_vote_table",
    "format_ranking_agreement", "kendall_tau_b", "ranking_agreement", "run_agreement", "agreement_from_pairs", "agreement_from_scores", "bootstrap_indices",
    "bootstrap_p_value", "bootstrap_sums", "format_table", "metric_direction", "metric_preference",
    "pair_agreement", "percentile_ci", "resample_counts", "unique_image_pairs",
]


from .ranking_agreement import (  # noqa: E402,F401  (moved; re-exported for callers of the old place)
    RANKING_AGREEMENT_COLUMNS,
    RankingAgreement,
    format_ranking_agreement,
    kendall_tau_b,
    ranking_agreement,
)
