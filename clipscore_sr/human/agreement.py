"""How often a metric picks the same SR output as people did (2AFC agreement), with bootstrap CIs, from per-pair
metric values and vote counts (no images: :mod:`.agreement_run` scores a judgement file's images and calls this).

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
* Confidence intervals: two-way bootstrap (:mod:`.resampling`): the scenes of each dataset (their pairs
  together; the pairs themselves where a dataset has one scene) and the annotators (each pair's votes re-weighted
  by its annotators' multiplicities), ``bootstrap`` resamples from ``numpy.random.default_rng(seed)``; the pooled
  row is the union of the per-dataset resamples. Intervals are ``estimate -/+ t_df se``, clipped to [0, 1]; every
  metric, the ceiling and the paired differences use the same resamples.
* Paired comparison: in each dataset (and pooled), the metric with the highest accuracy is ``best_metric``;
  for every other metric, ``diff_vs_best`` = accuracy(best) - accuracy(metric) with its CI and a two-sided
  p-value ``p_vs_best`` from the same ``se`` and ``df``: ``p_vs_best < 1 - confidence`` exactly when the CI of
  the difference excludes 0.
* Pairs whose metric values are missing (NaN: the image could not be scored) are left out for every
  metric, so all metrics are compared on the same pairs (``n_pairs_unscored``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from ..errors import JudgementError, SRMetricsError
from ..metrics.base import metric_direction
from .judgements import OVERALL
from .resampling import (
    Design,
    bootstrap_indices,
    design_of,
    effective_units,
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
        one_scene = sc is not None and len(np.unique(sc)) == 1
        clusters[g] = pd.factorize(sc if by_scene else np.arange(n))[0]
        if bootstrap > 0 and n > 0:
            cl_w[g] = resample_counts(bootstrap_indices(int(clusters[g].max()) + 1, bootstrap, rng),
                                      int(clusters[g].max()) + 1)
        stats[g] = dict(
            n=n, sel=sel, sums=x_all[sel].sum(axis=0), by_scene=by_scene, one_scene=one_scene,
            n_votes=int(round(tot[sel].sum())), n_tie=int(nt[gmask].sum()),
            n_tie_only=int((gmask & ~voted).sum()), n_unscored=int((gmask & voted & ~scored).sum()),
            n_metric_ties=(pref[sel] == 0.5).sum(axis=0),
        )
    all_stats = dict(
        n=sum(s["n"] for s in stats.values()), sel=use.copy(),
        sums=sum(s["sums"] for s in stats.values()), by_scene=None,
        one_scene=len(stats) == 1 and all(s["one_scene"] for s in stats.values()),
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
        eff_a = None
        if ann is not None:  # votes per annotator on the group's pairs: how many people they are worth
            keep = sel[ann[0]]
            eff_a = effective_units(np.bincount(ann[1][keep], weights=(ann[2] + ann[3])[keep]))
        des = replace(des, eff_scenes=effective_units(np.bincount(pair_cl)), eff_annotators=eff_a)
        st["design"] = des

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
            k, _ = pigeonhole_correction(acc_var(boot), acc_var(run(cw_part, False, n_part)),
                                         acc_var(run(None, True, n_part)), des.n_scenes, des.n_annotators,
                                         des.unit_df)
            # a pair's agreement is a ratio of its annotators' votes, far from linear in their weights: the surplus
            # estimate is kept conservative (at most half the variance removed; df of the fewer effective units), as
            # measured coverage needs (with the full correction and Satterthwaite's df: 0.92 in the test's world
            # over 2,000 studies, 0.85 with 2 annotators; with this 0.945 and 1.00)
            st["design"] = replace(des, scale=max(k, math.sqrt(0.5)))
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
        if st["boot"] is not None:
            boot = st["boot"]
            with np.errstate(invalid="ignore", divide="ignore"):
                boot_acc = boot[:, :m] / boot[:, [m + 2]]
                boot_ceil = np.where(boot[:, m + 1] > 0, boot[:, m] / boot[:, m + 1], np.nan)
            if des.scale != 1.0:
                boot_acc = acc + des.scale * (boot_acc - acc)
                boot_ceil = ceiling + des.scale * (boot_ceil - ceiling)
            lo, hi = (np.clip(v, 0.0, 1.0) for v in des.interval(acc, boot_acc, confidence))
            if n_ceil > 0:
                c_lo, c_hi = (float(np.clip(v[0], 0.5, 1.0)) for v in des.interval(np.array([ceiling]),
                                                                                   boot_ceil[:, None], confidence))
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
                d_lo, d_hi = (np.clip(v, -1.0, 1.0) for v in des.interval(diff, bdiff, confidence))
                pval = des.p_value(diff, bdiff)
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
                n_annotators=des.n_annotators,
                ci_note=("no interval: every resample gives the same accuracy, which is not certainty"
                         if st["boot"] is not None and np.isnan(lo[j]) and n else
                         _one_scene_note(des, st) if bootstrap > 0 else ""),
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



def _one_scene_note(des: Design, st: dict[str, Any]) -> str:
    """The design's note, led by what pairs as units mean when the judgements name a single scene."""
    if not st.get("one_scene") or not des.scenes:
        return des.note
    lead = (f"one scene: its {des.n_scenes} pairs are the units resampled, so the interval says nothing about "
            "other scenes")
    return f"{lead}; {des.note}" if des.note else lead


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
        ci = "no interval" if pd.isna(r["ci_low"]) and str(r.get("ci_note", "")).startswith("no interval") else \
            f"{fmt(r['ci_low'])}, {fmt(r['ci_high'])}"
        cells = [str(r["rank"]), r["metric"], f"{fmt(r['accuracy'])} [{ci}]"]
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
        cci = f"{fmt(first['ceiling_ci_low'])}, {fmt(first['ceiling_ci_high'])}" \
            if not pd.isna(first["ceiling_ci_low"]) or first.get("resampled", "none") == "none" else "no interval"
        tail += (f"; human ceiling {fmt(first['human_ceiling'])}{unit} [{cci}] over {int(first['n_ceiling_pairs'])} "
                 "pairs with >= 2 votes")
    else:
        tail += "; no human ceiling (no pair has 2 or more non-tie votes)"
    out.append(tail)
    return "\n".join(out)


__all__ = ["RESULT_COLUMNS", "agreement_from_pairs", "agreement_from_scores", "format_table", "metric_preference",
           "pair_agreement"]
