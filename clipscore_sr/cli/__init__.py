"""The ``srmetrics`` command line: a thin layer of click commands over the Python API."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .. import __version__
from ..errors import SRMetricsError, SRMetricsWarning

# name -> (module:attribute, one-line help). Commands are imported only when invoked or asked for their own
# help, so ``srmetrics --help`` and ``--version`` import neither torch nor pandas.
COMMANDS: dict[str, tuple[str, str]] = {
    "score": ("score:score_command", "Score SR outputs against ground truth with any registered metrics."),
    "metrics": ("metrics_cmd:metrics_command", "List the registered metrics, their direction and options."),
    "models": ("models:models_command", "List CLIP/LPIPS/SAM weights: aliases, cache state; --fetch downloads."),
    "agreement": ("agreement:agreement_command", "2AFC agreement of metrics with human judgements, with CIs."),
    "judgements": ("agreement:judgements_group", "Validate human-judgement files; import AMT batch results."),
    "rank": ("rank:rank_command", "Rank SR methods from pairwise votes (Bradley-Terry/Thurstone), CIs, reliability."),
    "study": ("study:study_group", "Collect human 2AFC judgements: make, serve, export-amt, status."),
    "figure3": ("agreement:figure3_command", "Draw the paper's Figure 3 from an agreement table."),
    "generate": ("generate:generate_command", "Run a reference SR generator (SRCNN, HighResNet, ESRGAN, SR3)."),
    "demo": ("demo:demo_command", "The main job end to end on the bundled example (offline)."),
    "train": ("train:train_cmd", "Train a reference generator from a YAML config (resumable, DDP)."),
    "export-generator": ("train:export_cmd", "Export a training checkpoint's (EMA) generator for `generate`."),
    "figure7": ("train:figure7_cmd", "Plot validation curves of training runs (the paper's Figure 7)."),
    "montage": ("montage:montage_command", "A picture: GT | LR | each SR method per tile, metric values, best marked."),
    "report": ("report:report_command", "One offline HTML page of score, agreement and rank tables: overview, table, viewer."),
    "scene": ("scene:scene_command", "Evaluate whole SR scenes without HR, tile by tile: maps of where SR fails."),
    "scene-merge": ("scene:scene_merge_command", "Merge the shards of `scene --shard I/N` runs exactly."),
    "maps": ("maps:maps_command", "Correctness-maps figure (LR | SR | HR | classes) of one HR/SR/LR triplet."),
}


class _Group(click.Group):
    """Loads commands lazily from :data:`COMMANDS`; turns :class:`SRMetricsError` into one line, exit code 2."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        import importlib

        module, _, attr = COMMANDS[cmd_name][0].partition(":")
        return getattr(importlib.import_module(f"{__name__}.{module}"), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        name = args[0] if args else None
        if name is not None and name not in COMMANDS and not name.startswith("-"):
            import difflib

            close = difflib.get_close_matches(name, list(COMMANDS), n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            ctx.fail(f"No such command '{name}'.{hint}")
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        import warnings

        warnings.showwarning = _show_warning
        try:
            return super().invoke(ctx)
        except SRMetricsError as exc:
            if _rank() == 0:
                hint = getattr(exc, "hint", "")
                click.echo(f"Error: {exc}" + (f" ({hint})" if hint else ""), err=True)
            _exit_quietly(2)

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        """Under ``torchrun`` only rank 0 prints usage errors; every rank still exits non-zero."""
        if not standalone_mode or _rank() == 0:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            _exit_quietly(exc.exit_code)
        except click.Abort:
            _exit_quietly(1)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings of this toolkit as one line, 'Warning: ...' on stderr (others keep their origin)."""
    module = (filename or "").replace("\\", "/")
    text = f"Warning: {message}"
    if "/clipscore_sr/" not in module and not issubclass(category, SRMetricsWarning):
        text += f" ({category.__name__}, {Path(module).name}:{lineno})"
    if "tqdm" in sys.modules:  # a progress bar may be on screen: print on a line of its own, bar redrawn below
        from tqdm import tqdm

        tqdm.write(text, file=sys.stderr)
    else:
        click.echo(text, err=True)


def _exit_quietly(code: int) -> None:
    """Exit; a rank other than 0 first waits a moment, so that torchrun sees rank 0 fail first (its message
    is printed and reported as the root cause) instead of terminating rank 0 before it has printed."""
    if _rank() != 0:
        import time

        time.sleep(2.0)
    sys.exit(code)


def _rank() -> int:
    """This process's rank under ``torchrun`` (``RANK``), 0 otherwise."""
    import os

    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


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
