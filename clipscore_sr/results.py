"""Result tables: incremental, atomic writing (CSV/JSON/Parquet by extension), resume, and summaries.

A run appends each finished batch of rows to a journal (``<out>.journal.jsonl``, one JSON object per line,
flushed and fsynced) and rewrites the output file atomically (temporary file + ``os.replace``) at most every
``snapshot_every`` seconds and at the end, so a crash never leaves a truncated output and loses at most the
batch in flight. ``--resume`` reads the output file and the journal (ignoring a torn last line); the
journal's header line and each row's input identity say what the rows were computed from (compared by
:mod:`clipscore_sr.pipeline`). :class:`OutputLock` keeps a second writer away; :func:`check_outputs` catches
colliding or unwritable outputs before any work.

Non-finite values: CSV writes ``inf``/``-inf`` (and an empty cell for a missing value), JSON writes the strings
``"inf"``/``"-inf"`` and ``null``, Parquet stores IEEE floats.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import SRMetricsError

FORMATS = (".csv", ".json", ".parquet")


def output_format(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise SRMetricsError(f"{path}: unsupported output format '{suffix}' (use .csv, .json or .parquet)")
    return suffix


def safe_text(v: Any) -> Any:
    """Text that every output format can store: a file name that is not valid UTF-8 (Python keeps its bytes as
    lone surrogates) gets its bad bytes written as ``\\xNN``, the same way in CSV, JSON, Parquet and journals.
    In such text, and in text that holds a literal ``\\x``, a backslash is written twice, so no two names give
    the same text; other values pass through."""
    if isinstance(v, str):
        try:
            v.encode("utf-8")
            if "\\x" not in v:
                return v
        except UnicodeEncodeError:
            pass
        v = v.replace("\\", "\\\\")
        return v.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return v


def _json_value(v: Any) -> Any:
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isnan(v):
            return None
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    if isinstance(v, np.integer):
        return int(v)
    return v


def _from_json_value(v: Any) -> Any:
    if v == "inf":
        return math.inf
    if v == "-inf":
        return -math.inf
    return v


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write ``df`` atomically to ``path`` in the format its extension names."""
    path = Path(path)
    fmt = output_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if fmt == ".csv":
            from .csvcells import escape_frame

            escape_frame(df).to_csv(tmp, index=False)  # no text cell a spreadsheet would run as a formula
        elif fmt == ".json":
            records = [{k: _json_value(v) for k, v in row.items()} for row in df.to_dict(orient="records")]
            with open(tmp, "w") as fh:
                json.dump(records, fh, indent=1, allow_nan=False)
        else:
            try:
                df.to_parquet(tmp, index=False)
            except ImportError as exc:
                raise SRMetricsError(f"{path}: writing Parquet needs pyarrow (pip install pyarrow): {exc}") from None
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a table written by :func:`write_table` (CSV ``inf`` cells come back as floats)."""
    path = Path(path)
    fmt = output_format(path)
    try:
        if fmt == ".csv":
            from .csvcells import unescape_frame

            return unescape_frame(pd.read_csv(path, keep_default_na=True,
                                              dtype={"key": str, "gt": str, "sr": str, "error": str}))
        if fmt == ".json":
            with open(path) as fh:
                records = json.load(fh)
            return pd.DataFrame([{k: _from_json_value(v) for k, v in r.items()} for r in records])
        return pd.read_parquet(path)
    except (ValueError, json.JSONDecodeError, OSError) as exc:
        raise SRMetricsError(f"{path}: cannot read results file ({exc})") from None


class ResultWriter:
    """Collects rows, journals them as they arrive and keeps ``out`` valid on disk at all times."""

    def __init__(self, out: str | os.PathLike | None, columns: Sequence[str], *,
                 previous: pd.DataFrame | None = None, snapshot_every: float = 30.0,
                 journal_suffix: str = ".journal.jsonl", header: dict[str, Any] | None = None) -> None:
        self.out = Path(out) if out is not None else None
        self.columns = list(columns)
        self.rows: list[dict[str, Any]] = []
        if previous is not None and len(previous):  # read back from out/journal: already safe_text (not idempotent)
            self.rows.extend(previous.reindex(columns=self.columns).to_dict(orient="records"))
        self.snapshot_every = snapshot_every
        self._last_snapshot = time.monotonic()
        self._journal = None
        if self.out is not None:
            output_format(self.out)
            self.journal_path = self.out.with_name(self.out.name + journal_suffix)
            try:
                self.out.parent.mkdir(parents=True, exist_ok=True)
                self._journal = open(self.journal_path, "a")
            except OSError as exc:
                raise SRMetricsError(f"{self.out}: cannot write results there ({exc.strerror or exc})") from None
            if header is not None:  # what defines these rows (checked by --resume)
                self._journal.write(json.dumps({JOURNAL_HEADER: header}, default=str) + "\n")
                self._journal.flush()

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        """Append rows (dicts; keys outside ``columns``, such as the input identity, go to the journal only)."""
        rows = [{k: safe_text(v) for k, v in row.items()} for row in rows]
        self.rows.extend(rows)
        if self._journal is not None:
            for row in rows:
                self._journal.write(json.dumps({k: _json_value(v) for k, v in row.items()}) + "\n")
            self._journal.flush()
            os.fsync(self._journal.fileno())
            if time.monotonic() - self._last_snapshot >= self.snapshot_every:
                self.snapshot()

    def frame(self) -> pd.DataFrame:
        df = pd.DataFrame(self.rows, columns=self.columns)
        df = df.drop_duplicates(subset="key", keep="last").sort_values("key", kind="stable").reset_index(drop=True)
        df["error"] = df["error"].fillna("")
        return df

    def snapshot(self) -> None:
        if self.out is not None:
            write_table(self.frame(), self.out)
        self._last_snapshot = time.monotonic()

    def close(self, *, final: bool = True) -> pd.DataFrame:
        """Write the final table; the journal is removed only once the output holds every row."""
        df = self.frame()
        if self._journal is not None:
            self._journal.close()
            self._journal = None
            if final:
                try:
                    write_table(df, self.out)
                except Exception as exc:  # the journal keeps every finished row: nothing is lost
                    msg = str(exc) if isinstance(exc, SRMetricsError) else f"{type(exc).__name__}: {exc}"
                    raise SRMetricsError(f"{self.out}: could not write the results ({msg}); every finished row "
                                         f"is kept in {self.journal_path}: fix this and rerun with --resume") from None
                os.unlink(self.journal_path)
        return df


#: key of a journal line that records what defines the rows after it (not a row)
JOURNAL_HEADER = "_run"
#: key of the input identity (paths, sizes, mtimes) that a journal row carries beside its columns
ROW_INPUTS = "_inputs"


def read_journal_header(path: str | os.PathLike) -> dict[str, Any] | None:
    """The last run header in a journal (None if it has none)."""
    header = None
    try:
        with open(path, "rb") as fh:  # bytes: a line with a bad byte is skipped like a torn one
            for line in fh:
                if line.startswith(b'{"' + JOURNAL_HEADER.encode() + b'"'):
                    try:
                        header = json.loads(line.decode("utf-8"))[JOURNAL_HEADER]
                    except (json.JSONDecodeError, UnicodeDecodeError):
                        continue
    except FileNotFoundError:
        pass
    return header


def read_journal(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a journal file; a torn (partially written) last line, a line that is not UTF-8 and run headers
    are ignored."""
    rows = []
    try:
        with open(path, "rb") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    row = json.loads(line.decode("utf-8"))
                except (json.JSONDecodeError, UnicodeDecodeError):
                    continue
                if isinstance(row, dict) and JOURNAL_HEADER not in row:
                    rows.append({k: _from_json_value(v) for k, v in row.items()})
    except FileNotFoundError:
        pass
    return rows


