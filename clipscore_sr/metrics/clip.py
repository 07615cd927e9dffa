"""CLIPScore: cosine similarity between the CLIP image embeddings of the ground truth and of the SR output.

Higher is better; 1.0 means the model sees the two images identically. One value per image.

Which CLIP: ``clipscore:SPEC`` (plain ``clipscore`` = ``clipscore:clipa-v2-bigg``, the paper's recommendation)
-------------------------------------------------------------------------------------------------------------
``ALIAS``                  a name from :data:`CLIP_ALIASES` (``srmetrics models`` lists them), e.g. ``clip-rn50``
``MODEL/PRETRAINED``       any pair in ``open_clip.list_pretrained()``, e.g. ``ViT-B-32/laion2b_s34b_b79k``
``hf-hub:ORG/REPO``        an open_clip-format repository (``open_clip_config.json`` + weights) on the HF hub
``local-dir:PATH``         a folder in the same format (``open_clip_config.json`` with ``model_cfg`` and
                           ``preprocess_cfg``, plus one weights file: ``open_clip_model.safetensors``,
                           ``open_clip_pytorch_model.bin``, ...): RemoteCLIP/GeoRSCLIP exports, your own models
``MODEL@/path/file.pt``    an open_clip architecture + a checkpoint file (``.pt/.pth/.bin/.safetensors/.npz``).
                           The preprocessing is that of MODEL's pretrained tags when they all agree; otherwise
                           name the tag whose preprocessing the file was trained with: ``MODEL/TAG@/path/file.pt``
                           (e.g. ``ViT-B-32/openai@RemoteCLIP-ViT-B-32.pt``), or pass the ``preprocess`` option.

Preprocessing (never the OpenAI default by accident)
-----------------------------------------------------
Each set of weights comes with its own mean/std, interpolation (bicubic/bilinear), resize mode
(``shortest``: resize the short side then center-crop; ``longest``: resize the long side then pad;
``squash``: resize both sides, ignoring the aspect ratio) and input size. We take them from the alias record,
the open_clip pretrained tag, or the folder's ``preprocess_cfg``; a folder or file without that information is
an error rather than a silent OpenAI default. Preprocessing runs on batched tensors on the metric's device
(torchvision tensor resize with antialiasing, as open_clip's transform does for tensor input), so it matches
``open_clip.image_transform_v2(cfg, is_train=False)`` applied to a float tensor image.
1-channel inputs are repeated to 3 channels; other channel counts need ``--bands`` (e.g. ``--bands 4,3,2``).

``clipscore-satlas:SPEC``: the authors' pipeline (satlas-super-resolution ``calculate_clipscore``)
------------------------------------------------------------------------------------------------
For reproducing the paper's numbers. Differences from ``clipscore``: channels are flipped RGB->BGR (the
authors read images with OpenCV), values are ``uint8 / 255`` (our [0,1] input, identical for 8-bit files),
the image is resized with **nearest neighbour** straight to the model's input size (aspect ratio ignored, no
antialiasing) and **no mean/std normalisation** is applied. The model, its weights and the cosine are the same.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..devices import autocast, resolve_device, resolve_precision
from ..embed_cache import EmbeddingCache
from ..errors import ConfigError, InputMismatchError, SRMetricsError, UnknownMetricError
from ..weights import (
    cache_root,
    file_fingerprint,
    hf_cached_file,
    hf_download,
    hf_hub_cache,
    hf_repo_dir,
    is_offline,
    missing_weights,
    openclip_url_cache,
    url_download,
)
from .base import Metric, register_metric

DEFAULT_ALIAS = "clipa-v2-bigg"

# Normalisation constants of the families (facts about how the weights were trained).
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)

_INTERPOLATIONS = ("bicubic", "bilinear", "nearest")
_RESIZE_MODES = ("shortest", "longest", "squash")


# ----------------------------------------------------------------------------------------------------------
# Preprocessing
# ----------------------------------------------------------------------------------------------------------

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


def satlas_preprocess_batch(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The authors' preprocessing: RGB->BGR, values as given in [0,1] (= uint8/255), nearest-neighbour resize to
    ``size``, no mean/std normalisation. Gray input is repeated to 3 channels."""
    x = to_three_channels(x).float()
    x = x.flip(1)  # RGB -> BGR
    return F.interpolate(x, size=tuple(size))  # mode='nearest', as torch.nn.functional.interpolate defaults


# ----------------------------------------------------------------------------------------------------------
# Alias registry (open_clip pretrained.py style: per-family helpers carry the preprocessing)
# ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClipAlias:
    """A named CLIP: open_clip ``model`` + ``pretrained`` tag and the preprocessing those weights expect."""

    name: str
    model: str
    pretrained: str
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str
    resize_mode: str
    quick_gelu: bool
    family: str
    description: str

    @property
    def preprocess(self) -> Preprocess:
        return Preprocess(size=(self.image_size, self.image_size), mean=self.mean, std=self.std,
                          interpolation=self.interpolation, resize_mode=self.resize_mode)


