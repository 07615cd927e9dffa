"""VGG19 perceptual loss (Johnson et al. 2016; the ESRGAN / Real-ESRGAN generator loss).

Features are the outputs of chosen convolution layers of torchvision's ``vgg19().features``, taken
**before** their ReLU (as BasicSR's ``PerceptualLoss`` with ``layer_weights={'conv5_4': 1, ...}``). The
inputs (``[B,3,H,W]`` in [0, 1]) are normalised with the ImageNet mean/std first. The loss is
``sum_k w_k * L1(phi_k(sr), phi_k(target))`` (mean absolute difference per layer); target features are
computed without gradient.

Layer names follow the usual convention ``convB_L`` (block B = 1..5, layer L within the block); the
default layers and weights are ESRGAN's: conv1_2 0.1, conv2_2 0.1, conv3_4 1, conv4_4 1, conv5_4 1.

Weights: torchvision's ImageNet file (``vgg19-dcbb9e9d.pth``) in ``$TORCH_HOME/hub/checkpoints``. A missing
file fails at construction with one line saying where it was looked for; it is downloaded only when
``download=True`` is passed explicitly, or with ``download=None`` when offline mode is off.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
from torch import nn

from clipscore_sr.errors import ConfigError, InputMismatchError, WeightsNotFoundError
from clipscore_sr.weights import is_offline, load_state_dict_file, missing_weights, name_hash_prefix

#: ESRGAN's perceptual layers and weights
ESRGAN_LAYER_WEIGHTS: dict[str, float] = {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0,
                                          "conv5_4": 1.0}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg19_url() -> str:
    """torchvision's download URL of the ImageNet VGG19 weights."""
    from torchvision.models import VGG19_Weights

    return VGG19_Weights.IMAGENET1K_V1.url


