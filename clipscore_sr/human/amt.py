"""Amazon Mechanical Turk, both ways: a study's HITs out (``srmetrics study export-amt``) and batch results in
(``srmetrics judgements import-amt``).

Export: a HIT input CSV and a crowd-html template, ``K`` trials per HIT. HIT ``h`` holds trials ``h*K+1 .. h*K+K``
in the study's order (sentinels and repeats included). Slot ``k`` (1-based) of a HIT has the columns
:data:`SLOT_FIELDS` with suffix ``_k``: the canonical ``pair_id``, ``dataset``, ``gt``, ``a``, ``b``,
``a_method``, ``b_method``, ``trial_kind`` (the same strings a local session records), the image URLs
``gt_url``/``left_url``/``right_url`` (``--image-base-url`` + the render's path under the study folder) and
``left``/``right`` (``a`` or ``b``: which candidate each side shows; seeded per HIT and slot, a repeat swapped
against its original). The template's radio buttons submit ``left``'s or ``right``'s value, so
``Answer.choice_k`` is already ``a``, ``b`` or ``tie``: :data:`IMPORT_MAPS` imports the results. Slots of the
last HIT that have no trial are empty and the template hides them. Only a balanced study can be exported: an
active study chooses its trials while it is answered.

Import: :class:`AmtMapping` says which batch-result columns hold the canonical fields (``--map``), with URL
prefixes mapped to local paths (``--prefix``); :func:`import_amt` writes one canonical judgement per kept
assignment (and slot), dropping rejected ones.
"""

from __future__ import annotations

import csv
import hashlib
import html
import os
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import JudgementError
from .judgements import REQUIRED_COLUMNS, read_csv_rows
from .study.manifest import Study, StudyError

# --------------------------------------------------------------------------------------------------
# Import: batch results -> canonical judgements

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
        header, rows = read_csv_rows(path)
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


# --------------------------------------------------------------------------------------------------
# Export: a study -> HIT input CSV + crowd-html template

SLOT_FIELDS = ("pair_id", "dataset", "gt", "a", "b", "a_method", "b_method", "trial_kind", "gt_url", "left_url",
               "right_url", "left", "right")
IMPORT_MAPS = ("pair_id=Input.pair_id_{k}", "dataset=Input.dataset_{k}", "gt=Input.gt_{k}", "a=Input.a_{k}",
               "b=Input.b_{k}", "a_method=Input.a_method_{k}", "b_method=Input.b_method_{k}",
               "trial_kind=Input.trial_kind_{k}", "choice=Answer.choice_{k}")


def import_command(results: str, out: str) -> str:
    """The exact ``srmetrics judgements import-amt`` command for the batch results of an export."""
    maps = " ".join(f"--map '{m}'" for m in IMPORT_MAPS)
    return f"srmetrics judgements import-amt {results} {maps} -o {out}"


def _left(seed: int, hit: int, slot: int, trial_id: str) -> str:
    h = hashlib.sha256(f"amt\0{seed}\0{hit}\0{slot}\0{trial_id}".encode()).digest()
    return "a" if h[0] & 1 else "b"


