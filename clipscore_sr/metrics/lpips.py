"""LPIPS (Zhang et al. 2018) through the ``lpips`` package: ``lpips`` (VGG), ``lpips-alex``, ``lpips-vgg``,
``lpips-squeeze``. Lower is better; 0 means identical.

Conventions
-----------
* Inputs are our usual ``[B, C, H, W]`` floats in ``[0, 1]``; LPIPS expects ``[-1, 1]``, so they are mapped
  with ``2 x - 1`` before the network sees them. (The "Zooming Out on Zooming In" authors' code passed
  ``[0, 1]`` images straight to LPIPS without this rescaling; their LPIPS numbers are therefore not on the
  standard scale and are not reproduced by this metric.)
* 1-channel images are repeated to 3 channels; any other channel count is an error (choose RGB bands with
  ``--bands``).
* The linear calibration layers are the v0.1 weights shipped inside the ``lpips`` package. The backbone
  (AlexNet / VGG16 / SqueezeNet 1.1 ImageNet weights) comes from torchvision's cache,
  ``$TORCH_HOME/hub/checkpoints/<file>`` (see :func:`backbone_checkpoint`). Its presence is checked before the
  model is built: missing and offline (``CLIPSCORE_SR_OFFLINE=1`` / ``HF_HUB_OFFLINE=1``) fails at once with a
  :class:`~clipscore_sr.errors.WeightsNotFoundError`; missing and online downloads it once, as torchvision does.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlparse

import torch

from ..devices import autocast, inference, resolve_precision
from ..errors import InputMismatchError, WeightsNotFoundError
from ..weights import check_sha256_prefix, is_offline, load_state_dict_file, missing_weights, name_hash_prefix
from .base import Metric, register_metric

#: LPIPS trunk name -> (torchvision architecture, torchvision weights enum name). The lpips package builds its
#: trunks with ``torchvision.models.<arch>(pretrained=True)``, i.e. the ``IMAGENET1K_V1`` weights.
BACKBONES: dict[str, tuple[str, str]] = {
    "alex": ("alexnet", "AlexNet_Weights"),
    "vgg": ("vgg16", "VGG16_Weights"),
    "squeeze": ("squeezenet1_1", "SqueezeNet1_1_Weights"),
}


def backbone_url(net: str) -> str:
    """Download URL of the trunk's ImageNet weights, as torchvision records it."""
    import torchvision.models

    return getattr(torchvision.models, BACKBONES[_check_net(net)][1]).IMAGENET1K_V1.url


#: Smallest image side each trunk accepts (its pooling stack reduces smaller inputs to nothing).
MIN_SIZE: dict[str, int] = {"alex": 31, "vgg": 16, "squeeze": 17}


def _check_net(net: str) -> str:
    if net not in BACKBONES:
        raise ValueError(f"LPIPS net must be one of {', '.join(BACKBONES)} (got {net!r})")
    return net


def backbone_checkpoint(net: str) -> Path:
    """Path where torchvision caches the ImageNet weights of LPIPS trunk ``net`` (alex|vgg|squeeze).

    The file name is the URL's last component (it carries the SHA-256 prefix torchvision checks on download).
    """
    url = backbone_url(net)
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def _missing(net: str, path: Path, reason: str = "", *, offline: bool = False) -> WeightsNotFoundError:
    arch, url = BACKBONES[net][0], backbone_url(net)
    how = (
        f"put torchvision's {arch} ImageNet weights in {path.parent} (download {url} on a machine with internet, "
        f"or run python -c \"import torchvision; torchvision.models.{arch}(weights='IMAGENET1K_V1')\"), "
        "or point TORCH_HOME at a cache that has them"
    )
    if reason:
        how = f"{reason}; {how}"
    return missing_weights(f"LPIPS-{net} backbone ({arch})", [path], how, offline=offline)


def check_backbone_weights(net: str, *, download: bool | None = None) -> Path:
    """Make sure the trunk's ImageNet weights are in torchvision's cache and return their path.

    ``download=None`` downloads a missing file unless offline mode is on; ``False`` never downloads.
    Raises :class:`WeightsNotFoundError` (one line: which weights, where we looked, how to provide them).
    """
    path = backbone_checkpoint(net)
    if path.is_file():
        return path
    if download is None:
        download = not is_offline()
    if not download:
        raise _missing(net, path, offline=is_offline())
    url = backbone_url(net)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(path), hash_prefix=name_hash_prefix(path.name) or None, progress=False)
    except Exception as exc:  # network errors come in many types (URLError, OSError, RuntimeError on hash)
        raise _missing(net, path, f"download failed: {type(exc).__name__}: {exc}".replace("\n", " ")) from None
    return path


