"""``srmetrics demo``: the whole toolkit end to end on a small example shipped inside the package.

The bundle (``clipscore_sr/data/demo``, built by :func:`build_demo_data`) holds

* ``scene/gt``: 64x64 RGB tiles of a public-domain Landsat 8 scene (Rocky Mountain National Park, USGS);
* ``scene/lr``: the same tiles downsampled x4 (PIL bicubic with antialiasing), the "low-resolution input";
* ``scene/sr/<method>``: "SR outputs" made from ``lr`` by simple, honest methods: ``nearest`` and ``bicubic``
  upsampling, and ``srcnn-tiny``, a tiny SRCNN (``clipscore_sr.baselines``) trained for a few hundred steps
  on *other* tiles of the same scene;
* ``judgements``: a copy of the example judgement set from the repository's ``judgements/example`` (its
  labels are constructed, not human: see its PROVENANCE.md).

:func:`run_demo` scores every method with every metric whose weights are on disk (learned metrics without
weights are skipped with the one-line missing-weights message), runs the agreement study on the judgement
set, draws Figure 3, and writes ``scores.csv``, ``summary.csv``, ``agreement.csv``, ``agreement_pairs.csv``
and ``figure3.png`` into the output folder, plus a copy of the example data in ``data/`` (``data/scene``,
``data/judgements``) to try ``srmetrics score`` and ``srmetrics agreement`` on.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import io
from .errors import SRMetricsError, WeightsNotFoundError

DATA_DIR = Path(__file__).resolve().parent / "data" / "demo"
PIXEL_METRICS = ("psnr", "ssim", "ssim-gray", "cpsnr", "cpsnr-satlas")
LEARNED_METRICS = ("lpips", "clipscore", "samscore")  # default specs; used when their weights are on disk
METHODS = ("nearest", "bicubic", "srcnn-tiny")
TILE, SCALE = 64, 4


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Weight checks inside the demo never download: it uses what is already on disk."""
    old = os.environ.get("CLIPSCORE_SR_OFFLINE")
    os.environ["CLIPSCORE_SR_OFFLINE"] = "1"
    try:
        yield
    finally:
        if old is None:
            del os.environ["CLIPSCORE_SR_OFFLINE"]
        else:
            os.environ["CLIPSCORE_SR_OFFLINE"] = old


def available_metrics(candidates: Sequence[str], *, device: str = "cpu",
                      metric_options: dict | None = None) -> tuple[list[str], dict[str, str]]:
    """Split metric ids into those usable now and ``{id: reason}`` for those whose weights are missing."""
    import torch

    from .pipeline import build_metrics

    usable, skipped = [], {}
    for mid in candidates:
        metric = build_metrics([mid], device=torch.device(device), metric_options=metric_options)[0]
        check = getattr(metric, "check_weights", None)
        if check is None:
            usable.append(mid)
            continue
        try:
            with _offline():
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


def demo_pairs(data_dir: Path = DATA_DIR) -> list[io.Pair]:
    """One pair per (method, tile); key ``method/tile``."""
    scene = data_dir / "scene"
    if not (scene / "gt").is_dir():
        raise SRMetricsError(f"{scene}: demo data missing (reinstall clipscore-sr, or rebuild with build_demo_data)")
    pairs = []
    for method in METHODS:
        pairing = io.pair_folders(scene / "gt", scene / "sr" / method, strict=True)
        pairs += [io.Pair(f"{method}/{p.key}", p.gt, p.sr) for p in pairing.pairs]
    return pairs


