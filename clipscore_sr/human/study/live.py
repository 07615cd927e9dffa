"""The active design, served: the server chooses each annotator's next trial between answers.

* One :class:`~.active.ActiveSampler` for the study, fed every real answer in ``judgements.csv`` (all annotators,
  pooled, in file order): the posterior of the method scores, the spread over scenes and the balance of sides are
  the study's, kept by the sampler.
* Per annotator: the slot schedule of ``study.json`` (the balanced design's: where the sentinels go, and which
  earlier real slot each repeat shows again, sides swapped), and the cells (scene, method pair) already shown to
  them, which are not chosen for them again.
* A real slot is the sampler's choice among the cells the annotator has not seen, leaving out the cells of
  trials given to other annotators and not answered yet (else everybody asking at once gets the same best cell);
  when that leaves nothing, those are allowed again; when the sampler's own constraints leave nothing, a seeded
  random unseen cell is taken and the log says so. Each choice is seeded by (study seed, log line), so it depends
  only on the answers and the log: after a restart the server rebuilds the state it had (the log for what was
  given, the answers for the posterior) and chooses what it would have chosen; :func:`replay_log` re-derives
  every logged choice the same way.
* Every trial given is appended to the audit log (:mod:`.auditlog`) before it is shown; an annotator who asks
  again (a reload, a restart, an undo) gets their earliest unanswered trial back.
* An undo is logged (the answer taken back and where it stood) before it leaves ``judgements.csv``, so the answers
  behind every choice can be rebuilt and :func:`replay_log` is exact with undos too.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

import numpy as np

from .active import ActiveSampler, Choice
from .auditlog import UNDO, AuditLog, is_undo, trial_of
from .manifest import Study, StudyError, Trial
from .store import COLUMNS, JudgementStore


def _clean(record: dict[str, Any]) -> dict[str, Any]:
    """A sampler record as JSON can hold it (NaN -> null); the sampler's own counter ``trial`` is left out (the
    log line's ``n`` names the choice)."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in record.items() if k != "trial"}


@dataclass
class _Cells:
    """Scene and method-pair indices of the sampler's candidate grid ``[n_scenes, n_pairs]`` (pairs in
    ``np.triu_indices`` order, the order of :class:`~.active.ActiveSampler`'s ``allowed`` mask)."""

    scenes: list[str]
    methods: list[str]
    scene_index: dict[str, int] = field(init=False)
    pair_index: dict[tuple[str, str], int] = field(init=False)

    def __post_init__(self) -> None:
        self.scene_index = {s: i for i, s in enumerate(self.scenes)}
        iu, ju = np.triu_indices(len(self.methods), 1)
        self.pair_index = {}
        for p, (k, j) in enumerate(zip(iu, ju)):
            a, b = self.methods[k], self.methods[j]
            self.pair_index[(a, b)] = self.pair_index[(b, a)] = p

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.scenes), len(self.methods) * (len(self.methods) - 1) // 2

    def of(self, t: Trial) -> tuple[int, int]:
        return self.scene_index[t.scene], self.pair_index[(t.a_method, t.b_method)]


SNAPSHOT_EVERY = 25  # real answers between two copies of the sampler kept for undos
SNAPSHOTS_KEPT = 8  # about 200 answers back; 2.4 MB each for 20 methods x 500 scenes


class _Snapshots:
    """Copies of the sampler after every ``SNAPSHOT_EVERY``-th answer fed (the last ``SNAPSHOTS_KEPT``): taking back
    a recent answer rebuilds from the last copy before it instead of from the first answer (at most 25 answers
    to feed again, about 20 ms, instead of about 1 s at 2,000 answers). A copy is the state a fresh sampler reaches by feeding the same answers in the same
    order, so restarts and replays are unchanged."""

    def __init__(self) -> None:
        self.items: list[tuple[int, ActiveSampler]] = []

    def fed(self, n: int, sampler: ActiveSampler) -> None:
        if n % SNAPSHOT_EVERY == 0 and (not self.items or self.items[-1][0] < n):
            self.items = [*self.items[-(SNAPSHOTS_KEPT - 1):], (n, sampler.copy())]

    def restore(self, still: Callable[[int], bool]) -> tuple[int, ActiveSampler | None]:
        """The last copy whose ``n`` answers are all still there (``still(n)``), as a new sampler: ``(n, sampler)``;
        ``(0, None)`` when there is none."""
        self.items = [(n, s) for n, s in self.items if still(n)]
        return (self.items[-1][0], self.items[-1][1].copy()) if self.items else (0, None)


