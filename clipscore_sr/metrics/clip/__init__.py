"""CLIPScore, one concern per module.

``preprocess``  batched resize / crop / normalisation (the transform each set of weights was trained with)
``aliases``     the alias registry (``clip-rn50``, ``clipa-v2-bigg``, ...), each alias with its preprocessing
``spec``        parsing ``clipscore:SPEC`` strings
``resolve``     where the weights come from (local files, caches, download), via :mod:`clipscore_sr.weights`
``model``       loading the frozen image tower once per process
``metric``      the registered metrics ``clipscore`` and ``clipscore-satlas``
``loss``        :func:`clip_score` and :class:`ClipLoss`, differentiable, for training loops
"""

from .aliases import CLIP_ALIASES, DEFAULT_ALIAS, ClipAlias
from .loss import ClipLoss, clip_score
from .metric import ClipScore, ClipScoreSatlas, cosine, spec_summary
from .model import ClipModel, clear_model_cache, freeze, load_clip, wrap_open_clip
from .preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    INCEPTION_MEAN,
    INCEPTION_STD,
    OPENAI_MEAN,
    OPENAI_STD,
    PREPROCESS_PRESETS,
    Preprocess,
    preprocess_batch,
    satlas_preprocess_batch,
    to_three_channels,
)
from .resolve import ResolvedClip, resolve_clip, weights_present
from .spec import ClipSpec, parse_clip_spec

__all__ = [
    "CLIP_ALIASES", "DEFAULT_ALIAS", "ClipLoss", "clip_score", "IMAGENET_MEAN", "IMAGENET_STD", "INCEPTION_MEAN", "INCEPTION_STD",
    "OPENAI_MEAN", "OPENAI_STD", "PREPROCESS_PRESETS", "ClipAlias", "ClipModel", "ClipScore", "ClipScoreSatlas",
    "ClipSpec", "Preprocess", "ResolvedClip", "clear_model_cache", "cosine", "freeze", "load_clip",
    "parse_clip_spec", "preprocess_batch", "resolve_clip", "satlas_preprocess_batch", "spec_summary",
    "to_three_channels", "weights_present", "wrap_open_clip",
]
