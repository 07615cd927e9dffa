"""Per-annotator quality checks of a study's judgements: answers, sentinel accuracy, repeat consistency,
response times; flags and a filtered judgement file.

* sentinel accuracy = correct sentinel answers / sentinel answers (a tie is wrong);
* repeat consistency = repeats answered like the trial they repeat (same a/b/tie; both must be answered)
  / such repeat pairs;
* median response time (s) and time spent (minutes, the sum of response times);
* an annotator is *flagged* when their sentinel accuracy is below the threshold (annotators without any
  sentinel answer are not flagged, and reported as such).

The functions take the judgement rows as a DataFrame so that other statistics (e.g. inter-annotator
reliability) can be computed from the same rows.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..judgements import read_judgements_csv
from .auditlog import logged_trials
from .manifest import JUDGEMENTS, Study, StudyError

STATUS_COLUMNS = ("annotator", "answers", "real", "sentinels", "sentinel_correct", "sentinel_accuracy",
                  "repeats", "repeat_consistent", "repeat_consistency", "median_rt_s", "time_spent_min",
                  "loo_agreement", "flagged", "reason")


def study_judgements(study: Study, path: str | os.PathLike | None = None) -> pd.DataFrame:
    """Judgement rows of a study (default ``STUDY_DIR/judgements.csv``; an AMT import works too) with
    ``trial_kind`` filled in from the manifest; rows naming an unknown trial are an error naming the line."""
    if path is None:  # the study's own file: opening the store repairs a header lost in a crash
        import warnings

        from ...errors import SRMetricsWarning
        from .store import JudgementStore

        repaired = JudgementStore(study.root).repaired
        if repaired:
            warnings.warn(repaired, SRMetricsWarning, stacklevel=2)
    path = Path(path) if path is not None else study.root / JUDGEMENTS
    if not path.is_file():
        raise StudyError(f"{path}: no judgements yet (serve the study with 'srmetrics study serve')")
    df = read_judgements_csv(path)
    for col in ("pair_id", "choice", "annotator"):
        if col not in df.columns:
            raise StudyError(f"{path}:1: column '{col}' missing")
    trials = logged_trials(study)  # an active study: the trials its server gave, from the audit log
    unknown = df.loc[~df["pair_id"].isin(list(trials))]
    if len(unknown):
        r = unknown.iloc[0]
        raise StudyError(f"{path}:{r['line']}: pair_id '{r['pair_id']}' is not a trial of {study.root}")
    df["trial_kind"] = [trials[p].kind for p in df["pair_id"]]
    df["choice"] = df["choice"].str.lower()
    if "rt_ms" not in df.columns:
        df["rt_ms"] = ""
    df.attrs["source"] = str(path)
    return df


def annotator_status(study: Study, judgements: pd.DataFrame, *, min_sentinel_accuracy: float = 0.8,
                     min_agreement: float | None = None, reliability: Any = None) -> pd.DataFrame:
    """One row per annotator with the columns of :data:`STATUS_COLUMNS` (see the module docstring).

    ``loo_agreement`` is the annotator's agreement with the leave-one-out majority of the other annotators on
    the real trials they share (:func:`clipscore_sr.human.reliability.annotator_reliability`); with
    ``min_agreement`` an annotator below it is flagged too. Pass ``reliability`` when it is already computed.
    """
    from ..reliability import annotator_reliability

    rel = reliability if reliability is not None else annotator_reliability(judgements) if len(judgements) else None
    loo = dict(zip(rel.annotators["annotator"], rel.annotators["loo_agreement"])) if rel is not None else {}
    trials = logged_trials(study)
    rows = []
    for name, g in judgements.groupby("annotator", sort=True):
        choice = dict(zip(g["pair_id"], g["choice"]))
        kinds = g["trial_kind"]
        sent = g[kinds == "sentinel"]
        correct = int(sum(trials[p].expected == c for p, c in zip(sent["pair_id"], sent["choice"])))
        reps = [(choice[p], choice.get(trials[p].repeat_of)) for p in g.loc[kinds == "repeat", "pair_id"]]
        reps = [(x, y) for x, y in reps if y is not None]
        consistent = sum(x == y for x, y in reps)
        rt = pd.to_numeric(g["rt_ms"], errors="coerce").to_numpy(dtype=np.float64)
        acc = correct / len(sent) if len(sent) else np.nan
        agree = float(loo.get(str(name), np.nan))
        reasons = []
        if len(sent) and acc < min_sentinel_accuracy:
            reasons.append(f"sentinel accuracy {acc:.2f} < {min_sentinel_accuracy:g}")
        if min_agreement is not None and np.isfinite(agree) and agree < min_agreement:
            reasons.append(f"agreement with the others {agree:.2f} < {min_agreement:g}")
        flagged = bool(reasons)
        reason = "; ".join(reasons) if reasons else "" if len(sent) else "no sentinel answered"
        rows.append(dict(
            annotator=name, answers=len(g), real=int((kinds == "real").sum()), sentinels=len(sent),
            sentinel_correct=correct, sentinel_accuracy=acc, repeats=len(reps), repeat_consistent=consistent,
            repeat_consistency=consistent / len(reps) if reps else np.nan,
            median_rt_s=float(np.nanmedian(rt)) / 1000 if np.isfinite(rt).any() else np.nan,
            time_spent_min=float(np.nansum(rt)) / 60000 if np.isfinite(rt).any() else np.nan,
            loo_agreement=agree, flagged=flagged, reason=reason))
    return pd.DataFrame(rows, columns=list(STATUS_COLUMNS))


def study_status(study: Study, path: str | os.PathLike | None = None, *, min_sentinel_accuracy: float = 0.8,
                 min_agreement: float | None = None) -> tuple[pd.DataFrame, pd.DataFrame, Any]:
    """What ``srmetrics study status`` computes: the judgement rows (:func:`study_judgements`), the per-annotator
    table (:func:`annotator_status`) and the annotators' reliability (Krippendorff's alpha; None without rows)."""
    from ..reliability import annotator_reliability

    df = study_judgements(study, path)
    rel = annotator_reliability(df) if len(df) else None  # once: the table and the alpha line share it
    table = annotator_status(study, df, min_sentinel_accuracy=min_sentinel_accuracy, min_agreement=min_agreement,
                             reliability=rel)
    return df, table, rel


def status_json(table: pd.DataFrame, reliability: Any) -> dict[str, Any]:
    """``study status --json``: the per-annotator records and Krippendorff's alpha with its interval."""
    import json

    rel = reliability
    return {"annotators": json.loads(table.to_json(orient="records")),
            "krippendorff_alpha": None if rel is None or np.isnan(rel.alpha) else rel.alpha,
            "krippendorff_alpha_ci": None if rel is None or np.isnan(rel.alpha_ci[0]) else list(rel.alpha_ci),
            "alpha_resampled": "none" if rel is None else rel.alpha_resampled,
            "alpha_units": 0 if rel is None else rel.n_alpha_units}


