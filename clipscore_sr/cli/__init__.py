"""The ``srmetrics`` command line: a thin layer of click commands over the Python API."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click

from .. import __version__
from ..errors import SRMetricsError


class _Group(click.Group):
    """Turns :class:`SRMetricsError` into a one-line message and exit code 2 (no traceback)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SRMetricsError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="srmetrics")
def main() -> None:
    """Evaluate super-resolution outputs with metrics that agree with people."""


def user_errors(func: Callable) -> Callable:
    """Decorator for commands used outside the group (tests call commands directly)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SRMetricsError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


from . import metrics_cmd  # noqa: E402,F401  (registers `srmetrics metrics`)
from . import score  # noqa: E402,F401  (registers `srmetrics score`)
from . import models  # noqa: E402,F401  (registers `srmetrics models`)
from . import agreement  # noqa: E402,F401  (registers `srmetrics agreement`, `judgements`, `figure3`)
from . import generate  # noqa: E402,F401  (registers `srmetrics generate`)
from . import demo  # noqa: E402,F401  (registers `srmetrics demo`)
from . import train  # noqa: E402,F401  (registers `srmetrics train`, `export-generator`, `figure7`)
