"""``srmetrics montage GT_DIR SR_DIR...``: a picture of SR outputs, GT | LR | each method, per tile."""

from __future__ import annotations

import warnings
from pathlib import Path

import click

from ..errors import DataRangeWarning, SRMetricsError
from .score import BANDS_HELP, DATA_RANGE_HELP


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
@click.option("--bands", default=None, help=BANDS_HELP + " Shown: 3 bands as RGB or 1 as grey.")
@click.option("--data-range", type=float, default=None, help=DATA_RANGE_HELP)
@click.option("--stretch", type=click.Choice(["auto", "percentile", "none"]), default="auto", show_default=True,
              help="Display stretch, one per row from its GT and the same for every column (auto: none for "
                   "8-bit, 2nd-98th percentile otherwise).")
@click.option("--device", default="auto", show_default=True, help="auto|cpu|cuda|cuda:N|mps")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary; only warnings and errors.")
def montage_command(gt_dir, sr_dirs, out, lr_dir, metrics, max_tiles, bands, data_range, stretch, device,
                    quiet) -> None:
    """Draw GT | LR | each SR_DIR (one method per folder, named by the folder) per tile, every SR image
    annotated with each metric's value and the best method per metric marked; prints the best method per
    metric (mean over the tiles every method has).

    \b
    Examples:
      srmetrics montage srmetrics-demo/data/scene/gt srmetrics-demo/data/scene/sr/* \\
        --lr srmetrics-demo/data/scene/lr -m psnr,ssim -o montage.png
      srmetrics montage gt/ esrgan/ esrgan-clip/ -m psnr,clipscore:clip-rn50 -o compare.pdf --max-tiles 4
      srmetrics montage s2/gt s2/sr/esrgan --lr s2/lr --bands 4,3,2 --data-range 10000 -o s2.png
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
    band_list = io.parse_bands(bands)
    scores = {}
    with warnings.catch_warnings(record=True) as caught:  # one line per distinct warning over all methods
        warnings.simplefilter("always")
        for name, sr_dir in zip(names, sr_dirs):
            pairing = io.pair_folders(gt_dir, sr_dir)
            if lr_dir:
                io.attach_lr(pairing.pairs, lr_dir)
            scores[name] = score_pairs(pairing.pairs, metric_ids, device=device, progress=not quiet,
                                       bands=band_list, data_range=data_range)
    for text in dict.fromkeys(str(w.message) for w in caught
                              if not quiet or issubclass(w.category, DataRangeWarning)):
        click.echo(f"Warning: {text}", err=True)
    lr = {k: str(p) for k, p in io.index_images(lr_dir).items()} if lr_dir else None
    meta = montage(scores, metric_ids, out, higher_is_better=higher, lr=lr, max_rows=max_tiles, bands=band_list,
                   data_range=data_range, stretch=stretch)
    if not quiet:
        click.echo(format_best(meta["best"]))
        click.echo(f"montage ({len(meta['keys'])} tiles x {len(scores)} methods) -> {meta['path']}")
