"""``srmetrics study make``: SR folders -> paired files -> trials -> renders -> ``study.json``.

``design="balanced"`` samples every trial now (:mod:`.sampling`). ``design="active"`` keeps the same schedule of
slots (where the sentinels and the repeats go) but leaves the real trials to the server, which chooses each one
while the study is answered (:mod:`.live`); every scene is rendered, since any may be chosen."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ... import io
from ...errors import SRMetricsError
from .active import BALANCE_ABOVE
from .manifest import (
    DESIGNS,
    MANIFEST,
    RENDERS,
    SENTINEL_DEGRADED,
    SENTINEL_GT,
    Study,
    StudyError,
    Trial,
    write_study,
)
from .render import check_display_size, render_scene
from .sampling import sample_trials

_METHOD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_RESERVED = {"gt", SENTINEL_GT, SENTINEL_DEGRADED, "sentinel-gt", "sentinel-degraded"}


@dataclass
class ScenePairing:
    """Scenes (pairing keys) that have an output of every method, and what could not be matched."""

    scenes: dict[str, dict[str, str]]  # key -> {"gt": path, method: path, ...}
    unmatched: dict[str, list[str]] = field(default_factory=dict)  # "<method>: no output" / "<method>: no GT"

    def warnings(self) -> list[str]:
        out = []
        for what, keys in self.unmatched.items():
            head = ", ".join(keys[:5]) + (f", ... (+{len(keys) - 5} more)" if len(keys) > 5 else "")
            out.append(f"{what}: {len(keys)} file(s) left out: {head}")
        return out


def parse_methods(items: Sequence[str]) -> dict[str, str]:
    """``NAME=DIR`` strings -> ``{name: dir}`` (names: letters, digits, ``._-``; at least two methods)."""
    methods: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        name = name.strip()
        if not sep or not name or not path:
            raise StudyError(f"--method '{item}': expected NAME=SR_DIR")
        if not _METHOD_NAME.match(name) or name.lower() in _RESERVED:
            raise StudyError(f"--method '{item}': method name '{name}' must be letters, digits, '.', '_' or '-' "
                             f"(and not one of {', '.join(sorted(_RESERVED))})")
        if name in methods:
            raise StudyError(f"--method: '{name}' given twice")
        methods[name] = path
    if len(methods) < 2:
        raise StudyError(f"need at least two --method NAME=SR_DIR to compare, got {len(methods)}")
    return methods


def pair_scenes(gt_dir: str | os.PathLike, methods: Mapping[str, str | os.PathLike]) -> ScenePairing:
    """Pair every method's folder with the GT folder by relative path (as ``score`` does); keep the keys
    every method has. Unmatched files are reported in ``unmatched``, never silently dropped."""
    per_method = {m: io.pair_folders(gt_dir, d) for m, d in methods.items()}
    common = set.intersection(*(set(p.key for p in pr.pairs) for pr in per_method.values()))
    scenes: dict[str, dict[str, str]] = {}
    unmatched: dict[str, list[str]] = {}
    for m, pr in per_method.items():
        if pr.unmatched_sr:
            unmatched[f"{m}: outputs without a GT"] = pr.unmatched_sr
        if pr.unmatched_gt:
            unmatched[f"{m}: GT files without an output of {m}"] = pr.unmatched_gt
        for p in pr.pairs:
            if p.key in common:
                scenes.setdefault(p.key, {"gt": p.gt})[m] = p.sr
    if not scenes:
        raise StudyError(f"no GT file in {gt_dir} has an output of every method ({', '.join(methods)})")
    return ScenePairing({k: scenes[k] for k in sorted(scenes)}, unmatched)


def _rel(path: str, root: Path) -> str:
    try:
        return Path(os.path.relpath(os.path.abspath(path), root.resolve())).as_posix()
    except ValueError:  # another drive (Windows)
        return os.path.abspath(path)


def make_study(gt_dir: str | os.PathLike, methods: Mapping[str, str | os.PathLike], n_trials: int,
               out: str | os.PathLike, *, seed: int = 0, sentinels: float = 0.0, repeats: float = 0.0,
               allow_tie: bool = False, bands: Sequence[int] | None = None, data_range: float | None = None,
               stretch: str = "auto", percentiles: Sequence[float] = (2.0, 98.0), dataset: str | None = None,
               workers: int = 4, progress: bool = False, echo: Callable[[str], None] | None = None,
               design: str = "balanced", model: str = "thurstone", objective: str = "variance") -> Study:
    """Make a study in ``out`` (a new or empty folder): see ``srmetrics study make --help``. ``design``:
    ``balanced`` or ``active`` (``model``: the active sampler's, ``thurstone`` or ``bt``; ``objective``: its
    ``variance`` or ``eig``)."""
    if objective not in ("variance", "eig"):
        raise StudyError(f"objective {objective!r}: 'variance' or 'eig' expected")
    if seed < 0:
        raise StudyError(f"--seed {seed}: a seed is >= 0")
    if design not in DESIGNS:
        raise StudyError(f"--design {design}: one of {', '.join(DESIGNS)}")
    if model not in ("thurstone", "bt"):
        raise StudyError(f"--model {model}: thurstone or bt")
    out = Path(out)
    if (out / MANIFEST).exists():
        raise StudyError(f"{out / MANIFEST}: a study already exists here (its judgements would no longer match); "
                         "choose a new --out folder")
    if out.exists() and any(out.iterdir()):
        raise StudyError(f"{out}: folder is not empty; choose a new --out folder")
    name = dataset or Path(os.path.abspath(gt_dir)).name or "study"
    if name.lower() == "all":
        raise StudyError("--dataset 'all' is reserved for the pooled rows of agreement tables")
    pairing = pair_scenes(gt_dir, methods)
    for line in pairing.warnings():
        (echo or (lambda s: None))(f"Warning: {line}")
    specs = sample_trials(list(pairing.scenes), list(methods), n_trials, seed=seed, sentinels=sentinels,
                          repeats=repeats)
    if design == "active":  # the server may choose any scene
        used = list(pairing.scenes)
    else:
        used = sorted({s.scene for s in specs}, key=list(pairing.scenes).index)
    scene_dir = {k: f"{RENDERS}/{i:05d}" for i, k in enumerate(used)}
    sentinel_scenes = {s.scene for s in specs if s.kind == "sentinel"}
    for key in used:  # before any work: every shown image small enough (headers only; bounded memory)
        for path in pairing.scenes[key].values():
            try:
                check_display_size(path)
            except SRMetricsError as exc:
                raise StudyError(str(exc)) from None
    out.mkdir(parents=True, exist_ok=True)

    def render(key: str) -> dict[str, str]:
        files = pairing.scenes[key]
        outs = {m: p for m, p in files.items() if m != "gt"}
        try:
            got = render_scene(files["gt"], outs, out / scene_dir[key], bands=bands, data_range=data_range,
                               stretch=stretch, percentiles=percentiles, sentinel=key in sentinel_scenes)
        except SRMetricsError as exc:
            raise StudyError(str(exc)) from None
        return {name: _rel(p, out) for name, p in got.items()}

    from tqdm import tqdm

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # decoders and PNG encoding release the GIL
        renders = dict(zip(used, tqdm(pool.map(render, used), total=len(used), desc="render", unit="scene",
                                      disable=not progress)))
    trials: list[Trial] = []
    for i, s in enumerate(specs):
        tid = f"t{i + 1:04d}"
        r, files = renders[s.scene], pairing.scenes[s.scene]
        if s.kind == "sentinel":
            a_m, b_m = (SENTINEL_GT, SENTINEL_DEGRADED) if s.expected == "a" else (SENTINEL_DEGRADED, SENTINEL_GT)
            rn = {SENTINEL_GT: r["sentinel-gt"], SENTINEL_DEGRADED: r["sentinel-degraded"]}
            trials.append(Trial(tid, "sentinel", s.scene, a_m, b_m, r["gt"], rn[a_m], rn[b_m], r["gt"], rn[a_m],
                                rn[b_m], expected=s.expected))
        elif design == "balanced":
            trials.append(Trial(tid, s.kind, s.scene, s.a, s.b, _rel(files["gt"], out), _rel(files[s.a], out),
                                _rel(files[s.b], out), r["gt"], r[s.a], r[s.b],
                                repeat_of=f"t{s.repeat_of + 1:04d}" if s.kind == "repeat" else ""))
    options = {"trials": n_trials, "sentinels": sentinels, "repeats": repeats, "allow_tie": bool(allow_tie),
               "bands": list(bands) if bands else None, "data_range": data_range, "stretch": stretch,
               "percentiles": list(percentiles), "gt_dir": os.path.abspath(gt_dir),
               "method_dirs": {m: os.path.abspath(d) for m, d in methods.items()}, "design": design}
    active = None
    if design == "active":
        schedule = [{"kind": "real"} if s.kind == "real" else {"kind": "sentinel", "trial": f"t{i + 1:04d}"}
                    if s.kind == "sentinel" else {"kind": "repeat", "of_slot": s.repeat_of} for i, s in enumerate(specs)]
        scenes = {key: {"gt": _rel(pairing.scenes[key]["gt"], out), "gt_render": renders[key]["gt"],
                        "files": {m: _rel(pairing.scenes[key][m], out) for m in methods},
                        "renders": {m: renders[key][m] for m in methods}} for key in used}
        active = {"model": model, "objective": objective, "balance_above": BALANCE_ABOVE, "schedule": schedule,
                  "scenes": scenes}
    study = Study(root=out, seed=seed, dataset=name, methods=list(methods), options=options, trials=trials,
                  unmatched=pairing.unmatched, active=active)
    write_study(study)
    return study