def _key(row: dict[str, str]) -> tuple[str, ...]:
    """An answer as the posterior saw it: every column (an answer undone and given again under the same trial id,
    in another process, is another answer: its choice or at least its timestamp differs)."""
    return tuple(row.values())


class GivenTrials:
    """What the log says was given: every trial by id (the manifest's sentinels too), each annotator's trials in
    slot order, the cells each annotator has seen, and the real trials with their annotator and cell."""

    def __init__(self, study: Study, cells: _Cells, where: str) -> None:
        self.schedule: list[dict[str, Any]] = study.active["schedule"]
        self.cells, self.where = cells, where
        self.trials: dict[str, Trial] = study.by_id
        self.slots: dict[str, list[str]] = {}
        self.mine: dict[str, set[str]] = {}
        self.seen: dict[str, np.ndarray] = {}
        self.real: dict[str, tuple[str, tuple[int, int]]] = {}
        self.n = 0  # log lines taken in

    def seen_by(self, annotator: str) -> np.ndarray:
        """``[n_scenes, n_pairs]``: the cells of the real trials given to ``annotator``."""
        if annotator not in self.seen:
            self.seen[annotator] = np.zeros(self.cells.shape, bool)
        return self.seen[annotator]

    def apply(self, e: dict[str, Any]) -> Trial | None:
        """Take one log line in (None for an undo line); a line that does not fit this study is an error naming
        it."""
        where = f"{self.where}:{e.get('n')}"
        if is_undo(e):
            row = e.get("row")
            if not isinstance(row, dict) or e.get("id") not in self.mine.get(str(e.get("annotator")), ()) or \
                    set(row) != set(COLUMNS) or not all(isinstance(v, str) for v in row.values()) or \
                    row["pair_id"] != e["id"] or row["annotator"] != e["annotator"] or \
                    row["choice"] not in ("a", "b", "tie") or type(e.get("real_index")) is not int:
                raise StudyError(f"{where}: not an undo of a trial this log gave '{e.get('annotator')}' (its id, row "
                                 "of every answer column, or real_index)")
            self.n += 1
            return None
        try:
            t = trial_of(e)
            ann, slot = str(e["annotator"]), int(e["slot"])
            mine = self.slots.setdefault(ann, [])
            spec = self.schedule[slot] if 0 <= slot < len(self.schedule) else {}
            if slot != len(mine) or spec.get("kind") != t.kind or t.id != e["id"] or \
                    (t.kind == "sentinel" and t.id != spec["trial"]):
                raise StudyError(f"{where}: slot {slot} of '{ann}' is out of order or not a {t.kind} slot")
            cell = self.cells.of(t) if t.kind != "sentinel" else None
        except (KeyError, TypeError, ValueError):
            raise StudyError(f"{where}: the trial does not belong to this study") from None
        mine.append(t.id)
        self.mine.setdefault(ann, set()).add(t.id)
        if t.kind != "sentinel":
            self.trials[t.id] = t
        if t.kind == "real" and cell is not None:
            self.seen_by(ann)[cell] = True
            self.real[t.id] = (ann, cell)
        self.n += 1
        return t


def choose(sampler: ActiveSampler, unseen: np.ndarray, busy: list[tuple[int, int]], seed: list[int]
           ) -> tuple[Choice | None, str]:
    """The sampler's next real trial among the ``unseen`` cells without the ``busy`` ones (then with them);
    ``(None, why)`` when its constraints leave none. Seeded by ``seed`` (the tie-break of equal gains)."""
    first = unseen.copy()
    for sc, p in busy:
        first[sc, p] = False
    tries = [(first, "")]
    if busy:
        tries.append((unseen, "every cell left was given to another annotator and not answered yet"))
    for allowed, why in tries:
        sampler.allowed = allowed
        sampler.rng = np.random.default_rng(seed)
        try:
            ch = sampler.next_trial()
        except ValueError:
            continue
        if ch.kind != "real":
            raise StudyError(f"the active sampler returned a {ch.kind} trial; the server places checks itself")
        return ch, why
    return None, "the sampler's spread over scenes leaves no cell this annotator has not seen"


