"""Run ``srmetrics`` exactly as a user types it: one shell-like command line, in a folder, offline."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]


def user_env(home: Path) -> dict[str, str]:
    """The environment of a user on a CPU machine without network; caches under ``home``."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.update(CLIPSCORE_SR_OFFLINE="1", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONUNBUFFERED="1", COLUMNS="120",
               TORCH_HOME=str(home / "torch"), HF_HOME=str(home / "hf"), CLIPSCORE_SR_CACHE=str(home / "srcache"))
    env.pop("SRMETRICS_STUDY_TOKEN", None)
    return env


def command(cmd: str) -> list[str]:
    argv = shlex.split(cmd)
    if argv and argv[0] == "srmetrics":
        exe = BIN / "srmetrics"
        argv[0] = str(exe) if exe.exists() else "srmetrics"
    return argv


def run(cmd: str, cwd: Path, expect_rc: int | None = 0, timeout: float = 300) -> subprocess.CompletedProcess:
    """``cmd`` as typed in a shell (no pipes or redirections), in ``cwd``; asserts the exit status."""
    cwd = Path(cwd)
    proc = subprocess.run(command(cmd), cwd=cwd, env=user_env(cwd / ".home"), capture_output=True, text=True,
                          timeout=timeout)
    if expect_rc is not None:
        assert proc.returncode == expect_rc, (
            f"$ {cmd}\nexit {proc.returncode} (expected {expect_rc})\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    return proc


def popen(cmd: str, cwd: Path) -> subprocess.Popen:
    """Start a long-running command (a server); stdout and stderr piped as text."""
    cwd = Path(cwd)
    return subprocess.Popen(command(cmd), cwd=cwd, env=user_env(cwd / ".home"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
