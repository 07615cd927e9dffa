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
              help="Bootstrap resamples (scenes x annotators, two-way; pairs when there is one scene) for the "
                   "confidence intervals (0 = none).")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True, help="Seed of the bootstrap resampling.")
@click.option("--confidence", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.95,
              show_default=True, help="Confidence level of the intervals.")
@click.option("--skip-invalid", is_flag=True, help="Skip invalid judgement rows (reported) instead of stopping.")
@click.option("--allow-outside-root", is_flag=True,
              help="Trusted file: image paths may leave the root (../, absolute, ~). Off by default.")
@click.option("--human-ties", type=click.Choice(["exclude", "half"]), default="exclude", show_default=True,
              help="Human 'tie' votes: excluded from accuracy (counted), or half a vote for each side.")
@click.option("--include-checks", is_flag=True,
              help="Keep sentinel and repeat trials of a study's judgements (a 'trial_kind' column); "
                   "by default they are excluded and counted.")
@click.option("--ranking", is_flag=True,
              help="Also compare each metric's ranking of the methods (a_method/b_method) with people's.")
@click.option("--ranking-out", type=click.Path(dir_okay=False), default=None,
              help="With --ranking: table of Kendall's tau-b per metric and dataset (.csv/.json/.parquet).")
@click.option("--ranking-methods-out", type=click.Path(dir_okay=False), default=None,
              help="With --ranking: per-method human and metric scores and ranks.")
@click.option("--ranking-plot", type=click.Path(dir_okay=False), default=None,
              help="With --ranking: figure of the human ranking beside each metric's (.png/.pdf/.svg).")
@click.option("--votes-label", default=None,
              help="Name of the votes' column in --ranking-plot (default: 'people', or 'constructed labels' when "
                   "every annotator id starts with 'construct', as in the bundled example set).")
@common_scoring_options
def agreement_command(judgements_csv, metrics, out, pairs_out, scores_out, root, bootstrap, seed, confidence,
                      skip_invalid, allow_outside_root, human_ties, include_checks, ranking, ranking_out,
                      ranking_methods_out, ranking_plot, votes_label, bands, data_range, crop_border, batch_size, workers, device,
                      precision, cache_dir, sam_checkpoint, metric_option, quiet) -> None:
    """How often each metric prefers the SR output that people preferred (2AFC), with bootstrap CIs.

    JUDGEMENTS_CSV has one row per human vote: pair_id,dataset,gt,a,b,choice[,annotator,a_method,b_method].
    Prints a ranked table; --out writes one row per (metric, dataset) plus the pooled 'all' rows.

    \b
    Example:
      srmetrics agreement judgements.csv --metrics psnr,ssim,clipscore:clip-rn50 \\
        --out agreement.csv
    """
    from ..human.agreement import format_table
    from ..human.agreement_run import run_agreement
    from ..metrics.base import metric_direction, parse_metric_list
    from ..results import check_outputs, write_table

    metric_ids = parse_metric_list(metrics)
    for mid in metric_ids:
        metric_direction(mid)  # unknown ids fail before any work
    outputs = {"--out": out, "--pairs-out": pairs_out, "--scores-out": scores_out, "--ranking-out": ranking_out,
               "--ranking-methods-out": ranking_methods_out}
    check_outputs({**outputs, "--ranking-plot": ranking_plot}, {"JUDGEMENTS_CSV": judgements_csv},
                  tables=tuple(outputs))
    if (ranking_out or ranking_methods_out or ranking_plot) and not ranking:
        raise JudgementError("--ranking-out/--ranking-methods-out/--ranking-plot need --ranking")
    if ranking_plot:
        from ..figures.style import figure_format

        figure_format(ranking_plot)
    judgements = judgements_csv
    if not include_checks:
        from ..human.judgements import read_judgements_csv
        from ..human.study.status import exclude_check_trials

        rows = read_judgements_csv(judgements_csv)
        kept, dropped = exclude_check_trials(rows)
        if dropped:
            kept.attrs["source"] = str(judgements_csv)
            kept.attrs["root"] = str(Path(judgements_csv).parent)
            judgements = kept
            click.echo(f"excluded {dropped['sentinel']} sentinel and {dropped['repeat']} repeat judgement(s) "
                       f"(study check trials; --include-checks keeps them); {len(kept)} left", err=True)
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore")
        result = run_agreement(
            judgements, metric_ids, root=root, bootstrap=bootstrap, seed=seed, confidence=confidence,
            skip_invalid=skip_invalid, human_ties=human_ties, pairs_out=pairs_out, scores_out=scores_out,
            batch_size=batch_size, workers=workers, bands=bands, data_range=data_range, device=device,
            precision=precision, metric_options=metric_options_from(crop_border, cache_dir, sam_checkpoint,
                                                                     metric_option),
            progress=not quiet, ranking=ranking, allow_outside_root=allow_outside_root)
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
    if result.ranking is not None:
        if votes_label is None:
            votes_label = _votes_label(judgements_csv)
        _write_ranking(result.ranking, ranking_out, ranking_methods_out, ranking_plot, quiet, votes_label)
    if result.n_failed_pairs:
        per_pair = result.pairs
        first = per_pair.loc[per_pair["error"] != "", ["pair_id", "error"]].iloc[0]
        click.echo(f"Error: {result.n_failed_pairs} of {len(per_pair)} pairs could not be scored and were left "
                   f"out; first: pair {first.pair_id}: {first.error}", err=True)
        sys.exit(1)