def _openai(name: str, model: str, size: int, desc: str) -> ClipAlias:
    return ClipAlias(name, model, "openai", size, OPENAI_MEAN, OPENAI_STD, "bicubic", "shortest", True,
                     "OpenAI CLIP", desc)


def _clipa(name: str, model: str, tag: str, size: int, desc: str) -> ClipAlias:
    return ClipAlias(name, model, tag, size, IMAGENET_MEAN, IMAGENET_STD, "bilinear", "squash", False,
                     "CLIPA-v2", desc)


def _siglip(name: str, model: str, size: int, desc: str) -> ClipAlias:
    return ClipAlias(name, model, "webli", size, INCEPTION_MEAN, INCEPTION_STD, "bicubic", "squash", False,
                     "SigLIP", desc)


def _metaclip(name: str, model: str, size: int, desc: str) -> ClipAlias:
    return ClipAlias(name, model, "metaclip_fullcc", size, OPENAI_MEAN, OPENAI_STD, "bicubic", "shortest", True,
                     "MetaCLIP", desc)


def _eva(name: str, model: str, tag: str, size: int, desc: str) -> ClipAlias:
    return ClipAlias(name, model, tag, size, OPENAI_MEAN, OPENAI_STD, "bicubic", "shortest", False,
                     "EVA-CLIP", desc)


def _laion(name: str, model: str, tag: str, size: int, desc: str) -> ClipAlias:
    return ClipAlias(name, model, tag, size, OPENAI_MEAN, OPENAI_STD, "bicubic", "shortest", False,
                     "OpenCLIP", desc)


CLIP_ALIASES: dict[str, ClipAlias] = {a.name: a for a in [
    _clipa("clipa-v2-bigg", "ViT-bigG-14-CLIPA-336", "datacomp1b", 336,
           "CLIPA-v2 ViT-bigG/14 @336, DataComp-1B: the paper's recommended metric (default)"),
    _clipa("clipa-v2-h", "ViT-H-14-CLIPA-336", "datacomp1b", 336, "CLIPA-v2 ViT-H/14 @336, DataComp-1B"),
    _clipa("clipa-v2-l", "ViT-L-14-CLIPA-336", "datacomp1b", 336, "CLIPA-v2 ViT-L/14 @336, DataComp-1B"),
    _openai("clip-rn50", "RN50", 224, "OpenAI CLIP ResNet-50 (the paper's metric-as-loss model)"),
    _openai("clip-vitb32", "ViT-B-32", 224, "OpenAI CLIP ViT-B/32"),
    _openai("clip-vitb16", "ViT-B-16", 224, "OpenAI CLIP ViT-B/16"),
    _openai("clip-vitl14", "ViT-L-14", 224, "OpenAI CLIP ViT-L/14"),
    _openai("clip-vitl14-336", "ViT-L-14-336", 336, "OpenAI CLIP ViT-L/14 @336"),
    _siglip("siglip-so400m", "ViT-SO400M-14-SigLIP-384", 384, "SigLIP SO400M/14 @384, WebLI"),
    _metaclip("metaclip-b16", "ViT-B-16-quickgelu", 224, "MetaCLIP ViT-B/16, 2.5B pairs"),
    _metaclip("metaclip-l14", "ViT-L-14-quickgelu", 224, "MetaCLIP ViT-L/14, 2.5B pairs"),
    _metaclip("metaclip-h14", "ViT-H-14-quickgelu", 224, "MetaCLIP ViT-H/14, 2.5B pairs"),
    _eva("eva02-b16", "EVA02-B-16", "merged2b_s8b_b131k", 224, "EVA02-CLIP B/16, Merged-2B"),
    _eva("eva02-l14", "EVA02-L-14", "merged2b_s4b_b131k", 224, "EVA02-CLIP L/14, Merged-2B"),
    _eva("eva02-l14-336", "EVA02-L-14-336", "merged2b_s6b_b61k", 336, "EVA02-CLIP L/14 @336, Merged-2B"),
    _laion("openclip-vith14", "ViT-H-14", "laion2b_s32b_b79k", 224, "OpenCLIP ViT-H/14, LAION-2B"),
]}


# ----------------------------------------------------------------------------------------------------------
# Spec parsing
# ----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClipSpec:
    """A parsed ``clipscore:SPEC``. ``kind`` is ``pretrained`` (alias or MODEL/TAG), ``hf-hub``, ``local-dir`` or
    ``file`` (MODEL[/TAG]@PATH)."""

    text: str
    kind: str
    model: str | None = None
    pretrained: str | None = None
    repo: str | None = None
    path: str | None = None
    alias: str | None = None

    @property
    def label(self) -> str:
        if self.kind == "pretrained":
            return f"{self.model}/{self.pretrained}"
        if self.kind == "hf-hub":
            return f"hf-hub:{self.repo}"
        if self.kind == "local-dir":
            return f"local-dir:{self.path}"
        return f"{self.model}{'/' + self.pretrained if self.pretrained else ''}@{self.path}"


def _open_clip():
    import open_clip  # imported lazily: listing metrics must stay fast and never load weights

    return open_clip


