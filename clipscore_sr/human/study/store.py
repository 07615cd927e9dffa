"""``judgements.csv`` of a study: appended answer by answer, flushed and fsynced, under a lock.

The file is in the canonical schema (:mod:`clipscore_sr.human.judgements`) plus the study's columns
(:data:`COLUMNS`). ``pair_id`` is the trial id. Writes take a thread lock and an ``fcntl`` lock on
``.judgements.lock`` so that several threads or server processes can share one study; before each write the
store reads what other writers appended. A write that replaces the file (an undo) also writes a fresh random stamp
into the lock file, and a store that finds another stamp there reads the whole file again: a new file can get
the inode number of the one it replaced, so inode and size cannot tell a replaced file from a grown one. A repeated (annotator, trial) is answered from the file, unchanged.
A line cut short by a crash (no final newline) is ignored and overwritten by the next answer. The first answer is
written together with the header in one atomic replace; a file left empty or without its header (by an older
version's crash) is repaired when the store opens it, and anything else that is not the study's columns is refused.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io as _io
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from ..judgements import OPTIONAL_COLUMNS, REQUIRED_COLUMNS
from .manifest import JUDGEMENTS, Study, Trial

STUDY_COLUMNS = ("trial_kind", "shown_left", "rt_ms", "timestamp")
COLUMNS: tuple[str, ...] = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS, *STUDY_COLUMNS)
_LOCK = ".judgements.lock"


def shown_left(study: Study, annotator: str, trial: Trial, trials: Mapping[str, Trial] | None = None) -> str:
    """Which of ``a``/``b`` is shown on the left to ``annotator`` (seeded by the study's seed, the annotator
    and the trial id); a repeat shows the opposite of the trial it repeats (looked up in ``trials``, default the
    manifest's)."""
    if trial.kind == "repeat":
        orig = (trials if trials is not None else study.by_id)[trial.repeat_of]
        return "b" if shown_left(study, annotator, orig, trials) == "a" else "a"
    h = hashlib.sha256(f"{study.seed}\0{annotator}\0{trial.id}".encode()).digest()
    return "a" if h[0] & 1 else "b"


def answer_row(study: Study, trial: Trial, annotator: str, choice: str, left: str, rt_ms: int,
               timestamp: str) -> dict[str, str]:
    """The CSV row of one answer; ``choice`` is ``a``, ``b`` or ``tie``."""
    return {"pair_id": trial.id, "dataset": study.dataset, "gt": trial.gt, "a": trial.a, "b": trial.b,
            "choice": choice, "annotator": annotator, "a_method": trial.a_method, "b_method": trial.b_method,
            "trial_kind": trial.kind, "shown_left": left, "rt_ms": str(int(rt_ms)), "timestamp": timestamp}


def fsync_dir(path: Path) -> None:
    """fsync a folder (its entries: a new or renamed file), where the platform can."""
    with contextlib.suppress(OSError):  # not every platform can open a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class JudgementStore:
    """The answers of one study folder; safe across threads and processes (see the module docstring)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.path = self.root / JUDGEMENTS
        self._tlock = threading.Lock()
        self._rows: list[dict[str, str]] = []
        self._index: dict[tuple[str, str], dict[str, str]] = {}
        self._count: dict[str, int] = {}
        self._offset = 0  # bytes of complete lines read
        self._ino: int | None = None
        self._stamp = ""  # the lock file's text when this store last read the file (changed by every replace)
        self.generation = 0  # +1 whenever the rows are read afresh (undo, a file replaced): earlier rows may be gone
        self.repaired = ""  # what opening the store repaired ('' when nothing)
        with self._tlock, open(self.root / _LOCK, "a+") as lock:
            import fcntl

            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            self._lockfh = lock
            try:
                self.repaired = self._repair()
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
        with self._locked():
            pass

    def _repair(self) -> str:
        """Give an empty or header-less judgements.csv its header back (atomically); '' when nothing to do."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return ""
        header = self._line(list(COLUMNS))
        if data.startswith(header):
            return ""
        if data.strip() == b"" or header.startswith(data):  # empty, or a header cut short
            self.path.unlink()
            return f"{self.path}: removed an empty or cut-short file (no answers in it)"
        first = data.split(b"\n", 1)[0]
        try:
            values = next(csv.reader([first.decode("utf-8")]))
        except (UnicodeDecodeError, StopIteration, csv.Error):
            values = []
        if len(values) != len(COLUMNS) or values[list(COLUMNS).index("trial_kind")] not in ("real", "sentinel",
                                                                                                "repeat"):
            from .manifest import StudyError

            raise StudyError(f"{self.path}:1: header is not the study's columns ({', '.join(COLUMNS)}) and the "
                             "line is no answer row either; move the file away to start the study afresh")
        self._replace(header + data)
        return f"{self.path}: the header line was missing (a crash during the first write?): restored"

    def _replace(self, data: bytes) -> None:
        """Write ``data`` as the whole file: temp file, fsync, atomic rename, fsync of the folder."""
        tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        fsync_dir(self.root)
        # the file is a new one: say so in the lock file (a new file may get the inode number the old one had, so
        # another store cannot tell a replaced file from a grown one by its inode and size)
        self._stamp = os.urandom(8).hex()
        self._lockfh.truncate(0)
        self._lockfh.write(self._stamp)
        self._lockfh.flush()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        import fcntl

        with self._tlock, open(self.root / _LOCK, "a+") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            self._lockfh = lock
            lock.seek(0)
            stamp = lock.read()
            if stamp != self._stamp:  # replaced by another store since this one last read it
                self._stamp = stamp
                if self._offset:
                    self._reset()
            try:
                self._sync()
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _reset(self) -> None:
        self._rows, self._index, self._count, self._offset, self._ino = [], {}, {}, 0, None
        self.generation += 1

    @contextlib.contextmanager
    def locked(self) -> Iterator[list[dict[str, str]]]:
        """Hold the store's thread and file locks with every row read, for work that must see all answers and must
        not interleave with a write (the active design choosing a trial). Yields the rows in file order (do not
        change them; do not call the store's other methods inside, which take the same locks)."""
        with self._locked():
            yield self._rows

    def has_answer(self, annotator: str, trial_id: str) -> bool:
        """Whether ``annotator`` has answered ``trial_id`` (as of the last read or write of this store)."""
        return (annotator, trial_id) in self._index

    def _add(self, row: dict[str, str]) -> None:
        self._rows.append(row)
        self._index[(row["annotator"], row["pair_id"])] = row
        self._count[row["annotator"]] = self._count.get(row["annotator"], 0) + 1

    def _sync(self) -> None:
        """Read what was appended since the last call (everything again if the file was replaced)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._reset()
            return
        if st.st_ino != self._ino or st.st_size < self._offset:
            self._reset()
            self._ino = st.st_ino
        if st.st_size == self._offset:
            return
        with open(self.path, "rb") as fh:
            fh.seek(self._offset)
            chunk = fh.read(st.st_size - self._offset)
        end = chunk.rfind(b"\n") + 1  # complete lines only
        if end == 0:
            return
        text = chunk[:end].decode("utf-8")
        lines = list(csv.reader(_io.StringIO(text, newline="")))
        if self._offset == 0:
            header, lines = lines[0], lines[1:]
            if tuple(header) != COLUMNS:
                from .manifest import StudyError

                raise StudyError(f"{self.path}:1: header is not the study's columns ({', '.join(COLUMNS)})")
        from ...csvcells import unescape

        for values in lines:
            if len(values) == len(COLUMNS):
                self._add(dict(zip(COLUMNS, map(unescape, values))))
        self._offset += end

    @staticmethod
    def _line(values: list[str]) -> bytes:
        from ...csvcells import escape

        buf = _io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow([escape(v) for v in values])
        return buf.getvalue().encode("utf-8")

    def append(self, row: dict[str, str]) -> tuple[dict[str, str], bool]:
        """Append one answer (flushed and fsynced before returning). Returns ``(row in the file, new)``;
        an (annotator, trial) already answered returns the stored row and ``False``, writing nothing."""
        with self._locked():
            old = self._index.get((row["annotator"], row["pair_id"]))
            if old is not None:
                return old, False
            line = self._line([row[c] for c in COLUMNS])
            if self._offset == 0:  # no header read yet: header and first answer in one atomic replace
                first = self._line(list(COLUMNS)) + line
                self._replace(first)
                self._offset, self._ino = len(first), os.stat(self.path).st_ino
            else:
                with open(self.path, "r+b") as fh:
                    fh.truncate(self._offset)  # drop a line cut short by a crash
                    fh.seek(self._offset)
                    fh.write(line)
                    fh.flush()
                    os.fsync(fh.fileno())
                    self._offset = fh.tell()
            self._add(dict(row))
            return row, True

    def undo(self, annotator: str, before: Callable[[dict[str, str], list[dict[str, str]]], None] | None = None
             ) -> dict[str, str] | None:
        """Remove ``annotator``'s most recent answer (the file is rewritten atomically); returns it. ``before(row,
        rows)`` is called under the lock first, with every row still in place (the active design logs the undo
        there, before the answer is gone)."""
        with self._locked():
            mine = [r for r in self._rows if r["annotator"] == annotator]
            if not mine:
                return None
            if before is not None:
                before(mine[-1], self._rows)
            self._remove(mine[-1])
            return mine[-1]

    def remove(self, row: dict[str, str]) -> bool:
        """Remove the answer equal to ``row`` in every column (an undo the active design logged but did not finish:
        a crash between the two writes); False when no such answer is in the file."""
        with self._locked():
            same = next((r for r in self._rows if r == row), None)
            if same is not None:
                self._remove(same)
            return same is not None

    def _remove(self, row: dict[str, str]) -> None:
        keep = [r for r in self._rows if r is not row]
        self._replace(b"".join([self._line(list(COLUMNS)), *(self._line([r[c] for c in COLUMNS]) for r in keep)]))
        self._reset()
        self._sync()

    def count(self, annotator: str) -> int:
        """How many answers ``annotator`` has given (as of the last read or write of this store)."""
        return self._count.get(annotator, 0)

    def answers(self, annotator: str | None = None) -> list[dict[str, str]]:
        """Rows in file order (of one annotator, or all)."""
        with self._locked():
            return [dict(r) for r in self._rows if annotator is None or r["annotator"] == annotator]
