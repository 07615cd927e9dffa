"""clipscore-sr: evaluate super-resolution for remote sensing with metrics that agree with people.

Public API (small on purpose)::

    from clipscore_sr import get_metric, list_metrics, score_folders
"""

from __future__ import annotations

from .metrics import Metric, get_metric, list_metrics
from .training import ClipLoss, clip_score  # noqa: F401  (public API: clip_score, ClipLoss)

__version__ = "0.1.0"

__all__ = ["Metric", "__version__", "get_metric", "list_metrics"]