def _check_tag(model: str, tag: str, text: str) -> str:
    oc = _open_clip()
    if model not in oc.list_models():
        close = difflib.get_close_matches(model, oc.list_models(), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownMetricError(f"clipscore:{text}: unknown open_clip model '{model}'{hint}")
    if not oc.is_pretrained_cfg(model, tag):
        tags = oc.list_pretrained_tags_by_model(model)
        raise UnknownMetricError(
            f"clipscore:{text}: '{tag}' is not a pretrained tag of {model} "
            f"(known: {', '.join(tags) if tags else 'none; use ' + model + '@/path/to/weights'})")
    return tag.lower().replace("-", "_")


def parse_clip_spec(text: str | None) -> ClipSpec:
    """Parse the SPEC of ``clipscore:SPEC`` (see the module docstring for the syntax)."""
    raw = (text or "").strip() or DEFAULT_ALIAS
    alias = CLIP_ALIASES.get(raw.lower())
    if alias is not None:
        return ClipSpec(raw, "pretrained", model=alias.model, pretrained=alias.pretrained, alias=alias.name)
    if raw.startswith("hf-hub:"):
        repo = raw[len("hf-hub:"):].strip().strip("/")
        if repo.count("/") != 1 or not all(repo.split("/")):
            raise ConfigError(f"clipscore:{raw}: expected hf-hub:ORG/REPO")
        return ClipSpec(raw, "hf-hub", repo=repo)
    if raw.startswith("local-dir:"):
        path = raw[len("local-dir:"):].strip()
        if not path:
            raise ConfigError(f"clipscore:{raw}: expected local-dir:PATH")
        return ClipSpec(raw, "local-dir", path=str(Path(path).expanduser()))
    if "@" in raw:
        left, path = (s.strip() for s in raw.split("@", 1))
        if not left or not path:
            raise ConfigError(f"clipscore:{raw}: expected MODEL@/path/to/weights or MODEL/TAG@/path/to/weights")
        model, _, tag = left.partition("/")
        oc = _open_clip()
        if model not in oc.list_models():
            close = difflib.get_close_matches(model, oc.list_models(), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UnknownMetricError(f"clipscore:{raw}: unknown open_clip architecture '{model}'{hint}")
        return ClipSpec(raw, "file", model=model, pretrained=_check_tag(model, tag, raw) if tag else None,
                        path=str(Path(path).expanduser()))
    if "/" in raw:
        model, tag = raw.split("/", 1)
        return ClipSpec(raw, "pretrained", model=model, pretrained=_check_tag(model, tag, raw))
    oc = _open_clip()
    if raw in oc.list_models():
        tags = oc.list_pretrained_tags_by_model(raw)
        choices = ", ".join(f"{raw}/{t}" for t in tags[:4]) + (", ..." if len(tags) > 4 else "")
        raise UnknownMetricError(f"clipscore:{raw}: name the weights too: {choices or raw + '/TAG'} "
                                 f"or {raw}@/path/to/weights.pt")
    close = difflib.get_close_matches(raw.lower(), list(CLIP_ALIASES), n=3, cutoff=0.5)
    close += difflib.get_close_matches(raw, oc.list_models(), n=2, cutoff=0.7)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise UnknownMetricError(f"clipscore:{raw}: not a CLIP alias, MODEL/TAG, hf-hub:, local-dir: or MODEL@FILE "
                             f"spec{hint} (run 'srmetrics models' for the aliases)")


# ----------------------------------------------------------------------------------------------------------
# Weight resolution: local path / local-dir -> our cache root -> HF/open_clip cache -> download
# ----------------------------------------------------------------------------------------------------------

_DIR_WEIGHT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
                     "open_clip_pytorch_model.bin", "open_clip_pytorch_model.pth", "model.safetensors",
                     "pytorch_model.bin", "pytorch_model.pth", "model.pth")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".npz")
_HF_DEFAULT_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


@dataclass
class ResolvedClip:
    """Where the weights of a spec are on disk and how to build/preprocess for them."""

    spec: ClipSpec
    checkpoint: Path
    arch: str                          # open_clip create_model name (built-in or ``local-dir:DIR``)
    quick_gelu: bool
    preprocess_cfg: dict[str, Any]     # mean/std/interpolation/resize_mode(/fill_color); size comes from model
    preprocess_source: str
    fingerprint: str
    model_cfg: dict[str, Any] | None = None
    config_dir: Path | None = None

    @property
    def identity(self) -> str:
        """Stable id of the weights (architecture + content fingerprint), independent of where the file is."""
        arch = self.spec.model if self.model_cfg is None else \
            "cfg:" + hashlib.sha256(json.dumps(self.model_cfg, sort_keys=True).encode()).hexdigest()[:12]
        return f"{arch}|qg={int(self.quick_gelu)}|{self.fingerprint}"


def _how(spec: ClipSpec, extra: str = "") -> str:
    name = spec.alias or spec.text
    parts = [f"run 'srmetrics models --fetch {name}' on a machine with internet and copy its Hugging Face cache "
             f"({hf_hub_cache()}) here or point HF_HOME at it"]
    if spec.kind == "pretrained":
        parts.append(f"or pass a downloaded file as clipscore:{spec.model}/{spec.pretrained}@/path/to/weights")
    if extra:
        parts.append(extra)
    return ", ".join(parts)


