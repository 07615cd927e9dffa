"""``srmetrics demo``: the main job end to end on the example bundled with the package (offline)."""

from __future__ import annotations

import click


@click.command("demo")
@click.option("--out", "-o", "out_dir", type=click.Path(file_okay=False), default="srmetrics-demo",
              show_default=True, help="Folder for the per-image table, the agreement table and Figure 3.")
@click.option("--clip", "clip", multiple=True, metavar="SPEC",
              help="Also score with this CLIP model (e.g. local-dir:PATH, clip-rn50); repeatable.")
@click.option("--device", default="cpu", show_default=True, help="auto|cpu|cuda|mps")
@click.option("--bootstrap", type=int, default=1000, show_default=True, help="Bootstrap resamples for the CIs.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.option("--study", "study", is_flag=True,
              help="Instead: make a 24-trial 2AFC study of the bundled outputs in OUT/study to judge yourself.")
def demo_command(out_dir: str, clip: tuple[str, ...], device: str, bootstrap: int, quiet: bool, study: bool) -> None:
    """Score bundled SR outputs of a public-domain Landsat 8 scene, run agreement on the example judgement
    set and draw Figure 3. Learned metrics whose weights are not on disk are skipped (with how to get them).

    \b
    Examples:
      srmetrics demo --out srmetrics-demo
      srmetrics demo --study --out srmetrics-demo
    """
    if study:
        import shutil
        from pathlib import Path

        from ..demo import DATA_DIR
        from ..human.study.demo import make_demo_study

        scene = Path(out_dir) / "data" / "scene"  # the same copy `demo` scores: the study points at the user's files
        if not scene.exists():
            shutil.copytree(DATA_DIR / "scene", scene, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
        make_demo_study(f"{out_dir}/study", echo=click.echo, scene_dir=scene)
        return
    from ..demo import run_demo

    run_demo(out_dir, clip=clip, device=device, bootstrap=bootstrap, progress=not quiet, echo=click.echo)
