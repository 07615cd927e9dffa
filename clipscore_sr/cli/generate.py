"""``srmetrics generate``: run a reference generator over a folder of LR scenes, one PNG per scene."""

from __future__ import annotations

import click

from ..errors import SRMetricsError


@click.command("generate")
@click.option("--model", "model_name", default=None,
              help="srcnn, highresnet (the authors' WorldStrat networks), srcnn-915, srcnn-mf, highresnet-compact (ours), "
                   "esrgan or sr3 (read from the checkpoint when it records it).")
@click.option("--size", default="small", show_default=True, help="Architecture preset (esrgan: small|medium|large).")
@click.option("--checkpoint", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Our .safetensors (+ JSON) checkpoint, or the authors' BasicSR .pth (ESRGAN: needs --scale; "
                   "SRCNN/HighRes-net: read from the shapes).")
@click.option("--input", "input_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Folder of LR scenes (see --layout).")
@click.option("--out", "-o", "out_dir", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--layout", type=click.Choice(["strip", "folder", "s2naip"]), default="strip", show_default=True,
              help="strip: each image file is one scene of square frames stacked vertically; "
                   "folder: each folder of images is one scene, one LR frame per file (HR, SM, QM*, *_mask, "
                   "-CLM files are left out; PROBA-V LR*.png when present); "
                   "s2naip: the S2-NAIP tree (INPUT = root or its sentinel2/), one scene per sentinel2/<tile>/, "
                   "the model's bands from <band>.png, and OUT/pairs.csv for `srmetrics score --pairs`.")
@click.option("--s2-bands", default=None,
              help="--layout s2naip: bands to read, e.g. tci,b05,b06 (default: recorded in the checkpoint, else tci).")
@click.option("--frames", "n_frames", type=int, default=None,
              help="Frames per scene the model takes (default: from the checkpoint).")
@click.option("--scale", type=int, default=None, help="Scale factor 2, 3 or 4 (default: from the checkpoint; required for ESRGAN weights without our metadata).")
@click.option("--frame-size", default="auto", show_default=True,
              help="Height of one frame in a strip (auto = image width).")
@click.option("--bands", default=None, help="1-based bands to read, e.g. 3,2,1.")
@click.option("--data-range", type=float, default=None, help="Divide file values by this (default by dtype).")
@click.option("--batch-size", type=int, default=8, show_default=True,
              help="Scenes (or tiles) per forward pass; lower it if the device runs out of memory.")
@click.option("--device", default="auto", show_default=True,
              help="auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps.")
@click.option("--tile", type=int, default=None,
              help="LR tile size for larger scenes (default: the checkpoint's training tile, else 32; 0 = never tile).")
@click.option("--overlap", type=int, default=None,
              help="Tile overlap in LR pixels (default: tile/4, e.g. 8 for a 32-pixel tile).")
@click.option("--bit-depth", type=click.Choice(["8", "16"]), default="8", show_default=True,
              help="8: PNG; 16: 16-bit TIFF (.tif).")
@click.option("--skip-existing", is_flag=True, help="Leave outputs that already exist.")
@click.option("--sampler", type=click.Choice(["ddpm", "ddim"]), default="ddim", show_default=True,
              help="SR3 only: ancestral DDPM over all steps, or DDIM.")
