"""All metrics, reachable through one registry: :func:`get_metric`, :func:`list_metrics`."""

from .base import Metric, MetricInfo, get_metric, get_metric_class, list_metrics, register_metric

__all__ = ["Metric", "MetricInfo", "get_metric", "get_metric_class", "list_metrics", "register_metric"]