def _tag_preprocess(model: str, tag: str) -> tuple[dict[str, Any], bool]:
    cfg = _open_clip().get_pretrained_cfg(model, tag)
    keys = ("mean", "std", "interpolation", "resize_mode")
    return {k: cfg[k] for k in keys if k in cfg}, bool(cfg.get("quick_gelu", False))


def _resolve_pretrained(spec: ClipSpec, download: bool) -> ResolvedClip:
    assert spec.model and spec.pretrained
    oc = _open_clip()
    pcfg = oc.get_pretrained_cfg(spec.model, spec.pretrained)
    what = f"clipscore:{spec.text} (open_clip {spec.model}/{spec.pretrained})"
    hf_hub, url = pcfg.get("hf_hub", ""), pcfg.get("url", "")
    repo, fname = os.path.split(hf_hub) if hf_hub else ("", "")
    if fname:
        names = ([fname.rsplit(".", 1)[0] + ".safetensors"] if fname.endswith((".bin", ".pth")) else []) + [fname]
    else:
        names = list(_HF_DEFAULT_WEIGHTS)
    url_name = os.path.basename(url) if url else ""
    own = cache_root() / "open_clip" / spec.model / spec.pretrained
    looked: list[str] = [str(own)]
    found: Path | None = None
    for n in [*names, url_name, *(p.name for p in sorted(own.glob("*")) if p.suffix in _WEIGHT_SUFFIXES)]:
        if n and (own / n).is_file():
            found = own / n
            break
    if found is None and repo:
        looked.append(str(hf_repo_dir(repo)))
        for n in names:
            found = hf_cached_file(repo, n)
            if found:
                break
    if found is None and url_name:
        looked.append(str(openclip_url_cache() / url_name))
        if (openclip_url_cache() / url_name).is_file():
            found = openclip_url_cache() / url_name
    if found is None:
        if not download or is_offline():
            how = _how(spec) + ("" if download else " (downloads disabled here)")
            if is_offline() and download:
                how += " (offline mode is on: HF_HUB_OFFLINE/CLIPSCORE_SR_OFFLINE)"
            raise missing_weights(what, looked, how)
        found = _download_pretrained(spec, repo, names, url, own, what, looked)
    prep, qg = _tag_preprocess(spec.model, spec.pretrained)
    return ResolvedClip(spec, found, spec.model, qg, prep, f"open_clip pretrained tag {spec.model}/{spec.pretrained}",
                        file_fingerprint(found))


def _download_pretrained(spec: ClipSpec, repo: str, names: Sequence[str], url: str, own: Path, what: str,
                         looked: list[str]) -> Path:
    if repo:
        last: SRMetricsError | None = None
        for n in names:  # the safetensors variant may not exist: try the next name
            try:
                return hf_download(repo, n, what=what, looked_in=looked, how=_how(spec))
            except SRMetricsError as exc:
                last = exc
        assert last is not None
        raise last
    sha = url.split("/")[-2] if "openaipublic" in url else ""
    return url_download(url, own / os.path.basename(url), what=what, looked_in=looked, how=_how(spec),
                        sha256_prefix=sha)


def _dir_checkpoint(d: Path, what: str, how: str) -> Path:
    for n in _DIR_WEIGHT_NAMES:
        if (d / n).is_file():
            return d / n
    files = sorted(p for p in d.iterdir() if p.is_file() and p.suffix in _WEIGHT_SUFFIXES)
    if len(files) == 1:
        return files[0]
    if len(files) > 1:
        raise ConfigError(f"{what}: several weight files in {d} ({', '.join(p.name for p in files)}); "
                          f"keep one or name it open_clip_model.safetensors")
    raise missing_weights(what, [d], how)


def _dir_config(d: Path, what: str) -> tuple[dict[str, Any], dict[str, Any]]:
    path = d / "open_clip_config.json"
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{what}: {path} not found (a local-dir:/hf-hub: model needs open_clip_config.json "
                          f"with 'model_cfg' and 'preprocess_cfg')") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{what}: cannot read {path}: {exc}") from None
    if not isinstance(cfg, dict) or "model_cfg" not in cfg:
        raise ConfigError(f"{what}: {path} has no 'model_cfg' (not an open_clip model folder)")
    return cfg["model_cfg"], dict(cfg.get("preprocess_cfg") or {})


def _resolve_dir(spec: ClipSpec, d: Path, what: str, how: str) -> ResolvedClip:
    model_cfg, prep = _dir_config(d, what)
    ckpt = _dir_checkpoint(d, what, how)
    fp = hashlib.sha256((file_fingerprint(ckpt) + json.dumps(model_cfg, sort_keys=True)).encode()).hexdigest()[:16]
    return ResolvedClip(spec, ckpt, f"local-dir:{d}", bool(model_cfg.get("quick_gelu", False)), prep,
                        f"preprocess_cfg of {d / 'open_clip_config.json'}", fp, model_cfg=model_cfg, config_dir=d)


