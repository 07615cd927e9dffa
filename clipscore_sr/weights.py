"""Where model weights come from: local paths, caches, offline mode, and one fast, clear failure.

Resolution order for every learned metric: an explicit local path -> our cache root -> the library's own
cache (open_clip/Hugging Face cache, torchvision's ``TORCH_HOME``) -> download, unless offline.

Environment variables
---------------------
``CLIPSCORE_SR_CACHE``  cache root for weights this project manages (default ``~/.cache/clipscore-sr``)
``CLIPSCORE_SR_OFFLINE`` / ``HF_HUB_OFFLINE``  never try the network (fail fast instead)
``HF_HOME`` / ``HF_HUB_CACHE``  Hugging Face cache (used by open_clip ``hf-hub:`` and pretrained tags)
``TORCH_HOME``  torchvision / torch.hub cache (LPIPS backbones, VGG)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .errors import WeightsNotFoundError

_TRUE = {"1", "true", "yes", "on"}


def cache_root() -> Path:
    """Root of this project's weight cache (``$CLIPSCORE_SR_CACHE`` or ``~/.cache/clipscore-sr``)."""
    env = os.environ.get("CLIPSCORE_SR_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "clipscore-sr"


def torch_home() -> Path:
    """torch.hub / torchvision cache (``$TORCH_HOME`` or ``~/.cache/torch``)."""
    env = os.environ.get("TORCH_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "torch"


def is_offline() -> bool:
    """True when the user asked never to touch the network."""
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("CLIPSCORE_SR_OFFLINE", "HF_HUB_OFFLINE"))


def missing_weights(what: str, looked_in: Sequence[str | os.PathLike], how: str) -> WeightsNotFoundError:
    """The one message format for missing weights: which weights, where we looked, how to provide them."""
    places = ", ".join(str(p) for p in looked_in) or "nowhere"
    return WeightsNotFoundError(f"weights for {what} not found (looked in: {places}); {how}")