def linear_weights_path(net: str) -> Path:
    """The v0.1 linear calibration weights shipped inside the ``lpips`` package for trunk ``net``."""
    import lpips

    return Path(lpips.__file__).parent / "weights" / "v0.1" / f"{_check_net(net)}.pth"


def _trunk_state(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, net: str) -> dict:
    """Map torchvision's ``features.<i>.<param>`` keys onto the lpips trunk's ``slice<k>.<i>.<param>`` keys."""
    where = {child: sl for sl, seq in model.net.named_children() for child, _ in seq.named_children()}
    mapped, missing = {}, []
    for key in model.net.state_dict():
        sl, i, param = key.split(".", 2)
        src = f"features.{i}.{param}"
        if where.get(i) != sl or src not in state:
            missing.append(src)
        else:
            mapped[key] = state[src]
    if missing:
        raise WeightsNotFoundError(f"weights for LPIPS-{net} backbone at {path} are not a torchvision "
                                   f"{BACKBONES[net][0]} state dict (missing {', '.join(missing[:3])}); "
                                   "delete the file and fetch it again")
    return mapped


def _load_strict(module: torch.nn.Module, state: dict, path: Path, what: str) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1].strip()[:200]
        raise WeightsNotFoundError(f"weights for {what} at {path} do not fit the model ({first}); "
                                   "delete the file and fetch it again") from None


def build_lpips(net: str = "vgg", device: str | torch.device = "cpu", *, download: bool | None = None) -> torch.nn.Module:
    """The ``lpips.LPIPS`` model for trunk ``net`` with v0.1 linear weights, frozen, in eval mode, on ``device``.

    The backbone file is checked first (see :func:`check_backbone_weights`), so construction never starts a
    download behind the user's back. No third-party code unpickles anything: the network is built without
    weights, the backbone file must match the SHA-256 prefix in its torchvision file name, and both it and
    the package's linear layers are read with ``torch.load(weights_only=True)``
    (:func:`clipscore_sr.weights.load_state_dict_file`).
    """
    import lpips

    path = check_backbone_weights(_check_net(net), download=download)
    what = f"LPIPS-{net} backbone ({BACKBONES[net][0]})"
    trunk = load_state_dict_file(path, what=what, sha256_prefix=name_hash_prefix(path.name))
    lin_path = linear_weights_path(net)
    lins = load_state_dict_file(lin_path, what=f"LPIPS-{net} linear layers", how="reinstall the lpips package")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's notice about the legacy `pretrained=` argument
        model = lpips.LPIPS(pretrained=False, net=net, version="0.1", pnet_rand=True, verbose=False)
    _load_strict(model.net, _trunk_state(model, trunk, path, net), path, what)
    _load_strict(model.lins, {k[len("lin"):]: v for k, v in lins.items() if k.startswith("lin")},
                 lin_path, f"LPIPS-{net} linear layers")
    model.eval().requires_grad_(False)
    return model.to(torch.device(device))


def _as_rgb(x: torch.Tensor, which: str) -> torch.Tensor:
    if x.ndim != 4:
        raise InputMismatchError(f"lpips: {which} must be [B,C,H,W], got shape {tuple(x.shape)}")
    c = x.shape[1]
    if c == 1:
        return x.expand(-1, 3, -1, -1)
    if c != 3:
        raise InputMismatchError(
            f"lpips: {which} has {c} channels; LPIPS needs 1 or 3 (select RGB bands with --bands, e.g. --bands 4,3,2)"
        )
    return x