def _resolve_hf(spec: ClipSpec, download: bool) -> ResolvedClip:
    assert spec.repo
    what = f"clipscore:{spec.text}"
    looked = [str(hf_repo_dir(spec.repo))]
    cfg = hf_cached_file(spec.repo, "open_clip_config.json")
    weights = None
    if cfg is not None:
        weights = next((p for n in _HF_DEFAULT_WEIGHTS if (p := cfg.parent / n).is_file()), None)
    if cfg is None or weights is None:
        if not download or is_offline():
            extra = "(offline mode is on: HF_HUB_OFFLINE/CLIPSCORE_SR_OFFLINE)" if is_offline() else ""
            raise missing_weights(what, looked, _how(spec, extra))
        if cfg is None:
            cfg = hf_download(spec.repo, "open_clip_config.json", what=what, looked_in=looked, how=_how(spec))
        last: SRMetricsError | None = None
        for n in _HF_DEFAULT_WEIGHTS:
            try:
                weights = hf_download(spec.repo, n, what=what, looked_in=looked, how=_how(spec))
                break
            except SRMetricsError as exc:
                last = exc
        if weights is None:
            assert last is not None
            raise last
        if weights.parent != cfg.parent:  # a new revision appeared between the two downloads
            cfg = hf_download(spec.repo, "open_clip_config.json", what=what, looked_in=looked, how=_how(spec))
    resolved = _resolve_dir(spec, cfg.parent, what, _how(spec))  # picks `weights` (same preference order)
    resolved.preprocess_source = f"preprocess_cfg of hf-hub:{spec.repo} (revision {cfg.parent.name})"
    return resolved


def _resolve_file(spec: ClipSpec) -> ResolvedClip:
    assert spec.model and spec.path
    what = f"clipscore:{spec.text}"
    path = Path(spec.path)
    if not path.is_file():
        raise missing_weights(what, [path], "check the path after '@' (a checkpoint file for "
                              f"{spec.model}), or use local-dir:FOLDER for an open_clip folder")
    oc = _open_clip()
    if spec.pretrained:
        prep, qg = _tag_preprocess(spec.model, spec.pretrained)
        source = f"open_clip pretrained tag {spec.model}/{spec.pretrained}"
    else:
        tags = oc.list_pretrained_tags_by_model(spec.model)
        variants = {json.dumps(_tag_preprocess(spec.model, t), sort_keys=True) for t in tags}
        if len(variants) == 1:
            prep, qg = _tag_preprocess(spec.model, tags[0])
            source = f"the pretrained tags of {spec.model} ({', '.join(tags)}), which all agree"
        else:
            prep, qg, source = {}, bool((oc.get_model_config(spec.model) or {}).get("quick_gelu", False)), ""
    return ResolvedClip(spec, path, spec.model, qg, prep, source, file_fingerprint(path))


def resolve_clip(spec: ClipSpec | str, *, download: bool = True) -> ResolvedClip:
    """Find the weights of ``spec`` on disk, downloading them only when ``download`` and not offline.

    Missing weights raise :class:`~clipscore_sr.errors.WeightsNotFoundError` (one line: which weights, where we
    looked, how to provide them) without waiting on the network when offline.
    """
    if isinstance(spec, str):
        spec = parse_clip_spec(spec)
    if spec.kind == "pretrained":
        return _resolve_pretrained(spec, download)
    if spec.kind == "hf-hub":
        return _resolve_hf(spec, download)
    if spec.kind == "local-dir":
        d = Path(spec.path or "")
        what = f"clipscore:{spec.text}"
        if not d.is_dir():
            raise missing_weights(what, [d], "check the folder after 'local-dir:' (it must hold "
                                  "open_clip_config.json and the weights file)")
        return _resolve_dir(spec, d, what, "put the weights file (open_clip_model.safetensors or "
                            "open_clip_pytorch_model.bin) next to open_clip_config.json")
    return _resolve_file(spec)


def weights_present(spec: ClipSpec | str) -> Path | None:
    """The local weights file of ``spec`` if present (no download, no network), else None."""
    try:
        return resolve_clip(spec, download=False).checkpoint
    except SRMetricsError:
        return None


# ----------------------------------------------------------------------------------------------------------
# Loading: once per process, cached by identity; frozen, eval mode, image tower only
# ----------------------------------------------------------------------------------------------------------

