"""The agreement job: judgements -> the unique (gt, image) pairs scored once with the scoring pipeline -> the 2AFC
statistics of :mod:`.agreement` (and, on request, each metric's method ranking against people's:
:mod:`.ranking_agreement`). ``clipscore_sr.agreement`` is :func:`agreement`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..errors import SRMetricsError
from ..metrics.base import metric_direction
from .agreement import agreement_from_scores, metric_preference, pair_agreement
from .judgements import load_judgements
from .ranking_agreement import RankingAgreement, ranking_agreement
from .vote_tables import annotator_vote_table, merge_same_stimulus, unique_image_pairs, vote_table


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
    judg, _ = merge_same_stimulus(judg)  # an active study's votes on one stimulus carry one id each
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
    from .votes import TRIAL_KINDS_RANKED, load_method_judgements, votes_from_frame

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
    (default: the CSV's folder; the current folder for a DataFrame). ``bootstrap``/``seed``/``confidence``: the two-way bootstrap (scenes x annotators; see :mod:`.agreement`). ``tie_tol``:
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


__all__ = ["AgreementRun", "agreement", "run_agreement"]
