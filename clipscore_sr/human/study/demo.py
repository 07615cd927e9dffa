"""The demo study: about 24 trials on the bundled Landsat 8 tiles and SR outputs (``srmetrics demo --study``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from .make import make_study
from .manifest import Study

DEMO_TRIALS, DEMO_SENTINELS, DEMO_REPEATS = 24, 0.125, 0.125  # 18 real (every scene x method pair), 3 + 3 checks


def make_demo_study(out: str | os.PathLike, *, seed: int = 0, echo: Callable[[str], None] = print,
                    scene_dir: str | os.PathLike | None = None) -> Study:
    """Make the demo study in ``out`` and print how to judge it and then score the metrics on one's votes.
    ``scene_dir``: the demo scene to use (``srmetrics demo --study`` passes the copy it makes beside the study,
    so the study never points into the installed package); default the bundled one."""
    from ...demo import DATA_DIR, METHODS

    scene = Path(scene_dir) if scene_dir is not None else DATA_DIR / "scene"
    study = make_study(scene / "gt", {m: scene / "sr" / m for m in METHODS}, DEMO_TRIALS, out, seed=seed,
                       sentinels=DEMO_SENTINELS, repeats=DEMO_REPEATS, allow_tie=True, dataset="landsat-demo",
                       echo=echo)
    out = Path(out)
    echo(f"demo study: {len(study.trials)} trials ({', '.join(study.methods)} on {len({t.scene for t in study.trials})} "
         f"Landsat 8 tiles; 3 attention checks, 3 repeats) -> {out}")
    echo("judge it in your browser (answers go to judgements.csv; stop and restart any time):")
    echo(f"  srmetrics study serve {out}")
    echo("then see how often each metric agrees with your own votes:")
    echo(f"  srmetrics study status {out}")
    echo(f"  srmetrics agreement {out / 'judgements.csv'} --metrics psnr,ssim,cpsnr")
    echo("  (add lpips or clipscore to --metrics once their weights are on disk: srmetrics models)")
    return study
