"""Human pairwise judgements: the canonical CSV schema, reading, validation and writing.

Canonical CSV (one row per human judgement)
-------------------------------------------
Required columns: ``pair_id, dataset, gt, a, b, choice``; optional: ``annotator, a_method, b_method``
(other columns are kept and ignored).

* ``gt``, ``a``, ``b``: image paths relative to the root folder (default: the CSV's folder);
  absolute paths are used as they are.
* ``choice``: ``a``, ``b`` or ``tie`` (case-insensitive).
* Several rows may share a ``pair_id`` (several annotators). Rows of one pair must name the same
  ``dataset``, ``gt`` and the same two outputs; a row that lists them as ``b, a`` is accepted and its
  vote is mirrored onto the first row's orientation.

Every problem is reported with the CSV line number it comes from (line 1 is the header). Images are
checked by :mod:`.judgement_images`; Amazon Mechanical Turk results are imported by :mod:`.amt`; per-pair
vote counts are :mod:`.vote_tables`.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import JudgementError

REQUIRED_COLUMNS: tuple[str, ...] = ("pair_id", "dataset", "gt", "a", "b", "choice")
OPTIONAL_COLUMNS: tuple[str, ...] = ("annotator", "a_method", "b_method")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
CHOICES: tuple[str, ...] = ("a", "b", "tie")
OVERALL = "all"  # dataset name of the pooled rows in agreement tables; reserved
_EXTRA = "__extra_fields__"  # internal column: surplus field count of a row


# --------------------------------------------------------------------------------------------------
# Problems and the validation report

@dataclass(frozen=True)
class Problem:
    """One validation problem: the CSV ``line`` (1 = header), the ``column`` involved (if any), a message."""

    line: int
    column: str | None
    message: str

    def format(self, source: str = "") -> str:
        where = f"{source}:{self.line}" if source else f"line {self.line}"
        col = f" [{self.column}]" if self.column else ""
        return f"{where}:{col} {self.message}"


@dataclass
class ValidationReport:
    """Outcome of :func:`validate_judgements`.

    ``judgements`` holds the valid rows only (columns of the schema plus ``line``, ``gt_path``,
    ``a_path``, ``b_path`` = resolved absolute paths, and ``vote`` = the choice in the pair's
    canonical a/b orientation); ``problems`` every problem found, sorted by line.
    """

    source: str
    root: str
    n_rows: int
    judgements: pd.DataFrame
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def bad_lines(self) -> list[int]:
        return sorted({p.line for p in self.problems})

    @property
    def n_invalid(self) -> int:
        return self.n_rows - len(self.judgements)

    def lines(self, limit: int | None = None) -> list[str]:
        """Problems as ``source:line: [column] message`` strings (at most ``limit``, then a count)."""
        shown = self.problems if limit is None else self.problems[:limit]
        out = [p.format(self.source) for p in shown]
        if limit is not None and len(self.problems) > limit:
            out.append(f"... and {len(self.problems) - limit} more problem(s)")
        return out

    def summary(self) -> str:
        if self.ok:
            return f"{self.source}: {self.n_rows} judgement(s), no problems"
        return (f"{self.source}: {len(self.problems)} problem(s) on {len(self.bad_lines)} line(s); "
                f"{len(self.judgements)} of {self.n_rows} judgement(s) valid")

    def raise_if_invalid(self) -> None:
        """Raise :class:`JudgementError` naming the first problem and the total count."""
        if self.ok:
            return
        first = self.problems[0].format(self.source)
        more = f" (+{len(self.problems) - 1} more problem(s); run 'srmetrics judgements validate')" \
            if len(self.problems) > 1 else ""
        raise JudgementError(f"{first}{more}")


# --------------------------------------------------------------------------------------------------
# Reading

def read_csv_rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Rows as ``(start_line, {column: value})`` with exact physical line numbers (quoted newlines ok); cells
    escaped against spreadsheet formulas by this toolkit (:mod:`clipscore_sr.csvcells`) read back as written."""
    from ..csvcells import unescape

    if not path.is_file():
        from .study.manifest import MANIFEST

        study = path.parent
        if (study / MANIFEST).is_file():  # a study nobody has answered yet
            raise JudgementError(f"{path}: no answers yet (serve the study with 'srmetrics study serve {study}')")
        raise JudgementError(f"{path}: judgements file not found")
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            try:
                header = next(reader)
            except StopIteration:
                raise JudgementError(f"{path}: empty file (expected a header line)") from None
            header = [h.strip() for h in header]
            dup = sorted({h for h in header if header.count(h) > 1 and h})
            if dup:
                raise JudgementError(f"{path}:1: duplicated column name(s): {', '.join(dup)}")
            prev_end = reader.line_num
            for values in reader:
                start = prev_end + 1
                prev_end = reader.line_num
                if not values or all(not v.strip() for v in values):
                    continue  # blank line
                # only spaces are trimmed: a control character (a trailing newline in a quoted cell) stays and is
                # flagged by validation, instead of silently merging 'alice\n' with 'alice'
                row = {h: (unescape(values[i].strip(" ")) if i < len(values) else "") for i, h in enumerate(header)
                       if h}
                if len(values) > len(header):
                    row[_EXTRA] = str(len(values) - len(header))
                rows.append((start, row))
    except UnicodeDecodeError as exc:
        raise JudgementError(f"{path}: not a UTF-8 text file ({exc.reason})") from None
    except csv.Error as exc:
        raise JudgementError(f"{path}: malformed CSV ({exc})") from None
    return header, rows


