"""Loading CLIP image towers once per process (cached by identity; frozen, eval mode) with their preprocessing."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ...devices import autocast, resolve_device
from ...errors import ConfigError, SRMetricsError
from ...weights import safe_torch_load
from .preprocess import (
    PREPROCESS_PRESETS,
    Preprocess,
    nearest_loss_preprocess_batch,
    preprocess_batch,
    satlas_preprocess_batch,
)
from .resolve import ResolvedClip, resolve_clip
from .spec import ClipSpec, import_open_clip, parse_clip_spec


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
    #: convolutional tower run in channels_last on the CPU (1.2x faster for RN50 on a quiet 2-core machine, same
    #: embeddings to 1e-7; benchmarks/bench_clip_cpu.py); set by :func:`use_channels_last`
    channels_last: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def identity(self) -> str:
        return self.resolved.identity if self.resolved is not None else f"module:{id(self.visual)}"

    def prepare(self, images: torch.Tensor, variant: str = "standard") -> torch.Tensor:
        images = images.to(self.device)
        if variant == "satlas":
            return satlas_preprocess_batch(images, self.preprocess.size)
        if variant == "nearest-loss":
            return nearest_loss_preprocess_batch(images, self.preprocess.size)
        return preprocess_batch(images, self.preprocess)

    def embed(self, images: torch.Tensor, *, variant: str = "standard", precision: str = "fp32",
              batch_size: int | None = None) -> torch.Tensor:
        step = batch_size or images.shape[0] or 1
        outs = []
        for i in range(0, max(images.shape[0], 1), step):  # preprocess per chunk: memory bounded by batch_size
            x = self.prepare(images[i:i + step], variant)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(self.device, precision):
                out = self.visual(x)
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
            tags = import_open_clip().list_pretrained_tags_by_model(spec.model or "")
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
def quiet_open_clip() -> Iterator[None]:
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
    oc = import_open_clip()
    what = f"clipscore:{resolved.spec.text}"
    try:
        with quiet_open_clip():
            model = oc.create_model(resolved.arch, pretrained=None, load_weights=False, pretrained_text=False,
                                    force_quick_gelu=resolved.quick_gelu and resolved.model_cfg is None)
    except Exception as exc:
        raise SRMetricsError(f"{what}: cannot build open_clip model {resolved.arch}: {_first_line(exc)}") from None
    ckpt = str(resolved.checkpoint)
    if not ckpt.endswith((".safetensors", ".npz")):
        # open_clip reads pickles with weights_only=True, but falls back to a plain torch.load on a TypeError
        # (unsafe before torch 2.6) and older open_clip has no weights_only: check the file ourselves first
        safe_torch_load(ckpt, what=what, mmap=True)
    try:
        result = oc.load_checkpoint(model, ckpt, strict=resolved.strict, weights_only=True)
    except Exception as exc:
        raise SRMetricsError(f"{what}: weights {resolved.checkpoint} do not fit architecture "
                             f"{resolved.spec.model or resolved.arch}: {_first_line(exc)}") from None
    missing = [k for k in getattr(result, "missing_keys", []) if k.startswith("visual.")]
    if missing:  # non-strict loading (GeoRSCLIP) may skip text keys, never the image tower's
        raise SRMetricsError(f"{what}: weights {resolved.checkpoint} lack {len(missing)} image-tower tensors of "
                             f"{resolved.spec.model or resolved.arch} (e.g. {missing[0]}): not a checkpoint of it")
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
                                                        import_open_clip().get_model_config(resolved.arch) or {}
                                                        ).get("vision_cfg", {}).get("image_size", 224)
        pp, source = _preprocess_for(resolved, size, preprocess)
        resolved.preprocess_source = source
        embed_dim = int(getattr(model, "embed_dim", 0) or (resolved.model_cfg or {}).get("embed_dim", 0))
        del model  # keep only the image tower (the text tower of bigG alone is ~700M parameters)
        clip = use_channels_last(ClipModel(visual, pp, dev, resolved, name=spec.label, embed_dim=embed_dim))
        _MODELS[key] = clip
        return clip


def use_channels_last(clip: ClipModel) -> ClipModel:
    """On the CPU, run a convolutional image tower (open_clip's ModifiedResNet: the RN50-style CLIPs) in
    channels_last memory format: oneDNN's convolutions run 1.2x faster so (measured on RN50), with the same
    embeddings up to float rounding (6e-8 in cosine). Transformers (ViT) are left as they are."""
    if clip.device.type == "cpu" and type(clip.visual).__name__ == "ModifiedResNet":
        clip.visual = clip.visual.to(memory_format=torch.channels_last)
        clip.channels_last = True
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
