"""``study.json``: the study's seed, methods, options and every trial, with validation on load.

Trial fields: ``id`` (``t0001``... in display order), ``kind`` (``real``, ``sentinel`` or ``repeat``),
``scene`` (the pairing key), ``a_method``/``b_method``, ``gt``/``a``/``b`` (the paths written into
``judgements.csv``: the original files for real and repeat trials, the renders for sentinels; relative to the
study folder where possible), ``gt_render``/``a_render``/``b_render`` (display PNGs under ``renders/``),
``repeat_of`` (repeats: the id of the trial shown again, with sides swapped) and ``expected`` (sentinels:
``a`` or ``b``, the side that is the GT itself).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ...errors import SRMetricsError

FORMAT = "clipscore-sr-study"
FORMAT_VERSION = 1
KINDS = ("real", "sentinel", "repeat")
MANIFEST = "study.json"
JUDGEMENTS = "judgements.csv"
RENDERS = "renders"
SENTINEL_GT, SENTINEL_DEGRADED = "gt", "degraded"  # a_method/b_method names of sentinel candidates


class StudyError(SRMetricsError):
    """A study folder, its manifest or a submission is invalid."""


@dataclass
class Trial:
    id: str
    kind: str
    scene: str
    a_method: str
    b_method: str
    gt: str
    a: str
    b: str
    gt_render: str
    a_render: str
    b_render: str
    repeat_of: str = ""
    expected: str = ""


@dataclass
class Study:
    """A loaded study: ``root`` is its folder; ``trials`` in display order."""

    root: Path
    seed: int
    dataset: str
    methods: list[str]
    options: dict[str, Any]
    trials: list[Trial]
    unmatched: dict[str, list[str]] = field(default_factory=dict)

    @property
    def allow_tie(self) -> bool:
        return bool(self.options.get("allow_tie", False))

    @property
    def by_id(self) -> dict[str, Trial]:
        return {t.id: t for t in self.trials}

    def render_path(self, rel: str) -> Path:
        """Absolute path of a render named in the manifest; it must lie inside ``renders/``."""
        base = (self.root / RENDERS).resolve()
        p = (self.root / rel).resolve()
        if base not in p.parents:
            raise StudyError(f"{self.root / MANIFEST}: render path '{rel}' is outside {base}")
        return p

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": FORMAT_VERSION, "seed": self.seed, "dataset": self.dataset,
                "methods": self.methods, "options": self.options, "unmatched": self.unmatched,
                "trials": [asdict(t) for t in self.trials]}


def trusted_root(folder: str | os.PathLike) -> list[Path] | None:
    """For a judgement file inside a study folder: the folder that holds the study and every input file its
    ``study.json`` names (the GT and SR folders chosen at ``make`` time), or None when ``folder`` holds no study.

    Judgement files written by a study name those inputs relative to the study folder (``../gt/x.png``); this
    root confines them to what the study was made from instead of refusing them as leaving the study folder.
    """
    folder = Path(os.path.realpath(folder))
    if not (folder / MANIFEST).is_file():
        return None
    try:
        data = json.loads((folder / MANIFEST).read_text())
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            return None
        opts = data.get("options") or {}
        named = [opts.get("gt_dir"), *(opts.get("method_dirs") or {}).values()]
        dirs = [os.path.realpath(folder / d) for d in named if isinstance(d, str) and d]
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    # the named input folders only, never one that holds the study folder itself ('/', '..'): a study.json
    # cannot widen the root above the judgement file's own folder
    dirs = [d for d in dirs if os.path.commonpath([d, str(folder)]) != d]
    return [folder, *map(Path, dirs)]


def write_study(study: Study) -> Path:
    """Write ``study.json`` atomically."""
    path = study.root / MANIFEST
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(study.to_json(), indent=1) + "\n")
    os.replace(tmp, path)
    return path


def load_study(root: str | os.PathLike, *, check_files: bool = True) -> Study:
    """Load and validate ``STUDY_DIR/study.json``; any problem is a one-line :class:`StudyError`."""
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        raise StudyError(f"{path}: not found (make a study with 'srmetrics study make')")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StudyError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise StudyError(f"{path}: not a study manifest (format is not '{FORMAT}')")
    if data.get("version") != FORMAT_VERSION:
        raise StudyError(f"{path}: format version {data.get('version')!r} is not supported "
                         f"(this toolkit reads version {FORMAT_VERSION})")
    for key, typ in (("seed", int), ("dataset", str), ("methods", list), ("options", dict), ("trials", list)):
        if not isinstance(data.get(key), typ):
            raise StudyError(f"{path}: field '{key}' is missing or not a {typ.__name__}")
    names = [f.name for f in Trial.__dataclass_fields__.values()]
    trials: list[Trial] = []
    for i, rec in enumerate(data["trials"]):
        if not isinstance(rec, dict) or set(rec) != set(names) or not all(isinstance(v, str) for v in rec.values()):
            raise StudyError(f"{path}: trials[{i}] must have exactly the string fields {', '.join(names)}")
        trials.append(Trial(**rec))
    study = Study(root=root, seed=data["seed"], dataset=data["dataset"], methods=data["methods"],
                  options=data["options"], trials=trials, unmatched=data.get("unmatched", {}))
    validate_study(study, check_files=check_files)
    return study


def validate_study(study: Study, *, check_files: bool = True) -> None:
    """Ids unique, kinds known, repeats after the trial they repeat, sentinels with an answer, renders inside."""
    where = study.root / MANIFEST
    if not study.trials:
        raise StudyError(f"{where}: no trials")
    seen: dict[str, Trial] = {}
    for t in study.trials:
        tag = f"{where}: trial {t.id or '?'}"
        if not t.id or t.id in seen:
            raise StudyError(f"{tag}: empty or duplicated id")
        if t.kind not in KINDS:
            raise StudyError(f"{tag}: unknown kind '{t.kind}' (expected one of {', '.join(KINDS)})")
        if t.kind == "repeat":
            orig = seen.get(t.repeat_of)
            if orig is None or orig.kind != "real":
                raise StudyError(f"{tag}: repeat_of '{t.repeat_of}' is not an earlier real trial")
            if (orig.gt, orig.a, orig.b) != (t.gt, t.a, t.b):
                raise StudyError(f"{tag}: a repeat must show the same images as {t.repeat_of}")
        elif t.repeat_of:
            raise StudyError(f"{tag}: only repeats have repeat_of")
        if (t.kind == "sentinel") != (t.expected in ("a", "b")) or (t.kind != "sentinel" and t.expected):
            raise StudyError(f"{tag}: sentinels (and only they) need expected = a or b")
        for rel in (t.gt_render, t.a_render, t.b_render):
            p = study.render_path(rel)
            if check_files and not p.is_file():
                raise StudyError(f"{tag}: render {rel} not found")
        seen[t.id] = t
