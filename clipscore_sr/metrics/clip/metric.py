"""CLIPScore: cosine similarity between the CLIP image embeddings of the ground truth and of the SR output.

Higher is better; 1.0 means the model sees the two images identically. One value per image.

Which CLIP: ``clipscore:SPEC`` (plain ``clipscore`` = ``clipscore:clipa-v2-bigg``, the paper's recommendation)
-------------------------------------------------------------------------------------------------------------
``ALIAS``                  a name from :data:`CLIP_ALIASES` (``srmetrics models`` lists them), e.g. ``clip-rn50``
``MODEL/PRETRAINED``       any pair in ``open_clip.list_pretrained()``, e.g. ``ViT-B-32/laion2b_s34b_b79k``
``hf-hub:ORG/REPO``        an open_clip-format repository (``open_clip_config.json`` + weights) on the HF hub
``local-dir:PATH``         a folder in the same format (``open_clip_config.json`` with ``model_cfg`` and
                           ``preprocess_cfg``, plus one weights file: ``open_clip_model.safetensors``,
                           ``open_clip_pytorch_model.bin``, ...): your own models
``MODEL@/path/file.pt``    an open_clip architecture + a checkpoint file (``.pt/.pth/.bin/.safetensors/.npz``).
                           The preprocessing is that of MODEL's pretrained tags when they all agree; otherwise
                           name the tag whose preprocessing the file was trained with: ``MODEL/TAG@/path/file.pt``
                           (e.g. ``ViT-B-32/openai@finetuned.pt``), or pass the ``preprocess`` option.
                           Remote-sensing CLIPs have aliases (``remoteclip-*``, ``georsclip-*``) that load their
                           published files the way their official code does (see :mod:`.aliases`).

Preprocessing (never the OpenAI default by accident)
-----------------------------------------------------
Each set of weights comes with its own mean/std, interpolation (bicubic/bilinear), resize mode
(``shortest``: resize the short side then center-crop; ``longest``: resize the long side then pad;
``squash``: resize both sides, ignoring the aspect ratio) and input size. We take them from the alias record,
the open_clip pretrained tag, or the folder's ``preprocess_cfg``; a folder or file without that information is
an error rather than a silent OpenAI default. Preprocessing runs on batched tensors on the metric's device
(torchvision tensor resize with antialiasing, as open_clip's transform does for tensor input), so it matches
``open_clip.image_transform_v2(cfg, is_train=False)`` applied to a float tensor image (1e-5). Fed a PIL image,
open_clip resizes with PIL's uint8 bicubic instead (saturated, rounded to 8 bits, its own edge handling): at the
native input size the two are identical; when an image is resized they differ by up to ~30/255 at sharp edges
(< 0.4/255 on average) and a CLIPScore by up to about 1e-4 (tests/test_clip_aliases.py; 5.3e-5 measured with
real weights). We keep the tensor path: it runs batched on the GPU and is differentiable for ``ClipLoss``.
1-channel inputs are repeated to 3 channels; other channel counts need ``--bands`` (e.g. ``--bands 4,3,2``).

``clipscore-satlas:SPEC``: the authors' pipeline (satlas-super-resolution ``calculate_clipscore``)
------------------------------------------------------------------------------------------------
For reproducing the paper's numbers. Differences from ``clipscore``: channels are flipped RGB->BGR (the
authors read images with OpenCV), values are ``uint8 / 255`` (our [0,1] input, identical for 8-bit files),
the image is resized with **nearest neighbour** straight to the model's input size (aspect ratio ignored, no
antialiasing) and **no mean/std normalisation** is applied. The model, its weights and the cosine are the same.
"""


from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ...devices import resolve_device, resolve_precision
from ...embed_cache import EmbeddingCache
from ...errors import ConfigError, InputMismatchError
from ..base import Metric, register_metric
from .aliases import CLIP_ALIASES, DEFAULT_ALIAS
from .model import ClipModel, load_clip, quiet_open_clip
from .preprocess import to_three_channels
from .resolve import resolve_clip, weights_present
from .spec import ClipSpec, import_open_clip, parse_clip_spec


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
    best_value = 1.0
    size_agnostic = True  # both images are resized to the model input: any reference size works
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
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                       or batch_size < 1):
            raise ConfigError(f"{self.name}: batch_size={batch_size!r}: expected an integer >= 1 (or none)")
        self.batch_size = batch_size
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
            if self.cache_dir is not None:
                _ = self.cache  # an unusable cache folder fails here, before any pair
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
    oc = import_open_clip()
    info: dict[str, Any] = {"alias": spec.alias or "", "model": spec.model, "pretrained": spec.pretrained}
    alias = CLIP_ALIASES.get(spec.alias or "")
    cfg = copy.deepcopy(oc.get_model_config(spec.model)) if spec.model else None
    params = None
    if spec.model:
        try:
            with quiet_open_clip(), torch.device("meta"):
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
