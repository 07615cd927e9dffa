"""``srmetrics report RESULTS... -o report.html``: one self-contained, offline HTML page of the results."""

from __future__ import annotations

import click


@click.command("report")
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--out", "-o", "out", required=True, type=click.Path(dir_okay=False), help="The report, an .html file.")
@click.option("--lr", "lr_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder of LR inputs, paired with the rows by image key (shown as the LR panel).")
@click.option("--maps", "maps_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="Folder of correctness maps written by 'score --maps' (<key>.correctness.png): a viewer overlay.")
@click.option("--title", default=None, help="Page title.")
@click.option("--stretch", type=click.Choice(["auto", "percentile", "none"]), default="auto", show_default=True,
              help="Display stretch from each row's GT, the same for every panel (auto: none for 8-bit, "
                   "2nd-98th percentile otherwise).")
@click.option("--thumb-size", type=int, default=48, show_default=True,
              help="Embedded thumbnails fit in this many pixels (16-512).")
@click.option("--embed-full", is_flag=True,
              help="Embed every image at full resolution (display renders): one portable file.")
@click.option("--embed-limit", type=float, default=200.0, show_default=True,
              help="With --embed-full: stop with an error when the embedded images exceed this many MB.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Processes making thumbnails (default: up to 4).")
@click.option("--quiet", "-q", is_flag=True, help="Only errors.")
def report_command(results, out, lr_dir, maps_dir, title, stretch, thumb_size, embed_full, embed_limit, workers,
                   quiet) -> None:
    """Write one HTML page from what the toolkit wrote. RESULTS are per-image score tables (with their
    OUT.meta.json; 'score --methods' tables, or one table per method), agreement and rank tables, study folders
    ('study make'; with the answers in their judgements.csv) and scene evaluation folders ('scene'), told apart
    by their content. It opens offline from disk: an overview (means with CIs, best method per metric,
    agreement with people, the human ranking, provenance), a sortable, filterable per-image table and a viewer
    (GT | LR | each method, synchronised zoom and pan, flicker, correctness-map overlay); for a study, its
    progress as 'study status' computes it and its ranking as 'rank' does; for a scene evaluation, its summary,
    the worst tiles (sortable, with map coordinates) and the quick-look. Thumbnails are embedded; full-resolution
    8-bit PNG/JPEG files are loaded from paths relative to the report (keep it beside the data), or embedded
    with --embed-full.

    \b
    Examples:
      srmetrics report srmetrics-demo/scores.csv srmetrics-demo/agreement.csv -o srmetrics-demo/report.html
      srmetrics report results/methods.csv ranking.csv --lr data/lr --maps maps/ -o report.html
      srmetrics report results/methods.csv my-study/ -o report.html      # a study folder
      srmetrics report eval/ -o eval/report.html                        # a 'srmetrics scene' folder
      srmetrics report s2/scores.csv --embed-full --embed-limit 100 -o s2-report.html
    """
    from ..report.build import write_report

    res = write_report(results, out, lr_dir=lr_dir, maps_dir=maps_dir, title=title, stretch=stretch,
                       thumb_cap=thumb_size, embed_full=embed_full, embed_limit_mb=embed_limit, workers=workers)
    if not quiet:
        for note in res.notes:
            click.echo(f"note: {note}")
        click.echo(f"report ({res.n_rows} rows, {res.n_images} images, {res.size_bytes / 1e6:.1f} MB, "
                   f"{res.seconds:.1f} s) -> {res.path}")