def run_demo(out_dir: str | os.PathLike = "srmetrics-demo", *, clip: Sequence[str] = (), device: str = "cpu",
             bootstrap: int = 1000, progress: bool = True, echo: Callable[[str], None] = print,
             data_dir: Path = DATA_DIR) -> DemoResult:
    """Score the bundled SR outputs, run agreement on the bundled judgements, draw Figure 3."""
    from .figures.figure3 import figure3
    from .human.agreement import format_table, run_agreement
    from .results import summarize, write_table

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    candidates = list(PIXEL_METRICS) + list(LEARNED_METRICS) + [f"clipscore:{c}" for c in clip]
    metrics, skipped = available_metrics(candidates, device=device)
    for mid, reason in skipped.items():
        if mid.startswith("clipscore:") and mid[len("clipscore:"):] in clip:
            raise SRMetricsError(f"--clip {mid[len('clipscore:'):]}: {reason}")
        echo(f"skipped {mid}: {reason}")
    result = DemoResult(out_dir=out, metrics=metrics, skipped=skipped)
    # a copy of the example data, so the README's next commands (score, agreement) have inputs to run on
    for sub in ("scene", "judgements"):
        if not (out / "data" / sub).exists():
            shutil.copytree(data_dir / sub, out / "data" / sub)
    result.files["data"] = out / "data"

    from .pipeline import score_pairs

    echo(f"scoring {len(METHODS)} SR methods on the bundled Landsat 8 tiles with: {', '.join(metrics)}")
    scores = score_pairs(demo_pairs(data_dir), metrics, out=out / "scores.csv", device=device, progress=progress)
    failed = scores[scores["error"] != ""]
    if len(failed):
        raise SRMetricsError(f"demo scoring failed for {failed['key'].iat[0]}: {failed['error'].iat[0]}")
    scores.insert(1, "method", scores["key"].str.split("/").str[0])
    write_table(scores, out / "scores.csv")
    result.files["scores"] = out / "scores.csv"
    summary = pd.concat([summarize(scores[scores["method"] == m], metrics).assign(method=m) for m in METHODS])
    write_table(summary[["method", *[c for c in summary.columns if c != "method"]]], out / "summary.csv")
    result.files["summary"] = out / "summary.csv"
    result.method_table = summary.pivot(index="method", columns="metric", values="mean").loc[list(METHODS), metrics]

    judgements = data_dir / "judgements" / "judgements.csv"
    echo(f"agreement with the example judgement set ({judgements.parent.name}; constructed labels, see its "
         "PROVENANCE.md)")
    run = run_agreement(judgements, metrics, bootstrap=bootstrap, device=device, progress=progress,
                        pairs_out=out / "agreement_pairs.csv")
    write_table(run.table, out / "agreement.csv")
    result.agreement_table = run.table
    result.files["agreement"] = out / "agreement.csv"
    result.files["agreement_pairs"] = out / "agreement_pairs.csv"
    figure3(run.table, out / "figure3.png", title="Agreement with the example judgement set (constructed labels)")
    result.files["figure3"] = out / "figure3.png"

    with pd.option_context("display.width", 160, "display.float_format", "{:.4f}".format):
        echo("\nmean score per method (rows) and metric (columns):")
        echo(result.method_table.to_string())
    echo("\nagreement with the judgements:")
    echo(format_table(run.table))
    echo("\nwritten:")
    for name, path in result.files.items():
        echo(f"  {name:<16} {path}")
    return result


# --------------------------------------------------------------------------------------------------
# Building the bundle (run once by the maintainers; the result is committed)

def _tiles(rgb: np.ndarray) -> list[tuple[int, int]]:
    h, w = rgb.shape[:2]
    return [(y, x) for y in range(0, h - TILE + 1, TILE) for x in range(0, w - TILE + 1, TILE)]


def _downsample(tile: np.ndarray) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(tile).resize((TILE // SCALE, TILE // SCALE), Image.BICUBIC))


def _upsample(lr: np.ndarray, method: str) -> np.ndarray:
    from PIL import Image

    resample = {"nearest": Image.NEAREST, "bicubic": Image.BICUBIC}[method]
    return np.asarray(Image.fromarray(lr).resize((TILE, TILE), resample))


def _train_tiny_srcnn(train_tiles: list[np.ndarray], steps: int, seed: int):
    """A tiny single-frame SRCNN trained with L1 on x4 bicubic-downsampled tiles; returns the model."""
    import torch

    from .baselines import build_generator

    torch.manual_seed(seed)
    model = build_generator("srcnn", "small", n_frames=1, scale=SCALE, n1=32, n2=16)
    hr = torch.from_numpy(np.stack(train_tiles)).permute(0, 3, 1, 2).float() / 255
    lr = torch.from_numpy(np.stack([_downsample(t) for t in train_tiles])).permute(0, 3, 1, 2).float() / 255
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(hr), (16,), generator=gen)
        loss = (model(lr[idx, None]) - hr[idx]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def build_demo_data(source: str | os.PathLike, judgements_dir: str | os.PathLike, dest: str | os.PathLike = DATA_DIR,
                    *, n_tiles: int = 6, steps: int = 600, seed: int = 0) -> Path:
    """Rebuild the demo bundle from the public-domain Landsat sample and the example judgement set."""
    import torch
    from PIL import Image

    dest = Path(dest)
    rgb = (np.moveaxis(io.read_image(source).data, 0, -1) * 255).round().astype(np.uint8)
    positions = _tiles(rgb)
    texture = [float(rgb[y:y + TILE, x:x + TILE].std()) for y, x in positions]
    order = sorted(range(len(positions)), key=lambda i: (-texture[i], i))
    demo_idx = sorted(order[:n_tiles * 3:3])  # every third of the most textured tiles
    train = [rgb[y:y + TILE, x:x + TILE] for i, (y, x) in enumerate(positions) if i not in demo_idx]
    model = _train_tiny_srcnn(train, steps, seed)
    if (dest / "scene").exists():
        shutil.rmtree(dest / "scene")
    for i in demo_idx:
        y, x = positions[i]
        name = f"y{y:03d}x{x:03d}.png"
        tile = rgb[y:y + TILE, x:x + TILE]
        lr = _downsample(tile)
        outputs = {m: _upsample(lr, m) for m in ("nearest", "bicubic")}
        with torch.no_grad():
            sr = model(torch.from_numpy(lr).permute(2, 0, 1)[None, None].float() / 255)[0]
        outputs["srcnn-tiny"] = (sr.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        for sub, arr in [("gt", tile), ("lr", lr), *[(f"sr/{m}", a) for m, a in outputs.items()]]:
            (dest / "scene" / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(dest / "scene" / sub / name, optimize=True)
    if (dest / "judgements").exists():
        shutil.rmtree(dest / "judgements")
    shutil.copytree(judgements_dir, dest / "judgements")
    return dest
