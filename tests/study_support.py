"""Shared by the tests that run `srmetrics study serve` as a real server: a free loopback port, and starting the
server (as a user would, a subprocess) until it answers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(study: str | Path, port: int, *extra: str, argv: Sequence[str] | None = None,
                 cwd: Path | None = None, log: Path | None = None, timeout: float = 60) -> subprocess.Popen:
    """``study serve STUDY --port PORT EXTRA...`` (``argv``: how to call srmetrics, default ``python -m
    clipscore_sr``), output to ``log`` (appended) or a pipe; returns once ``/api/config`` answers 200."""
    import httpx

    cmd = [*(argv or [sys.executable, "-m", "clipscore_sr"]), "study", "serve", str(study), "--port", str(port), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if log is not None:
        with open(log, "ab") as fh:
            proc = subprocess.Popen(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    else:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    token = extra[extra.index("--token") + 1] if "--token" in extra else ""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            out = log.read_text() if log is not None else proc.stdout.read().decode()
            raise AssertionError(f"server exited ({proc.returncode}): {out}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/config", params={"token": token} if token else None,
                         timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"server did not start within {timeout:g} s")


def begin_study(page, port: int, annotator: str = "alice") -> None:
    """Open the study page in a playwright ``page``, check the instructions ask for a name, give it, start
    (Enter), and wait for the first trial."""
    page.goto(f"http://127.0.0.1:{port}/")
    page.wait_for_selector("body[data-ready='1']")
    assert page.is_visible("#intro") and page.is_visible("#name")
    page.fill("#name", annotator)
    page.keyboard.press("Enter")
    page.wait_for_function("document.body.dataset.trial")


def shown_bytes(page, role: str) -> bytes:
    """The bytes of the image the page shows as ``role`` (gt/left/right), fetched as the page fetched them."""
    return page.request.get(page.evaluate(f"document.getElementById('img-{role}').src")).body()
