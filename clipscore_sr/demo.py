"""``srmetrics demo``: the whole toolkit end to end on a small example shipped inside the package.

The bundle holds

* ``clipscore_sr/data/demo/scene`` (built by the maintainer script ``clipscore_sr/data/demo/make_demo.py``):
  ``gt``, 64x64 RGB tiles of a public-domain Landsat 8 scene (Rocky Mountain National Park, USGS) without any
  no-data fill; ``lr``, the same tiles downsampled x4 (PIL bicubic with antialiasing); ``sr/<method>``,
  "SR outputs" made from ``lr`` by ``nearest`` and ``bicubic`` upsampling and ``srcnn-tiny``, a tiny SRCNN
  trained for 600 steps on *other* tiles of the same scene;
* the example judgement set, the repository's ``judgements/example`` installed as package data
  (``clipscore_sr.data.judgements``; built by ``judgements/make_example.py``). Its labels are constructed,
  not human: the less degraded image of each pair wins (see its PROVENANCE.md).

:func:`run_demo` copies the data into ``OUT/data`` and works on that copy (so ``scores.csv`` names files the
user has): it scores every method with every metric whose weights are on disk (the demo runs offline;
learned metrics without weights are listed as not run, with what to do), prints the best method per metric,
draws a montage (GT | LR | each method, per tile), runs the agreement study on the example set and draws
Figure 3, writing ``scores.csv``, ``summary.csv``, ``montage.png``, ``agreement.csv``,
``agreement_pairs.csv``, ``figure3.png`` and ``report.html`` (``srmetrics report`` of the scores and agreement).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from . import io
from .errors import SRMetricsError, WeightsNotFoundError

DATA_DIR = Path(__file__).resolve().parent / "data" / "demo"
PIXEL_METRICS = ("psnr", "ssim", "ssim-gray", "cpsnr", "cpsnr-satlas")
LEARNED_METRICS = ("lpips", "clipscore", "samscore")  # default specs; used when their weights are on disk
METHODS = ("nearest", "bicubic", "srcnn-tiny")
LABELS_NOTE = "constructed labels (the less degraded image wins), not human judgements"


def example_judgements_dir() -> Path:
    """The installed example judgement set (``judgements/example`` in the repository)."""
    try:
        from .data import judgements
    except ImportError:  # an editable install made before the package-dir mapping existed: the checkout's copy
        return Path(__file__).resolve().parents[1] / "judgements" / "example"
    return Path(next(iter(judgements.__path__))) / "example"


def available_metrics(candidates: Sequence[str], *, device: str = "cpu",
                      metric_options: dict | None = None) -> tuple[list[str], dict[str, str]]:
    """Split metric ids into those usable now and ``{id: reason}`` for those whose weights are not on disk
    (checked offline: nothing is downloaded)."""
    import torch

    from .pipeline import build_metrics
    from .weights import offline

    usable, skipped = [], {}
    for mid in candidates:
        metric = build_metrics([mid], device=torch.device(device), metric_options=metric_options)[0]
        check = getattr(metric, "check_weights", None)
        if check is None:
            usable.append(mid)
            continue
        try:
            with offline("the demo runs offline: it uses only weights already on disk"):
                check()
            usable.append(mid)
        except WeightsNotFoundError as exc:
            skipped[mid] = str(exc)
    return usable, skipped


@dataclass
class DemoResult:
    out_dir: Path
    metrics: list[str]
    skipped: dict[str, str] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    method_table: pd.DataFrame | None = None
    agreement_table: pd.DataFrame | None = None
    best: dict[str, list[str]] = field(default_factory=dict)


def demo_pairs(data_dir: Path = DATA_DIR) -> list[io.Pair]:
    """One pair per (method, tile); key ``method/tile``."""
    scene = data_dir / "scene"
    if not (scene / "gt").is_dir():
        raise SRMetricsError(f"{scene}: demo data missing (reinstall clipscore-sr, or rebuild it with "
                             "clipscore_sr/data/demo/make_demo.py)")
    pairs = []
    for method in METHODS:
        pairing = io.pair_folders(scene / "gt", scene / "sr" / method, strict=True)
        pairs += [io.Pair(f"{method}/{p.key}", p.gt, p.sr) for p in pairing.pairs]
    return pairs


def run_demo(out_dir: str | os.PathLike = "srmetrics-demo", *, clip: Sequence[str] = (), device: str = "cpu",
             bootstrap: int = 1000, progress: bool = True, echo: Callable[[str], None] = print,
             data_dir: Path = DATA_DIR, judgements_dir: Path | None = None) -> DemoResult:
    """Score the bundled SR outputs, draw the montage, run agreement on the example judgements, draw Figure 3."""
    from .figures.figure3 import figure3
    from .figures.montage import montage
    from .human.agreement import format_table
    from .human.agreement_run import run_agreement
    from .metrics.base import metric_direction
    from .pipeline import score_pairs
    from .results import best_per_metric, format_best, summarize_by_method, write_table

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # a copy of the example data: the demo scores the copy (scores.csv names files the user has) and the
    # README's next commands (score, agreement) run on it
    sources = {"scene": data_dir / "scene", "judgements": judgements_dir or example_judgements_dir()}
    for sub, src in sources.items():
        if not (out / "data" / sub).exists():
            shutil.copytree(src, out / "data" / sub, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    data = out / "data"
    result = DemoResult(out_dir=out, metrics=[], files={"data": data})

    echo("the demo runs offline: learned metrics run only when their weights are already on disk")
    candidates = list(PIXEL_METRICS) + list(LEARNED_METRICS) + [f"clipscore:{c}" for c in clip]
    metrics, skipped = available_metrics(candidates, device=device)
    for mid, reason in skipped.items():
        if mid.startswith("clipscore:") and mid[len("clipscore:"):] in clip:
            raise SRMetricsError(f"--clip {mid[len('clipscore:'):]}: {reason}")
        echo(f"not run: {mid}: {reason.split('. Looked in: ')[0]}")  # what to do; where we looked is in .skipped
    if skipped:
        echo("  (README 'Getting model weights'; --clip local-dir:PATH adds a CLIP model you have)")
    result.metrics, result.skipped = metrics, skipped
    higher = {m: metric_direction(m) for m in metrics}

    echo(f"scoring {len(METHODS)} SR methods on {data / 'scene'} with: {', '.join(metrics)}")
    scores = score_pairs(demo_pairs(data), metrics, out=out / "scores.csv", device=device, progress=progress)
    failed = scores[scores["error"] != ""]
    if len(failed):
        raise SRMetricsError(f"demo scoring failed for {failed['key'].iat[0]}: {failed['error'].iat[0]}")
    scores.insert(1, "method", scores["key"].str.split("/").str[0])
    write_table(scores, out / "scores.csv")
    result.files["scores"] = out / "scores.csv"
    summary, result.method_table = summarize_by_method(scores, metrics, METHODS)
    write_table(summary, out / "summary.csv")
    result.files["summary"] = out / "summary.csv"
    result.best = best_per_metric(result.method_table, higher)

    per_method = {m: scores[scores["method"] == m].assign(key=lambda d: d["key"].str.split("/", n=1).str[1])
                  for m in METHODS}
    lr = {p.stem: p for p in sorted((data / "scene" / "lr").glob("*.png"))}
    montage(per_method, metrics, out / "montage.png", higher_is_better=higher, lr=lr,
            title="Bundled Landsat 8 tiles: GT | LR (x4 down) | SR methods")
    result.files["montage"] = out / "montage.png"

    judgements = data / "judgements" / "judgements.csv"
    echo(f"\nagreement with the example judgement set {judgements}: {LABELS_NOTE} (see its PROVENANCE.md)")
    run = run_agreement(judgements, metrics, bootstrap=bootstrap, device=device, progress=progress,
                        pairs_out=out / "agreement_pairs.csv")
    write_table(run.table, out / "agreement.csv")
    result.agreement_table = run.table
    result.files["agreement"] = out / "agreement.csv"
    result.files["agreement_pairs"] = out / "agreement_pairs.csv"
    figure3(run.table, out / "figure3.png", title=f"Example set: {LABELS_NOTE}",
            ylabel="agreement with constructed labels (%)")
    result.files["figure3"] = out / "figure3.png"
    from .report.build import write_report

    write_report([out / "scores.csv", out / "agreement.csv"], out / "report.html", lr_dir=str(data / "scene" / "lr"),
                 title="srmetrics demo: bundled Landsat 8 tiles (constructed labels, not human)")
    result.files["report"] = out / "report.html"

    with pd.option_context("display.width", 160, "display.float_format", "{:.4f}".format):
        echo("\nmean score per method (rows) and metric (columns):")
        echo(result.method_table.to_string())
    echo(format_best(result.best))
    echo(f"\nagreement with the example set ({LABELS_NOTE}):")
    echo(format_table(run.table))
    echo("Every metric should agree almost always here: the less degraded image is also closer to the GT pixel "
         "by pixel. Real labels come from people:")
    echo(f"  {_study_hint(judgements, out)}")
    echo("\nwritten:")
    for name, path in result.files.items():
        echo(f"  {name:<16} {path}")
    return result


def _study_hint(judgements: Path, out: Path) -> str:
    """Where to judge the demo outputs yourself (the ``study`` command, when this install has it)."""
    from .cli import COMMANDS

    if "study" in COMMANDS:
        return (f"judge the demo outputs yourself: srmetrics demo --study --out {out}  "
                f"(then: srmetrics study serve {Path(out) / 'study'})")
    return (f"judge these pairs yourself and score the metrics against your votes: collect a CSV in the schema of "
            f"{judgements} (judgements/README.md) and run srmetrics agreement on it")
