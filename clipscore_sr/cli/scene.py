"""``srmetrics scene LR.tif SR.tif -o DIR``: stream whole LR/SR scenes tile by tile, map where SR fails without
HR; ``srmetrics scene-merge DIR``: merge the shards of ``--shard I/N`` runs exactly."""

from __future__ import annotations

import click

from ..errors import ConfigError


def _settings(tile, bands, data_range, offset, s2_baseline, saturation, mask, red_band, nir_band, seam_period,
              min_valid):
    from ..scene import SceneSettings
    from ..scene.read import parse_band_list, s2_offset

    if s2_baseline is not None:
        if offset is not None or (data_range is not None and data_range != 10000):
            raise ConfigError("--s2-baseline sets --data-range 10000 and the offset; do not give them as well")
        data_range, offset = 10000.0, s2_offset(s2_baseline)
    if data_range is not None and not data_range > 0:
        raise ConfigError(f"--data-range {data_range}: expected a positive number")
    if not 0 <= min_valid <= 1:
        raise ConfigError(f"--min-valid {min_valid}: expected a fraction in [0, 1]")
    if seam_period is not None and seam_period < 2:
        raise ConfigError(f"--seam-period {seam_period}: expected an inference-window period of >= 2 SR pixels")

    def band(v):
        return None if v is None else (int(v) if str(v).isdigit() else str(v))

    sat = saturation.strip().lower()
    if sat not in ("auto", "none"):
        try:
            sat = float(sat)
        except ValueError:
            raise ConfigError(f"--saturation {saturation}: expected a stored value, auto or none") from None
    return SceneSettings(tile=tile, bands=parse_band_list(bands), data_range=data_range, offset=float(offset or 0),
                         saturation=sat, mask=mask, red=band(red_band), nir=band(nir_band), seam_period=seam_period,
                         min_valid=min_valid)


@click.command("scene")
@click.argument("lr", required=False, type=click.Path(exists=True))
@click.argument("sr", required=False, type=click.Path(exists=True))
@click.option("--out", "-o", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output folder: tiles.parquet/.csv, summary.json, maps/*.tif (COG), quicklook/*.png.")
@click.option("--list", "pair_list", type=click.Path(exists=True, dir_okay=False), default=None,
              help="CSV with columns lr,sr: several scenes in one run (instead of LR SR).")
@click.option("--tile", type=click.IntRange(min=8), default=256, show_default=True,
              help="Tile size in LR pixels (seam periods up to half a tile's SR size are looked for).")
@click.option("--bands", default=None, help="Bands to compare: 1-based numbers (3,2,1) or band names (B04,B03).")
@click.option("--data-range", type=float, default=None,
              help="Full scale of stored values, both rasters (default from the LR type: 255, 65535, 1.0).")
@click.option("--offset", type=float, default=None, help="Subtracted from stored values before scaling.")
@click.option("--s2-baseline", default=None, metavar="X.YY",
              help="Sentinel-2 L1C/L2A processing baseline: data range 10000, offset 1000 from 04.00 on, else 0.")
@click.option("--saturation", default="auto", show_default=True,
              help="Stored SR value at or above which a pixel is saturated (invalid): auto = integer type max, none.")
@click.option("--mask", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Raster on the LR or SR grid; 0 = left out.")
@click.option("--red-band", default=None, help="Red band (number or name) for NDVI drift.")
@click.option("--nir-band", default=None, help="NIR band (number or name) for NDVI drift.")
@click.option("--seam-period", type=int, default=None,
              help="Inference-window period in SR pixels (default: detected per tile, 16-512).")
@click.option("--min-valid", type=float, default=0.5, show_default=True,
              help="Tiles with a smaller valid fraction get no metric values.")
@click.option("--shard", default=None, metavar="I/N", help="Run shard I (0-based) of N; merge with scene-merge.")
@click.option("--resume", is_flag=True, help="Keep the tiles already in OUT (same inputs and settings).")
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default="cpu", show_default=True,
              help="Where the detectors run (cuda: each torchrun rank its LOCAL_RANK GPU). Shards merged together "
                   "must use the same kind.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary; only warnings and errors.")
def scene_command(lr, sr, out_dir, pair_list, tile, bands, data_range, offset, s2_baseline, saturation, mask, red_band,
                  nir_band, seam_period, min_valid, shard, resume, device, quiet):
    """Evaluate whole SR scenes against their LR input, tile by tile, without HR.

    Per tile: lr-l1/psnr/sam/shift, no-data propagation, seams, colour cast and NDVI drift, added detail, and a
    consistency-by-construction flag; a table, a summary with the worst tiles, COG maps and a quick-look.

    \b
    Examples:
      srmetrics scene lr.tif sr.tif -o eval/
      srmetrics scene lr/ sr/ -o eval/ --tile 128 --seam-period 128 -q
      srmetrics scene L2A.tif SR.tif -o eval/ --s2-baseline 04.00 --bands B04,B03,B02,B08 --red-band B04 --nir-band B08
      srmetrics scene --list scenes.csv -o eval/ --shard 0/4     # then: srmetrics scene-merge eval/
      torchrun --nproc-per-node 4 -m clipscore_sr scene lr/ sr/ -o eval/ -q
    """
    import sys

    from ..scene import evaluate_scenes, find_pairs, read_pair_list
    from ..scene.grid import parse_shard
    from ..scene.merge import format_summary

    if pair_list and (lr or sr):
        raise ConfigError("give LR SR or --list, not both")
    if not pair_list and not (lr and sr):
        raise click.UsageError("give LR and SR (files or folders) or --list CSV")
    settings = _settings(tile, bands, data_range, offset, s2_baseline, saturation, mask, red_band, nir_band,
                         seam_period, min_valid)
    pairs = read_pair_list(pair_list) if pair_list else find_pairs(lr, sr)
    result = evaluate_scenes(pairs, out_dir, settings, shard=parse_shard(shard) if shard else None, resume=resume,
                             progress=not quiet, device=device)
    if result["merged"] and not quiet:
        click.echo(format_summary(result["summary"]))
    elif shard and not quiet:
        i, n = result["shard"]
        click.echo(f"shard {i}/{n} done; when every shard is, run: srmetrics scene-merge {out_dir}")
    if result["errors"]:
        click.echo(f"Error: {result['errors']} tile(s) could not be evaluated (column 'error' of the table); "
                   "fix the input and rerun with --resume", err=True)
        sys.exit(1)


@click.command("scene-merge")
@click.argument("out_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--quiet", "-q", is_flag=True, help="No summary.")
def scene_merge_command(out_dir, quiet):
    """Merge the shards of `srmetrics scene --shard I/N` runs in OUT_DIR exactly (sums and counts).

    \b
    Examples:
      srmetrics scene lr/ sr/ -o eval/ --shard 0/2 && srmetrics scene lr/ sr/ -o eval/ --shard 1/2
      srmetrics scene-merge eval/
    """
    import sys
    from pathlib import Path

    from ..results import OutputLock
    from ..scene.merge import format_summary, merge_shards

    with OutputLock(Path(out_dir) / "tiles.parquet", "-o"):
        df, summary = merge_shards(out_dir)
    if not quiet:
        click.echo(format_summary(summary))
    if (df["error"] != "").any():
        sys.exit(1)
