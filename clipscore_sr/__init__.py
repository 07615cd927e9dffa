"""clipscore-sr: evaluate super-resolution for remote sensing with metrics that agree with people.

The public API is small on purpose::

    from clipscore_sr import score_folders, score_pairs, get_metric, list_metrics, agreement
    from clipscore_sr import clip_score, ClipLoss          # CLIPScore inside a training loop

Everything else lives in submodules (``clipscore_sr.io``, ``clipscore_sr.metrics``, ``clipscore_sr.baselines``...).
"""

from __future__ import annotations

__version__ = "0.1.0"

from .agreement import agreement
from .errors import SRMetricsError
from .metrics import Metric, get_metric, list_metrics
from .pipeline import score_folders, score_pairs
from .training import ClipLoss, clip_score

__all__ = [
    "ClipLoss",
    "Metric",
    "SRMetricsError",
    "__version__",
    "agreement",
    "clip_score",
    "get_metric",
    "list_metrics",
    "score_folders",
    "score_pairs",
]
