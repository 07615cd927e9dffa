"""``srmetrics maps HR SR LR -o fig.png``: the captioned correctness-maps figure of one triplet."""

from __future__ import annotations

import click

from .score import BANDS_HELP, DATA_RANGE_HELP


@click.command("maps")
@click.argument("hr", type=click.Path(exists=True, dir_okay=False))
@click.argument("sr", type=click.Path(exists=True, dir_okay=False))
@click.argument("lr", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False), help="Figure file: .png, .pdf or .svg.")
@click.option("--patch-size", type=click.IntRange(min=1), default=1, show_default=True,
              help="Correctness patch size in SR pixels (1 = per pixel).")
@click.option("--bands", default=None, help=BANDS_HELP)
@click.option("--data-range", type=float, default=None, help=DATA_RANGE_HELP)
@click.option("--stretch", type=click.Choice(["auto", "percentile", "none"]), default="auto", show_default=True,
              help="Display stretch from the HR, the same for LR and SR (auto: none for 8-bit, 2-98 percentiles "
                   "otherwise).")
@click.option("--quiet", "-q", is_flag=True, help="Print only warnings and errors.")
def maps_command(hr, sr, lr, out, patch_size, bands, data_range, stretch, quiet) -> None:
    """Draw LR | SR | HR | correctness map (improvement green, omission blue, hallucination red) with the
    three fractions and the LR-consistency numbers, for one triplet. For a whole folder, use
    'srmetrics score GT SR --lr LR -m correctness --maps DIR' (class maps plus one figure per pair).

    \b
    Example:
      srmetrics maps HR.png SR.png LR.png -o correctness.png
    """
    from ..figures.correctness_maps import correctness_figure
    from ..figures.style import figure_format
    from ..io import parse_bands

    figure_format(out)
    res = correctness_figure(hr, sr, lr, out, patch_size=patch_size, bands=parse_bands(bands),
                             data_range=data_range, stretch=stretch)
    if not quiet:
        fr = res["fractions"]
        click.echo(f"improvement {fr[0]:.4f}, omission {fr[1]:.4f}, hallucination {fr[2]:.4f}; "
                   + ", ".join(f"{k} {v:.3f}" for k, v in res["stats"].items()))
        click.echo(f"figure: {res['path']}")
