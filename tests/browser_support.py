"""Chromium for the page tests: where it is (``SRMETRICS_CHROMIUM``, default Debian's ``/usr/bin/chromium``, never
``playwright install``), how it is launched, and a clean skip when it or playwright is missing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("SRMETRICS_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def playwright_or_skip() -> Any:
    """``playwright.sync_api``, or skip the test (no Chromium at :data:`CHROMIUM`, or no playwright)."""
    if not Path(CHROMIUM).is_file() or shutil.which(CHROMIUM) is None:
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium; .ci/run installs it)")
    return pytest.importorskip("playwright.sync_api", reason="playwright not installed (pip install playwright)")


def launch(playwright: Any) -> Any:
    """Chromium from :data:`CHROMIUM` with :data:`ARGS` (headless)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