def load_previous(out: str | os.PathLike, columns: Sequence[str], journal_paths: Iterable[str | os.PathLike] = (),
                  *, with_inputs: bool = False) -> pd.DataFrame:
    """Rows already computed for ``--resume``: the output file plus any journals; checks the metric columns.

    ``with_inputs`` adds the :data:`ROW_INPUTS` column (the input identity journals record; NaN for rows
    known only from the output file)."""
    out = Path(out)
    frames = []
    if out.exists():
        prev = read_table(out)
        missing = [c for c in columns if c not in prev.columns]
        if missing:
            raise SRMetricsError(
                f"{out}: --resume needs the same metrics, but the file has no column(s) {', '.join(missing)} "
                "(use another --out)")
        frames.append(prev[list(columns)].reindex(columns=list(columns) + [ROW_INPUTS] * with_inputs))
    for jp in [out.with_name(out.name + ".journal.jsonl"), *journal_paths]:
        rows = read_journal(jp)
        if rows:
            frames.append(pd.DataFrame(rows).reindex(columns=list(columns) + [ROW_INPUTS] * with_inputs))
    if not frames:
        return pd.DataFrame(columns=list(columns) + [ROW_INPUTS] * with_inputs)
    df = pd.concat(frames, ignore_index=True)
    df["error"] = df["error"].fillna("").astype(str)
    df["key"] = df["key"].astype(str)
    return df.drop_duplicates(subset="key", keep="last").reset_index(drop=True)