@dataclass
class ClipModel:
    """A frozen open_clip image tower plus the preprocessing its weights expect.

    ``embed(images)`` takes float images ``[B,C,H,W]`` in [0,1] (C = 1 or 3) on any device and returns the
    unnormalised image embeddings ``[B,D]`` (float32), exactly ``open_clip_model.encode_image`` of the
    preprocessed batch. Gradients flow to the input when autograd is on; the weights never require grad.
    """

    visual: torch.nn.Module
    preprocess: Preprocess
    device: torch.device
    resolved: ResolvedClip | None = None
    name: str = ""
    embed_dim: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def identity(self) -> str:
        return self.resolved.identity if self.resolved is not None else f"module:{id(self.visual)}"

    def prepare(self, images: torch.Tensor, variant: str = "standard") -> torch.Tensor:
        images = images.to(self.device)
        if variant == "satlas":
            return satlas_preprocess_batch(images, self.preprocess.size)
        return preprocess_batch(images, self.preprocess)

    def embed(self, images: torch.Tensor, *, variant: str = "standard", precision: str = "fp32",
              batch_size: int | None = None) -> torch.Tensor:
        x = self.prepare(images, variant)
        step = batch_size or x.shape[0] or 1
        outs = []
        for i in range(0, x.shape[0], step):
            with autocast(self.device, precision):
                out = self.visual(x[i:i + step])
            if isinstance(out, (tuple, list)):  # CoCa-style towers return (pooled, tokens)
                out = out[0]
            outs.append(out.float())
        return torch.cat(outs) if len(outs) != 1 else outs[0]

    def describe(self) -> dict[str, Any]:
        r = self.resolved
        info: dict[str, Any] = {"model": self.name, "preprocess": asdict(self.preprocess), "embed_dim": self.embed_dim}
        if r is not None:
            info.update(spec=r.spec.text, kind=r.spec.kind, architecture=r.spec.model or r.arch,
                        pretrained=r.spec.pretrained, checkpoint=str(r.checkpoint), weights_fingerprint=r.fingerprint,
                        quick_gelu=r.quick_gelu, preprocess_source=r.preprocess_source)
        return info


_MODELS: dict[tuple[str, str, str], ClipModel] = {}
_MODELS_LOCK = threading.Lock()


def freeze(module: torch.nn.Module) -> torch.nn.Module:
    """Eval mode and ``requires_grad=False`` on every parameter (the model is never updated)."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def _preprocess_for(resolved: ResolvedClip, size: Any, override: Any) -> tuple[Preprocess, str]:
    cfg = dict(resolved.preprocess_cfg)
    source = resolved.preprocess_source
    if override is not None:
        if isinstance(override, str):
            if override not in PREPROCESS_PRESETS:
                raise ConfigError(f"preprocess '{override}': expected one of {', '.join(PREPROCESS_PRESETS)} "
                                  f"or a dict with mean/std/interpolation/resize_mode")
            override = PREPROCESS_PRESETS[override]
        if not isinstance(override, dict):
            raise ConfigError("preprocess option: expected a preset name or a dict")
        cfg.update({k: v for k, v in override.items() if v is not None})
        source = "the 'preprocess' option" + (f" over {source}" if source else "")
    if "mean" not in cfg or "std" not in cfg:
        spec = resolved.spec
        if spec.kind == "file":
            tags = _open_clip().list_pretrained_tags_by_model(spec.model or "")
            how = (f"name the tag the weights were trained like, e.g. clipscore:{spec.model}/{tags[0]}@{spec.path}"
                   if tags else "")
            raise ConfigError(
                f"clipscore:{spec.text}: cannot tell which preprocessing (mean/std, interpolation, resize mode) "
                f"these weights need" + (f" ({spec.model}'s pretrained tags disagree: {', '.join(tags)}); " if tags
                                          else f" ({spec.model} has no pretrained tags); ")
                + (how + ", " if how else "") + "pass preprocess='openai'|'clipa'|'siglip' or a dict, or use "
                "local-dir: with a preprocess_cfg in open_clip_config.json")
        raise ConfigError(f"clipscore:{spec.text}: {resolved.config_dir}/open_clip_config.json has no "
                          f"preprocess_cfg mean/std; add them (the values the weights were trained with) or "
                          f"pass the preprocess option")
    return Preprocess.from_config(cfg, size), source


@contextlib.contextmanager
def _quiet_open_clip() -> Iterator[None]:
    """Silence open_clip's root-logger warning "No pretrained weights loaded ... initialized randomly", which is
    true but misleading here: we build the architecture empty and load the checkpoint right after."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)


def _build(resolved: ResolvedClip) -> torch.nn.Module:
    oc = _open_clip()
    what = f"clipscore:{resolved.spec.text}"
    try:
        with _quiet_open_clip():
                model = oc.create_model(resolved.arch, pretrained=None, load_weights=False, pretrained_text=False,
                                    force_quick_gelu=resolved.quick_gelu and resolved.model_cfg is None)
    except Exception as exc:
        raise SRMetricsError(f"{what}: cannot build open_clip model {resolved.arch}: {_first_line(exc)}") from None
    try:
        oc.load_checkpoint(model, str(resolved.checkpoint), strict=True, weights_only=True)
    except Exception as exc:
        raise SRMetricsError(f"{what}: weights {resolved.checkpoint} do not fit architecture "
                             f"{resolved.spec.model or resolved.arch}: {_first_line(exc)}") from None
    return model


