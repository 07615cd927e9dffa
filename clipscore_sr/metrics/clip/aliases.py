"""The CLIP alias registry (open_clip ``pretrained.py`` style: per-family helpers carry the preprocessing)."""

from __future__ import annotations

from dataclasses import dataclass

from .preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    INCEPTION_MEAN,
    INCEPTION_STD,
    OPENAI_MEAN,
    OPENAI_STD,
    Preprocess,
)

DEFAULT_ALIAS = "clipa-v2-bigg"


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
