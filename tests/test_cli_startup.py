"""`srmetrics --help`, `--version` and every `COMMAND --help` stay fast: they import neither torch nor pandas,
and every command's help ends with runnable examples."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from clipscore_sr.cli import COMMANDS, main

HEAVY = ("torch", "pandas", "matplotlib", "open_clip")

# One fresh interpreter runs every help invocation in turn and reports which heavy modules each one left
# in sys.modules (they accumulate, so a single offender shows up from its own line on).
_PROBE = """
import json, sys
from clipscore_sr.cli import COMMANDS, main
import click
invocations = [["--help"], ["--version"]] + [[name, "--help"] for name in sorted(COMMANDS)]
report = []
for args in invocations:
    try:
        main(args, prog_name="srmetrics", standalone_mode=False)
    except SystemExit:
        pass
    report.append([" ".join(args), [m for m in HEAVY if m in sys.modules]])
    if len(args) == 2:  # a group's subcommands come right after the group's own help
        cmd = main.get_command(None, args[0])
        if isinstance(cmd, click.Group):
            invocations[invocations.index(args) + 1:invocations.index(args) + 1] = [
                [args[0], sub, "--help"] for sub in sorted(cmd.commands)]
print("REPORT" + json.dumps(report))
"""


def test_help_and_version_import_no_heavy_library() -> None:
    code = f"HEAVY = {HEAVY!r}\n" + _PROBE
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout[res.stdout.index("REPORT") + len("REPORT"):])
    assert len(report) > 2 + len(COMMANDS)  # the groups' subcommands were reached too
    offenders = [(args, heavy) for args, heavy in report if heavy]
    assert not offenders, f"first invocation importing a heavy library: {offenders[0]}"


def test_the_installed_entry_point_help_is_light() -> None:
    code = ("import sys, runpy; sys.argv = ['srmetrics', 'score', '--help']\n"
            "try:\n    runpy.run_module('clipscore_sr', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules])")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "Usage:" in res.stdout and "HEAVY []" in res.stdout, res.stdout + res.stderr


def _all_commands() -> list[tuple[str, click.Command]]:
    out = []
    for name in sorted(COMMANDS):
        cmd = main.get_command(None, name)
        out.append((name, cmd))
        if isinstance(cmd, click.Group):
            out += [(f"{name} {sub}", c) for sub, c in sorted(cmd.commands.items())]
    return out


def test_every_command_help_ends_with_an_example() -> None:
    missing = []
    for name, _cmd in _all_commands():
        res = CliRunner().invoke(main, [*name.split(), "--help"])
        assert res.exit_code == 0, res.output
        text = res.output
        if "Example" not in text or f"srmetrics {name}" not in text[text.index("Example"):]:
            missing.append(name)
    assert not missing, f"--help without a runnable 'srmetrics COMMAND' example: {missing}"


def test_help_examples_survive_a_narrow_terminal() -> None:
    """Every example line of every --help is printed verbatim at 60 columns (click rewraps paragraphs that do
    not start with a \\b line, breaking commands mid-token so copy-paste fails)."""
    import inspect

    broken = []
    for name, cmd in _all_commands():
        doc = inspect.cleandoc(cmd.callback.__doc__ or "") if cmd.callback else ""
        examples = [ln.strip() for ln in doc.splitlines() if ln.strip().startswith("srmetrics ")]
        out = CliRunner().invoke(main, [*name.split(), "--help"], terminal_width=60).output
        broken += [f"{name}: {ex}" for ex in examples if ex not in out]
        if "Example:" in doc and doc[doc.index("Example:"):].split("\n", 1)[0].strip() != "Example:":
            broken.append(f"{name}: an inline 'Example: ...' paragraph (put it under a \\b line)")
    assert not broken, broken


def test_one_spelling_for_out_and_quiet() -> None:
    """Every option writing the main output is -o/--out; every quiet flag is -q/--quiet."""
    bad = []
    for name, cmd in _all_commands():
        for param in cmd.params:
            if not isinstance(param, click.Option) or param.hidden:
                continue
            opts = set(param.opts) | set(param.secondary_opts)
            if "--output" in opts or ("-o" in opts and "--out" not in opts) or ("--out" in opts and "-o" not in opts):
                bad.append(f"{name}: {sorted(opts)}")
            if ("--quiet" in opts) != ("-q" in opts):
                bad.append(f"{name}: {sorted(opts)}")
    assert not bad, bad


@pytest.mark.slow
def test_under_torchrun_only_rank_0_prints_user_errors(tmp_path) -> None:
    """Every rank exits non-zero; rank 0 alone prints the one-line error (usage errors too)."""
    import os

    for args in (["score", str(tmp_path), str(tmp_path), "-m", "nope"], ["score", "--bogus"]):
        for rank in ("0", "1"):
            env = {**os.environ, "RANK": rank, "WORLD_SIZE": "2"}
            res = subprocess.run([sys.executable, "-m", "clipscore_sr", *args], capture_output=True, text=True,
                                 env=env, timeout=120)
            assert res.returncode == 2, (args, rank, res.stderr)
            if rank == "0":
                assert res.stderr.count("Error:") == 1, res.stderr
            else:
                assert res.stderr == "" and res.stdout == "", res.stderr


def test_figure3_requires_out_and_writes_nothing_without_it(tmp_path, monkeypatch) -> None:
    table = tmp_path / "agreement.csv"
    table.write_text("metric,dataset,accuracy\npsnr,all,0.6\n")
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["figure3", str(table)])
    assert res.exit_code == 2 and "Missing option '--out' / '-o'" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agreement.csv"]  # no reports/ appeared
