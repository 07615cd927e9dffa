"""``srmetrics agreement``, ``srmetrics judgements validate|import-amt`` and ``srmetrics figure3``."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import click

from ..errors import JudgementError
from .score import common_scoring_options, metric_options_from

DEFAULT_METRICS = "psnr,ssim,cpsnr"


@click.command("agreement")
@click.argument("judgements_csv", type=click.Path(dir_okay=False))
@click.option("--metrics", "-m", default=DEFAULT_METRICS, show_default=True,
              help="Comma list of metric ids, e.g. psnr,ssim,cpsnr,lpips,clipscore:clip-rn50.")
@click.option("--out", "-o", type=click.Path(dir_okay=False), default=None,
              help="Agreement table (one row per metric and dataset): .csv, .json or .parquet.")
@click.option("--pairs-out", type=click.Path(dir_okay=False), default=None,
              help="Per-pair table: votes and each metric's values for a and b.")
@click.option("--scores-out", type=click.Path(dir_okay=False), default=None,
              help="Per-image scoring table of the unique (gt, image) combinations.")
@click.option("--root", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder the image paths are relative to (default: the CSV's folder).")
@click.option("--bootstrap", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Bootstrap resamples of pairs for the confidence intervals (0 = none).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap resampling.")
@click.option("--confidence", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.95,
              show_default=True, help="Confidence level of the intervals.")
@click.option("--skip-invalid", is_flag=True, help="Skip invalid judgement rows (reported) instead of stopping.")
@click.option("--human-ties", type=click.Choice(["exclude", "half"]), default="exclude", show_default=True,
              help="Human 'tie' votes: excluded from accuracy (counted), or half a vote for each side.")
@common_scoring_options
def agreement_command(judgements_csv, metrics, out, pairs_out, scores_out, root, bootstrap, seed, confidence,
                      skip_invalid, human_ties, bands, data_range, crop_border, batch_size, workers, device,
                      precision, cache_dir, sam_checkpoint, quiet) -> None:
    """How often each metric prefers the SR output that people preferred (2AFC), with bootstrap CIs.

    JUDGEMENTS_CSV has one row per human vote: pair_id,dataset,gt,a,b,choice[,annotator,a_method,b_method].
    Prints a ranked table; --out writes one row per (metric, dataset) plus the pooled 'all' rows.

    Example: srmetrics agreement judgements.csv --metrics psnr,ssim,clipscore:clip-rn50 --out agreement.csv
    """
    from ..human.agreement import format_table, metric_direction, run_agreement
    from ..metrics.base import parse_metric_list
    from ..results import output_format, write_table

    metric_ids = parse_metric_list(metrics)
    for mid in metric_ids:
        metric_direction(mid)  # unknown ids fail before any work
    for path in (out, pairs_out, scores_out):
        if path:
            output_format(path)
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore")
        result = run_agreement(
            judgements_csv, metric_ids, root=root, bootstrap=bootstrap, seed=seed, confidence=confidence,
            skip_invalid=skip_invalid, human_ties=human_ties, pairs_out=pairs_out, scores_out=scores_out,
            batch_size=batch_size, workers=workers, bands=bands, data_range=data_range, device=device,
            precision=precision, metric_options=metric_options_from(crop_border, cache_dir, sam_checkpoint),
            progress=not quiet)
    if result.n_invalid:
        click.echo(f"Warning: --skip-invalid: skipped {result.n_invalid} of {result.n_rows} judgement row(s) "
                   f"({len(result.problems)} problem(s); first: {result.problems[0]})", err=True)
    if out:
        write_table(result.table, out)
    if not quiet:
        click.echo(format_table(result.table))
        click.echo(f"scored {result.n_image_pairs} unique (gt, image) combinations over "
                   f"{result.n_unique_images} image files")
        if out:
            click.echo(f"agreement table: {Path(out)}")
        if pairs_out:
            click.echo(f"per-pair table: {Path(pairs_out)}")
    if result.n_failed_pairs:
        per_pair = result.pairs
        first = per_pair.loc[per_pair["error"] != "", ["pair_id", "error"]].iloc[0]
        click.echo(f"Error: {result.n_failed_pairs} of {len(per_pair)} pairs could not be scored and were left "
                   f"out; first: pair {first.pair_id}: {first.error}", err=True)
        sys.exit(1)


@click.group("judgements")
def judgements_group() -> None:
    """Check and convert human-judgement files (see judgements/README.md for the schema).

    \b
    Examples:
      srmetrics judgements validate srmetrics-demo/data/judgements/judgements.csv
      srmetrics judgements import-amt Batch_1_batch_results.csv --map gt=Input.gt_url ... -o judgements.csv
    """


@judgements_group.command("validate")
@click.argument("judgements_csv", type=click.Path(dir_okay=False))
@click.option("--root", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder the image paths are relative to (default: the CSV's folder).")
@click.option("--no-images", is_flag=True, help="Check the CSV only, not the image files.")
@click.option("--max-problems", type=click.IntRange(min=1), default=200, show_default=True,
              help="Print at most this many problems.")
def validate_command(judgements_csv, root, no_images, max_problems) -> None:
    """Check every row of a judgements CSV; print each problem with its line number.

    Exit code 0 when the file is valid, 1 when it has problems.

    \b
    Examples:
      srmetrics judgements validate judgements.csv
      srmetrics judgements validate judgements.csv --no-images   # the CSV only
    """
    from ..human.judgements import validate_judgements, vote_table

    report = validate_judgements(judgements_csv, root=root, check_images=not no_images)
    for line in report.lines(limit=max_problems):
        click.echo(line)
    if report.ok:
        votes = vote_table(report.judgements)
        click.echo(f"{report.summary()}; {len(votes)} pair(s) in {votes['dataset'].nunique()} dataset(s)")
        return
    click.echo(report.summary(), err=True)
    sys.exit(1)


@judgements_group.command("import-amt")
@click.argument("batch_files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--map", "maps", multiple=True, metavar="KEY=VALUE",
              help="Column mapping, repeatable. Required: gt=, a=, b= (Input.* columns with image URLs/paths) "
                   "and choice=Answer.COLUMN (or onehot.a=/onehot.b=[/onehot.tie=] boolean Answer.* columns). "
                   "Optional: value.a=, value.b=, value.tie= ('|'-separated answer values; defaults a, b, tie), "
                   "pair_id= (default HITId), annotator= (default WorkerId), dataset=, a_method=, b_method=.")
@click.option("--prefix", "prefixes", multiple=True, metavar="OLD=NEW",
              help="Replace a URL/path prefix, repeatable (first match wins), e.g. "
                   "https://bucket.s3.amazonaws.com/study/=images/ . URLs must match one.")
@click.option("--dataset", "dataset_name", default=None, help="Dataset name for every row (or --map dataset=COLUMN).")
@click.option("--approved-only", is_flag=True, help="Keep only Approved assignments (default: Approved and Submitted).")
@click.option("--out", "-o", "output", required=True, type=click.Path(dir_okay=False),
              help="Canonical judgements CSV to write.")
@click.option("--validate/--no-validate", "do_validate", default=True, show_default=True,
              help="Validate the written file (images resolved relative to its folder).")
def import_amt_command(batch_files, maps, prefixes, dataset_name, approved_only, output, do_validate) -> None:
    """Convert Amazon Mechanical Turk batch-results CSVs into the canonical judgements CSV.

    Rejected assignments are dropped.

    \b
    Example:
      srmetrics judgements import-amt Batch_123_batch_results.csv \\
        --map gt=Input.gt_url --map a=Input.left_url --map b=Input.right_url \\
        --map choice=Answer.preference --map value.a=left --map value.b=right --map value.tie=same \\
        --prefix https://bucket.s3.amazonaws.com/study/=images/ --dataset s2naip -o judgements.csv
    """
    from ..human.judgements import AmtMapping, import_amt, validate_judgements, write_judgements

    mapping = AmtMapping.from_options(maps, prefixes=prefixes, dataset_name=dataset_name)
    statuses = ("Approved",) if approved_only else ("Approved", "Submitted")
    result = import_amt(list(batch_files), mapping, statuses=statuses)
    if result.judgements.empty:
        raise JudgementError(f"no judgements kept ({result.summary()})")
    write_judgements(result.judgements, output)
    click.echo(f"{result.summary()} -> {output}")
    if do_validate:
        report = validate_judgements(output)
        if not report.ok:
            for line in report.lines(limit=20):
                click.echo(line, err=True)
            click.echo(f"Warning: {report.summary()} (fix --prefix or the images, or use --no-validate)", err=True)
            sys.exit(1)


@click.command("figure3")
@click.argument("agreement_table", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "-o", "out", required=True, type=click.Path(dir_okay=False),
              help="Figure file: .png, .pdf or .svg.")
@click.option("--title", default=None, help="Optional title above the plot.")
@click.option("--ylabel", default="agreement with human judgements (%)", show_default=True,
              help="Y axis label: say what the labels are when they are not human judgements.")
@click.option("--dpi", type=click.IntRange(min=30), default=150, show_default=True)
def figure3_command(agreement_table, out, title, ylabel, dpi) -> None:
    """Draw the paper's Figure 3 from an agreement table (srmetrics agreement --out).

    One bar per dataset for each metric, worst to best left to right, bootstrap CIs, chance and human ceiling.

    \b
    Examples:
      srmetrics agreement judgements.csv -m psnr,ssim,cpsnr -o agreement.csv
      srmetrics figure3 agreement.csv -o figure3.png --title "Agreement with our study"
    """
    from ..figures.figure3 import figure3

    meta = figure3(agreement_table, out, title=title, ylabel=ylabel, dpi=dpi)
    order = ", ".join(meta["metric_order"])
    click.echo(f"figure 3 ({len(meta['metric_order'])} metrics, worst to best: {order}) -> {meta['path']}")


__all__ = ["agreement_command", "figure3_command", "import_amt_command", "judgements_group", "validate_command"]
