"""``srmetrics metrics``: every metric id with its direction, units and convention."""

from __future__ import annotations

import json

import click


@click.command("metrics")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def metrics_command(as_json: bool) -> None:
    """List every metric id, whether higher or lower is better, units and convention.

    \b
    Examples:
      srmetrics metrics
      srmetrics metrics --json > metrics.json
    """
    from ..metrics import list_metrics

    infos = list_metrics()
    if as_json:
        click.echo(json.dumps([info.__dict__ for info in infos], indent=2))
        return
    width = max(len(i.name + (":SPEC" if i.spec_help else "")) for i in infos)
    for info in infos:
        name = info.name + (":SPEC" if info.spec_help else "")
        direction = (" " if info.direction.startswith("lower") else "") + info.direction  # align with "higher"
        units = f" [{info.units}]" if info.units else ""
        ref = f" (reference: {info.reference})" if info.reference != "hr" else ""
        click.echo(f"{name:<{width}}  {direction}{units}{ref}  {info.description}")
        if info.spec_help:
            click.echo(f"{'':<{width}}  SPEC: {info.spec_help}")