def _frame_from_rows(header: Sequence[str], rows: Sequence[tuple[int, Mapping[str, str]]]) -> pd.DataFrame:
    cols = [h for h in header if h]
    data = {c: [r.get(c, "") for _, r in rows] for c in cols}
    df = pd.DataFrame(data, dtype=object)
    df.insert(0, "line", np.array([ln for ln, _ in rows], dtype=np.int64))
    if any(_EXTRA in r for _, r in rows):
        df[_EXTRA] = [r.get(_EXTRA, "") for _, r in rows]
    return df


def read_judgements_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read a judgements CSV as strings without validating it; adds a ``line`` column (CSV line number)."""
    header, rows = read_csv_rows(Path(path))
    return _frame_from_rows(header, rows)


# --------------------------------------------------------------------------------------------------
# Validation

def _resolve(value: str, root: Path) -> str:
    p = Path(value).expanduser()
    return os.path.normpath(str(p if p.is_absolute() else root / p))


def inside_root(path: str, root: str | os.PathLike) -> bool:
    """True when ``path``, with every symlink and ``..`` resolved, lies inside ``root`` (also resolved)."""
    real, base = os.path.realpath(path), os.path.realpath(root)
    try:
        return os.path.commonpath([real, base]) == base
    except ValueError:  # different drives (Windows)
        return False


def validate_judgements(
    judgements: pd.DataFrame | str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    check_images: bool = True,
    source: str | None = None,
    allow_outside_root: bool = False,
) -> ValidationReport:
    """Check every judgement row and return a :class:`ValidationReport` (never raises for row problems).

    ``judgements`` is a CSV path or a DataFrame with the schema's columns (a ``line`` column, if
    present, gives the line numbers; otherwise row ``i`` is reported as line ``i + 2``). ``root`` is the
    folder image paths are relative to (default: the CSV's folder, or the current folder for a
    DataFrame). With ``check_images`` every referenced image is decoded once to check it exists, is
    readable and has the same size as the other images of its pair.

    Problems found: missing required columns (line 1; then no row is valid), empty fields, unknown
    ``choice`` values, surplus fields, missing or unreadable images, ``a`` and ``b`` naming the same
    file, rows of one ``pair_id`` naming different images or datasets, an annotator voting twice on a
    pair, the reserved dataset name ``all``, and pairs whose images differ in size or band count.

    Image paths must stay inside ``root`` once resolved (``../``, absolute paths, ``~`` and symlinks that
    leave it are problems, and such files are never opened, so the report does not tell whether they
    exist); ``allow_outside_root=True`` (CLI ``--allow-outside-root``) lifts this for trusted files. Without
    an explicit ``root``, a file in a study folder is confined to the folder holding the study and the inputs
    its ``study.json`` names (:func:`clipscore_sr.human.study.manifest.trusted_root`).
    Images are checked from their headers only (size, bands; the pixel cap applies), never decoded.
    """
    if isinstance(judgements, pd.DataFrame):
        df = judgements.copy()
        src = source or df.attrs.get("source") or "<judgements>"
        base = Path(root) if root is not None else Path(df.attrs.get("root", "."))
        if "line" not in df.columns:
            df.insert(0, "line", np.arange(len(df), dtype=np.int64) + 2)
        for col in df.columns:
            if col != "line":
                df[col] = [("" if (v is None or (isinstance(v, float) and np.isnan(v))) else str(v).strip())
                           for v in df[col]]
    else:
        path = Path(judgements)
        src = source or str(path)
        df = read_judgements_csv(path)
        base = Path(root) if root is not None else path.parent
    base = base.expanduser().resolve()
    confine = [base]
    if root is None:  # a study's judgements name its inputs relative to the study folder (../gt/x.png)
        from .study.manifest import trusted_root

        confine = trusted_root(base) or [base]
    problems: list[Problem] = []
    n_rows = len(df)

    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        found = ", ".join(c for c in df.columns if c not in ("line", _EXTRA)) or "none"
        problems.append(Problem(1, None, f"missing required column(s) {', '.join(missing)} "
                                         f"(found: {found}; required: {', '.join(REQUIRED_COLUMNS)})"))
        return ValidationReport(src, str(base), n_rows, _empty_frame(df), problems)

    bad: set[int] = set()  # row positions that are invalid
    cells = {c: df[c].tolist() for c in df.columns}  # plain lists: per-cell pandas access is slow

    def flag(pos: int, column: str | None, message: str) -> None:
        problems.append(Problem(int(cells["line"][pos]), column, message))
        bad.add(pos)

    lines = df["line"].to_numpy()
    has_annot = "annotator" in df.columns
    choices = [str(c).strip().lower() for c in cells["choice"]]
    # an empty annotator among named ones would be resampled as one more person, and escape the one-vote rule
    named = has_annot and any(str(v).strip() for v in cells["annotator"])

    # --- field-level checks
    for pos in range(n_rows):
        if _EXTRA in df.columns and cells[_EXTRA][pos]:
            flag(pos, None, f"{cells[_EXTRA][pos]} more field(s) than the header has columns")
        for col in ("pair_id", "dataset", "gt", "a", "b"):
            if not cells[col][pos]:
                flag(pos, col, f"empty '{col}'")
        if choices[pos] not in CHOICES:
            shown = cells["choice"][pos]
            flag(pos, "choice", f"unknown choice '{shown}' (expected one of: {', '.join(CHOICES)})"
                 if shown else "empty 'choice' (expected one of: a, b, tie)")
        if named and not str(cells["annotator"][pos]).strip():
            flag(pos, "annotator", "empty 'annotator' while other rows name one (fill it in, or --skip-invalid)")
        if cells["dataset"][pos].lower() == OVERALL:
            flag(pos, "dataset", f"dataset name '{OVERALL}' is reserved for the pooled rows of agreement tables")

    resolved: dict[str, str] = {"": ""}

    def res(v: str) -> str:
        r = resolved.get(v)
        if r is None:
            r = resolved[v] = _resolve(v, base)
        return r

    gt_abs = [res(v) for v in cells["gt"]]
    a_abs = [res(v) for v in cells["a"]]
    b_abs = [res(v) for v in cells["b"]]
    if not allow_outside_root:
        inside = {p: any(inside_root(p, c) for c in confine) for p in {*gt_abs, *a_abs, *b_abs} if p}
        for col, paths in (("gt", gt_abs), ("a", a_abs), ("b", b_abs)):
            for pos, p in enumerate(paths):
                if p and not inside[p]:
                    flag(pos, col, f"image path leaves the root {confine[0]}: {cells[col][pos]} "
                                   "(use --allow-outside-root for a trusted file)")
                    paths[pos] = ""  # never opened: nothing is learnt about files outside the root
    for col in ("pair_id", "dataset", "annotator", "a_method", "b_method", "choice", "gt", "a", "b"):
        for pos, v in enumerate(cells.get(col, ())):
            if isinstance(v, str) and _CONTROL.search(v):
                flag(pos, col, f"{col} {v!r} contains a control character (a newline, tab, ...)")
    for pos in range(n_rows):
        if a_abs[pos] and a_abs[pos] == b_abs[pos]:
            flag(pos, "b", f"'a' and 'b' name the same file ({cells['a'][pos]})")
        elif (check_images and a_abs[pos] and b_abs[pos] and os.path.exists(a_abs[pos])
              and os.path.exists(b_abs[pos])):  # files are touched only where images are checked
            if os.path.samefile(a_abs[pos], b_abs[pos]):
                flag(pos, "b", f"'a' and 'b' name the same file ({cells['a'][pos]} and {cells['b'][pos]})")

    # --- images: exist, decode, sizes agree within each row
    if check_images:
        from .judgement_images import image_problems

        for pos, col, message in image_problems(gt_abs, a_abs, b_abs, cells):
            flag(pos, col, message)

    # --- pair consistency and duplicated votes (in file order; first valid row of a pair is canonical)
    votes = list(choices)
    first_of_pair: dict[str, int] = {}
    seen_vote: dict[tuple[str, str], int] = {}
    for pos in range(n_rows):
        if pos in bad:
            continue
        pid = cells["pair_id"][pos]
        ref = first_of_pair.get(pid)
        if ref is None:
            first_of_pair[pid] = pos
        else:
            ref_line = int(lines[ref])
            if cells["dataset"][pos] != cells["dataset"][ref]:
                flag(pos, "dataset", f"pair_id '{pid}' has dataset '{cells['dataset'][pos]}' here but "
                                     f"'{cells['dataset'][ref]}' on line {ref_line}")
                continue
            if gt_abs[pos] != gt_abs[ref]:
                flag(pos, "gt", f"pair_id '{pid}' names gt '{cells['gt'][pos]}' here but "
                                f"'{cells['gt'][ref]}' on line {ref_line}")
                continue
            same = (a_abs[pos], b_abs[pos]) == (a_abs[ref], b_abs[ref])
            swapped = (a_abs[pos], b_abs[pos]) == (b_abs[ref], a_abs[ref])
            if not (same or swapped):
                flag(pos, "a", f"pair_id '{pid}' compares '{cells['a'][pos]}' vs '{cells['b'][pos]}' here but "
                               f"'{cells['a'][ref]}' vs '{cells['b'][ref]}' on line {ref_line}")
                continue
            if swapped and votes[pos] != "tie":
                votes[pos] = "b" if votes[pos] == "a" else "a"
        if has_annot and cells["annotator"][pos]:
            key = (pid, cells["annotator"][pos])
            if key in seen_vote:
                flag(pos, "annotator", f"annotator '{key[1]}' already voted on pair '{pid}' "
                                       f"(line {int(lines[seen_vote[key]])})")
                continue
            seen_vote[key] = pos

    problems.sort(key=lambda p: p.line)
    keep = np.array([pos not in bad for pos in range(n_rows)], dtype=bool)
    out = df.copy()
    out["choice"] = choices
    out["vote"] = votes
    out["gt_path"], out["a_path"], out["b_path"] = gt_abs, a_abs, b_abs
    for col in OPTIONAL_COLUMNS:
        if col not in out.columns:
            out[col] = ""
    if _EXTRA in out.columns:
        out = out.drop(columns=[_EXTRA])
    valid = out.loc[keep].reset_index(drop=True)
    valid.attrs["root"] = str(base)
    valid.attrs["source"] = src
    return ValidationReport(src, str(base), n_rows, valid, problems)


def _empty_frame(df: pd.DataFrame) -> pd.DataFrame:
    cols = ["line", *REQUIRED_COLUMNS, *OPTIONAL_COLUMNS, "vote", "gt_path", "a_path", "b_path"]
    return pd.DataFrame({c: pd.Series([], dtype=object if c != "line" else np.int64) for c in cols})


def load_judgements(
    judgements: pd.DataFrame | str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    skip_invalid: bool = False,
    check_images: bool = True,
    allow_outside_root: bool = False,
) -> pd.DataFrame:
    """Validate and return the judgement rows (see :func:`validate_judgements` for the columns).

    Any problem raises :class:`JudgementError` naming the first bad line, unless ``skip_invalid``: then
    the bad rows are dropped. ``df.attrs`` records ``root``, ``source``, ``n_rows`` (rows read),
    ``n_invalid`` (rows dropped) and ``problems`` (formatted problem lines). No valid row at all is
    always an error.
    """
    report = validate_judgements(judgements, root=root, check_images=check_images,
                                 allow_outside_root=allow_outside_root)
    if not skip_invalid:
        report.raise_if_invalid()
    if len(report.judgements) == 0:
        if report.problems:
            raise JudgementError(f"{report.source}: no valid judgement rows ({report.problems[0].format(report.source)})")
        raise JudgementError(f"{report.source}: no judgement rows")
    df = report.judgements
    df.attrs.update(n_rows=report.n_rows, n_invalid=report.n_invalid, problems=report.lines())
    return df


def write_judgements(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write judgements in the canonical column order (schema columns first, then the optional ones
    present, then any others); written atomically."""
    path = Path(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise JudgementError(f"{path}: cannot write judgements without column(s) {', '.join(missing)}")
    internal = {"line", "vote", "gt_path", "a_path", "b_path"}
    cols = [*REQUIRED_COLUMNS, *(c for c in OPTIONAL_COLUMNS if c in df.columns)]
    cols += [c for c in df.columns if c not in cols and c not in internal]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    from ..csvcells import escape_frame

    escape_frame(df[cols]).to_csv(tmp, index=False, lineterminator="\n")  # no cell a spreadsheet runs as a formula
    os.replace(tmp, path)

