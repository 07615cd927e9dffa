"""``srmetrics train`` (train a reference generator from a YAML config), ``srmetrics export-generator`` and
``srmetrics figure7`` (validation CLIPScore curves of training runs)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("train")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--resume", is_flag=True,
              help="Continue the run in the config's output_dir from its newest checkpoint (exact continuation).")
@click.option("--check", is_flag=True,
              help="Check without training and exit: validates the config, builds the datasets (sizes vs "
                   "train.batch_size), the models and losses, and resolves every weight they need (VGG19, CLIP "
                   "loss, validation metrics); with --resume also the checkpoint. Writes nothing.")
def train_cmd(config: str, resume: bool, check: bool) -> None:
    """Train a generator (SRCNN, HighRes-net, ESRGAN with optional CLIP loss, SR3) from CONFIG (YAML).

    Multi-GPU: torchrun --nproc_per_node N -m clipscore_sr train CONFIG (train.batch_size is the global batch).
    Writes OUTPUT_DIR/log.csv, checkpoints/, config.yaml and generator.safetensors (EMA weights), which
    `srmetrics generate --checkpoint` reads.

    \b
    Examples:
      srmetrics train baselines/configs/esrgan_clip_s2naip.yaml --check
      srmetrics train baselines/configs/esrgan_clip_s2naip.yaml --resume
    """
    from clipscore_sr.baselines.train_config import load_config

    cfg = load_config(config)
    from clipscore_sr.baselines.trainer import Trainer, describe

    if check:
        t = Trainer(cfg, resume=resume, check_only=True)
        val = len(t.val_set) if t.val_set is not None else 0
        m = cfg["model"]
        opts = m.get("options") or {}
        label = (f"{m['name']} (custom: {', '.join(f'{k}={v}' for k, v in sorted(opts.items()))})" if opts
                 else f"{m['name']}-{m['size']}")
        click.echo(f"{config}: OK ({label}, {cfg['train']['steps']} steps, "
                   f"{len(t.train_set)} training / {val} validation samples, output {cfg['output_dir']}; "
                   "datasets, models and weights checked)")
        return

    trainer = Trainer(cfg, resume=resume)
    try:
        result = trainer.run()
    finally:
        trainer.close()
    if trainer.rank == 0:
        click.echo(describe(result))


@click.command("export-generator")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--out", "out", required=True, type=click.Path(dir_okay=False),
              help="Output .safetensors (a .json description is written next to it).")
@click.option("--no-ema", is_flag=True, help="Export the raw generator weights instead of the EMA weights.")
def export_cmd(checkpoint: str, out: str, no_ema: bool) -> None:
    """Export the (EMA) generator of a training CHECKPOINT (checkpoints/step_*.pt) for `srmetrics generate`.

    \b
    Example:
      srmetrics export-generator runs/esrgan-s2naip/checkpoints/step_00010000.pt -o esrgan.safetensors
    """
    from clipscore_sr.baselines.trainer import export_from_checkpoint

    path = export_from_checkpoint(checkpoint, out, ema=not no_ema)
    click.echo(f"wrote {path}")


@click.command("figure7")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("-o", "--out", "out", required=True, type=click.Path(dir_okay=False),
              help="Figure file (.png, .pdf or .svg).")
@click.option("--x", "x_axis", type=click.Choice(["step", "time"]), default="step", show_default=True,
              help="Horizontal axis: training step or wall-clock time.")
@click.option("--target", type=float, default=0.8, show_default=True,
              help="Report the first step at which each run's validation score reaches this value.")
@click.option("--metric", default=None, help="Validation metric id to plot (default: the first clipscore column).")
@click.option("--label", "labels", multiple=True, help="Curve label per run (default: from the run configs).")
@click.option("--title", default=None)
@click.option("--table", "table_out", type=click.Path(dir_okay=False), default=None,
              help="Also write the summary (first step/time reaching the target, speed-ups) as CSV.")
def figure7_cmd(run_dirs: tuple[str, ...], out: str, x_axis: str, target: float, metric: str | None,
                labels: tuple[str, ...], title: str | None, table_out: str | None) -> None:
    """Figure 7: validation CLIPScore vs step (or time) for RUN_DIRS; speed-ups are relative to the first run.

    \b
    Examples:
      srmetrics figure7 runs/esrgan-s2naip runs/esrgan-clip-s2naip -o reports/figure7.png --target 0.8
      srmetrics figure7 runs/esrgan-s2naip runs/esrgan-clip-s2naip -o figure7-time.png --x time
    """
    from clipscore_sr.figures.figure7 import figure7, format_summary

    res = figure7(list(run_dirs), out, x=x_axis, target=target, metric=metric, labels=list(labels) or None,
                  title=title)
    click.echo(format_summary(res["summary"]))
    if table_out:
        Path(table_out).parent.mkdir(parents=True, exist_ok=True)
        res["summary"].to_csv(table_out, index=False)
    click.echo(f"wrote {res['path']}")