def new_sampler(study: Study, cells: _Cells) -> ActiveSampler:
    """The study's sampler with no answers yet: its model, objective (``variance`` for studies made before the
    objective was an option) and balanced phase (none for studies made before it), seeded by the study."""
    return ActiveSampler(cells.methods, cells.scenes, model=study.active["model"],
                         objective=study.active.get("objective", "variance"),
                         balance_above=study.active.get("balance_above"), seed=study.seed)


class LiveDesign:
    """An active study being served: :meth:`next_trial` gives an annotator their next trial (see the module
    docstring). Safe across threads and processes (everything happens under the judgement store's lock)."""

    def __init__(self, study: Study, store: JudgementStore) -> None:
        if study.active is None:
            raise StudyError(f"{study.root}: not an active study")
        self.study, self.store = study, store
        self.schedule: list[dict[str, Any]] = study.active["schedule"]
        self.scenes: dict[str, dict[str, Any]] = study.active["scenes"]
        self.cells = _Cells(list(self.scenes), list(study.methods))
        self.log = AuditLog(study.root)
        self._reset_log_state()
        self._sampler: ActiveSampler | None = None
        self._fed: list[tuple[str, ...]] = []  # every column of each real answer recorded, in order
        self._feed_at = 0  # rows of the store (this generation) already looked at for the sampler
        self._snaps = _Snapshots()
        self._gen = -1
        self._seen_rows = 0
        self.rebuild_s = 0.0  # seconds the last rebuild of the posterior took (replaying the answers)
        self._rebuilding = False
        with store.locked() as rows:
            self._sync(rows)  # the log's undo lines whose answers are still in the file become pending
        done = self._finish_pending()
        self.repaired = (f"{self.store.path}: finished {len(done)} undo(s) that {self.log.path.name} records but a "
                         "stop had cut short") if done else ""  # what starting repaired ('' when nothing)
        with store.locked() as rows:
            self._sync(rows)
            orphans = sorted({r["pair_id"] for r in rows if r["pair_id"] not in self.trials})
            if orphans:  # serving on would give those ids again and forget what was shown
                raise StudyError(
                    f"{self.log.path}: {'missing' if not self.log.entries else 'incomplete'}, but judgements.csv "
                    f"answers {len(orphans)} trial(s) it does not list (e.g. {orphans[0]}); restore the audit log "
                    f"from a backup (it records every trial the server chose) before serving this study again")
            self._posterior(rows)

    def undo(self, annotator: str) -> dict[str, str] | None:
        """Take back ``annotator``'s last answer: an undo line in the log first, then the answer leaves
        ``judgements.csv`` (the posterior is rebuilt from the answers left at the next choice). Returns the row."""
        def log_it(row: dict[str, str], rows: list[dict[str, str]]) -> None:
            self._sync(rows)
            t = self.trials.get(row["pair_id"])
            if t is None:  # not a trial of this log (refused at start; nothing to rebuild from)
                return
            real = [r for r in rows if r["trial_kind"] == "real"]
            entry = {"n": len(self.log.entries) + 1, "event": UNDO, "id": t.id, "annotator": annotator,
                     "kind": row["trial_kind"], "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                     "trial": asdict(t), "row": dict(row),
                     "real_index": next((i for i, r in enumerate(real) if r is row), -1)}
            self.log.append(entry)
            self._apply(entry)

        done = [r for r in self._finish_pending() if r["annotator"] == annotator]
        if done:  # their last undo was logged but its answer stayed in the file: finishing it is this undo
            return done[-1]
        return self.store.undo(annotator, before=log_it)

    def _finish_pending(self) -> list[dict[str, str]]:
        """Remove the answers of undo lines still in ``judgements.csv`` (a rewrite that failed or was cut short after
        the line, here or in another server process): an undo line says the answer is gone from then on, and every
        choice after it is made (and replayed) without it. Returns the rows removed."""
        pending, self._pending = self._pending, []
        return [r for r in pending if self.store.remove(r)]

    # state from the log and the answers -------------------------------------------------------------
    def _reset_log_state(self) -> None:
        self.given = GivenTrials(self.study, self.cells, str(self.log.path))
        self.trials = self.given.trials
        self._open: dict[str, tuple[str, tuple[int, int]]] = {}  # real trials given and not answered yet
        self._pending: list[dict[str, str]] = []  # rows of undo lines not yet seen gone from judgements.csv

    def _apply(self, e: dict[str, Any]) -> None:
        t = self.given.apply(e)
        if t is None:
            self._pending.append(e["row"])
        if t is not None and t.kind == "real" and not self.store.has_answer(str(e["annotator"]), t.id):
            self._open[t.id] = self.given.real[t.id]

    def _sync(self, rows: list[dict[str, str]]) -> None:
        """Read the log lines and answer rows that are new since the last call (under the store's lock)."""
        new = self.log.sync()
        if len(self.log.entries) < self.given.n:  # the log was replaced: read it again from the start
            self._reset_log_state()
            new = self.log.entries
        for e in new:
            self._apply(e)
        if self.store.generation != self._gen:  # rows read afresh (an undo): what is open, what the sampler saw
            self._gen = self.store.generation
            self._open = {k: v for k, v in self.given.real.items() if not self.store.has_answer(v[0], k)}
            real = [_key(r) for r in rows if r["trial_kind"] == "real"]
            if real[:len(self._fed)] == self._fed:
                self._feed_at = self._row_after(rows, len(self._fed))
            else:  # an answer the posterior holds was taken back: rebuilt from the answers left (from a copy)
                n, self._sampler = self._snaps.restore(lambda k: real[:k] == self._fed[:k])
                self._fed, self._feed_at, self._rebuilding = self._fed[:n], self._row_after(rows, n), True
            self._seen_rows = len(rows)
        for r in rows[self._seen_rows:]:
            if r["trial_kind"] == "real" and self._open.get(r["pair_id"], ("",))[0] == r["annotator"]:
                del self._open[r["pair_id"]]
        self._seen_rows = len(rows)

    @staticmethod
    def _row_after(rows: list[dict[str, str]], n_real: int) -> int:
        """Index of the row after the ``n_real``-th real answer (0 for none)."""
        if n_real == 0:
            return 0
        seen = 0
        for i, r in enumerate(rows):
            seen += r["trial_kind"] == "real"
            if seen == n_real:
                return i + 1
        return len(rows)

    # the posterior ----------------------------------------------------------------------------------
    def _posterior(self, rows: list[dict[str, str]]) -> ActiveSampler:
        """The sampler with every real answer recorded (a fresh one replays them all, in file order)."""
        t0 = time.perf_counter()
        rebuilt = self._sampler is None or self._rebuilding
        if self._sampler is None:
            self._sampler = new_sampler(self.study, self.cells)
        for r in rows[self._feed_at:]:
            t = self.trials.get(r["pair_id"])
            if r["trial_kind"] != "real" or t is None or t.kind != "real":
                continue
            self._sampler.record(Choice(trial=-1, kind="real", scene=t.scene, a=t.a_method, b=t.b_method), r["choice"])
            self._fed.append(_key(r))
            self._snaps.fed(len(self._fed), self._sampler)
        self._feed_at = len(rows)
        if rebuilt:
            self.rebuild_s, self._rebuilding = time.perf_counter() - t0, False
        return self._sampler

    # serving ----------------------------------------------------------------------------------------
    def next_trial(self, annotator: str) -> Trial | None:
        """The annotator's earliest unanswered trial, else a new one (chosen, logged, then returned); None when
        every slot of their schedule is answered."""
        self._finish_pending()
        with self.store.locked() as rows:
            self._sync(rows)
            mine = self.given.slots.get(annotator, [])
            for tid in mine:
                if not self.store.has_answer(annotator, tid):
                    return self.trials[tid]
            if len(mine) >= len(self.schedule):
                return None
            slot, n = len(mine), len(self.log.entries) + 1
            spec = self.schedule[slot]
            extra: dict[str, Any] = {}
            if spec["kind"] == "sentinel":
                trial = self.trials[spec["trial"]]
            elif spec["kind"] == "repeat":
                orig = self.trials[mine[spec["of_slot"]]]
                trial = replace(orig, id=f"at{n:06d}", kind="repeat", repeat_of=orig.id)
            else:
                trial, extra = self._choose_real(annotator, n, rows)
            entry = {"n": n, "id": trial.id, "annotator": annotator, "slot": slot, "kind": trial.kind,
                     "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), "trial": asdict(trial),
                     **extra}
            self.log.append(entry)
            self._apply(entry)
            return trial

    def _choose_real(self, annotator: str, n: int, rows: list[dict[str, str]]) -> tuple[Trial, dict[str, Any]]:
        sampler = self._posterior(rows)
        unseen = ~self.given.seen_by(annotator)
        busy = {k: v[1] for k, v in self._open.items() if v[0] != annotator and unseen[v[1]]}
        ch, why = choose(sampler, unseen, list(busy.values()), [self.study.seed, n])
        record: dict[str, Any] = {}
        if ch is None:  # a seeded random cell the annotator has not seen
            cells = np.flatnonzero(unseen)
            sc, p = divmod(int(cells[np.random.default_rng([self.study.seed, n]).integers(len(cells))]),
                           self.cells.shape[1])
            iu, ju = np.triu_indices(len(self.cells.methods), 1)
            scene, a, b = self.cells.scenes[sc], self.cells.methods[iu[p]], self.cells.methods[ju[p]]
        else:
            scene, a, b = ch.scene, ch.a, ch.b
            record = _clean(asdict(ch))
        sc = self.scenes[scene]
        trial = Trial(f"at{n:06d}", "real", scene, a, b, sc["gt"], sc["files"][a], sc["files"][b], sc["gt_render"],
                      sc["renders"][a], sc["renders"][b])
        return trial, {"choice": record, "answers": len(self._fed), "rows": len(rows), "excluded": sorted(busy),
                       "fallback": why}

    def trial(self, trial_id: str) -> Trial | None:
        """A trial of the study (the manifest's or one given), or None."""
        if trial_id not in self.trials:
            with self.store.locked() as rows:  # another server process may have given it
                self._sync(rows)
        return self.trials.get(trial_id)

    @property
    def n_given(self) -> int:
        """Trials given so far (all annotators; the log's undo lines are not trials)."""
        return sum(len(v) for v in self.given.slots.values())

    @property
    def n_answers(self) -> int:
        """Real answers in the posterior."""
        return len(self._fed)

    def given_to(self, annotator: str, trial_id: str) -> bool:
        if trial_id not in self.given.mine.get(annotator, ()):  # another server process may have given it
            with self.store.locked() as rows:
                self._sync(rows)
        return trial_id in self.given.mine.get(annotator, ())


