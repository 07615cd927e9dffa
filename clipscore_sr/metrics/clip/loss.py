"""CLIPScore inside training loops: :func:`clip_score` and :class:`ClipLoss`, differentiable w.r.t. the SR image.

The CLIP model is frozen (eval mode, ``requires_grad=False``), loaded once per process and device, and reused
across calls; the preprocessing is the one its weights were trained with (see :mod:`clipscore_sr.metrics.clip`),
so ``clip_score`` gives the same numbers as ``srmetrics score --metrics clipscore:SPEC`` on the same images.

Example::

    from clipscore_sr import ClipLoss
    crit = ClipLoss("clip-rn50", weight=0.1)          # L1 between CLIP embeddings, as the paper's loss
    loss = pixel_loss(sr, hr) + crit(sr, hr)           # sr, hr: [B,3,H,W] floats in [0,1]
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError, InputMismatchError
from .metric import cosine
from .model import ClipModel, load_clip, wrap_open_clip
from .preprocess import to_three_channels
from .spec import ClipSpec


def _as_clip(model: Any, device: torch.device, variant: str = "standard") -> ClipModel:
    if isinstance(model, ClipModel):
        return model
    if isinstance(model, (str, ClipSpec)) or model is None:
        return load_clip(model, device=device)
    if isinstance(model, nn.Module):
        return wrap_open_clip(model, device=device)
    raise ConfigError(f"model: expected a CLIP spec string, a ClipModel or an open_clip model, got {type(model).__name__}")


def _check(sr: torch.Tensor, gt: torch.Tensor) -> None:
    if sr.ndim != 4 or gt.ndim != 4 or sr.shape[0] != gt.shape[0]:
        raise InputMismatchError(f"clip_score: expected sr and gt as [B,C,H,W] with the same B, got "
                                 f"{tuple(sr.shape)} and {tuple(gt.shape)}")
    to_three_channels(sr, "clip_score sr")
    to_three_channels(gt, "clip_score gt")


def clip_score(sr: torch.Tensor, gt: torch.Tensor, model: Any = "clip-rn50", *, variant: str = "standard",
               precision: str = "fp32") -> torch.Tensor:
    """Per-image CLIPScore ``[B]`` (cosine similarity of CLIP image embeddings, higher is better).

    ``sr``, ``gt``: float tensors ``[B,C,H,W]`` in [0,1] (C = 1 or 3) on any device; the model runs on
    ``sr.device``. Differentiable w.r.t. ``sr`` (``gt`` is embedded without gradient). ``model`` is a spec as for
    ``clipscore:SPEC``, a loaded :class:`ClipModel`, or an open_clip model object. ``variant="satlas"`` uses the
    authors' preprocessing (as ``clipscore-satlas``). Returns float32 (float64 values from the same cosine as the
    metric, cast to float32).
    """
    _check(sr, gt)
    clip = _as_clip(model, sr.device)
    e_sr = clip.embed(sr, variant=variant, precision=precision)
    with torch.no_grad():
        e_gt = clip.embed(gt.detach(), variant=variant, precision=precision)
    return cosine(e_sr, e_gt).to(torch.float32)


class ClipLoss(nn.Module):
    """Distance between the CLIP embeddings of SR and target, times ``weight`` (the paper's metric-as-loss).

    ``distance="l1"`` (default): mean absolute difference of the raw (unnormalised) image embeddings, as the
    authors' RN50 loss; ``distance="cosine"``: ``1 - cosine similarity`` (= ``1 - clip_score``).
    ``resize``: ``"weights"`` (default) preprocesses as the weights were trained (the ``clipscore`` metric);
    ``"nearest"`` is the authors' loss path: ``F.interpolate(x, model input size)`` (nearest) then OpenAI mean/std.
    ``reduction``: ``mean`` (default), ``sum`` or ``none`` (per-image ``[B]``). ``model``: a spec (default
    ``clip-rn50``), a :class:`ClipModel` or an open_clip model object; a spec's weights are resolved at
    construction (missing weights raise :class:`WeightsNotFoundError` at once), the model is loaded on the
    input's device on first use, frozen, and never registered as a sub-module (so optimisers and ``state_dict`` never see it).
    """

    def __init__(self, model: Any = "clip-rn50", *, distance: str = "l1", weight: float = 1.0,
                 reduction: str = "mean", precision: str = "fp32", resize: str = "weights") -> None:
        super().__init__()
        if resize not in ("weights", "nearest"):
            raise ConfigError(f"ClipLoss resize '{resize}': expected 'weights' or 'nearest'")
        self.resize = resize
        if distance not in ("l1", "cosine"):
            raise ConfigError(f"ClipLoss distance '{distance}': expected 'l1' or 'cosine'")
        if reduction not in ("mean", "sum", "none"):
            raise ConfigError(f"ClipLoss reduction '{reduction}': expected 'mean', 'sum' or 'none'")
        self.distance, self.weight, self.reduction, self.precision = distance, float(weight), reduction, precision
        if isinstance(model, (str, ClipSpec)) or model is None:
            # fail fast, as `srmetrics score` does: missing weights raise here, not at the first training step
            from .resolve import resolve_clip
            from .spec import parse_clip_spec

            resolve_clip(model if isinstance(model, ClipSpec) else parse_clip_spec(model))
        # plain attribute, not a sub-module: keeps CLIP out of parameters(), state_dict() and .to()
        object.__setattr__(self, "_model_arg", model)
        object.__setattr__(self, "_clips", {})

    def clip(self, device: torch.device) -> ClipModel:
        key = str(device)
        if key not in self._clips:
            self._clips[key] = _as_clip(self._model_arg, device)
        return self._clips[key]

    def forward(self, sr: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _check(sr, target)
        clip = self.clip(sr.device)
        variant = "nearest-loss" if self.resize == "nearest" else "standard"
        e_sr = clip.embed(sr, variant=variant, precision=self.precision)
        with torch.no_grad():
            e_gt = clip.embed(target.detach(), variant=variant, precision=self.precision)
        if self.distance == "l1":
            per_image = (e_sr - e_gt).abs().mean(dim=-1)
        else:
            per_image = 1.0 - F.cosine_similarity(e_sr, e_gt, dim=-1)
        if self.reduction == "mean":
            per_image = per_image.mean()
        elif self.reduction == "sum":
            per_image = per_image.sum()
        return self.weight * per_image

    def extra_repr(self) -> str:
        m = self._model_arg if isinstance(self._model_arg, str) else type(self._model_arg).__name__
        return (f"model={m!r}, distance={self.distance}, weight={self.weight}, reduction={self.reduction}, "
                f"resize={self.resize}")
