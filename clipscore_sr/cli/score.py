"""``srmetrics score GT_DIR SR_DIR``: per-image and summary metrics for a folder of SR outputs."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import click

from ..errors import DataRangeWarning, SRMetricsError

DEFAULT_METRICS = "psnr,ssim,cpsnr"


#: the --data-range help of every command that reads images (one copy)
DATA_RANGE_HELP = ("Value of full scale (default: 255 for 8-bit, 65535 for 16-bit, 1.0 for float; uint16 data far "
                   "below 65535 get a warning). 12-bit: 4095. Sentinel-2 L1C/L2A reflectance x10000: 10000 (from "
                   "processing baseline 04.00 on, stored values carry a +1000 offset: valid data reach 11000).")
BANDS_HELP = "1-based band numbers to use, e.g. 3,2,1 for multi-band images (GDAL order)."


def common_scoring_options(func):
    """Options shared by every command that scores images (score, agreement, demo)."""
    options = [
        click.option("--bands", default=None, help=BANDS_HELP),
        click.option("--data-range", type=float, default=None, help=DATA_RANGE_HELP),
        click.option("--crop-border", type=int, default=0, show_default=True,
                     help="Pixels removed from every side before pixel metrics."),
        click.option("--batch-size", type=int, default=16, show_default=True),
        click.option("--workers", type=int, default=2, show_default=True, help="Image-decoding threads."),
        click.option("--device", default="auto", show_default=True, help="auto|cpu|cuda|cuda:N|mps"),
        click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32", show_default=True,
                     help="Model precision for learned metrics (autocast). On CPU (measured, "
                          "benchmarks/bench_clip_cpu.py): bf16 runs RN50 CLIPs 2.0x faster (cosine within 1e-5 of "
                          "fp32) but ViT CLIPs 2-4x slower; fp16 needs a GPU. RN towers also run channels_last on "
                          "CPU (1.2x, same values)."),
        click.option("--cache", "cache_dir", type=click.Path(file_okay=False), default=None,
                     help="On-disk embedding cache folder for learned metrics."),
        click.option("--sam-checkpoint", type=click.Path(dir_okay=False), default=None,
                     help="Segment Anything checkpoint for samscore."),
        click.option("--metric-option", "metric_option", multiple=True, metavar="NAME.KEY=VALUE",
                     help="An option of the metrics named NAME (or of one id, e.g. correctness:lpips.patch_size=32), "
                          "e.g. correctness.patch_size=32 or lr-shift.upsample_factor=50; beats the shared flags "
                          "(repeatable; VALUE: a number, or YAML: true, q75, [0.8,0.8,0.4]).",
                     ),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar or table; only warnings and errors."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def metric_options_from(crop_border: int, cache_dir: str | None, sam_checkpoint: str | None,
                        metric_option: tuple[str, ...] = ()) -> dict:
    """Metric options from the shared scoring flags; an unusable ``--cache`` folder fails here, before scoring.
    ``--metric-option NAME.KEY=VALUE`` entries become ``"NAME.KEY": value`` (see ``pipeline.build_metrics``)."""
    from ..results import check_writable_dir

    opts: dict = {"crop_border": crop_border}
    for text in metric_option:
        opts.update(parse_metric_option(text))
    if cache_dir:
        check_writable_dir(cache_dir, "--cache")
        opts["cache_dir"] = cache_dir
    if sam_checkpoint:
        opts["sam_checkpoint"] = sam_checkpoint
    return opts


#: metric options that have their own flag (which also maps band numbers / checks folders): not via --metric-option
FLAG_OPTIONS = {"red_band": "--red-band", "nir_band": "--nir-band", "scale": "--scale", "cache_dir": "--cache",
                "sam_checkpoint": "--sam-checkpoint", "precision": "--precision", "device": "--device"}


def parse_metric_option(text: str) -> dict:
    """``'correctness.patch_size=32'`` -> ``{'correctness.patch_size': 32}``. TARGET is a metric name or a full
    id (``correctness:lpips.patch_size=32``; the KEY is after the last dot). VALUE: an int or float as written
    (``1e-1`` too), else YAML (``true``, ``q75``, ``[0.8,0.8,0.4]``, ``null``), else the plain string."""
    from ..yamlsafe import load_yaml

    target, sep, raw = text.partition("=")
    name, dot, key = target.strip().rpartition(".")
    if not sep or not dot or not name or not key.isidentifier():
        raise SRMetricsError(f"--metric-option '{text}': expected NAME.KEY=VALUE, e.g. correctness.patch_size=32")
    if key in FLAG_OPTIONS:
        raise SRMetricsError(f"--metric-option '{text}': use {FLAG_OPTIONS[key]} for {key}")
    raw = raw.strip()
    value: object
    for number in (int, float):
        try:
            value = number(raw)
            break
        except ValueError:
            continue
    else:
        value = load_yaml(raw, f"--metric-option '{text}'", invalid="VALUE is not valid YAML") if raw else None
    return {f"{name.strip().lower()}.{key}": value}


def directions(metric_ids: list[str]) -> dict[str, bool]:
    from ..metrics.base import metric_direction

    return {m: metric_direction(m) for m in metric_ids}


def lr_scoring_options(func):
    """Options for references at another resolution (LR input, spectral metrics, calibrated scores)."""
    options = [
        click.option("--lr", "lr_dir", type=click.Path(exists=True, file_okay=False), default=None,
                     help="LR inputs paired by relative path: for lr-* metrics, correctness, ergas and --baseline. "
                          "With one folder argument it is SR_DIR (no HR)."),
        click.option("--lr-frame", default=None,
                     help="LR files are strips of square frames stacked vertically: use frame N (1-based) or 'mean'."),
        click.option("--scale", type=float, default=None, help="SR scale for ergas when there is no --lr."),
        click.option("--per-band", is_flag=True, help="Add one column per band for psnr, ssim, cpsnr (<id>-b<N>)."),
        click.option("--red-band", type=int, default=None, help="Red band number (1-based, in the file) for ndvi-error."),
        click.option("--nir-band", type=int, default=None, help="NIR band number (1-based, in the file) for ndvi-error."),
        click.option("--baseline", type=click.Choice(["bicubic"]), default=None,
                     help="Add per column the bicubic-upsampled LR's value, the gain and the gap closed (needs --lr)."),
        click.option("--maps", "maps_dir", type=click.Path(file_okay=False), default=None,
                     help="Write correctness maps (PNG; GeoTIFF for GeoTIFF inputs) to this folder, and a captioned "
                          "figure (LR | SR | HR | map, with a legend) per pair: <key>.correctness-figure.png."),
        click.option("--maps-figures", type=click.IntRange(min=0), default=50, show_default=True,
                     help="With --maps: captioned figures for at most this many pairs (0 = class maps only)."),
        click.option("--mixed-sizes", is_flag=True,
                     help="Let size-agnostic metrics (clipscore) compare SR with a reference of another size."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def file_band_to_channel(band: int | None, bands: str | None, option: str) -> int | None:
    """A 1-based file band number -> its 1-based channel after ``--bands`` selection."""
    if band is None:
        return None
    from .. import io

    chosen = io.parse_bands(bands)
    if chosen is None:
        return band
    if band not in chosen:
        raise SRMetricsError(f"{option} {band}: band {band} is not among --bands {bands}")
    return chosen.index(band) + 1


@click.command("score")
@click.argument("gt_dir", required=False, type=click.Path(exists=True, file_okay=False))
@click.argument("sr_dir", required=False, type=click.Path(exists=True, file_okay=False))
@click.option("--metrics", "-m", default=DEFAULT_METRICS, show_default=True,
              help="Comma list of metric ids (see 'srmetrics metrics').")
@click.option("--out", "-o", type=click.Path(dir_okay=False), default=None,
              help="Per-pair results: .csv, .json or .parquet (written incrementally).")
@click.option("--summary", "summary_out", type=click.Path(dir_okay=False), default=None,
              help="Write the summary table (mean, std, 95% CI, count) to this .csv/.json/.parquet.")
@click.option("--pairs", "pairs_csv", type=click.Path(exists=True, dir_okay=False), default=None,
              help="CSV manifest with columns gt,sr (optional key, mask) instead of two folders.")
@click.option("--mask-dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Clear-pixel masks (nonzero = clear) paired by key, used by cpsnr.")
@click.option("--strict", is_flag=True, help="Unmatched files are an error instead of a warning.")
@click.option("--resume", is_flag=True, help="Skip pairs already scored in --out.")
@click.option("--methods", "by_method", is_flag=True,
              help="SR_DIR holds one subfolder per method: score each (keys METHOD/KEY), summary per method "
                   "and the best method per metric.")
@click.option("--montage", "montage_out", type=click.Path(dir_okay=False), default=None,
              help="Also draw GT | SR per pair (first 8 keys) annotated with each metric: .png/.pdf/.svg.")
@common_scoring_options
@lr_scoring_options
def score_command(gt_dir, sr_dir, metrics, out, summary_out, pairs_csv, mask_dir, strict, resume, by_method,
                  montage_out, bands, data_range, crop_border, batch_size, workers, device, precision, cache_dir,
                  sam_checkpoint, metric_option, quiet, lr_dir, lr_frame, scale, per_band, red_band, nir_band, baseline, maps_dir, maps_figures,
                  mixed_sizes) -> None:
    """Score every SR image in SR_DIR against its GT in GT_DIR (paired by relative path without extension).

    \b
    Examples:
      srmetrics score gt/ out/ --metrics psnr,ssim,cpsnr --out results.csv --summary summary.csv
      srmetrics score gt/ out/ -m psnr,ssim -o results.csv --resume --montage montage.png
      srmetrics score gt/ sr/ --methods -m psnr,ssim --summary summary.csv   # sr/METHOD/... per method
      srmetrics score --lr lr/ out/ -m lr-psnr,lr-sam,lr-shift              # no HR: LR consistency
    """
    from .. import io
    from ..metrics.base import parse_metric_list
    from ..pipeline import score_pairs
    from ..results import (
        OutputLock,
        best_per_metric,
        check_outputs,
        format_best,
        format_summary,
        method_of,
        summarize,
        summarize_by_method,
        write_table,
    )
    from . import _rank

    metric_ids = parse_metric_list(metrics)
    higher_is_better = directions(metric_ids)  # unknown ids fail here, before any work
    if resume and not out:
        raise SRMetricsError("--resume needs --out (the file to resume)")
    # colliding, badly named or unwritable outputs fail here, before any work
    check_outputs({"--out": out, "--summary": summary_out}, {"--pairs": pairs_csv}, tables=("--out", "--summary"))
    if summary_out and _rank() == 0:  # --summary is locked like --out, until the command ends
        click.get_current_context().call_on_close(OutputLock(summary_out, "--summary").acquire().release)
    options = metric_options_from(crop_border, cache_dir, sam_checkpoint, metric_option)  # checks --cache before any work
    if pairs_csv:
        if gt_dir or sr_dir:
            raise SRMetricsError("give either GT_DIR SR_DIR or --pairs, not both")
        pairing = io.read_pairs_csv(pairs_csv)
        if mask_dir:
            io.attach_masks(pairing.pairs, mask_dir)
    elif lr_dir and gt_dir and not sr_dir:  # --lr LR_DIR SR_DIR: no HR
        pairing = io.pair_lr_folders(lr_dir, gt_dir, strict=strict)
        lr_dir = None
    else:
        if not (gt_dir and sr_dir):
            raise SRMetricsError("missing GT_DIR and SR_DIR (or use --pairs pairs.csv)")
        pair = io.pair_method_folders if by_method else io.pair_folders
        pairing = pair(gt_dir, sr_dir, strict=strict, mask_dir=mask_dir)
    if lr_dir:
        no_lr = io.attach_lr(pairing.pairs, lr_dir)
        if no_lr:
            click.echo(f"Warning: {len(no_lr)} pair(s) have no LR image in {lr_dir} (e.g. '{no_lr[0]}'); "
                       "metrics that need it fail on those pairs", err=True)
    for key, value in (("scale", scale), ("red_band", file_band_to_channel(red_band, bands, "--red-band")),
                       ("nir_band", file_band_to_channel(nir_band, bands, "--nir-band"))):
        if value is not None:
            options[key] = value
    warning = pairing.warning()
    if warning:
        click.echo(f"Warning: {warning}", err=True)

    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore")
            warnings.simplefilter("once", DataRangeWarning)  # -q keeps warnings that change the numbers
        df = score_pairs(
            pairing.pairs, metric_ids, out=out, resume=resume, batch_size=batch_size, workers=workers,
            bands=bands, data_range=data_range, device=device, precision=precision,
            metric_options=options, progress=not quiet, lr_frame=lr_frame, per_band=per_band,
            baseline=baseline, maps_dir=maps_dir, maps_figures=maps_figures, mixed_sizes=mixed_sizes,
        )
    run = df.attrs.get("run")
    if run is not None and run.columns:
        metric_ids, higher_is_better = run.columns, run.directions
    if run is not None and run.resume_note and not quiet:
        click.echo(run.resume_note, err=True)
    if resume and run is not None and run.n_skipped and (not quiet or run.n_skipped == run.n_pairs):
        click.echo(f"{run.n_skipped} pairs already scored, skipped", err=True)
    if by_method:
        methods = method_of(df["key"])
        per_method = {m: df[methods == m].assign(key=df["key"].str.split("/", n=1).str[1])
                      for m in dict.fromkeys(methods)}
    else:
        per_method = {Path(sr_dir).name if sr_dir else "sr": df}
    if montage_out:
        from ..figures.montage import montage

        lr_files = {(p.key.split("/", 1)[1] if by_method else p.key): p.lr for p in pairing.pairs if p.lr} or None
        meta = montage(per_method, metric_ids, montage_out, higher_is_better=higher_is_better, lr=lr_files,
                       bands=io.parse_bands(bands), data_range=data_range)
        if not quiet:
            click.echo(f"montage ({len(meta['keys'])} tiles x {len(per_method)} methods) -> {meta['path']}")
    if by_method:
        summary, means = summarize_by_method(df, metric_ids)
        best = format_best(best_per_metric(means, higher_is_better))
    else:
        summary, best = summarize(df, metric_ids), None
    if summary_out:
        write_table(summary, summary_out)
    if not quiet:
        if by_method:
            for m, part in summary.groupby("method", sort=False):
                click.echo(f"{m}:\n{format_summary(part, higher_is_better)}")
            click.echo(best)
        else:
            click.echo(format_summary(summary, higher_is_better))
        if out:
            click.echo(f"per-pair results: {Path(out)}")
    n_failed = int((df["error"] != "").sum())
    if n_failed:
        first = df.loc[df["error"] != "", ["key", "error"]].iloc[0]
        where = f" (see the 'error' column in {out})" if out else ""
        click.echo(f"Error: {n_failed} of {len(df)} pairs failed{where}; first: {first.key}: {first.error}",
                   err=True)
        sys.exit(1)
