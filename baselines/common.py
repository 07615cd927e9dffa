"""Shared conventions of the reference generators.

Every generator takes a **multi-frame low-resolution stack** ``lr`` of shape ``[B, T, C, h, w]``
(T Sentinel-2 revisits of C channels, float, values in [0, 1]) and returns ``[B, C_out, h*scale, w*scale]``
in (approximately) [0, 1]; outputs are not clamped inside ``forward`` so that losses see the raw values.
A 4-D ``[B, C, h, w]`` input is accepted as a single frame (T = 1).

Each generator carries ``name``, ``scale``, ``n_frames``, ``in_channels`` (per frame), ``out_channels``
and ``config`` (the keyword arguments that rebuild it; stored in checkpoints).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from clipscore_sr.errors import InputMismatchError

SUPPORTED_SCALES = (2, 3, 4)
MAX_FRAMES = 16


def as_frames(lr: torch.Tensor, *, n_frames: int | None, in_channels: int, who: str) -> torch.Tensor:
    """Validate and return ``lr`` as ``[B, T, C, h, w]``.

    ``n_frames=None`` accepts any T (models whose weights do not depend on T).
    """
    if lr.dim() == 4:
        lr = lr.unsqueeze(1)
    if lr.dim() != 5:
        raise InputMismatchError(f"{who}: expected LR input [B, T, C, h, w], got shape {tuple(lr.shape)}")
    _, t, c, _, _ = lr.shape
    if c != in_channels:
        raise InputMismatchError(f"{who}: LR frames have {c} channels, the model expects {in_channels}")
    if n_frames is not None and t != n_frames:
        raise InputMismatchError(f"{who}: LR input has {t} frames, the model was built for {n_frames}")
    return lr


def check_arch(name: str, scale: int, n_frames: int, scales: tuple[int, ...] = SUPPORTED_SCALES) -> None:
    """Reject scale factors and frame counts the architecture does not support (ConfigError)."""
    from clipscore_sr.errors import ConfigError

    if int(scale) not in scales:
        raise ConfigError(f"{name}: scale {scale} is not supported (choose one of {', '.join(map(str, scales))})")
    if not 1 <= int(n_frames) <= MAX_FRAMES:
        raise ConfigError(f"{name}: n_frames must be in 1..{MAX_FRAMES}, got {n_frames}")


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (works on meta-device models, so huge models can be counted without memory)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


class GeneratorMixin:
    """Attributes every generator exposes (set by the constructors)."""

    name: str
    scale: int
    n_frames: int
    in_channels: int
    out_channels: int
    config: dict[str, Any]
