"""``srmetrics montage GT_DIR SR_DIR...``: a picture of SR outputs, GT | LR | each method, per tile."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import SRMetricsError


@click.command("montage")
@click.argument("gt_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("sr_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "-o", "out", required=True, type=click.Path(dir_okay=False),
              help="Figure file: .png, .pdf or .svg.")
@click.option("--lr", "lr_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder of LR inputs (paired by key like the SR files) to show as the second column.")
@click.option("--metrics", "-m", default="psnr,ssim", show_default=True,
              help="Comma list of metric ids annotated under each SR image.")
@click.option("--max-tiles", type=click.IntRange(min=1), default=8, show_default=True, help="Rows drawn.")
@click.option("--device", default="auto", show_default=True, help="auto|cpu|cuda|cuda:N|mps")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary; only warnings and errors.")
def montage_command(gt_dir, sr_dirs, out, lr_dir, metrics, max_tiles, device, quiet) -> None:
    """Draw GT | LR | each SR_DIR (one method per folder, named by the folder) per tile, every SR image
    annotated with each metric's value and the best method per metric marked; prints the best method per
    metric (mean over the tiles every method has).

    \b
    Examples:
      srmetrics montage srmetrics-demo/data/scene/gt srmetrics-demo/data/scene/sr/* \\
        --lr srmetrics-demo/data/scene/lr -m psnr,ssim -o montage.png
      srmetrics montage gt/ esrgan/ esrgan-clip/ -m psnr,clipscore:clip-rn50 -o compare.pdf --max-tiles 4
    """
    from .. import io
    from ..figures.montage import montage
    from ..metrics.base import metric_direction, parse_metric_list
    from ..pipeline import score_pairs
    from ..results import format_best

    metric_ids = parse_metric_list(metrics)
    higher = {m: metric_direction(m) for m in metric_ids}
    names = [Path(d).name or Path(d).resolve().name for d in sr_dirs]
    if len(set(names)) < len(names):  # same folder names: use parent/name
        names = [f"{Path(d).resolve().parent.name}/{Path(d).resolve().name}" for d in sr_dirs]
    if len(set(names)) < len(names):
        raise SRMetricsError(f"SR folders with the same names: {', '.join(sr_dirs)}")
    scores = {}
    for name, sr_dir in zip(names, sr_dirs):
        pairing = io.pair_folders(gt_dir, sr_dir)
        scores[name] = score_pairs(pairing.pairs, metric_ids, device=device, progress=not quiet)
    lr = {k: str(p) for k, p in io.index_images(lr_dir).items()} if lr_dir else None
    meta = montage(scores, metric_ids, out, higher_is_better=higher, lr=lr, max_rows=max_tiles)
    if not quiet:
        click.echo(format_best(meta["best"]))
        click.echo(f"montage ({len(meta['keys'])} tiles x {len(scores)} methods) -> {meta['path']}")