@click.option("--steps", type=int, default=50, show_default=True, help="SR3 DDIM steps.")
@click.option("--eta", type=float, default=0.0, show_default=True, help="SR3 DDIM eta (0 = deterministic).")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True, help="Seed for frame choice and SR3 noise.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or summary.")
def generate_command(model_name: str | None, size: str, checkpoint: str, input_dir: str, out_dir: str, layout: str,
                     s2_bands: str | None, n_frames: int | None, scale: int | None, frame_size: str, bands: str | None,
                     data_range: float | None, batch_size: int, device: str, tile: int | None, overlap: int,
                     bit_depth: str, skip_existing: bool, sampler: str, steps: int, eta: float, seed: int,
                     quiet: bool) -> None:
    """Super-resolve every scene in INPUT with a reference generator; writes OUT/<relative path>.png.

    \b
    Examples:
      srmetrics generate --model esrgan --size small --checkpoint esrgan_small.safetensors --input lr/ --out sr/
      srmetrics generate --checkpoint runs/esrgan-s2naip/generator.safetensors --input lr/ -o sr/ --device cpu
    """
    from ..baselines.checkpoints import load_checkpoint, read_checkpoint_meta
    from ..baselines.inference import generate
    from ..baselines.sr3 import SR3
    from ..devices import resolve_device
    from ..io import parse_bands

    dev = resolve_device(device)
    if frame_size != "auto":
        try:
            frame_size_v: int | str = int(frame_size)
        except ValueError:
            raise SRMetricsError(f"--frame-size {frame_size}: expected a number of pixels or 'auto'") from None
    else:
        frame_size_v = "auto"
    import warnings

    with warnings.catch_warnings():  # an unknown scale is refused below, with the CLI's wording
        warnings.simplefilter("ignore", UserWarning)
        model = load_checkpoint(checkpoint, device="cpu", name=model_name, size=size, n_frames=n_frames, scale=scale)
    if getattr(model, "scale_known", True) is False:
        raise SRMetricsError(f"{checkpoint}: ESRGAN weights without our metadata do not record their scale factor "
                             "(x3 RRDBNet weights have the x4 shapes, so a guess would run silently at the wrong "
                             "scale); pass --scale 2, 3 or 4")
    if isinstance(model, SR3):
        if steps < 1 and sampler == "ddim":
            raise SRMetricsError(f"--steps must be >= 1, got {steps}")
        model.sampler, model.steps, model.eta = sampler, steps, eta
    extra = ((read_checkpoint_meta(checkpoint) if checkpoint.endswith(".safetensors") else None) or {}).get(
        "extra", {})
    if tile is None:
        tile = int(extra.get("tile", 32))
    band_list = [b.strip().lower() for b in s2_bands.split(",") if b.strip()] if s2_bands else \
        list(extra.get("bands") or ["tci"])
    report = generate(model, input_dir, out_dir, layout=layout, frame_size=frame_size_v, batch_size=batch_size,
                      device=dev, tile=tile or None, overlap=overlap, seed=seed, bands=parse_bands(bands),
                      data_range=data_range, bit_depth=int(bit_depth), skip_existing=skip_existing,
                      progress=not quiet, s2_bands=band_list)
    total = len(report.written) + len(report.skipped_existing) + len(report.failed)
    if report.failed and not report.written and not report.skipped_existing:
        key, err = report.failed[0]
        more = f" (and {len(report.failed) - 1} more scene(s))" if len(report.failed) > 1 else ""
        raise SRMetricsError(f"{err}{more}")
    if not quiet:
        msg = f"wrote {len(report.written)} image(s) to {out_dir}"
        if report.tiled:
            msg += f"; {len(report.tiled)} tiled"
        if report.skipped_existing:
            msg += f"; {len(report.skipped_existing)} existing left as they were"
        click.echo(msg)
        if report.tiled and overlap is None:
            click.echo(f"tiles of {tile} LR px, overlap {report.overlap} (tile/4)")
        if report.pairs_csv is not None:
            click.echo(f"pairs with targets: {report.pairs_csv} (srmetrics score --pairs {report.pairs_csv})")
        if report.repeated_frames:
            click.echo(f"warning: {len(report.repeated_frames)} scene(s) had fewer than {model.n_frames} frames; "
                       f"frames were repeated (e.g. {report.repeated_frames[0]})", err=True)
    if report.failed:
        key, err = report.failed[0]
        click.echo(f"Error: {len(report.failed)} of {total} scene(s) failed and were skipped; first: {key}: {err}",
                   err=True)
        raise SystemExit(1)
