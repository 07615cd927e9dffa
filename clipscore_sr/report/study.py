"""The report's study section: a study folder (``srmetrics study make`` + its ``judgements.csv``) read with the
study's own code, never reparsed here:

* progress as ``srmetrics study status`` computes it (:func:`clipscore_sr.human.study.status.study_status`):
  answers, annotators, per annotator the answers, sentinel accuracy, repeat consistency, agreement with the
  others, response times and flags (sentinel accuracy below 0.8), Krippendorff's alpha with its interval;
* the human ranking as ``srmetrics rank STUDY/judgements.csv`` computes it with its defaults
  (:func:`clipscore_sr.human.rank_run.rank_judgements`: Bradley-Terry, or for an active study the model it was
  designed with (``rank --model thurstone``: JOD), ties split, 1000 bootstrap resamples of scenes x annotators,
  seed 0, 95% intervals), or why there is none yet.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import SRMetricsError
from .values import table_json


def is_study(folder: Path) -> bool:
    """``folder`` holds a study manifest (``study.json``); :func:`study_section` validates it."""
    from ..human.study.manifest import MANIFEST

    return (folder / MANIFEST).is_file()


def study_section(folder: Path) -> dict[str, Any]:
    """The JSON-able study section of the report's model (see the module docstring)."""
    from ..human.rank_run import rank_judgements
    from ..human.study.manifest import JUDGEMENTS, load_study
    from ..human.study.status import STATUS_COLUMNS, status_json, study_status

    study = load_study(folder, check_files=False)
    model = study.active["model"] if study.active is not None else "bt"  # what the study was designed for
    sec: dict[str, Any] = {
        "folder": os.fspath(folder), "dataset": study.dataset, "methods": list(study.methods),
        "design": study.design, "model": model,
        "trials": study.n_trials, "kinds": study.slot_kinds,
        "allow_tie": study.allow_tie, "answers": 0, "annotators": 0, "finished": 0, "status": None,
        "reliability": None, "ranking": None, "notes": []}
    if not (folder / JUDGEMENTS).is_file():
        sec["notes"].append(f"no answers yet: judge the trials with 'srmetrics study serve {folder}'")
        return sec
    df, status, rel = study_status(study)
    sec.update(answers=len(df), annotators=len(status),
               finished=int((status["answers"] >= study.n_trials).sum()) if len(status) else 0,
               status=table_json(status[list(STATUS_COLUMNS)], JUDGEMENTS))
    sec["reliability"] = {**{k: v for k, v in status_json(status, rel).items() if k != "annotators"},
                          "text": rel.summary() if rel is not None else ""}
    try:
        run = rank_judgements(folder / JUDGEMENTS, model=model)
    except SRMetricsError as exc:  # no real votes yet, one method, disconnected comparisons...
        sec["notes"].append(f"no ranking yet: {str(exc).splitlines()[0]}")
        return sec
    sec["ranking"] = table_json(run.ranking.table, JUDGEMENTS)
    sec["notes"] += run.notes
    return sec


__all__ = ["is_study", "study_section"]
