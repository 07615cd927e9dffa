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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import JudgementError, SRMetricsError
from ..metrics.base import metric_direction
from .judgements import OVERALL, load_judgements, vote_table

RESULT_COLUMNS: tuple[str, ...] = (
    "metric", "dataset", "higher_is_better", "accuracy", "ci_low", "ci_high", "n_pairs", "n_votes",
    "n_tie_votes", "n_tie_only_pairs", "n_metric_ties", "n_pairs_unscored", "human_ceiling",
    "ceiling_ci_low", "ceiling_ci_high", "n_ceiling_pairs", "rank", "best_metric", "diff_vs_best",
    "diff_ci_low", "diff_ci_high", "p_vs_best", "bootstrap", "seed", "confidence",
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


def bootstrap_indices(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Resample ``n`` items with replacement ``n_boot`` times: an index matrix ``[n_boot, n]`` (int64)."""
    return rng.integers(0, n, size=(n_boot, n), dtype=np.int64)


def resample_counts(idx: np.ndarray, n: int) -> np.ndarray:
    """How often each item appears in each resample: ``[n_boot, n]`` float64 from an index matrix."""
    n_boot = idx.shape[0]
    flat = (idx + (np.arange(n_boot, dtype=np.int64) * n)[:, None]).ravel()
    return np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)


def bootstrap_sums(values: np.ndarray, idx: np.ndarray, chunk: int = _CHUNK) -> np.ndarray:
    """Sum of ``values`` ``[n, k]`` over each resample ``idx`` ``[n_boot, n]`` -> ``[n_boot, k]``.

    Computed as (resample count matrix) @ values, ``chunk`` resamples at a time; NaN values must have
    been replaced by the caller.
    """
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    out = np.empty((idx.shape[0], values.shape[1]), dtype=np.float64)
    for start in range(0, idx.shape[0], chunk):
        counts = resample_counts(idx[start:start + chunk], n)
        out[start:start + chunk] = counts @ values
    return out


def percentile_ci(samples: np.ndarray, confidence: float = 0.95, *, discrete: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over axis 0 (NaN samples ignored): ``(low, high)`` at ``confidence``. ``discrete``:
    bounds are resampled values (no interpolation; for statistics with few possible values, e.g. Kendall's tau)."""
    alpha = 1.0 - confidence
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            lo = np.nanpercentile(samples, 100 * alpha / 2, axis=0, method="lower" if discrete else "linear")
            hi = np.nanpercentile(samples, 100 * (1 - alpha / 2), axis=0, method="higher" if discrete else "linear")
    return lo, hi


def bootstrap_p_value(diffs: np.ndarray) -> np.ndarray:
    """Two-sided bootstrap p-value of ``H0: difference = 0`` from resampled differences (axis 0).

    ``min(1, 2 * min((1 + #{d <= 0}) / (B + 1), (1 + #{d >= 0}) / (B + 1)))``.
    """
    d = np.asarray(diffs, dtype=np.float64)
    b = d.shape[0]
    le = (1.0 + (d <= 0).sum(axis=0)) / (b + 1.0)
    ge = (1.0 + (d >= 0).sum(axis=0)) / (b + 1.0)
    return np.minimum(1.0, 2.0 * np.minimum(le, ge))


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
) -> pd.DataFrame:
    """2AFC agreement of each metric with human votes, from per-pair metric values (no images needed).

    ``scores_a``/``scores_b``: metric values of output a / b per pair (``{metric: [n_pairs]}``, a
    DataFrame with one column per metric, or an array ``[n_pairs, n_metrics]``); ``n_a``/``n_b``/``n_tie``:
    human vote counts per pair; ``datasets``: dataset name per pair (default: one dataset ``default``).
    Returns one row per (metric, dataset) plus a pooled ``all`` row per metric, with the columns of
    :data:`RESULT_COLUMNS` (see the module docstring for every definition). ``bootstrap=0`` skips CIs.
    ``human_ties="half"`` counts each tie vote as half a vote for a and half for b instead of excluding it
    (``n_votes`` then includes them; ``n_tie_votes`` still counts them).
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
    rng = np.random.default_rng(seed)
    # per group: point sums and bootstrap sums of [agreement x m, ceiling value, ceiling indicator]
    stats: dict[str, dict[str, Any]] = {}
    for g in groups:
        gmask = ds == g
        sel = gmask & use
        x = np.concatenate([agree[sel], ceil_val[sel][:, None], ceil_mask[sel][:, None].astype(np.float64)], axis=1)
        n = int(sel.sum())
        boot = None
        if bootstrap > 0 and n > 0:
            idx = bootstrap_indices(n, bootstrap, rng)
            boot = bootstrap_sums(x, idx)
        stats[g] = dict(
            n=n, sums=x.sum(axis=0), boot=boot,
            n_votes=int(round(tot[sel].sum())), n_tie=int(nt[gmask].sum()),
            n_tie_only=int((gmask & ~voted).sum()), n_unscored=int((gmask & voted & ~scored).sum()),
            n_metric_ties=(pref[sel] == 0.5).sum(axis=0),
        )
    all_stats = dict(
        n=sum(s["n"] for s in stats.values()),
        sums=sum(s["sums"] for s in stats.values()),
        boot=(sum(s["boot"] for s in stats.values() if s["boot"] is not None)
              if bootstrap > 0 and any(s["boot"] is not None for s in stats.values()) else None),
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

    rows: list[dict[str, Any]] = []
    for g, st in [*stats.items(), (OVERALL, all_stats)]:
        n = st["n"]
        with np.errstate(invalid="ignore", divide="ignore"):
            acc = st["sums"][:m] / n if n else np.full(m, np.nan)
            n_ceil = st["sums"][m + 1]
            ceiling = st["sums"][m] / n_ceil if n_ceil > 0 else np.nan
        if st["boot"] is not None:
            boot = st["boot"]
            boot_acc = boot[:, :m] / n
            with np.errstate(invalid="ignore", divide="ignore"):
                boot_ceil = np.where(boot[:, m + 1] > 0, boot[:, m] / boot[:, m + 1], np.nan)
            lo, hi = percentile_ci(boot_acc, confidence)
            if n_ceil > 0:
                c_lo, c_hi = (float(v[0]) for v in percentile_ci(boot_ceil[:, None], confidence))
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
                d_lo, d_hi = percentile_ci(bdiff, confidence)
                pval = bootstrap_p_value(bdiff)
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
        human_ties=human_ties)

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
    if not pd.isna(first["human_ceiling"]):
        tail += (f"; human ceiling {fmt(first['human_ceiling'])}{unit} [{fmt(first['ceiling_ci_low'])}, "
                 f"{fmt(first['ceiling_ci_high'])}] over {int(first['n_ceiling_pairs'])} pairs with >= 2 votes")
    else:
        tail += "; no human ceiling (no pair has 2 or more non-tie votes)"
    out.append(tail)
    return "\n".join(out)


__all__ = [
    "RANKING_AGREEMENT_COLUMNS", "RESULT_COLUMNS", "AgreementRun", "RankingAgreement", "agreement",
    "format_ranking_agreement", "kendall_tau_b", "ranking_agreement", "run_agreement", "agreement_from_pairs", "agreement_from_scores", "bootstrap_indices",
    "bootstrap_p_value", "bootstrap_sums", "format_table", "metric_direction", "metric_preference",
    "pair_agreement", "percentile_ci", "resample_counts", "unique_image_pairs",
]


# --------------------------------------------------------------------------------------------------
# Ranking agreement: does a metric rank the methods the way people do?

RANKING_AGREEMENT_COLUMNS: tuple[str, ...] = (
    "metric", "dataset", "tau_b", "tau_ci_low", "tau_ci_high", "tau_b_mean", "pairs_concordant",
    "n_methods", "n_scenes", "bootstrap", "seed", "confidence",
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

    ``votes``: human :class:`~clipscore_sr.human.ranking.Votes`; ``scene_values``: one row per (dataset,
    scene, method) with columns ``dataset, scene, method`` and one column per metric (the metric value of
    that method's output on that scene; ``scene`` as in the votes, i.e. the judgement's ``gt``). Per dataset
    (and pooled ``all``): the human Bradley-Terry ranking (ties split), the metric's ranking from
    per-scene pairwise wins (the metric prefers the better value on each scene where both methods have
    one; equal values split) fitted the same way, and from the mean per method; Kendall's tau-b of the
    fitted metric ranking against people, with a percentile CI over the same scene resamples for both
    (resampled within each dataset), and the fraction of method pairs ordered as people order them.
    """
    from .ranking import (
        DEFAULT_PRIOR_SD,
        check_rankable,
        fit_scores,
        scene_resample_weights,
        scene_win_counts,
    )

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

    human_sc, _ = scene_win_counts(votes, "split")
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

    summary_rows, method_rows = [], []
    for name, smask in groups:
        w1 = smask.astype(np.float64)[None, :]
        hw = counts(human_sc, w1)[0]
        idx = np.flatnonzero((hw + hw.T).sum(1) > 0)
        sub_methods = [methods[k] for k in idx]
        hw = hw[np.ix_(idx, idx)]
        check_rankable(sub_methods, hw + hw.T, f"{src}: dataset '{name}'" if name != OVERALL else src)
        h_score = fit_scores(hw, prior_sd=sd)
        rb = r_boot * smask[None, :] if r_boot is not None else None
        h_boot = fit_scores(counts(human_sc, rb)[:, idx][:, :, idx], prior_sd=sd) if rb is not None else None
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
                lo, hi = (float(v[0]) for v in percentile_ci(taus[:, None], confidence, discrete=True))
            sign = 1.0 if higher_is_better[mname] else -1.0
            summary_rows.append(dict(
                metric=mname, dataset=name, tau_b=tau, tau_ci_low=lo, tau_ci_high=hi,
                tau_b_mean=float(kendall_tau_b(np.nan_to_num(mean, nan=-np.inf), h_score)),
                pairs_concordant=_pairs_concordant(m_score, h_score), n_methods=len(idx),
                n_scenes=int(smask.sum()), bootstrap=int(bootstrap), seed=int(seed), confidence=float(confidence)))
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
    return "\n".join(out)
