"""clipscore-sr: evaluate super-resolution for remote sensing with metrics that agree with people.

The public API is small on purpose::

    from clipscore_sr import score_folders, score_pairs, get_metric, list_metrics, agreement
    from clipscore_sr import clip_score, ClipLoss          # CLIPScore inside a training loop

Everything else lives in submodules (``clipscore_sr.io``, ``clipscore_sr.metrics``, ``clipscore_sr.baselines``...).
"""

from __future__ import annotations

__version__ = "0.1.0"

# The public names load on first use (PEP 562), so ``import clipscore_sr`` and ``srmetrics --help`` stay fast.
_LAZY = {
    "agreement": ".human.agreement_run",
    "SRMetricsError": ".errors",
    "Metric": ".metrics",
    "get_metric": ".metrics",
    "list_metrics": ".metrics",
    "score_folders": ".pipeline",
    "score_pairs": ".pipeline",
    "ClipLoss": ".metrics.clip.loss",
    "clip_score": ".metrics.clip.loss",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'clipscore_sr' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


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