class OutputLock:
    """An exclusive ``fcntl.flock`` on ``<out>.lock`` for as long as a run writes ``out`` (and its journal and
    sidecar). A second run on the same output fails at once with one line naming the holder (PID and host
    written in the lock file). The lock file is removed on release; on systems without ``fcntl`` (Windows)
    this is a no-op."""

    def __init__(self, out: str | os.PathLike, what: str = "--out") -> None:
        self.out = Path(out)
        self.path = self.out.with_name(self.out.name + ".lock")
        self.what = what
        self._fh: Any = None

    def acquire(self) -> OutputLock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self
        import socket

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            for _ in range(10):  # the holder may remove the file between our open and our flock: retry
                fh = open(self.path, "a+")
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    fh.seek(0)
                    holder = fh.read().strip() or "another process"
                    fh.close()
                    raise SRMetricsError(f"{self.out} is being written by {holder} (lock {self.path}); wait for "
                                         f"it to finish or use another {self.what}") from None
                try:
                    same = os.fstat(fh.fileno()).st_ino == os.stat(self.path).st_ino
                except FileNotFoundError:
                    same = False
                if same:
                    break
                fh.close()
            else:
                raise SRMetricsError(f"{self.out}: could not take the lock {self.path}")
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()} on {socket.gethostname()} (since {time.strftime('%Y-%m-%d %H:%M:%S')})\n")
            fh.flush()
        except OSError as exc:
            raise SRMetricsError(f"{self.out}: cannot write results there ({exc.strerror or exc})") from None
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            try:
                os.unlink(self.path)  # while still locked, so no other run holds a lock on a stale file
            except OSError:
                pass
            self._fh.close()
            self._fh = None

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def check_outputs(outputs: dict[str, str | os.PathLike | None], inputs: dict[str, str | os.PathLike | None] | None = None,
                  *, tables: Sequence[str] = ()) -> None:
    """Before any work: every output is a distinct file (also distinct from the inputs and from the journal,
    sidecar and lock files beside ``tables`` outputs), has a supported table extension where it is a table,
    and lies in a folder we can create and write. One-line :class:`SRMetricsError` naming the option."""
    seen: dict[Path, str] = {}

    def claim(path: Path, what: str) -> None:
        other = seen.get(path)
        if other is not None:
            raise SRMetricsError(f"{what} and {other} name the same file {path}; give each its own file")
        seen[path] = what

    for opt, path in (inputs or {}).items():
        if path:
            seen[Path(path).resolve()] = opt
    for opt, path in outputs.items():
        if not path:
            continue
        p = Path(path).resolve()
        claim(p, opt)
        if opt in tables:
            output_format(path)
            for suffix in (".journal.jsonl", ".meta.json", ".lock"):
                claim(p.with_name(p.name + suffix), f"{opt}'s {suffix[1:]} file")
        check_writable_dir(p.parent, opt)