def hit_rows(study: Study, trials_per_hit: int, image_base_url: str) -> list[dict[str, str]]:
    """One dict per HIT with the ``<field>_<k>`` columns (see the module docstring)."""
    if study.active is not None:
        raise StudyError(f"{study.root}: an active study chooses its trials while it is answered, which a HIT "
                         "cannot do; export a study made with --design balanced")
    if trials_per_hit < 1:
        raise StudyError(f"--trials-per-hit {trials_per_hit}: must be >= 1")
    if not image_base_url.lower().startswith(("https://", "http://")):
        raise StudyError(f"--image-base-url '{image_base_url}': expected an http(s):// URL where the study's "
                         "renders/ folder is uploaded (its parent)")
    base = image_base_url if image_base_url.endswith("/") else image_base_url + "/"
    sides: dict[str, str] = {}
    rows = []
    for h in range(0, len(study.trials), trials_per_hit):
        row: dict[str, str] = {}
        for k in range(1, trials_per_hit + 1):
            i = h + k - 1
            vals = dict.fromkeys(SLOT_FIELDS, "")
            if i < len(study.trials):
                t = study.trials[i]
                if t.kind == "repeat":
                    left = "b" if sides[t.repeat_of] == "a" else "a"
                else:
                    left = _left(study.seed, h // trials_per_hit, k, t.id)
                sides[t.id] = left
                right = "b" if left == "a" else "a"
                render = {"a": t.a_render, "b": t.b_render}

                def url(rel: str) -> str:
                    return base + urllib.parse.quote(rel)

                vals.update(pair_id=t.id, dataset=study.dataset, gt=t.gt, a=t.a, b=t.b, a_method=t.a_method,
                            b_method=t.b_method, trial_kind=t.kind, gt_url=url(t.gt_render),
                            left_url=url(render[left]), right_url=url(render[right]), left=left, right=right)
            row.update({f"{f}_{k}": v for f, v in vals.items()})
        rows.append(row)
    return rows


def template(study: Study, trials_per_hit: int) -> str:
    """The HIT's HTML (crowd-html-elements), one block per slot."""
    tie = study.allow_tie
    blocks = []
    for k in range(1, trials_per_hit + 1):
        tie_radio = (f'<label><input type="radio" name="choice_{k}" value="tie" required> can\'t tell</label>'
                     if tie else "")
        blocks.append(f"""
  <div class="trial" data-pair="${{pair_id_{k}}}">
    <p><b>Trial {k}.</b> Which candidate is closer to the reference (middle)?</p>
    <div class="row">
      <figure><img src="${{left_url_{k}}}" alt="left candidate"><figcaption>left</figcaption></figure>
      <figure><img src="${{gt_url_{k}}}" alt="reference"><figcaption>reference (GT)</figcaption></figure>
      <figure><img src="${{right_url_{k}}}" alt="right candidate"><figcaption>right</figcaption></figure>
    </div>
    <p class="choice">
      <label><input type="radio" name="choice_{k}" value="${{left_{k}}}" required> left</label>
      <label><input type="radio" name="choice_{k}" value="${{right_{k}}}" required> right</label>
      {tie_radio}
    </p>
  </div>""")
    title = html.escape(f"Super-resolution study: {study.dataset}")
    return f"""<!-- {title}: made by srmetrics study export-amt; answers import with srmetrics judgements import-amt -->
<script src="https://assets.crowd.aws/crowd-html-elements.js"></script>
<style>
  .row {{ display: flex; gap: 12px; }} figure {{ margin: 0; text-align: center; }}
  img {{ width: 256px; height: 256px; image-rendering: pixelated; object-fit: contain; background: #000; }}
  .trial {{ border-bottom: 1px solid #ccc; padding: 8px 0; }}
</style>
<crowd-form answer-format="flatten-objects">
  <crowd-instructions link-text="Instructions" link-type="button">
    <short-summary><p>For each trial choose the candidate (left or right) that looks closer to the reference
      image in the middle.</p></short-summary>
    <detailed-instructions><p>Look at detail, edges and textures. Some trials are attention checks with a
      clear answer.</p></detailed-instructions>
  </crowd-instructions>
{"".join(blocks)}
</crowd-form>
<script>
  // slots of the last HIT that hold no trial are removed (their fields are empty)
  document.querySelectorAll(".trial").forEach(function (el) {{
    if (!el.getAttribute("data-pair")) el.remove();
  }});
</script>
"""


def export_amt(study: Study, trials_per_hit: int, image_base_url: str, out_csv: str | os.PathLike,
               template_out: str | os.PathLike) -> int:
    """Write the HIT CSV and the template; returns the number of HITs."""
    rows = hit_rows(study, trials_per_hit, image_base_url)
    cols = [f"{f}_{k}" for k in range(1, trials_per_hit + 1) for f in SLOT_FIELDS]
    out_csv, template_out = Path(out_csv), Path(template_out)
    for p in (out_csv, template_out):
        p.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_csv.with_name(f".{out_csv.name}.tmp{os.getpid()}")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, out_csv)
    template_out.write_text(template(study, trials_per_hit), encoding="utf-8")
    return len(rows)


__all__ = ["AMT_REQUIRED", "IMPORT_MAPS", "SLOT_FIELDS", "AmtImport", "AmtMapping", "export_amt", "hit_rows",
           "import_amt", "import_command", "template"]