def _first_line(exc: BaseException) -> str:
    """A one-line summary of an exception (the first two non-empty lines, shortened)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = " ".join(lines[:2])
    return (text[:300] + "...") if len(text) > 300 else (text or type(exc).__name__)


def load_clip(spec: ClipSpec | str | None = None, *, device: str | torch.device = "cpu", download: bool = True,
              preprocess: Any = None) -> ClipModel:
    """Load (once per process and device) the frozen image tower for ``spec`` with its preprocessing."""
    spec = spec if isinstance(spec, ClipSpec) else parse_clip_spec(spec)
    dev = resolve_device(device) if not isinstance(device, torch.device) else device
    resolved = resolve_clip(spec, download=download)
    key = (resolved.identity, json.dumps(preprocess, sort_keys=True, default=str), str(dev))
    with _MODELS_LOCK:
        cached = _MODELS.get(key)
        if cached is not None:
            return cached
        model = _build(resolved)
        visual = freeze(model.visual).to(dev)
        size = getattr(visual, "image_size", None) or (resolved.model_cfg or
                                                        _open_clip().get_model_config(resolved.arch) or {}
                                                        ).get("vision_cfg", {}).get("image_size", 224)
        pp, source = _preprocess_for(resolved, size, preprocess)
        resolved.preprocess_source = source
        embed_dim = int(getattr(model, "embed_dim", 0) or (resolved.model_cfg or {}).get("embed_dim", 0))
        del model  # keep only the image tower (the text tower of bigG alone is ~700M parameters)
        clip = ClipModel(visual, pp, dev, resolved, name=spec.label, embed_dim=embed_dim)
        _MODELS[key] = clip
        return clip


def wrap_open_clip(model: torch.nn.Module, device: str | torch.device | None = None,
                   preprocess: Any = None) -> ClipModel:
    """Wrap an open_clip model object you already have (its ``visual.preprocess_cfg`` gives the preprocessing;
    models from ``open_clip.create_model(name, pretrained=TAG)`` carry the right one)."""
    visual = getattr(model, "visual", None)
    if visual is None:
        raise ConfigError("ClipLoss/clip_score model: expected an open_clip model (with .visual) or a spec string")
    cfg = dict(getattr(visual, "preprocess_cfg", None) or {})
    if preprocess is not None:
        cfg.update(PREPROCESS_PRESETS[preprocess] if isinstance(preprocess, str) else preprocess)
    if "mean" not in cfg or "std" not in cfg:
        raise ConfigError("the open_clip model has no visual.preprocess_cfg; pass preprocess='openai'|... or a dict")
    size = cfg.get("size") or getattr(visual, "image_size", 224)
    dev = torch.device(device) if device is not None else next(visual.parameters()).device
    freeze(visual).to(dev)
    return ClipModel(visual, Preprocess.from_config(cfg, size), dev, None, name=type(model).__name__,
                     embed_dim=int(getattr(model, "embed_dim", 0) or 0))


def clear_model_cache() -> None:
    """Forget every loaded model (tests; freeing memory)."""
    with _MODELS_LOCK:
        _MODELS.clear()


# ----------------------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------------------

def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity in float64 (``[B,D] x [B,D] -> [B]``)."""
    a, b = a.double(), b.double()
    return (F.normalize(a, dim=-1) * F.normalize(b, dim=-1)).sum(-1)


_SPEC_HELP = ("ALIAS (srmetrics models) | MODEL/PRETRAINED | hf-hub:ORG/REPO | local-dir:PATH | "
              "MODEL[/TAG]@/path/to/weights; default " + DEFAULT_ALIAS)


