"""One entry point for every reference generator: :func:`build_generator`.

==============  ===========================================  ========================================
name            class                                        sizes (architecture presets)
==============  ===========================================  ========================================
``srcnn``       :class:`~.worldstrat.WorldStratSRCNN`         small (the authors': 128 hidden, 1.77 M at 8 frames)
``highresnet``  :class:`~.worldstrat.WorldStratHighResNet`    small (the authors': 128 hidden, 3.25 M at 8 frames)
``srcnn-915``   :class:`~clipscore_sr.baselines.srcnn.SRCNN`  small (ours: classic 9-1-5, 64/32 filters)
``srcnn-mf``    :class:`~.srcnn.MultiFrameSRCNN`              small (ours)
``highresnet-compact`` :class:`~.highresnet.HighResNet`       small (ours: 64 features, presence weights)
``esrgan``      :class:`~.esrgan.RRDBNet`                     small (64/23/32), medium (128/23/64),
                                                             large (256/23/128)
``sr3``         :class:`~.sr3.SR3`                            small (base 64, mults 1,2,4,8,8)
==============  ===========================================  ========================================

Any architecture argument can be overridden by keyword (e.g. ``num_feat=8`` for a tiny test model).
"""

from __future__ import annotations

import difflib
from typing import Any

import torch
from torch import nn

from clipscore_sr.errors import ConfigError

from .common import count_parameters
from .esrgan import ESRGAN_SIZES, RRDBNet, UNetDiscriminatorSN
from .highresnet import HighResNet
from .sr3 import SR3
from .srcnn import SRCNN, MultiFrameSRCNN
from .worldstrat import WorldStratHighResNet, WorldStratSRCNN

GENERATORS: dict[str, type[nn.Module]] = {
    "srcnn": WorldStratSRCNN,
    "highresnet": WorldStratHighResNet,
    "srcnn-915": SRCNN,
    "srcnn-mf": MultiFrameSRCNN,
    "highresnet-compact": HighResNet,
    "esrgan": RRDBNet,
    "sr3": SR3,
}

GENERATOR_SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "srcnn": {"small": {}},
    "highresnet": {"small": {}},
    "srcnn-915": {"small": {}},
    "srcnn-mf": {"small": {}},
    "highresnet-compact": {"small": {}},
    "esrgan": ESRGAN_SIZES,
    "sr3": {"small": {}},
}

ALIASES = {"rrdbnet": "esrgan", "highres-net": "highresnet", "mfsrcnn": "srcnn-mf", "multiframe-srcnn": "srcnn-mf",
           "worldstrat-srcnn": "srcnn", "worldstrat-highresnet": "highresnet"}


#: ``srcnn``/``highresnet`` were our own networks before they became the authors'; their old options point here
LEGACY_HINTS = {
    "srcnn": " (srcnn is the authors' WorldStrat SRCNN: hidden_channels, kernel_size, residual_layers, ...; "
             "the classic 9-1-5 SRCNN with n1/n2 is now srcnn-915)",
    "highresnet": " (highresnet is the authors' WorldStrat HighRes-net: hidden_channels, kernel_size, ...; "
                  "our compact variant with features/encoder_blocks is now highresnet-compact)",
}

#: keys of a saved config that identify our networks saved under their former names
_LEGACY_CONFIG_KEYS = {"srcnn": ("n1", "srcnn-915"), "highresnet": ("features", "highresnet-compact")}


def legacy_name(name: str, config: dict[str, Any]) -> str:
    """The current name of a generator saved as ``name`` with ``config`` (before the rename to srcnn-915 /
    highresnet-compact)."""
    key, new = _LEGACY_CONFIG_KEYS.get(name, (None, name))
    return new if key is not None and key in config else name


def list_generators() -> dict[str, list[str]]:
    """``{name: [sizes]}`` for every registered generator."""
    return {name: list(sizes) for name, sizes in GENERATOR_SIZES.items()}


def resolve_name(name: str) -> str:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in GENERATORS:
        close = difflib.get_close_matches(key, list(GENERATORS) + list(ALIASES), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"--model {name}: unknown generator{hint}; choose one of {', '.join(GENERATORS)}")
    return key


def generator_kwargs(name: str, size: str = "small", n_frames: int = 8, scale: int = 4,
                     **overrides: Any) -> dict[str, Any]:
    """The full keyword arguments :func:`build_generator` would pass to the model class."""
    key = resolve_name(name)
    sizes = GENERATOR_SIZES[key]
    if size not in sizes:
        raise ConfigError(f"--size {size}: {key} has sizes {', '.join(sizes)}")
    kwargs: dict[str, Any] = {"n_frames": int(n_frames), "scale": int(scale), **sizes[size]}
    kwargs.update(overrides)
    return kwargs


def build_generator(name: str, size: str = "small", n_frames: int = 8, scale: int = 4,
                    device: str | torch.device | None = None, **overrides: Any) -> nn.Module:
    """Build a generator by name and size preset; ``overrides`` replace any architecture argument
    (``in_channels``, ``out_channels``, ``num_feat``...). ``device='meta'`` builds without memory
    (parameter counting)."""
    key = resolve_name(name)
    kwargs = generator_kwargs(key, size, n_frames, scale, **overrides)
    cls = GENERATORS[key]
    try:
        if device is not None:
            with torch.device(device):
                model = cls(**kwargs)
        else:
            model = cls(**kwargs)
    except TypeError as exc:
        hint = LEGACY_HINTS.get(key, "")
        raise ConfigError(f"{key}: bad architecture argument ({exc}){hint}") from None
    model.size = size  # type: ignore[attr-defined]
    return model


def build_discriminator(n_frames: int = 8, lr_conditioned: bool = False, in_channels: int = 3,
                        num_feat: int = 64, lr_channels: int = 3, device: str | torch.device | None = None,
                        **overrides: Any) -> UNetDiscriminatorSN:
    """The ESRGAN U-Net discriminator (spectral norm), optionally conditioned on the LR stack."""
    kwargs = dict(in_channels=in_channels, num_feat=num_feat, lr_conditioned=lr_conditioned,
                  n_frames=n_frames, lr_channels=lr_channels, **overrides)
    if device is not None:
        with torch.device(device):
            return UNetDiscriminatorSN(**kwargs)
    return UNetDiscriminatorSN(**kwargs)


def parameter_count(name: str, size: str = "small", n_frames: int = 8, scale: int = 4, **overrides: Any) -> int:
    """Parameters of a generator, counted on the meta device (no memory, no forward pass)."""
    return count_parameters(build_generator(name, size, n_frames, scale, device="meta", **overrides))
