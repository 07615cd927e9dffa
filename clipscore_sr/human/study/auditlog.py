"""``active-log.jsonl``: the audit log of an active study, one JSON object per line, one line per trial the server
gave an annotator, written (flushed and fsynced) before the trial is shown.

Fields of a line: ``n`` (1, 2, ...: the line's number, which also seeds that choice), ``id`` (the trial id the
answers name as ``pair_id``: ``at000017`` for a chosen real trial or repeat, the manifest's id for a sentinel),
``annotator``, ``slot`` (0-based position in the annotator's sequence), ``kind``, ``time`` (UTC), ``trial`` (every
field of the trial shown: scene, methods, files, renders, ``repeat_of``), and for a chosen real trial ``choice``
(the sampler's record: the expected gain ``gain`` = ``gain_pooled`` + weight x ``gain_scene`` in the units of the
objective, ``n_candidates``, ``runner_up_gain``, ``bound``; see :class:`~.active.ActiveSampler`), ``answers`` (the real answers in
``judgements.csv`` the posterior was fitted to, in file order), ``rows`` (all rows of the file then),
``excluded`` (trials shown to other annotators and not yet answered, whose cells were left out) and ``fallback``
('' normally; why the sampler's choice could not be used otherwise).

An undo is a line too, written before the answer leaves ``judgements.csv``: ``event`` = ``"undo"``, ``n``, ``id``
and ``trial`` (the trial whose answer is taken back), ``annotator``, ``kind``, ``time``, ``row`` (the answer removed,
every column) and ``real_index`` (its position among the real answers in the file then; -1 for a check). With
them the answers the posterior held at every choice can be rebuilt exactly (:func:`~.live.replay_log`); an undo
line whose answer is still in the file (a crash between the two writes) is finished when the server starts.

The file only grows. Appends happen under the judgement store's lock (:meth:`~.store.JudgementStore.locked`),
so that several server processes share one log; a line cut short by a crash is ignored and overwritten by the
next append, like the answers file. With the answers, the log is enough to rebuild the server's state after a
restart (:mod:`.live`) and to re-derive every choice (:func:`~.live.replay_log`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .manifest import Study, StudyError, Trial

LOG = "active-log.jsonl"
UNDO = "undo"  # the ``event`` of an undo line
TRIAL_FIELDS = tuple(Trial.__dataclass_fields__)


class AuditLog:
    """The log of one study folder: :meth:`sync` reads what was appended (by any process), :meth:`append`
    writes one line (the caller holds the store's lock)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.path = Path(root) / LOG
        self.entries: list[dict[str, Any]] = []
        self._offset = 0
        self._ino: int | None = None

    def sync(self) -> list[dict[str, Any]]:
        """Read the complete lines appended since the last call; returns the new entries (all of them again,
        after :attr:`entries` was reset, when the file was replaced)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self.entries, self._offset, self._ino = [], 0, None
            return []
        if st.st_ino != self._ino or st.st_size < self._offset:
            self.entries, self._offset, self._ino = [], 0, st.st_ino
        if st.st_size == self._offset:
            return []
        with open(self.path, "rb") as fh:
            fh.seek(self._offset)
            chunk = fh.read(st.st_size - self._offset)
        end = chunk.rfind(b"\n") + 1  # complete lines only
        new = []
        for raw in chunk[:end].splitlines():
            line_no = len(self.entries) + len(new) + 1
            try:
                entry = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise StudyError(f"{self.path}:{line_no}: not a JSON line (the log is written by the server only)"
                                 ) from None
            if not isinstance(entry, dict) or entry.get("n") != line_no or \
                    not isinstance(entry.get("trial"), dict) or set(entry["trial"]) != set(TRIAL_FIELDS):
                raise StudyError(f"{self.path}:{line_no}: not an entry of this log (expected n = {line_no} and "
                                 "every trial field)")
            new.append(entry)
        self.entries += new
        self._offset += end
        return new

    def append(self, entry: dict[str, Any]) -> None:
        """Append ``entry`` as one line, flushed and fsynced before returning (a line cut short before is
        dropped first). ``entry['n']`` must be the next line number."""
        if entry.get("n") != len(self.entries) + 1:
            raise StudyError(f"{self.path}: entry n = {entry.get('n')} is not the next line ({len(self.entries) + 1})")
        line = (json.dumps(entry, separators=(",", ":"), allow_nan=False) + "\n").encode("utf-8")
        new = not self.path.exists()
        with open(self.path, "ab" if new else "r+b") as fh:
            fh.truncate(self._offset)
            fh.seek(self._offset)
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
            self._offset = fh.tell()
        if new:
            from .store import fsync_dir

            fsync_dir(self.path.parent)
        self._ino = os.stat(self.path).st_ino
        self.entries.append(entry)


def is_undo(entry: dict[str, Any]) -> bool:
    """Whether a log line records an undo (not a trial given)."""
    return entry.get("event") == UNDO


def trial_of(entry: dict[str, Any]) -> Trial:
    return Trial(**{k: str(entry["trial"][k]) for k in TRIAL_FIELDS})


def logged_trials(study: Study) -> dict[str, Trial]:
    """Every trial of a study by id: the manifest's, and for an active study those in its log."""
    trials = study.by_id
    if study.active is not None:
        log = AuditLog(study.root)
        log.sync()
        trials.update((e["id"], trial_of(e)) for e in log.entries)
    return trials


__all__ = ["LOG", "UNDO", "AuditLog", "is_undo", "logged_trials", "trial_of"]
