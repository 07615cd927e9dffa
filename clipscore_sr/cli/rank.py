"""``srmetrics rank``: which methods people prefer, with two-way (scenes x annotators) bootstrap CIs, and how reliable the annotators are."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("rank")
@click.argument("judgements_csv", type=click.Path(dir_okay=False))
@click.option("--out", "-o", type=click.Path(dir_okay=False), default=None,
              help="Ranking table (one row per dataset and method): .csv, .json or .parquet.")
@click.option("--pairs-out", type=click.Path(dir_okay=False), default=None,
              help="Method-pair table: P(row beats col), score difference with CI, p-value, win counts.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="Ranking figure: .png, .pdf or .svg.")
@click.option("--model", type=click.Choice(["bt", "thurstone"]), default="bt", show_default=True,
              help="Bradley-Terry (score = log-strength, also as Elo) or Thurstone Case V (score in JOD).")
@click.option("--ties", type=click.Choice(["split", "drop", "davidson"]), default="split", show_default=True,
              help="Tie votes: half a win each, dropped (counted), or Davidson's tie model (bt only).")
@click.option("--by", "by", type=click.Choice(["dataset"]), default=None,
              help="Also rank per dataset (the pooled 'all' ranking is always written).")
@click.option("--bootstrap", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Bootstrap resamples (scenes x annotators, two-way) for the CIs (0 = none).")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True, help="Seed of the bootstrap.")
@click.option("--confidence", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.95,
              show_default=True, help="Confidence level of the intervals.")
@click.option("--prior-sd", type=click.FloatRange(0.01, 100.0), default=10.0, show_default=True,
              help="Sd of the N(0, sd^2) prior on each score (model units, 0.01 to 100); keeps all-win methods "
                   "finite.")
@click.option("--skip-invalid", is_flag=True, help="Rank the valid rows and report the bad ones instead of stopping.")
@click.option("--min-agreement", type=click.FloatRange(0, 1), default=None,
              help="Drop annotators whose leave-one-out majority agreement is below this.")
@click.option("--min-sentinel-accuracy", type=click.FloatRange(0, 1), default=None,
              help="Drop annotators whose sentinel accuracy is below this.")
@click.option("--annotators-out", type=click.Path(dir_okay=False), default=None,
              help="Per-annotator reliability table (.csv/.json/.parquet).")
@click.option("--quiet", "-q", is_flag=True, help="Print only warnings and errors.")
def rank_command(judgements_csv, out, pairs_out, plot, model, ties, by, bootstrap, seed, confidence, prior_sd,
                 skip_invalid, min_agreement, min_sentinel_accuracy, annotators_out, quiet) -> None:
    """Rank SR methods from pairwise votes (Bradley-Terry or Thurstone) with bootstrap CIs over scenes x annotators.

    JUDGEMENTS_CSV is a judgement file with a_method/b_method columns (e.g. a study's judgements.csv);
    sentinel and repeat trials (trial_kind) are used for annotator reliability, not for the ranking.

    \b
    Example:
      srmetrics rank judgements.csv --out ranking.csv --pairs-out ranking-pairs.csv \\
        --plot ranking.png
    """
    from ..human.rank_run import rank_judgements
    from ..human.ranking import format_ranking
    from ..results import output_format, write_table

    for path in (out, pairs_out, annotators_out):
        if path:
            output_format(path)
    if plot:
        from ..figures.style import figure_format

        figure_format(plot)
    run = rank_judgements(judgements_csv, model=model, ties=ties, by_dataset=by == "dataset", bootstrap=bootstrap,
                          seed=seed, confidence=confidence, prior_sd=prior_sd, skip_invalid=skip_invalid,
                          min_agreement=min_agreement, min_sentinel_accuracy=min_sentinel_accuracy)
    ranking, rel, notes = run.ranking, run.reliability, run.notes
    for note in notes:
        click.echo(f"Note: {note}", err=True)
    if out:
        write_table(ranking.table, out)
    if pairs_out:
        write_table(ranking.pairs, pairs_out)
    if annotators_out:
        write_table(rel.annotators, annotators_out)
    if plot:
        from ..figures.ranking import ranking_figure

        ranking_figure(ranking.table, ranking.pairs, plot)
    if not quiet:
        click.echo(format_ranking(ranking))
        if len(rel.annotators) > 1:  # one annotator: nothing to compare
            click.echo(rel.summary())
        for label, path in (("ranking", out), ("pairs", pairs_out), ("annotators", annotators_out),
                            ("figure", plot)):
            if path:
                click.echo(f"{label}: {Path(path)}")


__all__ = ["rank_command"]