@register_metric
class ClipScore(Metric):
    """Cosine similarity of CLIP image embeddings of GT and SR (the paper's metric).

    Options: ``precision`` (fp32|bf16|fp16, autocast on GPU), ``cache_dir`` (on-disk embedding cache),
    ``batch_size`` (max images per forward pass), ``preprocess`` (override, see module docs).
    With ``sr_ids``/``gt_ids`` each image is embedded once per model (memory cache, plus disk with cache_dir).
    """

    name = "clipscore"
    higher_is_better = True
    units = "cosine"
    value_range = "[-1, 1]"
    description = "cosine similarity of CLIP image embeddings of GT and SR (default model clipa-v2-bigg)"
    is_differentiable = True
    needs_weights = True
    uses_image_ids = True
    spec_help = _SPEC_HELP
    variant = "standard"

    def __init__(self, spec: str | None = None, *, device: str | torch.device = "cpu", precision: str = "fp32",
                 cache_dir: str | os.PathLike | None = None, batch_size: int | None = None,
                 preprocess: Any = None, **options: Any) -> None:
        dev = resolve_device(device)
        super().__init__(spec, device=dev, **options)
        self.clip_spec = parse_clip_spec(spec)
        self.precision = resolve_precision(precision, dev)
        self.cache_dir = cache_dir
        self.batch_size = int(batch_size) if batch_size else None
        self.preprocess_override = preprocess
        self.options.update(precision=self.precision, cache_dir=str(cache_dir) if cache_dir else None,
                            batch_size=self.batch_size, preprocess=preprocess)
        self._model: ClipModel | None = None
        self._cache: EmbeddingCache | None = None
        self.images_embedded = 0

    # -- lifecycle ---------------------------------------------------------------------------------------
    def check_weights(self, download: bool = True) -> Path:
        """Make sure the weights are on disk (downloading if allowed and online); return the file."""
        return resolve_clip(self.clip_spec, download=download).checkpoint

    def load(self) -> ClipModel:
        """Load the model now (the pipeline calls this before decoding, so missing weights fail fast)."""
        if self._model is None or self._model.device != self.device:
            self._model = load_clip(self.clip_spec, device=self.device, preprocess=self.preprocess_override)
            self._cache = None
        return self._model

    def to(self, device: str | torch.device) -> ClipScore:
        self.device = resolve_device(device)
        self.precision = resolve_precision(self.precision, self.device)
        return self

    @property
    def cache(self) -> EmbeddingCache:
        if self._cache is None:
            model = self.load()
            pp = "satlas-bgr-nearest-nonorm" if self.variant == "satlas" else model.preprocess.key()
            namespace = f"clip|{model.identity}|{self.variant}|{pp}|{model.preprocess.size}|{self.precision}"
            self._cache = EmbeddingCache(namespace, self.cache_dir,
                                         describe={"metric": self.name, **model.describe()})
        return self._cache

    def provenance(self) -> dict[str, Any]:
        prov = super().provenance()
        prov["variant"] = self.variant
        if self._model is not None:
            prov["model"] = self._model.describe()
        else:
            prov["model"] = {"spec": self.clip_spec.text, "label": self.clip_spec.label}
        return prov

    # -- scoring -----------------------------------------------------------------------------------------
    def embed(self, images: torch.Tensor, ids: Sequence[str] | None = None) -> torch.Tensor:
        """Embeddings ``[B,D]`` float32 of images in [0,1]; with ``ids`` (content ids) cached per model."""
        model = self.load()
        grad = torch.is_grad_enabled() and images.requires_grad
        if ids is None or grad:
            self.images_embedded += images.shape[0]
            return model.embed(images, variant=self.variant, precision=self.precision, batch_size=self.batch_size)
        if len(ids) != images.shape[0]:
            raise InputMismatchError(f"{self.id}: {len(ids)} image ids for {images.shape[0]} images")
        cache = self.cache
        shape = [model.embed_dim] if model.embed_dim else None
        found: dict[str, torch.Tensor] = {}
        todo: list[int] = []
        pending: set[str] = set()
        for i, cid in enumerate(ids):
            if cid in found or cid in pending:
                continue
            hit = cache.get(cid, shape)
            if hit is None:
                todo.append(i)
                pending.add(cid)
            else:
                found[cid] = hit.to(model.device)
        if todo:
            idx = torch.tensor(todo, device=images.device)
            new = model.embed(images.index_select(0, idx), variant=self.variant, precision=self.precision,
                              batch_size=self.batch_size)
            self.images_embedded += len(todo)
            for k, i in enumerate(todo):
                cache.put(ids[i], new[k])
                found[ids[i]] = new[k]
        out = torch.stack([found[c] for c in ids])
        return out.clone() if out.is_inference() and not torch.is_inference_mode_enabled() else out

    def compute(self, sr: torch.Tensor, gt: torch.Tensor, *, mask: torch.Tensor | None = None,
                data_range: torch.Tensor | None = None, sr_ids: Sequence[str] | None = None,
                gt_ids: Sequence[str] | None = None) -> torch.Tensor:
        if sr.shape[0] != gt.shape[0]:
            raise InputMismatchError(f"{self.id}: {sr.shape[0]} SR images but {gt.shape[0]} GT images")
        to_three_channels(sr, f"{self.id} SR input")
        to_three_channels(gt, f"{self.id} GT input")
        e_sr = self.embed(sr, sr_ids)
        with torch.no_grad():
            e_gt = self.embed(gt.detach(), gt_ids)
        return cosine(e_sr, e_gt)


@register_metric
class ClipScoreSatlas(ClipScore):
    """CLIPScore computed the authors' way (BGR, /255, nearest resize, no normalisation); see module docs."""

    name = "clipscore-satlas"
    description = ("CLIPScore with the authors' preprocessing (RGB->BGR, /255, nearest resize, no mean/std); "
                   "for reproducing the paper's numbers")
    variant = "satlas"


def spec_summary(spec: ClipSpec | str) -> dict[str, Any]:
    """Alias/model/tag, input size, image-tower parameter count and local weights for ``srmetrics models``.

    The parameter count comes from building the architecture on the ``meta`` device (no memory, no weights,
    no network).
    """
    spec = spec if isinstance(spec, ClipSpec) else parse_clip_spec(spec)
    oc = _open_clip()
    info: dict[str, Any] = {"alias": spec.alias or "", "model": spec.model, "pretrained": spec.pretrained}
    alias = CLIP_ALIASES.get(spec.alias or "")
    cfg = copy.deepcopy(oc.get_model_config(spec.model)) if spec.model else None
    params = None
    if spec.model:
        try:
            with _quiet_open_clip(), torch.device("meta"):
                m = oc.create_model(spec.model, pretrained=None, device="meta", pretrained_text=False)
            params = sum(p.numel() for p in m.visual.parameters())
        except Exception:
            params = None
    size = alias.image_size if alias else (cfg or {}).get("vision_cfg", {}).get("image_size")
    local = weights_present(spec)
    info.update(image_params=params, input_size=size, weights=str(local) if local else None,
                preprocess=(f"{alias.interpolation}/{alias.resize_mode}" if alias else None),
                description=alias.description if alias else "")
    return info
