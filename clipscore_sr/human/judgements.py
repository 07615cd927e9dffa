"""Human pairwise judgements: the canonical CSV schema, loading, validation and AMT import.

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

Every problem is reported with the CSV line number it comes from (line 1 is the header).
"""

from __future__ import annotations

import csv
import os
import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ImageReadError, JudgementError

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

def _read_csv_rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Rows as ``(start_line, {column: value})`` with exact physical line numbers (quoted newlines ok); cells
    escaped against spreadsheet formulas by this toolkit (:mod:`clipscore_sr.csvcells`) read back as written."""
    from ..csvcells import unescape

    if not path.is_file():
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
    header, rows = _read_csv_rows(Path(path))
    return _frame_from_rows(header, rows)


# --------------------------------------------------------------------------------------------------
# Validation

def _image_shape(path: str) -> tuple[int, int, int]:
    """(H, W, C) of an image read from its header only (nothing is decoded, so a decompression bomb costs
    nothing; the pixel cap applies); raises :class:`ImageReadError` otherwise."""
    from ..io import check_pixel_cap

    h, w, c, planes = check_pixel_cap(path)
    if planes > 1:
        raise ImageReadError(f"{path}: expected a 2-D image, found {planes} planes of {w}x{h}")
    return h, w, c


def _is_lr_reference(gt: tuple[int, int, int], img: tuple[int, int, int]) -> bool:
    """True when ``gt`` (H, W, C) is smaller than ``img`` by one integer scale > 1 with the same bands."""
    (h, w, c), (ih, iw, ic) = gt, img
    return c == ic and h < ih and ih % h == 0 and iw % w == 0 and ih // h == iw // w


def _probe_image(path: str) -> tuple[int, int, int] | str:
    """(H, W, C) of an image file, or the problem: ``image not found`` / ``unreadable image (...)``."""
    if not os.path.isfile(path):
        return "image not found"
    try:
        return _image_shape(path)
    except ImageReadError as exc:
        msg = str(exc)
        return "unreadable image (" + (msg[len(path) + 2:] if msg.startswith(path) else msg) + ")"


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
        unique_paths = [p for p in dict.fromkeys([*gt_abs, *a_abs, *b_abs]) if p]
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # decoders release the GIL
            shapes = dict(zip(unique_paths, pool.map(_probe_image, unique_paths)))
        for pos in range(n_rows):
            row_shapes: dict[str, tuple[int, int, int]] = {}
            for col, paths in (("gt", gt_abs), ("a", a_abs), ("b", b_abs)):
                p = paths[pos]
                if not p:
                    continue
                got = shapes[p]
                if isinstance(got, str):
                    flag(pos, col, f"{got}: {cells[col][pos]} (resolved to {p})"
                         if got == "image not found" else f"{got}: {cells[col][pos]}")
                else:
                    row_shapes[col] = got
            if "gt" in row_shapes:
                ref = row_shapes["gt"]
                for col in ("a", "b"):
                    s = row_shapes.get(col)
                    if s is None:
                        continue
                    if s[:2] != ref[:2] and _is_lr_reference(ref, s) and s[:2] == row_shapes.get("a", s)[:2]:
                        continue  # gt is the LR input (real-world SR, no HR): integer scale, a and b agree
                    if s[:2] != ref[:2]:
                        flag(pos, col, f"image size {s[1]}x{s[0]} of '{col}' ({cells[col][pos]}) differs from "
                                       f"gt {ref[1]}x{ref[0]} ({cells['gt'][pos]}) (W x H)")
                    elif s[2] != ref[2]:
                        flag(pos, col, f"'{col}' ({cells[col][pos]}) has {s[2]} band(s), gt has {ref[2]}")
            elif "a" in row_shapes and "b" in row_shapes and row_shapes["a"][:2] != row_shapes["b"][:2]:
                sa, sb = row_shapes["a"], row_shapes["b"]
                flag(pos, "b", f"image sizes differ: a {sa[1]}x{sa[0]}, b {sb[1]}x{sb[0]} (W x H)")

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


# --------------------------------------------------------------------------------------------------
# Amazon Mechanical Turk batch results

AMT_REQUIRED = ("HITId", "WorkerId", "AssignmentStatus")
_MAP_KEYS = {
    "gt": "column holding the GT image URL/path (e.g. Input.gt_url)",
    "a": "column holding output A's URL/path",
    "b": "column holding output B's URL/path",
    "choice": "Answer.* column holding the worker's answer",
    "pair_id": "column giving the pair id (default: HITId)",
    "dataset": "column giving the dataset name (or use --dataset for one name)",
    "annotator": "column giving the annotator id (default: WorkerId)",
    "a_method": "column naming the method that produced A",
    "b_method": "column naming the method that produced B",
    "trial_kind": "column giving the study trial kind (real/sentinel/repeat; srmetrics study export-amt)",
    "value.a": "answer value(s) meaning A is better, '|'-separated (default: a)",
    "value.b": "answer value(s) meaning B is better (default: b)",
    "value.tie": "answer value(s) meaning no preference (default: tie)",
    "onehot.a": "boolean Answer.* column that is true when A was chosen (crowd-html radio groups)",
    "onehot.b": "boolean Answer.* column that is true when B was chosen",
    "onehot.tie": "boolean Answer.* column that is true for 'no preference'",
}
_TRUE = {"true", "1", "on", "yes", "checked", "x"}
_FALSE = {"false", "0", "off", "no", ""}


@dataclass
class AmtMapping:
    """How AMT batch-result columns map onto the canonical schema (see ``srmetrics judgements import-amt``).

    ``gt``/``a``/``b`` name ``Input.*`` columns; the answer is either one ``choice`` column whose values are
    looked up in ``values`` (``{'a': [...], 'b': [...], 'tie': [...]}``, compared case-insensitively), or
    one-hot boolean columns ``onehot`` (``{'a': col, 'b': col, 'tie': col}``). ``prefixes`` are
    ``(old, new)`` replacements applied to image URLs/paths (first match wins); URLs (``http(s)://``,
    ``s3://``) must match one, and are percent-decoded after replacement.
    """

    gt: str
    a: str
    b: str
    choice: str | None = None
    values: dict[str, list[str]] = field(default_factory=lambda: {"a": ["a"], "b": ["b"], "tie": ["tie"]})
    onehot: dict[str, str] = field(default_factory=dict)
    pair_id: str = "HITId"
    annotator: str = "WorkerId"
    dataset: str | None = None
    dataset_name: str | None = None
    a_method: str | None = None
    b_method: str | None = None
    trial_kind: str | None = None
    prefixes: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def from_options(cls, items: Iterable[str], *, prefixes: Iterable[str] = (),
                     dataset_name: str | None = None) -> AmtMapping:
        """Build from ``KEY=VALUE`` strings (``--map``) and ``OLD=NEW`` strings (``--prefix``)."""
        kv: dict[str, str] = {}
        for item in items:
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep or not key or not value.strip():
                raise JudgementError(f"--map '{item}': expected KEY=VALUE (keys: {', '.join(_MAP_KEYS)})")
            if key not in _MAP_KEYS:
                import difflib

                close = difflib.get_close_matches(key, list(_MAP_KEYS), n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                raise JudgementError(f"--map: unknown key '{key}'{hint} (keys: {', '.join(_MAP_KEYS)})")
            if key in kv:
                raise JudgementError(f"--map: key '{key}' given twice")
            kv[key] = value.strip()
        for key in ("gt", "a", "b"):
            if key not in kv:
                raise JudgementError(f"--map: '{key}=COLUMN' is required ({_MAP_KEYS[key]})")
        values = {"a": ["a"], "b": ["b"], "tie": ["tie"]}
        for k in ("a", "b", "tie"):
            if f"value.{k}" in kv:
                values[k] = [v.strip() for v in kv[f"value.{k}"].split("|") if v.strip()]
        onehot = {k: kv[f"onehot.{k}"] for k in ("a", "b", "tie") if f"onehot.{k}" in kv}
        if onehot and "choice" in kv:
            raise JudgementError("--map: give either 'choice=COLUMN' (with value.*) or 'onehot.*' columns, not both")
        if not onehot and "choice" not in kv:
            raise JudgementError("--map: 'choice=Answer.COLUMN' (or onehot.a/onehot.b columns) is required")
        if onehot and not {"a", "b"} <= onehot.keys():
            raise JudgementError("--map: one-hot answers need both 'onehot.a' and 'onehot.b'")
        if "dataset" in kv and dataset_name:
            raise JudgementError("give either --map dataset=COLUMN or --dataset NAME, not both")
        pfx: list[tuple[str, str]] = []
        for item in prefixes:
            old, sep, new = item.partition("=")
            if not sep or not old:
                raise JudgementError(f"--prefix '{item}': expected OLD=NEW (e.g. https://bucket/study/=images/)")
            pfx.append((old, new))
        return cls(gt=kv["gt"], a=kv["a"], b=kv["b"], choice=kv.get("choice"), values=values, onehot=onehot,
                   pair_id=kv.get("pair_id", "HITId"), annotator=kv.get("annotator", "WorkerId"),
                   dataset=kv.get("dataset"), dataset_name=dataset_name, a_method=kv.get("a_method"),
                   b_method=kv.get("b_method"), trial_kind=kv.get("trial_kind"), prefixes=pfx)

    def columns(self) -> list[str]:
        cols = [self.gt, self.a, self.b, self.pair_id, self.annotator]
        cols += [c for c in (self.choice, self.dataset, self.a_method, self.b_method, self.trial_kind) if c]
        cols += list(self.onehot.values())
        return cols

    def slots(self, header: Sequence[str]) -> list[AmtMapping]:
        """Several judgements per assignment: column names containing ``{k}`` are expanded to ``k = 1, 2, ...``
        for as long as the header has every such column (one mapping per slot; just ``[self]`` without ``{k}``)."""
        templated = [c for c in self.columns() if "{k}" in c]
        if not templated:
            return [self]
        if "{k}" not in self.pair_id:
            raise JudgementError("--map: with '{k}' slots, map pair_id to a per-slot column too "
                                 "(e.g. pair_id=Input.pair_id_{k})")
        names = set(header)
        out: list[AmtMapping] = []
        k = 1
        while all(c.replace("{k}", str(k)) in names for c in templated):
            sub = {f: (v.replace("{k}", str(k)) if isinstance(v, str) else v) for f, v in vars(self).items()}
            sub["onehot"] = {key: col.replace("{k}", str(k)) for key, col in self.onehot.items()}
            out.append(AmtMapping(**sub))
            k += 1
        if not out:
            raise JudgementError(f"no slot k = 1 found: column(s) {', '.join(c.replace('{k}', '1') for c in templated)} "
                                 "missing")
        return out


@dataclass
class AmtImport:
    """Result of :func:`import_amt`: the canonical ``judgements`` and counts of what was read/dropped."""

    judgements: pd.DataFrame
    n_assignments: int
    n_rejected: int
    n_other_status: int
    files: list[str]

    def summary(self) -> str:
        return (f"{len(self.judgements)} judgement(s) from {self.n_assignments} assignment(s) in "
                f"{len(self.files)} file(s); dropped {self.n_rejected} rejected"
                + (f" and {self.n_other_status} with another status" if self.n_other_status else ""))


_URL_SCHEMES = ("http://", "https://", "s3://", "gs://")


def _map_location(value: str, prefixes: Sequence[tuple[str, str]], where: str, column: str) -> str:
    for old, new in prefixes:
        if value.startswith(old):
            mapped = new + value[len(old):]
            return urllib.parse.unquote(mapped) if value.lower().startswith(_URL_SCHEMES) else mapped
    if value.lower().startswith(_URL_SCHEMES):
        hint = " (add --prefix OLD=NEW to map URLs to local files)" if not prefixes else ""
        raise JudgementError(f"{where}: {column} URL '{value}' matches no --prefix{hint}")
    return value


def _amt_row(row: Mapping[str, str], m: AmtMapping, lookup: Mapping[str, str], where: str) -> dict[str, str]:
    """One canonical judgement from one AMT assignment (one slot of it)."""
    if m.onehot:
        chosen = []
        for choice, col in m.onehot.items():
            v = row[col].strip().lower()
            if v in _TRUE:
                chosen.append(choice)
            elif v not in _FALSE:
                raise JudgementError(f"{where}: {col} value '{row[col]}' is not a boolean")
        if len(chosen) != 1:
            raise JudgementError(f"{where}: expected exactly one of {', '.join(m.onehot.values())} "
                                 f"to be true, got {len(chosen)}")
        choice = chosen[0]
    else:
        assert m.choice is not None
        raw = row[m.choice].strip()
        if raw.lower() not in lookup:
            known = ", ".join(f"{k}->{v}" for k, v in lookup.items())
            raise JudgementError(f"{where}: {m.choice} value '{raw}' is not mapped "
                                 f"(mapped: {known}; use --map value.a=... etc.)")
        choice = lookup[raw.lower()]
    rec = {
        "pair_id": row[m.pair_id].strip(),
        "dataset": row[m.dataset].strip() if m.dataset else (m.dataset_name or "default"),
        "gt": _map_location(row[m.gt].strip(), m.prefixes, where, m.gt),
        "a": _map_location(row[m.a].strip(), m.prefixes, where, m.a),
        "b": _map_location(row[m.b].strip(), m.prefixes, where, m.b),
        "choice": choice,
        "annotator": row[m.annotator].strip(),
        "a_method": row[m.a_method].strip() if m.a_method else "",
        "b_method": row[m.b_method].strip() if m.b_method else "",
    }
    for key in ("pair_id", "gt", "a", "b"):
        if not rec[key]:
            raise JudgementError(f"{where}: empty value for '{key}'")
    if m.trial_kind:
        rec["trial_kind"] = row[m.trial_kind].strip()
    return rec


def import_amt(
    batch_files: str | os.PathLike | Sequence[str | os.PathLike],
    mapping: AmtMapping,
    *,
    statuses: Sequence[str] = ("Approved", "Submitted"),
) -> AmtImport:
    """Convert Amazon Mechanical Turk batch-results CSVs into canonical judgements.

    One output row per kept assignment. Assignments whose ``AssignmentStatus`` is ``Rejected`` are
    dropped (counted in ``n_rejected``); other statuses not in ``statuses`` are dropped and counted in
    ``n_other_status``. Extra columns are ignored. Missing mapped columns, unknown answer values and URLs
    that match no prefix raise :class:`JudgementError` naming the file and line. Image paths are written
    as given after prefix replacement (relative paths are then relative to the output CSV's folder).
    """
    files = [batch_files] if isinstance(batch_files, (str, os.PathLike)) else list(batch_files)
    if not files:
        raise JudgementError("no AMT batch-results file given")
    lookup: dict[str, str] = {}
    for choice, vals in mapping.values.items():
        for v in vals:
            lv = v.lower()
            if lv in lookup and lookup[lv] != choice:
                raise JudgementError(f"--map: answer value '{v}' is mapped to both '{lookup[lv]}' and '{choice}'")
            lookup[lv] = choice
    keep_status = {s.lower() for s in statuses}
    out_rows: list[dict[str, str]] = []
    n_assign = n_rej = n_other = 0
    for f in files:
        path = Path(f)
        header, rows = _read_csv_rows(path)
        slot_maps = mapping.slots(header)
        needed = [*AMT_REQUIRED, *(c for m in slot_maps for c in m.columns())]
        absent = [c for c in dict.fromkeys(needed) if c not in header]
        if absent:
            answers = [h for h in header if h.startswith(("Input.", "Answer."))]
            raise JudgementError(f"{path}:1: column(s) {', '.join(absent)} not found "
                                 f"(Input/Answer columns here: {', '.join(answers) or 'none'})")
        for line, row in rows:
            n_assign += 1
            status = row["AssignmentStatus"].strip().lower()
            if status == "rejected":
                n_rej += 1
                continue
            if status not in keep_status:
                n_other += 1
                continue
            where = f"{path}:{line}"
            for m in slot_maps:
                if len(slot_maps) > 1 and not row[m.pair_id].strip() and not row[m.gt].strip():
                    continue  # an unused slot (the last HIT of a batch)
                out_rows.append(_amt_row(row, m, lookup, where))
    cols = [*REQUIRED_COLUMNS, "annotator", "a_method", "b_method"]
    if mapping.trial_kind:
        cols.append("trial_kind")
    df = pd.DataFrame(out_rows, columns=cols, dtype=object)
    for col in ("a_method", "b_method"):
        if (df[col] == "").all():
            df = df.drop(columns=[col])
    return AmtImport(df, n_assign, n_rej, n_other, [str(f) for f in files])


def vote_table(judgements: pd.DataFrame) -> pd.DataFrame:
    """Aggregate validated judgements to one row per pair (first-appearance order).

    Columns: ``pair_id, dataset, gt, a, b, gt_path, a_path, b_path, n_a, n_b, n_tie`` where the counts
    use the pair's canonical orientation (the ``vote`` column from validation, else ``choice``).
    """
    vote_col = "vote" if "vote" in judgements.columns else "choice"
    votes = judgements[vote_col].astype(str).str.lower()
    path_cols = [c for c in ("gt_path", "a_path", "b_path") if c in judgements.columns]
    firsts = judgements.drop_duplicates("pair_id", keep="first")
    keep = ["pair_id", "dataset", "gt", "a", "b", *path_cols]
    pairs = firsts[keep].reset_index(drop=True)
    counts = pd.crosstab(judgements["pair_id"], votes).reindex(columns=list(CHOICES), fill_value=0)
    counts = counts.reindex(pairs["pair_id"]).fillna(0).astype(np.int64)
    pairs["n_a"] = counts["a"].to_numpy()
    pairs["n_b"] = counts["b"].to_numpy()
    pairs["n_tie"] = counts["tie"].to_numpy()
    return pairs