def vgg19_checkpoint() -> Path:
    """Where torchvision caches the VGG19 weights: ``torch.hub.get_dir()/checkpoints/<file name of the URL>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(vgg19_url()).path)


def check_vgg19_weights(*, download: bool | None = None) -> Path:
    """The path of the cached VGG19 weights; downloads them only if allowed (``None``: unless offline)."""
    path = vgg19_checkpoint()
    if path.is_file():
        return path
    how = (f"put torchvision's vgg19 ImageNet weights in {path.parent} (download {vgg19_url()} on a machine with internet), "
           "or point TORCH_HOME at a cache that has them, or set the perceptual loss weight to 0")
    if download is None:
        download = not is_offline()
    if not download:
        raise missing_weights("the VGG19 perceptual loss (torchvision vgg19 IMAGENET1K_V1)", [path], how)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(vgg19_url(), str(path), hash_prefix=name_hash_prefix(path.name) or None,
                                       progress=False)
    except Exception as exc:  # many error types for network problems
        raise missing_weights("the VGG19 perceptual loss", [path],
                              f"download failed ({type(exc).__name__}); {how}") from None
    return path


def vgg19_layer_names() -> list[str]:
    """Names of the 37 modules of ``vgg19().features`` (``conv1_1``, ``relu1_1``, ..., ``pool5``)."""
    names, block, layer = [], 1, 1
    for kind in ["c", "c", "p", "c", "c", "p"] + ["c"] * 4 + ["p"] + (["c"] * 4 + ["p"]) * 2:
        if kind == "c":
            names += [f"conv{block}_{layer}", f"relu{block}_{layer}"]
            layer += 1
        else:
            names.append(f"pool{block}")
            block, layer = block + 1, 1
    return names


class VGGPerceptualLoss(nn.Module):
    """``sum_k w_k * mean|phi_k(sr) - phi_k(target)|`` over VGG19 conv layers (pre-activation features).

    Args:
        layer_weights: ``{layer name: weight}``; default ESRGAN's five layers.
        weights_path: a state-dict file for ``torchvision.models.vgg19`` (default: torchvision's cache file).
        download: see :func:`check_vgg19_weights`.

    The VGG network is frozen (``requires_grad=False``, always in eval mode); it is a sub-module, so it moves
    with ``.to()``, but the trainer never hands it to an optimiser.
    Inputs: ``[B,3,H,W]`` (or 1 channel, repeated) in [0, 1].
    """

    def __init__(self, layer_weights: Mapping[str, float] | None = None, *,
                 weights_path: str | os.PathLike | None = None, download: bool | None = None) -> None:
        super().__init__()
        from torchvision.models import vgg19

        layer_weights = dict(ESRGAN_LAYER_WEIGHTS if layer_weights is None else layer_weights)
        names = vgg19_layer_names()
        bad = [k for k in layer_weights if k not in names or not k.startswith("conv")]
        if bad or not layer_weights:
            raise ConfigError(f"perceptual layers: unknown VGG19 conv layer(s) {bad or '(none given)'}; "
                              "use names like conv1_2, conv3_4, conv5_4")
        self.layer_weights = {k: float(v) for k, v in layer_weights.items()}
        path = Path(weights_path) if weights_path is not None else check_vgg19_weights(download=download)
        # torchvision's cache file must match the SHA-256 prefix in its name; a file passed explicitly is the
        # user's own. Either way it is read with weights_only=True (never runs code from the file).
        state = load_state_dict_file(path, what="the VGG19 perceptual loss",
                                     sha256_prefix=name_hash_prefix(path.name) if weights_path is None else None)
        last = max(names.index(k) for k in self.layer_weights)
        with torch.device("meta"):  # no memory, no random init: only the needed layers get real weights
            layers = list(vgg19(weights=None).features.children())[: last + 1]
        for i, m in enumerate(layers):
            if isinstance(m, nn.ReLU):
                layers[i] = nn.ReLU(inplace=False)  # keep the pre-activation conv outputs intact
        wanted = {f"{i}.{k}": f"features.{i}.{k}" for i, m in enumerate(layers) for k, _ in m.named_parameters()}
        missing = [src for src in wanted.values() if src not in state] if isinstance(state, Mapping) else []
        if not isinstance(state, Mapping) or missing:
            raise WeightsNotFoundError(f"{path}: not a torchvision vgg19 state dict (missing "
                                       f"{', '.join(missing[:3]) if missing else 'everything'})")
        sub = {dst: state[src] for dst, src in wanted.items()}
        for dst, t in sub.items():
            i, k = dst.split(".")
            if tuple(getattr(layers[int(i)], k).shape) != tuple(t.shape):
                raise WeightsNotFoundError(f"{path}: layer 'features.{dst}' has shape {tuple(t.shape)}, "
                                           f"vgg19 needs {tuple(getattr(layers[int(i)], k).shape)}")
        self.features = nn.Sequential(*layers).to_empty(device="cpu")
        self.features.load_state_dict(sub, strict=True)
        self.names = names[: last + 1]
        self.features.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> VGGPerceptualLoss:
        super().train(mode)
        self.features.eval()  # the VGG network never leaves eval mode
        return self

    def extract(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The chosen layers' features of ``x`` ``[B,C,H,W]`` in [0, 1]."""
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise InputMismatchError(f"perceptual loss: expected [B,3,H,W] (or 1 channel), got {tuple(x.shape)}")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        out = {}
        for name, layer in zip(self.names, self.features):
            x = layer(x)
            if name in self.layer_weights:
                out[name] = x
        return out

    def forward(self, sr: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if sr.shape != target.shape:
            raise InputMismatchError(f"perceptual loss: sr {tuple(sr.shape)} and target {tuple(target.shape)} differ")
        f_sr = self.extract(sr)
        with torch.no_grad():
            f_gt = self.extract(target.detach())
        total = sr.new_zeros(())
        for name, w in self.layer_weights.items():
            total = total + w * F.l1_loss(f_sr[name], f_gt[name].to(f_sr[name].dtype))
        return total
