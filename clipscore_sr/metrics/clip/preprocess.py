"""CLIP image preprocessing on batched tensors: resize (shortest/longest/squash), crop/pad, mean/std."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ...errors import ConfigError, InputMismatchError

# Normalisation constants of the families (facts about how the weights were trained).
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)

_INTERPOLATIONS = ("bicubic", "bilinear", "nearest")
_RESIZE_MODES = ("shortest", "longest", "squash")



@dataclass(frozen=True)
class Preprocess:
    """How images are turned into model input: ``size`` (H, W) in pixels, per-channel ``mean``/``std`` applied
    to [0,1] values, ``interpolation`` and ``resize_mode`` as open_clip defines them, ``fill`` (in [0,1] units)
    for the padding of ``longest``."""

    size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"
    fill: float = 0.0

    def __post_init__(self) -> None:
        if self.interpolation not in _INTERPOLATIONS:
            raise ConfigError(f"preprocess interpolation '{self.interpolation}': expected one of {_INTERPOLATIONS}")
        if self.resize_mode not in _RESIZE_MODES:
            raise ConfigError(f"preprocess resize_mode '{self.resize_mode}': expected one of {_RESIZE_MODES}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise ConfigError(f"preprocess mean/std must be 3 values each with std > 0 (got {self.mean}, {self.std})")

    def key(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_config(cls, cfg: dict[str, Any], size: int | Sequence[int]) -> Preprocess:
        """From an open_clip-style dict (``mean``, ``std``, ``interpolation``, ``resize_mode``, ``fill_color``)."""
        h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[-1]))
        fill = float(cfg.get("fill_color", 0) or 0)
        interp = cfg.get("interpolation") or "bicubic"
        return cls(size=(int(h), int(w)), mean=_triple(cfg["mean"]), std=_triple(cfg["std"]),
                   interpolation="bicubic" if interp == "random" else interp,
                   resize_mode=cfg.get("resize_mode") or "shortest",
                   fill=fill / 255.0 if fill > 1 else fill)


def _triple(v: Any) -> tuple[float, float, float]:
    if isinstance(v, (int, float)):
        return (float(v),) * 3
    t = tuple(float(x) for x in v)
    return t * 3 if len(t) == 1 else t  # type: ignore[return-value]


#: named preprocessing presets for the ``preprocess`` option (``get_metric(..., preprocess="openai")``)
PREPROCESS_PRESETS: dict[str, dict[str, Any]] = {
    "openai": dict(mean=OPENAI_MEAN, std=OPENAI_STD, interpolation="bicubic", resize_mode="shortest"),
    "clipa": dict(mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation="bilinear", resize_mode="squash"),
    "siglip": dict(mean=INCEPTION_MEAN, std=INCEPTION_STD, interpolation="bicubic", resize_mode="squash"),
}


def _interp_mode(name: str):
    from torchvision.transforms import InterpolationMode

    return {"bicubic": InterpolationMode.BICUBIC, "bilinear": InterpolationMode.BILINEAR,
            "nearest": InterpolationMode.NEAREST}[name]


def to_three_channels(x: torch.Tensor, what: str = "input") -> torch.Tensor:
    """``[B,1,H,W]`` -> repeated to 3 channels; 3 channels unchanged; anything else is a user error."""
    if x.ndim != 4:
        raise InputMismatchError(f"{what}: expected a [B,C,H,W] tensor, got shape {tuple(x.shape)}")
    c = x.shape[1]
    if c == 3:
        return x
    if c == 1:
        return x.expand(-1, 3, -1, -1)
    raise InputMismatchError(
        f"{what} has {c} channels but CLIP models take RGB (3) or gray (1): choose three bands with --bands "
        f"(1-based, e.g. --bands 4,3,2 for Sentinel-2 true colour)")


def preprocess_batch(x: torch.Tensor, pp: Preprocess) -> torch.Tensor:
    """Batched open_clip eval preprocessing of float images in [0,1]: ``[B,C,H,W]`` -> ``[B,3,h,w]`` float32,
    resized/cropped/padded per ``pp.resize_mode`` and normalised with ``pp.mean``/``pp.std``. Differentiable."""
    import torchvision.transforms.functional as TF

    x = to_three_channels(x).float()
    th, tw = pp.size
    h, w = x.shape[-2:]
    interp = _interp_mode(pp.interpolation)
    if pp.resize_mode == "squash":
        x = TF.resize(x, [th, tw], interpolation=interp, antialias=True)
    elif pp.resize_mode == "shortest":
        if th == tw:  # torchvision's shortest-edge resize: the long side becomes int(size * long / short)
            x = TF.resize(x, [th], interpolation=interp, antialias=True)
        else:
            ratio = min(h / th, w / tw)
            x = TF.resize(x, [round(h / ratio), round(w / ratio)], interpolation=interp, antialias=True)
        x = TF.center_crop(x, [th, tw])
    else:  # longest: fit inside, then pad (and crop any rounding excess) around the centre
        ratio = max(h / th, w / tw)
        x = TF.resize(x, [round(h / ratio), round(w / ratio)], interpolation=interp, antialias=True)
        x = _center_crop_or_pad(x, th, tw, pp.fill)
    mean = torch.tensor(pp.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(pp.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def _center_crop_or_pad(x: torch.Tensor, th: int, tw: int, fill: float) -> torch.Tensor:
    h, w = x.shape[-2:]
    if th > h or tw > w:
        left, top = max(tw - w, 0) // 2, max(th - h, 0) // 2
        right, bottom = max(tw - w, 0) - left, max(th - h, 0) - top
        x = F.pad(x, (left, right, top, bottom), value=fill)
        h, w = x.shape[-2:]
    top, left = int(round((h - th) / 2.0)), int(round((w - tw) / 2.0))
    return x[..., top:top + th, left:left + tw]


def nearest_loss_preprocess_batch(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The authors' CLIP *loss* preprocessing (their ``CLIPLoss``): ``F.interpolate(x, size)`` (nearest, the
    default mode) on RGB values in [0,1], then OpenAI mean/std (for every model, as their code). Gray input is
    repeated to 3 channels."""
    x = F.interpolate(to_three_channels(x), size=tuple(size))  # mode='nearest'
    mean = torch.tensor(OPENAI_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def satlas_preprocess_batch(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The authors' preprocessing: RGB->BGR, values as given in [0,1] (= uint8/255), nearest-neighbour resize to
    ``size``, no mean/std normalisation. Gray input is repeated to 3 channels."""
    x = to_three_channels(x).float()
    x = x.flip(1)  # RGB -> BGR
    return F.interpolate(x, size=tuple(size))  # mode='nearest', as torch.nn.functional.interpolate defaults
