"""``study.json``: the study's seed, methods, options and every trial, with validation on load.

Trial fields: ``id`` (``t0001``... in display order), ``kind`` (``real``, ``sentinel`` or ``repeat``),
``scene`` (the pairing key), ``a_method``/``b_method``, ``gt``/``a``/``b`` (the paths written into
``judgements.csv``: the original files for real and repeat trials, the renders for sentinels; relative to the
study folder where possible), ``gt_render``/``a_render``/``b_render`` (display PNGs under ``renders/``),
``repeat_of`` (repeats: the id of the trial shown again, with sides swapped) and ``expected`` (sentinels:
``a`` or ``b``, the side that is the GT itself).

Designs: ``balanced`` (format version 1) lists every trial, the same for every annotator. ``active`` (version 2,
which older versions refuse) lists only the sentinel trials; the server chooses the other trials while the study
is answered (:mod:`.live`) and records each in ``active-log.jsonl`` (:mod:`.auditlog`). Its ``active`` section
holds ``model`` (the sampler's model), ``schedule`` (one entry per trial slot of an annotator: ``{"kind":
"real"}``, ``{"kind": "sentinel", "trial": ID}`` or ``{"kind": "repeat", "of_slot": K}``, the slot shown again
with sides swapped) and ``scenes`` (per scene key: ``gt``/``gt_render`` and per method ``files``/``renders``,
the same kinds of paths as a trial's).
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
ACTIVE_FORMAT_VERSION = 2  # an active study: older versions of the toolkit refuse it instead of serving it wrong
DESIGNS = ("balanced", "active")
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
    active: dict[str, Any] | None = None  # the active design's section (see the module docstring)

    @property
    def allow_tie(self) -> bool:
        return bool(self.options.get("allow_tie", False))

    @property
    def design(self) -> str:
        return "active" if self.active is not None else "balanced"

    @property
    def n_trials(self) -> int:
        """Trials per annotator (sentinels and repeats included)."""
        return len(self.active["schedule"]) if self.active is not None else len(self.trials)

    @property
    def slot_kinds(self) -> dict[str, int]:
        """Trials per annotator by kind (``real``/``sentinel``/``repeat``): an active study's from its schedule
        (its ``trials`` list only its sentinels), a balanced study's from its trials."""
        kinds = ([s["kind"] for s in self.active["schedule"]] if self.active is not None
                 else [t.kind for t in self.trials])
        return {k: kinds.count(k) for k in KINDS}

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
        out = {"format": FORMAT, "version": FORMAT_VERSION if self.active is None else ACTIVE_FORMAT_VERSION,
               "seed": self.seed, "dataset": self.dataset, "methods": self.methods, "options": self.options,
               "unmatched": self.unmatched, "trials": [asdict(t) for t in self.trials]}
        if self.active is not None:
            out["active"] = self.active
        return out


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
    if data.get("version") not in (FORMAT_VERSION, ACTIVE_FORMAT_VERSION):
        raise StudyError(f"{path}: format version {data.get('version')!r} is not supported "
                         f"(this toolkit reads versions {FORMAT_VERSION} and {ACTIVE_FORMAT_VERSION})")
    if (data.get("version") == ACTIVE_FORMAT_VERSION) != isinstance(data.get("active"), dict):
        raise StudyError(f"{path}: format version {ACTIVE_FORMAT_VERSION} (and only it) is an active study "
                         "with an 'active' section")
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
                  options=data["options"], trials=trials, unmatched=data.get("unmatched", {}),
                  active=data.get("active"))
    validate_study(study, check_files=check_files)
    return study


def validate_study(study: Study, *, check_files: bool = True) -> None:
    """Ids unique, kinds known, repeats after the trial they repeat, sentinels with an answer, renders inside."""
    where = study.root / MANIFEST
    if not study.trials and study.active is None:
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
    if study.active is not None:
        _validate_active(study, seen, check_files)


def _validate_active(study: Study, trials: dict[str, Trial], check_files: bool) -> None:
    """The ``active`` section: a known model, a schedule of known slots, every scene with every method's
    files and renders (inside ``renders/``)."""
    where = study.root / MANIFEST
    act = study.active or {}
    if act.get("model") not in ("thurstone", "bt"):
        raise StudyError(f"{where}: active.model must be 'thurstone' or 'bt'")
    if act.get("objective", "variance") not in ("variance", "eig"):  # studies made before it was an option: variance
        raise StudyError(f"{where}: active.objective must be 'variance' or 'eig'")
    bal = act.get("balance_above")  # studies made before the balanced phase: none (their logs replay as served)
    if bal is not None and (isinstance(bal, bool) or not isinstance(bal, (int, float)) or not 0 < bal <= 1):
        raise StudyError(f"{where}: active.balance_above must be a number in (0, 1] or null")
    sched, scenes = act.get("schedule"), act.get("scenes")
    if not isinstance(sched, list) or not sched or not isinstance(scenes, dict) or not scenes:
        raise StudyError(f"{where}: active.schedule and active.scenes must be a non-empty list and object")
    if len(sched) != study.options.get("trials"):
        raise StudyError(f"{where}: active.schedule has {len(sched)} slot(s), options.trials says "
                         f"{study.options.get('trials')}")
    if any(t.kind != "sentinel" for t in trials.values()):
        raise StudyError(f"{where}: an active study lists only its sentinel trials (the server chooses the others)")
    for k, slot in enumerate(sched):
        kind = slot.get("kind") if isinstance(slot, dict) else None
        ok = (kind == "real" and set(slot) == {"kind"}) or \
            (kind == "sentinel" and set(slot) == {"kind", "trial"} and getattr(trials.get(slot["trial"]), "kind",
                                                                               "") == "sentinel") or \
            (kind == "repeat" and set(slot) == {"kind", "of_slot"} and isinstance(slot["of_slot"], int)
             and 0 <= slot["of_slot"] < k and sched[slot["of_slot"]] == {"kind": "real"})
        if not ok:
            raise StudyError(f"{where}: active.schedule[{k}] is not a real slot, a sentinel trial of the study or "
                             "a repeat of an earlier real slot")
    for key, sc in scenes.items():
        files, renders = (sc.get("files"), sc.get("renders")) if isinstance(sc, dict) else (None, None)
        if not (isinstance(files, dict) and isinstance(renders, dict) and set(files) == set(renders) == set(study.methods)
                and isinstance(sc.get("gt"), str) and isinstance(sc.get("gt_render"), str)):
            raise StudyError(f"{where}: active.scenes['{key}'] needs gt, gt_render and files/renders of every method")
        for rel in (sc["gt_render"], *renders.values()):
            p = study.render_path(rel)
            if check_files and not p.is_file():
                raise StudyError(f"{where}: active.scenes['{key}']: render {rel} not found")
