"""The CLIP alias registry: a name -> open_clip architecture + weights, the preprocessing derived from open_clip.

An alias records only what open_clip cannot tell: its name, family, description and, for weights open_clip
has no pretrained tag for (the remote-sensing CLIPs), where the file is on the Hugging Face hub and how the
official code loads it. Mean/std, interpolation, resize mode, input size and QuickGELU are read from
``open_clip.get_pretrained_cfg(model, tag)`` and ``open_clip.get_model_config(model)`` on first use (never at
import, so ``srmetrics --help``/``metrics`` stay fast).

Remote-sensing CLIPs (preprocessing from each project's official loading code)
-----------------------------------------------------------------------------
* **RemoteCLIP** (``chendelong/RemoteCLIP``, ``RemoteCLIP-{RN50,ViT-B-32,ViT-L-14}.pt``): the official code
  builds ``open_clip.create_model_and_transforms(NAME)`` with no pretrained tag and calls
  ``model.load_state_dict(torch.load(file))``: the architecture as open_clip configures it (no QuickGELU
  forced) and open_clip's default eval transform for that architecture, i.e. OpenAI mean/std, bicubic,
  shortest side + center crop at the config's image size (224). We derive exactly that from open_clip's
  ``PreprocessCfg`` defaults and the model config; the file is a plain state dict, loaded strictly.
* **GeoRSCLIP** (``Zilun/GeoRSCLIP``, ``ckpt/RS5M_ViT-{B-32,L-14,L-14-336,H-14}.pt``): the official code
  builds ``create_model_and_transforms("ViT-B/32", pretrained="openai")`` (and the matching architecture),
  then ``load_state_dict(checkpoint, strict=False)``, and preprocesses like OpenAI (bicubic resize of the
  short side, center crop, OpenAI mean/std; 336 px for ViT-L-14-336). We derive that from the ``openai`` tag
  of each architecture (which also sets QuickGELU). ViT-H-14 has no OpenAI weights: GeoRSCLIP fine-tuned it
  from OpenCLIP LAION-2B, so its tag is ``laion2b_s32b_b79k`` (same transform, no QuickGELU). Loading is
  non-strict like the official code, but every image-tower key must be in the file (we never start from the
  OpenAI weights, which would otherwise fill gaps silently).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from ...weights import hub_file_parts
from .preprocess import Preprocess

DEFAULT_ALIAS = "clipa-v2-bigg"

#: the preprocessing keys an alias derives from open_clip
PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")


@dataclass(frozen=True)
class ClipAlias:
    """A named CLIP: open_clip ``model`` (+ ``pretrained`` tag whose preprocessing the weights use).

    ``hf_file`` (``ORG/REPO/path/in/repo``) names weights outside open_clip's registry (loaded onto the bare
    architecture, ``strict`` as the official code does); ``local`` holds preprocessing values open_clip does
    not know for these weights (empty for every alias today). Everything else is derived from open_clip.
    """

    name: str
    model: str
    pretrained: str | None
    family: str
    description: str
    hf_file: str = ""
    strict: bool = True
    remote_sensing: bool = False
    local: tuple[tuple[str, Any], ...] = ()

    @property
    def hf_repo(self) -> str:
        return hub_file_parts(self.hf_file)[0]

    @property
    def hf_filename(self) -> str:
        return hub_file_parts(self.hf_file)[1]

    def preprocess_cfg(self) -> dict[str, Any]:
        """mean/std/interpolation/resize_mode from open_clip (tag, else the architecture's default)."""
        return {**_derived(self.model, self.pretrained)[0], **dict(self.local)}

    @property
    def preprocess_source(self) -> str:
        if self.pretrained:
            return f"open_clip pretrained tag {self.model}/{self.pretrained}"
        return f"open_clip's default transform for {self.model} (as {self.family}'s official loading code)"

    @property
    def quick_gelu(self) -> bool:
        return _derived(self.model, self.pretrained)[1]

    @property
    def image_size(self) -> int:
        return _derived(self.model, self.pretrained)[2]

    @property
    def mean(self) -> tuple[float, float, float]:
        return tuple(self.preprocess_cfg()["mean"])  # type: ignore[return-value]

    @property
    def std(self) -> tuple[float, float, float]:
        return tuple(self.preprocess_cfg()["std"])  # type: ignore[return-value]

    @property
    def interpolation(self) -> str:
        return self.preprocess_cfg()["interpolation"]

    @property
    def resize_mode(self) -> str:
        return self.preprocess_cfg()["resize_mode"]

    @property
    def preprocess(self) -> Preprocess:
        return Preprocess.from_config(self.preprocess_cfg(), self.image_size)


@functools.cache
def _derived(model: str, tag: str | None) -> tuple[dict[str, Any], bool, int]:
    """(preprocess dict, quick_gelu, image size) as open_clip defines them for ``model``/``tag``."""
    import open_clip  # lazily: only when an alias's preprocessing is asked for
    from open_clip.transform import PreprocessCfg

    mcfg = open_clip.get_model_config(model) or {}
    size = mcfg.get("vision_cfg", {}).get("image_size", 224)
    size = int(size[0] if isinstance(size, (list, tuple)) else size)
    if tag:
        pcfg = open_clip.get_pretrained_cfg(model, tag)
        if not pcfg:
            raise KeyError(f"open_clip has no pretrained tag {model}/{tag}")
        qg = bool(pcfg.get("quick_gelu", False))
    else:  # what create_model(model) attaches to a built-in architecture: the PreprocessCfg defaults
        pcfg = dict(PreprocessCfg().__dict__)
        qg = bool(mcfg.get("quick_gelu", False))
    defaults = PreprocessCfg().__dict__
    prep = {k: tuple(pcfg[k]) if k in ("mean", "std") else pcfg[k] for k in PREPROCESS_KEYS if k in pcfg}
    prep = {k: prep.get(k, defaults[k]) for k in PREPROCESS_KEYS}
    return prep, qg, size


def _a(name: str, model: str, tag: str | None, family: str, desc: str, **kw: Any) -> ClipAlias:
    return ClipAlias(name, model, tag, family, desc, **kw)


def _remoteclip(name: str, model: str, desc: str) -> ClipAlias:
    return ClipAlias(name, model, None, "RemoteCLIP", desc, hf_file=f"chendelong/RemoteCLIP/RemoteCLIP-{model}.pt",
                     strict=True, remote_sensing=True)


def _georsclip(name: str, model: str, tag: str, desc: str) -> ClipAlias:
    return ClipAlias(name, model, tag, "GeoRSCLIP", desc, hf_file=f"Zilun/GeoRSCLIP/ckpt/RS5M_{model}.pt",
                     strict=False, remote_sensing=True)


CLIP_ALIASES: dict[str, ClipAlias] = {a.name: a for a in [
    _a("clipa-v2-bigg", "ViT-bigG-14-CLIPA-336", "datacomp1b", "CLIPA-v2",
       "CLIPA-v2 ViT-bigG/14 @336, DataComp-1B: the paper's recommended metric (default)"),
    _a("clipa-v2-h", "ViT-H-14-CLIPA-336", "datacomp1b", "CLIPA-v2", "CLIPA-v2 ViT-H/14 @336, DataComp-1B"),
    _a("clipa-v2-l", "ViT-L-14-CLIPA-336", "datacomp1b", "CLIPA-v2", "CLIPA-v2 ViT-L/14 @336, DataComp-1B"),
    _a("clip-rn50", "RN50", "openai", "OpenAI CLIP", "OpenAI CLIP ResNet-50 (the paper's metric-as-loss model)"),
    _a("clip-vitb32", "ViT-B-32", "openai", "OpenAI CLIP", "OpenAI CLIP ViT-B/32"),
    _a("clip-vitb16", "ViT-B-16", "openai", "OpenAI CLIP", "OpenAI CLIP ViT-B/16"),
    _a("clip-vitl14", "ViT-L-14", "openai", "OpenAI CLIP", "OpenAI CLIP ViT-L/14"),
    _a("clip-vitl14-336", "ViT-L-14-336", "openai", "OpenAI CLIP", "OpenAI CLIP ViT-L/14 @336"),
    _a("siglip-so400m", "ViT-SO400M-14-SigLIP-384", "webli", "SigLIP", "SigLIP SO400M/14 @384, WebLI"),
    _a("metaclip-b16", "ViT-B-16-quickgelu", "metaclip_fullcc", "MetaCLIP", "MetaCLIP ViT-B/16, 2.5B pairs"),
    _a("metaclip-l14", "ViT-L-14-quickgelu", "metaclip_fullcc", "MetaCLIP", "MetaCLIP ViT-L/14, 2.5B pairs"),
    _a("metaclip-h14", "ViT-H-14-quickgelu", "metaclip_fullcc", "MetaCLIP", "MetaCLIP ViT-H/14, 2.5B pairs"),
    _a("eva02-b16", "EVA02-B-16", "merged2b_s8b_b131k", "EVA-CLIP", "EVA02-CLIP B/16, Merged-2B"),
    _a("eva02-l14", "EVA02-L-14", "merged2b_s4b_b131k", "EVA-CLIP", "EVA02-CLIP L/14, Merged-2B"),
    _a("eva02-l14-336", "EVA02-L-14-336", "merged2b_s6b_b61k", "EVA-CLIP", "EVA02-CLIP L/14 @336, Merged-2B"),
    _a("openclip-vith14", "ViT-H-14", "laion2b_s32b_b79k", "OpenCLIP", "OpenCLIP ViT-H/14, LAION-2B"),
    _remoteclip("remoteclip-rn50", "RN50", "RemoteCLIP ResNet-50: remote-sensing CLIP (Liu et al. 2024)"),
    _remoteclip("remoteclip-vit-b-32", "ViT-B-32", "RemoteCLIP ViT-B/32: remote-sensing CLIP (Liu et al. 2024)"),
    _remoteclip("remoteclip-vit-l-14", "ViT-L-14", "RemoteCLIP ViT-L/14: remote-sensing CLIP (Liu et al. 2024)"),
    _georsclip("georsclip-vit-b-32", "ViT-B-32", "openai", "GeoRSCLIP ViT-B/32, RS5M: remote-sensing CLIP"),
    _georsclip("georsclip-vit-l-14", "ViT-L-14", "openai", "GeoRSCLIP ViT-L/14, RS5M: remote-sensing CLIP"),
    _georsclip("georsclip-vit-l-14-336", "ViT-L-14-336", "openai",
               "GeoRSCLIP ViT-L/14 @336, RS5M: remote-sensing CLIP"),
    _georsclip("georsclip-vit-h-14", "ViT-H-14", "laion2b_s32b_b79k",
               "GeoRSCLIP ViT-H/14, RS5M (from OpenCLIP LAION-2B): remote-sensing CLIP"),
]}


#: the static catalog (``clipscore_sr/data/clip_aliases.json``): what ``srmetrics models`` lists without importing
#: torch or open_clip. It is derived from open_clip by :func:`catalog` (a test checks it still equals that);
#: regenerate with ``python -m clipscore_sr.metrics.clip.aliases``.
CATALOG_FILE = "clip_aliases.json"


def catalog() -> list[dict[str, Any]]:
    """One JSON-ready row per alias: registry fields plus what open_clip derives (input size, preprocessing)
    and where its weights are published (the tag's ``hf_hub``/``url``)."""
    import open_clip

    rows = []
    for name, a in CLIP_ALIASES.items():
        pcfg = open_clip.get_pretrained_cfg(a.model, a.pretrained) if a.pretrained and not a.hf_file else {}
        rows.append({"alias": name, "model": a.model, "pretrained": a.pretrained, "family": a.family,
                     "description": a.description, "hf_file": a.hf_file, "remote_sensing": a.remote_sensing,
                     "default": name == DEFAULT_ALIAS, "input_size": a.image_size,
                     "preprocess": f"{a.interpolation}/{a.resize_mode}", "hf_hub": pcfg.get("hf_hub", ""),
                     "url": pcfg.get("url", "")})
    return rows


if __name__ == "__main__":
    import json
    from pathlib import Path

    target = Path(__file__).resolve().parents[2] / "data" / CATALOG_FILE
    target.write_text(json.dumps(catalog(), indent=1) + "\n")
    print(f"wrote {target}")