def _answers_ever(real_rows: list[dict[str, str]], entries: list[dict[str, Any]]) -> list[tuple[dict[str, str], float]]:
    """Every real answer that was ever in ``judgements.csv``, in the order it was appended, with the log line of
    the undo that took it back (``inf`` for those still there), from the file's real rows and the log's undo lines
    (read last to first, each answer put back where it stood)."""
    undos = [e for e in entries if is_undo(e)]
    pending = [e["row"] for e in undos]  # an undo cut short by a stop: its answer is still in the file
    ever: list[tuple[dict[str, str], float]] = [(r, math.inf) for r in real_rows if r not in pending]
    for e in reversed(undos):
        if e["row"].get("trial_kind") == "real" and e["real_index"] >= 0:
            ever.insert(min(e["real_index"], len(ever)), (e["row"], float(e["n"])))
    return ever


def replay_log(study: Study) -> tuple[int, list[str]]:
    """Re-derive every real choice in the audit log the way the server chose it: from the real answers in
    ``judgements.csv`` at that moment (the file, with the answers the log's undo lines took back put where they
    stood; a posterior that lost an answer is rebuilt from the rest, as the server does) and the log lines before
    it. Returns ``(choices checked, mismatches)``."""
    return _replay(study, _read_log(study), JudgementStore(study.root).answers())


