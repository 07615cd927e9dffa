"""What ``srmetrics rank`` computes from a judgement file, as one function: validated rows with methods (no image
opened), annotator reliability (and the annotators it drops), the votes of real trials, the ranking with its
bootstrap intervals, and the notes the command prints. The ``rank`` command and the report's study section
both call it, so a study's ranking in the report is the one ``srmetrics rank STUDY/judgements.csv`` gives.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .ranking import DEFAULT_PRIOR_SD, Ranking
from .reliability import Reliability


@dataclass
class RankRun:
    """The ranking, the annotators' reliability (before any drop) and the notes on what was left out."""

    ranking: Ranking
    reliability: Reliability
    notes: list[str] = field(default_factory=list)


def rank_judgements(judgements: str | os.PathLike, *, model: str = "bt", ties: str = "split",
                    by_dataset: bool = False, bootstrap: int = 1000, seed: int = 0, confidence: float = 0.95,
                    prior_sd: float = DEFAULT_PRIOR_SD, skip_invalid: bool = False,
                    min_agreement: float | None = None, min_sentinel_accuracy: float | None = None) -> RankRun:
    """Rank the methods of a judgement file (see the module docstring; options as ``srmetrics rank``)."""
    from .ranking import rank_methods
    from .reliability import annotator_reliability, drop_annotators
    from .votes import load_method_judgements, votes_from_frame

    df, info = load_method_judgements(judgements, skip_invalid=skip_invalid,
                                      allow_outside_root=True)  # rank opens no image
    rel = annotator_reliability(df, min_agreement=min_agreement, min_sentinel_accuracy=min_sentinel_accuracy)
    if rel.dropped:
        df = drop_annotators(df, list(rel.dropped))
    votes = votes_from_frame(df, info)
    ranking = rank_methods(votes, model=model, ties=ties, by_dataset=by_dataset, bootstrap=bootstrap, seed=seed,
                           confidence=confidence, prior_sd=prior_sd)
    notes = []
    if info["n_invalid"]:
        notes.append(f"skipped {info['n_invalid']} of {info['n_rows']} row(s) (--skip-invalid; first: "
                     f"{info['problems'][0]})")
    if votes.info.get("excluded_kinds"):
        kinds = ", ".join(f"{v} {k}" for k, v in votes.info["excluded_kinds"].items())
        notes.append(f"excluded {kinds} trial(s) from the ranking (used for reliability)")
    if rel.dropped:
        notes.append(f"dropped {rel.n_dropped_votes} vote(s) of {len(rel.dropped)} annotator(s): "
                     + "; ".join(f"{k}: {v}" for k, v in rel.dropped.items()))
    if ties == "drop" and ranking.info.get("n_dropped_ties"):
        notes.append(f"dropped {ranking.info['n_dropped_ties']} tie vote(s) (--ties drop)")
    return RankRun(ranking=ranking, reliability=rel, notes=notes)


__all__ = ["RankRun", "rank_judgements"]