def filter_flagged(judgements: pd.DataFrame, status: pd.DataFrame) -> pd.DataFrame:
    """The judgement rows of annotators who are not flagged."""
    bad = set(status.loc[status["flagged"], "annotator"])
    return judgements[~judgements["annotator"].isin(bad)]


def format_status(study: Study, status: pd.DataFrame) -> str:
    """A plain-text table plus the study's progress line."""
    def f(v, spec):
        return "-" if pd.isna(v) else format(v, spec)

    head = ["annotator", "answers", "sentinels ok", "repeats same", "agrees w/ others", "median RT s", "time min",
            "flag"]
    lines = [[r.annotator, f"{r.answers}/{study.n_trials}",
              f"{r.sentinel_correct}/{r.sentinels} ({f(r.sentinel_accuracy, '.0%')})",
              f"{r.repeat_consistent}/{r.repeats} ({f(r.repeat_consistency, '.0%')})",
              f(r.loo_agreement, ".0%"), f(r.median_rt_s, ".2f"), f(r.time_spent_min, ".1f"), "FLAGGED: " + r.reason if r.flagged else r.reason]
             for r in status.itertuples()]
    widths = [max(len(h), *(len(x[i]) for x in lines)) if lines else len(h) for i, h in enumerate(head)]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
    out += ["  ".join(c.ljust(w) for c, w in zip(x, widths)) for x in lines]
    done = int((status["answers"] >= study.n_trials).sum()) if len(status) else 0
    out.append(f"{len(status)} annotator(s), {done} finished, {int(status['flagged'].sum()) if len(status) else 0} "
               f"flagged; {study.n_trials} trials per annotator")
    return "\n".join(out)


def exclude_check_trials(judgements: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Drop sentinel and repeat rows (by a ``trial_kind`` column); returns the rest and the counts dropped."""
    if "trial_kind" not in judgements.columns:
        return judgements, {}
    kinds = judgements["trial_kind"].astype(str).str.strip().str.lower()
    counts = {k: int((kinds == k).sum()) for k in ("sentinel", "repeat")}
    return judgements[~kinds.isin(["sentinel", "repeat"])], counts