def check_writable_dir(folder: str | os.PathLike, what: str) -> None:
    """Create ``folder`` if needed and make sure a file can be written in it (one-line error otherwise)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise SRMetricsError(f"{what}: cannot write in {folder} ({exc.strerror or exc})") from None


def summarize(df: pd.DataFrame, metric_ids: Sequence[str]) -> pd.DataFrame:
    """Per metric: mean, std (ddof=1), 95% CI of the mean (Student t), count, and non-finite count.

    Only finite values enter the statistics (a PSNR of ``inf`` for identical images is counted in
    ``n_nonfinite``); rows with an error are excluded.
    """
    from scipy.special import stdtrit  # Student t quantile, as scipy.stats.t.ppf (a third of its import)

    from .metrics.base import metric_bounds

    ok = df  # a metric that failed on a row left NaN in its own column: count the others' values
    out = []
    for mid in metric_ids:
        values = pd.to_numeric(ok[mid], errors="coerce").to_numpy(dtype=float) if mid in ok else np.array([])
        finite = values[np.isfinite(values)]
        n = len(finite)
        mean = float(finite.mean()) if n else math.nan
        std = float(finite.std(ddof=1)) if n > 1 else math.nan
        half = float(stdtrit(n - 1, 0.975) * std / math.sqrt(n)) if n > 1 else math.nan
        lo, hi = metric_bounds(mid)  # a t interval can leave the metric's range for small n: clip it
        out.append({"metric": mid, "mean": mean, "std": std, "ci95_low": max(mean - half, lo),
                    "ci95_high": min(mean + half, hi),
                    "count": n, "n_nonfinite": int(np.sum(~np.isfinite(values) & ~np.isnan(values)))})
    return pd.DataFrame(out)


def format_summary(summary: pd.DataFrame, directions: dict[str, bool] | None = None) -> str:
    """Human-readable summary table."""
    lines = [f"{'metric':<28} {'mean':>10} {'std':>9} {'95% CI':>23} {'n':>6}"]
    for r in summary.itertuples(index=False):
        arrow = ""
        if directions is not None and r.metric in directions:
            arrow = " (↑)" if directions[r.metric] else " (↓)"
        ci = f"[{r.ci95_low:.4f}, {r.ci95_high:.4f}]"
        extra = f"  +{r.n_nonfinite} inf" if r.n_nonfinite else ""
        lines.append(f"{(r.metric + arrow):<28} {r.mean:>10.4f} {r.std:>9.4f} {ci:>23} {r.count:>6}{extra}")
    return "\n".join(lines)


def best_per_metric(means: pd.DataFrame, higher_is_better: dict[str, bool]) -> dict[str, list[str]]:
    """``{metric: [best method, ...]}`` from a table of means (index: method, columns: metric ids); ties list
    every best method, NaN means are ignored, direction from ``higher_is_better``."""
    best: dict[str, list[str]] = {}
    for mid in means.columns:
        col = pd.to_numeric(means[mid], errors="coerce").dropna()
        if col.empty:
            continue
        target = col.max() if higher_is_better.get(mid, True) else col.min()
        best[mid] = [str(m) for m in col.index[col == target]]
    return best


def format_best(best: dict[str, list[str]]) -> str:
    """One line: ``best method per metric: psnr bicubic, ssim bicubic, lpips srcnn-tiny``."""
    return "best method per metric: " + ", ".join(f"{m} {'='.join(v)}" for m, v in best.items())


def method_of(keys: pd.Series) -> pd.Series:
    """The method of ``METHOD/KEY`` keys (``score --methods``, the demo): the first path component."""
    return keys.astype(str).str.split("/", n=1).str[0]


def summarize_by_method(df: pd.DataFrame, metric_ids: Sequence[str],
                        methods: Sequence[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`summarize` per method (column ``method``, else from the keys): the long table (``method`` first)
    and the table of means (index: method in ``methods`` order, columns: metric ids)."""
    method = df["method"] if "method" in df else method_of(df["key"])
    methods = list(methods) if methods is not None else list(dict.fromkeys(method))
    summary = pd.concat([summarize(df[method == m], metric_ids).assign(method=m) for m in methods],
                        ignore_index=True)
    summary = summary[["method", *[c for c in summary.columns if c != "method"]]]
    means = summary.pivot(index="method", columns="metric", values="mean").loc[methods, list(metric_ids)]
    return summary, means
