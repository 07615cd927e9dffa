"""``srmetrics models``: the CLIP aliases, their sizes and whether their weights are here; ``--fetch`` downloads.

Listing never downloads or builds anything and reads the static alias catalog (``clipscore_sr/data/
clip_aliases.json``, derived from open_clip and checked against it by the tests), so it imports neither torch
nor open_clip; ``--params`` adds image-tower parameter counts (open_clip builds each architecture on the
``meta`` device: no memory, no weights, but some seconds per model).
``srmetrics models --fetch clipa-v2-bigg`` fills the Hugging Face cache (``HF_HOME``) ahead of time, for
clusters whose compute nodes have no internet: run it on a login node, then run offline with
``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import json

import click


def _catalog() -> list[dict]:
    """The static alias catalog (see the module docstring)."""
    from importlib import resources

    return json.loads((resources.files("clipscore_sr.data") / "clip_aliases.json").read_text(encoding="utf-8"))


def _weights_on_disk(entry: dict):
    """Where an alias's weights are on disk (the same search as loading; never the network), or None."""
    from ..weights import find_hub_file, find_open_clip_weights, hub_file_parts

    if entry["hf_file"]:
        return find_hub_file(*hub_file_parts(entry["hf_file"]))[0]
    return find_open_clip_weights(entry["model"], entry["pretrained"], entry["hf_hub"], entry["url"])[0]


def _fmt_params(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


@click.command("models")
@click.option("--fetch", "fetch", multiple=True, metavar="ALIAS|SPEC",
              help="Download these weights into the cache now (repeatable); needs internet.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--params", "with_params", is_flag=True,
              help="Also count image-tower parameters (builds each architecture on the meta device; slower).")
@click.option("--no-params", is_flag=True, hidden=True, help="Deprecated: counting is off by default.")
def models_command(fetch: tuple[str, ...], as_json: bool, with_params: bool, no_params: bool) -> None:
    """List the CLIP aliases (model/tag, input size, preprocessing, weights present locally).

    \b
    Examples:
      srmetrics models                      # which weights are on disk
      srmetrics models --params --json      # with image-tower parameter counts, machine-readable
      srmetrics models --fetch clip-rn50    # download ahead of time (needs internet)
    """
    if fetch:
        from ..metrics import clip

        for spec in fetch:
            parsed = clip.parse_clip_spec(spec)
            path = clip.resolve_clip(parsed, download=True).checkpoint
            click.echo(f"{spec}: {path}")
        return
    counted = with_params and not no_params
    rows = []
    for entry in _catalog():
        info = {k: entry[k] for k in ("alias", "model", "pretrained", "input_size", "preprocess", "description",
                                      "default", "family", "remote_sensing")}
        local = _weights_on_disk(entry)
        info.update(image_params=None, weights=str(local) if local else None,
                    source=f"hf:{entry['hf_file']}" if entry["hf_file"] else
                    f"open_clip {entry['model']}/{entry['pretrained']}")
        if counted:
            from ..metrics import clip

            info["image_params"] = clip.spec_summary(entry["alias"])["image_params"]
        rows.append(info)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    head = ("alias", "model/pretrained", *(("params",) if counted else ()), "input", "preprocess", "weights", "family")
    table = [(r["alias"] + (" *" if r["default"] else ""),
              f"{r['model']}@{r['source'][3:]}" if r["remote_sensing"] else f"{r['model']}/{r['pretrained']}",
              *((_fmt_params(r["image_params"]),) if counted else ()), f"{r['input_size']}px",
              r["preprocess"] or "", "present" if r["weights"] else "missing",
              r["family"] + (" (remote sensing)" if r["remote_sensing"] else "")) for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *table)]
    for line in (head, *table):
        click.echo("  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip())
    click.echo("* default for plain 'clipscore'." + (" params = image tower." if counted else
               " --params adds parameter counts.") + " RemoteCLIP and GeoRSCLIP are CLIPs trained on "
               "remote-sensing images (weights files on the Hugging Face hub). Also accepted: MODEL/PRETRAINED "
               "(open_clip.list_pretrained()), hf-hub:ORG/REPO, local-dir:PATH, MODEL[/TAG]@/path/to/weights.")
    if not any(r["weights"] for r in rows):
        click.echo("No weights present locally: 'srmetrics models --fetch ALIAS' downloads them (needs internet).")

