"""``srmetrics study make|serve|audit|export-amt|status|plan``: collect human 2AFC judgements on your own SR outputs."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .score import DATA_RANGE_HELP


@click.group("study")
def study_group() -> None:
    """Run a pairwise (2AFC) study on your SR outputs: make it, serve it in the browser (or export it to
    Amazon Mechanical Turk), check the annotators, then run 'srmetrics agreement' on the judgements.

    \b
    Examples:
      srmetrics study make gt/ --method a=out_a/ --method b=out_b/ --trials 60 --sentinels 0.1 --out my-study
      srmetrics study serve my-study
      srmetrics study status my-study
      srmetrics study make gt/ --method a=out_a/ --method b=out_b/ --trials 60 --design active --out my-active
      srmetrics study audit my-active
    """


@study_group.command("make")
@click.argument("gt_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--method", "methods", multiple=True, required=True, metavar="NAME=SR_DIR",
              help="A method's output folder (files pair with GT_DIR by relative path, as in 'score'); >= 2.")
@click.option("--trials", "n_trials", type=int, required=True,
              help="Trials per annotator, sentinels and repeats included.")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True, help="Seed of the sampling and the sides.")
@click.option("--out", "-o", "out", type=click.Path(file_okay=False), required=True,
              help="Study folder to create (new or empty).")
@click.option("--sentinels", type=float, default=0.0, show_default=True,
              help="Fraction of attention checks: one candidate is the GT itself, the other a degraded copy.")
@click.option("--repeats", type=float, default=0.0, show_default=True,
              help="Fraction of trials shown again later with sides swapped (self-consistency).")
@click.option("--allow-tie", is_flag=True, help="Offer 'can't tell' (ArrowDown).")
@click.option("--bands", default=None, help="1-based bands to display, e.g. 3,2,1 (1 or 3 bands).")
@click.option("--data-range", type=float, default=None, help=DATA_RANGE_HELP)
@click.option("--stretch", type=click.Choice(["auto", "percentile", "none"]), default="auto", show_default=True,
              help="Display stretch computed from the GT (auto: none for 8-bit, percentile otherwise).")
@click.option("--percentiles", default="2,98", show_default=True, help="Low,high percentiles of the stretch.")
@click.option("--dataset", default=None, help="Dataset name in the judgements (default: GT_DIR's name).")
@click.option("--design", type=click.Choice(["balanced", "active"]), default="balanced", show_default=True,
              help="balanced: every trial sampled now, balanced over method pairs and scenes. active: the server "
                   "chooses each real trial while the study is answered, where it is most informative about the "
                   "method scores (see --objective; all answers pooled); every choice is logged in "
                   "STUDY_DIR/active-log.jsonl.")
@click.option("--model", type=click.Choice(["thurstone", "bt"]), default="thurstone", show_default=True,
              help="With --design active: the model of the scores the sampler learns about (as 'rank --model').")
@click.option("--objective", type=click.Choice(["variance", "eig"]), default="variance", show_default=True,
              help="With --design active: variance (the largest expected fall of the scores' posterior variance: "
                   "score errors and intervals) or eig (the largest expected information gain, as ASAP: "
                   "neighbours' order with 12+ methods).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary; only warnings and errors.")
def make_command(gt_dir, methods, n_trials, seed, out, sentinels, repeats, allow_tie, bands, data_range, stretch,
                 percentiles, dataset, design, model, objective, quiet) -> None:
    """Sample trials (GT, output X, output Y) and render them for display.

    \b
    Examples:
      srmetrics study make gt/ --method esrgan=out/esrgan --method sr3=out/sr3 \\
        --trials 200 --sentinels 0.1 --repeats 0.1 --out my-study
      srmetrics study make gt/ --method esrgan=out/esrgan --method sr3=out/sr3 --method swinir=out/swinir \\
        --trials 200 --sentinels 0.05 --repeats 0.05 --design active --out my-active-study
    """
    from ..human.study.make import make_study, parse_methods
    from ..human.study.manifest import StudyError
    from ..io import parse_bands

    if design == "balanced":  # the options of the sampler mean nothing to a fixed design: say so, not ignore them
        ctx = click.get_current_context()
        given = [f"--{n}" for n in ("model", "objective")
                 if ctx.get_parameter_source(n) == click.core.ParameterSource.COMMANDLINE]
        if given:
            raise StudyError(f"{' and '.join(given)}: only with --design active (a balanced design does not learn "
                             "scores while it is answered)")

    try:
        pct = tuple(float(x) for x in percentiles.split(","))
    except ValueError:
        pct = ()
    if len(pct) != 2 or not 0 <= pct[0] < pct[1] <= 100:
        raise StudyError(f"--percentiles '{percentiles}': expected LOW,HIGH with 0 <= LOW < HIGH <= 100")
    study = make_study(gt_dir, parse_methods(methods), n_trials, out, seed=seed, sentinels=sentinels,
                       repeats=repeats, allow_tie=allow_tie, bands=parse_bands(bands), data_range=data_range,
                       stretch=stretch, percentiles=pct, dataset=dataset, progress=not quiet,
                       echo=lambda s: click.echo(s, err=True), design=design, model=model, objective=objective)
    if quiet:
        return
    kinds = study.slot_kinds
    if study.active is not None:
        click.echo(f"{study.n_trials} trials per annotator ({kinds['real']} real, chosen by the server while the study "
                   f"is answered; {kinds['sentinel']} sentinel, {kinds['repeat']} repeat) over "
                   f"{len(study.active['scenes'])} scenes and {len(study.methods)} methods -> {Path(out) / 'study.json'}")
    else:
        click.echo(f"{len(study.trials)} trials ({kinds['real']} real, {kinds['sentinel']} sentinel, "
                   f"{kinds['repeat']} repeat) over {len({t.scene for t in study.trials})} scenes and "
                   f"{len(study.methods)} methods -> {Path(out) / 'study.json'}")
    click.echo(f"next: srmetrics study serve {out}")


@study_group.command("serve")
@click.argument("study_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but loopback needs --token.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True)
@click.option("--annotator", default=None, help="Record every answer under this name (else the page asks).")
@click.option("--token", default=None, envvar="SRMETRICS_STUDY_TOKEN",
              help="Secret every request must carry (?token=...); required off loopback. Env: SRMETRICS_STUDY_TOKEN.")
def serve_command(study_dir, host, port, annotator, token) -> None:
    """Serve the study page; answers are appended to STUDY_DIR/judgements.csv (fsynced, resumable).

    \b
    Example:
      srmetrics study serve my-study --port 8765
    """
    from ..human.study.app import BadRequest, serve
    from ..human.study.manifest import StudyError

    try:
        serve(study_dir, host=host, port=port, annotator=annotator, token=token, echo=click.echo)
    except BadRequest as exc:
        raise StudyError(str(exc)) from None
    except KeyboardInterrupt:  # Ctrl+C is how a study is stopped: every answer is already on disk
        click.echo("stopped; every answer given is in judgements.csv", err=True)


@study_group.command("audit")
@click.argument("study_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def audit_command(study_dir, as_json) -> None:
    """Re-derive every trial the server of an active study chose, from the answers it had then and the audit log
    (STUDY_DIR/active-log.jsonl); exit 1 if any choice differs from the log.

    \b
    Example:
      srmetrics study audit my-active-study
    """
    from ..human.study.live import audit
    from ..human.study.manifest import load_study

    res = audit(load_study(study_dir, check_files=False))
    bad = res["mismatches"]
    if as_json:
        click.echo(json.dumps(res, indent=1))
    else:
        click.echo(f"{res['log']}: {res['given']} trial(s) given, {res['undos']} undo(s)")
        click.echo(f"{res['choices']} real choice(s) re-derived from the answers before them: "
                   + (f"{len(bad)} differ from the log" if bad else "all agree with the log")
                   + f" ({res['balanced_phase']} in the balanced phase, {res['fallbacks']} fallback(s))")
        if res["pending_undos"]:
            click.echo(f"{res['pending_undos']} undo(s) in the log whose answer a stop left in judgements.csv: "
                       "rank, agreement and status count it until `srmetrics study serve` starts again and removes it")
        for line in bad[:20]:
            click.echo(f"  {line}")
        if len(bad) > 20:
            click.echo(f"  ... and {len(bad) - 20} more (--json lists all)")
    if bad:
        raise SystemExit(1)


@study_group.command("export-amt")
@click.argument("study_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--trials-per-hit", type=click.IntRange(min=1), required=True, help="Trials in one HIT.")
@click.option("--image-base-url", required=True,
              help="URL of the uploaded study folder (its renders/ must be below it), e.g. https://bucket/my-study/.")
@click.option("--out", "-o", "out", type=click.Path(dir_okay=False), required=True, help="HIT input CSV.")
@click.option("--template", "template_out", type=click.Path(dir_okay=False), required=True,
              help="HIT HTML template (crowd-html-elements) to paste into the AMT project.")
def export_amt_command(study_dir, trials_per_hit, image_base_url, out, template_out) -> None:
    """Write an Amazon Mechanical Turk HIT CSV and template; prints the import-amt command for the results.

    \b
    Example:
      srmetrics study export-amt my-study --trials-per-hit 10 \\
        --image-base-url https://bucket.s3.amazonaws.com/my-study/ -o hits.csv --template hit.html
    """
    from ..human.amt import export_amt, import_command
    from ..human.study.manifest import JUDGEMENTS, MANIFEST, load_study
    from ..results import check_outputs

    study = load_study(study_dir)
    check_outputs({"--out": out, "--template": template_out},  # never over the study's own files or each other
                  {"STUDY_DIR/study.json": study.root / MANIFEST, "STUDY_DIR/judgements.csv": study.root / JUDGEMENTS,
                   "STUDY_DIR/amt-judgements.csv": study.root / "amt-judgements.csv"})
    n = export_amt(study, trials_per_hit, image_base_url, out, template_out)
    click.echo(f"{n} HIT(s) of up to {trials_per_hit} trial(s) -> {out}; template -> {template_out}")
    click.echo(f"upload {Path(study_dir) / 'renders'} to {image_base_url.rstrip('/')}/renders/; "
               "import the batch results with:")
    click.echo("  " + import_command("Batch_results.csv", str(Path(study_dir) / "amt-judgements.csv")))


@study_group.command("plan")
@click.option("--methods", "n_methods", type=click.IntRange(min=2), default=None,
              help="Number of methods (with --gap); or give --pilot.")
@click.option("--gap", type=float, default=0.5, show_default=True,
              help="Assumed score gap between neighbouring methods (JOD for thurstone, logit for bt).")
@click.option("--pilot", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Pilot judgement file: its fitted scores are the truth of the simulation.")
@click.option("--scenes", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--annotators", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--scene-sd", type=click.FloatRange(min=0), default=0.3, show_default=True,
              help="Sd of the scene effects.")
@click.option("--annotator-sd", type=click.FloatRange(min=0), default=0.3, show_default=True,
              help="Sd of the annotator effects.")
@click.option("--model", type=click.Choice(["thurstone", "bt"]), default="thurstone", show_default=True)
@click.option("--budgets", default="100,200,400,800,1600", show_default=True, help="Vote counts to evaluate.")
@click.option("--target", type=click.Choice(["ci_width", "p_neighbours", "tau", "rmse"]), default="tau",
              show_default=True, help="Accuracy measure whose target value is reported.")
@click.option("--value", type=float, default=0.9, show_default=True, help="Target value of --target.")
@click.option("--reps", type=click.IntRange(min=1), default=10, show_default=True, help="Simulated studies per design.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--designs", default="random,balanced,active", show_default=True,
              help="Designs to simulate: random (uniform pairs), balanced (what study make writes), active, oracle "
                   "(knows the true scores: a reference).")
@click.option("--objective", type=click.Choice(["variance", "eig"]), default="variance", show_default=True,
              help="Active design: variance (score errors and intervals) or eig (information gain: neighbours' "
                   "order sooner with 12+ methods, scores worse early).")
@click.option("--out", "-o", type=click.Path(dir_okay=False), default=None, help="Table (.csv/.json/.parquet).")
@click.option("--plot", type=click.Path(dir_okay=False), default=None, help="Figure of accuracy vs votes (.png/.pdf).")
def plan_command(n_methods, gap, pilot, scenes, annotators, scene_sd, annotator_sd, model, budgets, target, value,
                 reps, seed, designs, objective, out, plot) -> None:
    """Simulate the random, balanced and active designs: votes needed to reach a target accuracy.

    \b
    Example:
      srmetrics study plan --methods 8 --gap 0.5 --scenes 50 --annotators 10 \\
        --budgets 100,200,400,800 --target tau --value 0.9 --reps 5
      srmetrics study plan --methods 20 --gap 0.5 --target rmse --value 0.45 \\
        --objective variance --designs balanced,active,oracle
    """
    import numpy as np

    from ..human.study.active import design_bound
    from ..human.study.manifest import StudyError
    from ..human.study.plan import DESIGNS, format_plan, plan_study, truth_from_pilot

    if (n_methods is None) == (pilot is None):
        raise StudyError("give either --methods N (with --gap) or --pilot JUDGEMENTS_CSV")
    if not np.isfinite(value) or not np.isfinite(gap):
        raise StudyError(f"--value {value:g} / --gap {gap:g}: finite numbers expected")
    from ..results import check_outputs

    check_outputs({"--out": out, "--plot": plot}, {"--pilot": pilot}, tables=("--out",))  # before the simulation
    if plot:
        from ..figures.style import figure_format

        figure_format(plot)
    try:
        checkpoints = sorted({int(x) for x in budgets.split(",")})
    except ValueError:
        checkpoints = []
    if not checkpoints or checkpoints[0] < 1:
        raise StudyError(f"--budgets '{budgets}': positive vote counts separated by commas expected")
    chosen = [d.strip() for d in designs.split(",") if d.strip()]
    bad = [d for d in chosen if d not in DESIGNS]
    if bad or not chosen:
        raise StudyError(f"--designs '{designs}': names from {', '.join(DESIGNS)} separated by commas expected")
    notes: list[str] = []
    truth = truth_from_pilot(pilot, model, notes)[1] if pilot else np.arange(n_methods) * gap
    for line in notes:
        click.echo(f"Warning: {line}", err=True)
    if np.ptp(truth) < 1e-9:
        raise StudyError(f"{pilot or f'--gap {gap:g}'}: every method has the same score, so there is no order to "
                         "find and no number of votes reaches a target; give a gap or a pilot with differences")
    given = [int(x) for x in budgets.split(",")]
    if given != checkpoints:
        click.echo(f"Note: --budgets taken in increasing order without repeats: {','.join(map(str, checkpoints))}",
                   err=True)
    if checkpoints[0] < len(truth) - 1:
        click.echo(f"Warning: {checkpoints[0]} votes cannot connect {len(truth)} methods (at least {len(truth) - 1} "
                   f"needed): the first budgets' scores rest on the prior alone", err=True)
    table = plan_study(truth, scenes, annotators, checkpoints, reps=reps, seed=seed, scene_sd=scene_sd,
                       annotator_sd=annotator_sd, model=model, designs=chosen, objective=objective)
    # the files first: a reader that stops early (| head) must not cost them
    if out:
        from ..results import write_table

        write_table(table, out)
    if plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5))
        for design, g in table.groupby("design", sort=False):
            ax.plot(g["votes"], g[target], marker="o", label=design)
        ax.axhline(value, color="grey", lw=0.8, ls="--", label=f"target {value:g}")
        ax.set_xscale("log")
        ax.set_xticks(checkpoints, [f"{c:,}" for c in checkpoints])  # the budgets, not 2x10^2 labels
        ax.minorticks_off()
        ax.set_xlabel("votes")
        ax.set_ylabel(target)
        ax.set_title(f"SIMULATED: {len(truth)} methods, {scenes} scenes, {annotators} annotators, {reps} studies each",
                     fontsize=8)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(plot)
        plt.close(fig)
    click.echo(f"SIMULATED: {len(truth)} methods, {scenes} scenes, {annotators} annotators, {reps} studies per design")
    click.echo(format_plan(table, target, value))
    click.echo("ci_width: the model's 95% width with votes taken as independent; `rank`'s intervals add the spread "
               "of scenes and annotators (wider where their effects are large)")
    click.echo(f"large-sample bound: a design that knew the scores would need {design_bound(truth, model):.2f}x the "
               f"votes of the balanced design for the same score variance (rmse, ci_width), "
               f"{design_bound(truth, model, kind='neighbours'):.2f}x for the neighbours' order (tau, p_neighbours)")


@study_group.command("status")
@click.argument("study_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--judgements", "judgements", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Judgements to check (default: STUDY_DIR/judgements.csv; an AMT import works too).")
@click.option("--min-sentinel-accuracy", type=click.FloatRange(0, 1), default=0.8, show_default=True,
              help="Flag annotators whose sentinel accuracy is below this.")
@click.option("--min-agreement", type=click.FloatRange(0, 1), default=None,
              help="Also flag annotators whose agreement with the leave-one-out majority is below this.")
@click.option("--exclude-failed", is_flag=True, help="With -o: leave out the flagged annotators' rows.")
@click.option("--out", "-o", "out", type=click.Path(dir_okay=False), default=None,
              help="Write the (filtered) judgements here.")
@click.option("--json", "as_json", is_flag=True, help="Print the per-annotator table as JSON.")
def status_command(study_dir, judgements, min_sentinel_accuracy, min_agreement, exclude_failed, out,
                   as_json) -> None:
    """Per annotator: answers, sentinel accuracy, repeat consistency, agreement with the others, median
    response time, time spent; Krippendorff's alpha over trials judged by at least two annotators.

    \b
    Example:
      srmetrics study status my-study --exclude-failed -o my-study/clean.csv
    """
    from ..human.judgements import write_judgements
    from ..human.study.manifest import StudyError, load_study
    from ..human.study.status import filter_flagged, format_status, status_json, study_status

    if exclude_failed and not out:
        raise StudyError("--exclude-failed needs -o/--out FILE for the filtered judgements")
    study = load_study(study_dir, check_files=False)
    df, table, rel = study_status(study, judgements, min_sentinel_accuracy=min_sentinel_accuracy,
                                  min_agreement=min_agreement)
    if judgements is None and study.active is not None:
        from ..human.study.live import pending_undos

        if n := pending_undos(study):
            click.echo(f"Warning: {n} answer(s) the audit log says were taken back are still in judgements.csv (a "
                       "stop cut the undo short) and are counted here; `srmetrics study serve` removes them when it "
                       "starts", err=True)
    if as_json:
        click.echo(json.dumps(status_json(table, rel), indent=1))
    else:
        click.echo(format_status(study, table))
        if rel is not None:
            click.echo(rel.summary())
    if out:
        kept = filter_flagged(df, table) if exclude_failed else df
        src = Path(df.attrs["source"]).resolve().parent
        if Path(out).resolve().parent != src:
            raise StudyError(f"--out {out}: write it next to {df.attrs['source']} (image paths are relative to it)")
        write_judgements(kept.drop(columns=["line"]), out)
        click.echo(f"{len(kept)} of {len(df)} judgement row(s) -> {out}")


__all__ = ["study_group"]