def lpips_distance(
    sr: torch.Tensor, gt: torch.Tensor, model: torch.nn.Module, *, precision: str = "fp32"
) -> torch.Tensor:
    """LPIPS distance per image, ``[B]`` float64 (lower is better, 0 for identical images).

    ``sr``/``gt``: ``[B, C, H, W]`` with ``C`` in {1, 3} and values in ``[0, 1]`` (mapped to ``[-1, 1]`` here);
    ``model``: an ``lpips.LPIPS`` (e.g. from :func:`build_lpips`). Differentiable with respect to the inputs
    when called outside ``torch.inference_mode``.
    """
    sr, gt = _as_rgb(sr, "sr"), _as_rgb(gt, "gt")
    if sr.shape != gt.shape:
        raise InputMismatchError(f"lpips: sr shape {tuple(sr.shape)} differs from gt shape {tuple(gt.shape)}")
    net = getattr(model, "pnet_type", "vgg")
    net = "vgg" if net == "vgg16" else net
    min_size = MIN_SIZE.get(net, 1)
    if min(sr.shape[-2:]) < min_size:
        raise InputMismatchError(
            f"lpips: images of {sr.shape[-2]}x{sr.shape[-1]} px are too small for the {net} trunk "
            f"(needs at least {min_size} px per side)"
        )
    device = next(model.parameters()).device
    sr = sr.to(device=device, dtype=torch.float32)
    gt = gt.to(device=device, dtype=torch.float32)
    with autocast(device, precision):
        dist = model(sr * 2 - 1, gt * 2 - 1)
    return dist.reshape(dist.shape[0]).to(torch.float64)


class _LPIPSMetric(Metric):
    """Shared implementation; subclasses fix the trunk."""

    net: ClassVar[str]
    higher_is_better = False
    best_value = 0.0
    units = "distance"
    value_range = "[0, ~1]; 0 = identical"
    needs_weights = True

    def __init__(
        self, spec: str | None = None, *, device: str | torch.device = "cpu", precision: str = "fp32", **options: Any
    ) -> None:
        super().__init__(spec, device=device, **options)
        self.precision = resolve_precision(precision, self.device)
        self._model: torch.nn.Module | None = None

    def check_weights(self) -> Path:
        """Fail fast (before any decoding) if the backbone weights are missing and cannot be fetched, or do not
        match the SHA-256 prefix in their file name (so ``srmetrics demo`` skips a tampered file)."""
        path = check_backbone_weights(self.net)
        check_sha256_prefix(path, name_hash_prefix(path.name), what=f"LPIPS-{self.net} backbone "
                            f"({BACKBONES[self.net][0]})")
        return path

    def load(self) -> torch.nn.Module:
        """Build the model once (later calls return the same frozen model)."""
        if self._model is None:
            self._model = build_lpips(self.net, self.device)
        return self._model

    def to(self, device: str | torch.device) -> Metric:
        super().to(device)
        self.precision = resolve_precision(self.precision, self.device)
        if self._model is not None:
            self._model.to(self.device)
        return self

    def compute(self, sr: torch.Tensor, gt: torch.Tensor, **_: Any) -> torch.Tensor:
        model = self.load()
        with inference(self.device, "fp32"):
            return lpips_distance(sr, gt, model, precision=self.precision)

    def provenance(self) -> dict[str, Any]:
        info = super().provenance()
        info.update(
            {
                "model": f"lpips.LPIPS(net={self.net!r}, version='0.1')",
                "backbone_weights": backbone_checkpoint(self.net).name,
                "input_scaling": "[0,1] -> [-1,1]",
                "precision": self.precision,
            }
        )
        return info


_DESC = "LPIPS v0.1, {trunk} trunk (lpips package); inputs [0,1] scaled to [-1,1]; 1 band -> RGB"


@register_metric
class LPIPSVGG(_LPIPSMetric):
    """``lpips``: LPIPS with the VGG16 trunk, as the paper's authors used (but with [-1,1] inputs)."""

    name = "lpips"
    net = "vgg"
    description = _DESC.format(trunk="VGG16") + " (the authors' choice)"


@register_metric
class LPIPSVGGExplicit(_LPIPSMetric):
    """``lpips-vgg``: same computation as ``lpips``."""

    name = "lpips-vgg"
    net = "vgg"
    description = _DESC.format(trunk="VGG16")


@register_metric
class LPIPSAlex(_LPIPSMetric):
    """``lpips-alex``: LPIPS with the AlexNet trunk (the LPIPS authors' default)."""

    name = "lpips-alex"
    net = "alex"
    description = _DESC.format(trunk="AlexNet")


@register_metric
class LPIPSSqueeze(_LPIPSMetric):
    """``lpips-squeeze``: LPIPS with the SqueezeNet 1.1 trunk."""

    name = "lpips-squeeze"
    net = "squeeze"
    description = _DESC.format(trunk="SqueezeNet 1.1")