def _votes_label(judgements_csv) -> str:
    """'constructed labels' when every annotator id says so (the example set's 'construct-severity'), else
    'people': a figure never calls constructed labels people."""
    import pandas as pd

    try:
        ann = pd.read_csv(judgements_csv, usecols=["annotator"], dtype=str)["annotator"].dropna()
    except (ValueError, OSError):
        return "people"
    return "constructed labels" if len(ann) and ann.str.startswith("construct").all() else "people"


def _write_ranking(rk, ranking_out, methods_out, plot, quiet, votes_label: str = "people") -> None:
    from ..human.ranking_agreement import format_ranking_agreement
    from ..results import write_table

    if ranking_out:
        write_table(rk.summary, ranking_out)
    if methods_out:
        write_table(rk.methods, methods_out)
    if plot:
        from ..figures.ranking import ranking_agreement_figure

        ranking_agreement_figure(rk.methods, rk.summary, plot, reference=votes_label)
    if not quiet:
        click.echo(f"ranking agreement (Kendall's tau-b of each metric's method ranking vs the votes' ({votes_label})):")
        click.echo(format_ranking_agreement(rk))
        for label, path in (("ranking agreement", ranking_out), ("per-method ranks", methods_out),
                            ("ranking figure", plot)):
            if path:
                click.echo(f"{label}: {Path(path)}")


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
@click.option("--allow-outside-root", is_flag=True,
              help="Trusted file: image paths may leave the root (../, absolute, ~). Off by default.")
@click.option("--max-problems", type=click.IntRange(min=1), default=200, show_default=True,
              help="Print at most this many problems.")
def validate_command(judgements_csv, root, no_images, allow_outside_root, max_problems) -> None:
    """Check every row of a judgements CSV; print each problem with its line number.

    Exit code 0 when the file is valid, 1 when it has problems.

    \b
    Examples:
      srmetrics judgements validate judgements.csv
      srmetrics judgements validate judgements.csv --no-images   # the CSV only
    """
    from ..human.judgements import validate_judgements
    from ..human.vote_tables import vote_table

    report = validate_judgements(judgements_csv, root=root, check_images=not no_images,
                                 allow_outside_root=allow_outside_root)
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
                   "pair_id= (default HITId), annotator= (default WorkerId), dataset=, a_method=, b_method=, "
                   "trial_kind=. Columns containing {k} (e.g. Answer.choice_{k}) read several judgements per "
                   "assignment, k = 1, 2, ... (srmetrics study export-amt).")
@click.option("--prefix", "prefixes", multiple=True, metavar="OLD=NEW",
              help="Replace a URL/path prefix, repeatable (first match wins), e.g. "
                   "https://bucket.s3.amazonaws.com/study/=images/ . URLs must match one.")
@click.option("--dataset", "dataset_name", default=None, help="Dataset name for every row (or --map dataset=COLUMN).")
@click.option("--approved-only", is_flag=True, help="Keep only Approved assignments (default: Approved and Submitted).")
@click.option("--out", "-o", "output", required=True, type=click.Path(dir_okay=False),
              help="Canonical judgements CSV to write.")
@click.option("--validate/--no-validate", "do_validate", default=True, show_default=True,
              help="Validate the written file (images resolved relative to its folder).")
@click.option("--allow-outside-root", is_flag=True,
              help="Trusted file: image paths may leave the root (../, absolute, ~). Off by default.")
def import_amt_command(batch_files, maps, prefixes, dataset_name, approved_only, output, do_validate,
                       allow_outside_root) -> None:
    """Convert Amazon Mechanical Turk batch-results CSVs into the canonical judgements CSV.

    Rejected assignments are dropped.

    \b
    Example:
      srmetrics judgements import-amt Batch_123_batch_results.csv \\
        --map gt=Input.gt_url --map a=Input.left_url --map b=Input.right_url \\
        --map choice=Answer.preference --map value.a=left --map value.b=right --map value.tie=same \\
        --prefix https://bucket.s3.amazonaws.com/study/=images/ --dataset s2naip -o judgements.csv
    """
    from ..human.amt import AmtMapping, import_amt
    from ..human.judgements import validate_judgements, write_judgements

    mapping = AmtMapping.from_options(maps, prefixes=prefixes, dataset_name=dataset_name)
    statuses = ("Approved",) if approved_only else ("Approved", "Submitted")
    result = import_amt(list(batch_files), mapping, statuses=statuses)
    if result.judgements.empty:
        raise JudgementError(f"no judgements kept ({result.summary()})")
    write_judgements(result.judgements, output)
    click.echo(f"{result.summary()} -> {output}")
    if do_validate:
        report = validate_judgements(output, allow_outside_root=allow_outside_root)
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
