"""Shared fixtures: small images written to disk in real formats; the shared sample data when present."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("CLIPSCORE_SR_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# ../shared next to the repository, or next to any folder above it (a git worktree in /work/wt/NAME finds /work/shared)
_REPO = Path(__file__).resolve().parents[1]
SHARED = next((p / "shared" for p in _REPO.parents if (p / "shared" / "samples").is_dir()), _REPO.parent / "shared")


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared sample data not present")
    return SHARED


def save_png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def make_pair_folders(root: Path, n: int = 6, size: int = 48, seed: int = 0, ext: str = ".png",
                      channels: int = 3) -> tuple[Path, Path]:
    """gt/ and out/ with ``n`` random uint8 images; SR = GT + noise of growing strength."""
    rng = np.random.default_rng(seed)
    gt_dir, sr_dir = root / "gt", root / "out"
    for i in range(n):
        shape = (size, size, channels) if channels > 1 else (size, size)
        gt = rng.integers(0, 256, shape, dtype=np.uint8)
        noise = rng.normal(0, 4 + 3 * i, shape)
        sr = np.clip(gt + noise, 0, 255).astype(np.uint8)
        save_png(gt_dir / f"img{i:02d}.png", gt)
        save_png((sr_dir / f"img{i:02d}").with_suffix(ext), sr)
    return gt_dir, sr_dir


@pytest.fixture
def pair_folders(tmp_path: Path) -> tuple[Path, Path]:
    return make_pair_folders(tmp_path)