def _read_log(study: Study) -> AuditLog:
    if study.active is None:
        raise StudyError(f"{study.root}: not an active study (no audit log)")
    log = AuditLog(study.root)
    log.sync()
    return log


def _replay(study: Study, log: AuditLog, rows: list[dict[str, str]]) -> tuple[int, list[str]]:
    """:func:`replay_log` on the log and the answer rows as read."""
    cells = _Cells(list(study.active["scenes"]), list(study.methods))
    check = GivenTrials(study, cells, str(log.path))
    for e in log.entries:  # every line fits the study (undo lines included) before any is used
        check.apply(e)
    given = GivenTrials(study, cells, str(log.path))
    ever = _answers_ever([r for r in rows if r["trial_kind"] == "real"], log.entries)
    sampler, fed, snaps = new_sampler(study, cells), [], _Snapshots()  # fed: indices into ever, in order
    checked, problems = 0, []
    for e in log.entries:
        if e.get("kind") == "real" and e.get("choice") and not is_undo(e):
            if not isinstance(e.get("answers"), int) or not isinstance(e.get("excluded"), list) or \
                    not all(isinstance(k, str) for k in e["excluded"]) or \
                    not isinstance(e["choice"], dict):
                raise StudyError(f"{log.path}:{e['n']}: a chosen trial without its answers count, excluded trials "
                                 "or choice record (the log is written by the server only)")
            n, want_n = int(e["n"]), int(e["answers"])
            held = [i for i, (_, gone) in enumerate(ever) if gone > n][:want_n]  # the file's real answers then
            if held[:len(fed)] != fed:  # an answer the posterior held was taken back: rebuilt from the rest
                k, copy = snaps.restore(lambda j, h=held, f=fed: h[:j] == f[:j])
                sampler, fed = copy or new_sampler(study, cells), fed[:k]
            for i in held[len(fed):]:
                t = given.trials.get(ever[i][0]["pair_id"])
                if t is None:
                    break
                sampler.record(Choice(trial=-1, kind="real", scene=t.scene, a=t.a_method, b=t.b_method),
                               ever[i][0]["choice"])
                fed.append(i)
                snaps.fed(len(fed), sampler)
            busy = [given.real[k][1] for k in e["excluded"] if k in given.real]
            ch, _ = choose(sampler, ~given.seen_by(str(e["annotator"])), busy, [study.seed, n])
            got = (ch.scene, ch.a, ch.b) if ch is not None else None
            want = (e["trial"]["scene"], e["trial"]["a_method"], e["trial"]["b_method"])
            checked += 1
            if len(fed) != want_n:
                problems.append(f"line {n}: chosen after {want_n} real answers; the file and the undo lines give "
                                 f"{len(fed)}")
            elif got != want:
                problems.append(f"line {n}: the log has {want}, the answers before it give {got}")
        given.apply(e)
    return checked, problems


def _pending_undos(log: AuditLog, rows: list[dict[str, str]]) -> int:
    return sum(1 for e in log.entries if is_undo(e) and e.get("row") in rows)


def pending_undos(study: Study) -> int:
    """Undo lines of an active study's log whose answer a stop left in ``judgements.csv`` (0 for a balanced
    study): ``rank``, ``agreement`` and ``status`` count those answers until ``study serve`` starts again."""
    if study.active is None:
        return 0
    return _pending_undos(_read_log(study), JudgementStore(study.root).answers())


def audit(study: Study) -> dict[str, Any]:
    """What ``srmetrics study audit`` reports: the log's trials and undos, and every real choice re-derived
    (:func:`replay_log`): ``choices``, ``mismatches`` (one line each; an answer to a trial the log does not list,
    as when the log is missing or cut short, is one too), ``balanced_phase`` (choices made while the pairs were
    kept balanced: the study's ``active.balance_above``), ``fallbacks`` (trials the sampler's rules could not give)
    and ``pending_undos`` (undo lines whose answer a stop left in ``judgements.csv``; the next ``study serve``
    removes it, and until then ``rank``, ``agreement`` and ``status`` still count it)."""
    log = _read_log(study)
    rows = JudgementStore(study.root).answers()
    checked, problems = _replay(study, log, rows)
    limit = study.active.get("balance_above")
    given = [e for e in log.entries if not is_undo(e)]
    unlisted = sorted({r["pair_id"] for r in rows} - {str(e.get("id")) for e in given})
    if unlisted:
        problems.append(f"{study.root / 'judgements.csv'}: answers {len(unlisted)} trial(s) that {log.path.name} "
                        f"does not list (e.g. {unlisted[0]}): the log is {'missing' if not log.entries else 'cut short'}"
                        "; their choices cannot be checked")
    pending = _pending_undos(log, rows)
    chosen = [e for e in given if e.get("kind") == "real"]
    bounds = [(e.get("choice") or {}).get("bound") for e in chosen]
    return {"log": str(log.path), "given": len(given), "undos": len(log.entries) - len(given), "choices": checked,
            "mismatches": problems, "fallbacks": sum(bool(e.get("fallback")) for e in chosen),
            "balanced_phase": sum(b is not None and limit is not None and b > limit for b in bounds),
            "pending_undos": pending}


__all__ = ["LiveDesign", "audit", "choose", "pending_undos", "replay_log"]
