"""Metric protocol and the one registry every metric lives in.

Conventions (all metrics):

* inputs ``sr`` and ``gt`` are float tensors ``[B, C, H, W]`` with values in ``[0, 1]``
  (the file's values divided by its data range), on the metric's device;
* the result is a float64 tensor ``[B]``: one value per image, never averaged over the batch;
* ``higher_is_better`` says which direction is better; reductions (mean, CI) happen elsewhere.

Metric ids are lowercase with dashes (``psnr``, ``ssim-gray``). A parameterised metric is written
``name:SPEC`` (``clipscore:clip-rn50``); the output column is the id exactly as given.

Reference kinds (``Metric.reference``): ``"hr"`` (default) compares SR with the high-resolution image of the
same size, ``metric(sr, hr)``; ``"lr"`` compares SR with the low-resolution input, ``metric(sr, lr)``, the scale
being the integer ratio of the sizes; ``"hr+lr"`` needs both, ``metric(sr, hr, lr=lr)``. A metric may write
several columns (:meth:`Metric.columns`); its ``compute`` then returns a dict column -> ``[B]``.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ..errors import UnknownMetricError

# Modules that define metrics; imported lazily the first time the registry is used.
_METRIC_MODULES = ("pixel", "cpsnr", "clip", "lpips", "samscore", "consistency", "correctness", "spectral")

#: What a metric compares the SR output with (``Metric.reference``).
REFERENCE_KINDS = ("hr", "lr", "hr+lr")


@dataclass(frozen=True)
class MetricInfo:
    """What ``srmetrics metrics`` prints for one registry entry."""

    name: str
    higher_is_better: bool
    units: str
    value_range: str
    description: str
    is_differentiable: bool
    needs_weights: bool
    spec_help: str = ""
    reference: str = "hr"
    direction: str = ""  # in words; a multi-column metric gives each column's


@dataclass(frozen=True)
class Column:
    """One output column of a metric: its name, direction and best possible value (None: unbounded);
    ``signed`` columns (a shift component) have no better direction."""

    name: str
    higher_is_better: bool
    best_value: float | None = None
    signed: bool = False


class Metric:
    """Base class: a small stateless-or-frozen callable ``metric(sr, gt) -> [B]``.

    Subclasses set the class attributes and implement :meth:`compute`. Options that change the
    convention (``crop_border``, model spec, ...) are constructor arguments and are recorded by
    :meth:`provenance` so every result file says exactly what was computed.
    """

    name: ClassVar[str]
    higher_is_better: ClassVar[bool]
    units: ClassVar[str] = ""
    value_range: ClassVar[str] = ""
    bounds: ClassVar[tuple[float, float]] = (float("-inf"), float("inf"))  # numeric value_range (CI clipping)
    description: ClassVar[str] = ""
    is_differentiable: ClassVar[bool] = False
    needs_weights: ClassVar[bool] = False
    spec_help: ClassVar[str] = ""  # non-empty when the metric accepts ``name:SPEC``
    uses_mask: ClassVar[bool] = False  # True when a clear-pixel mask changes the result
    uses_image_ids: ClassVar[bool] = False  # True when ``sr_ids``/``gt_ids`` enable caching
    reference: ClassVar[str] = "hr"  # "hr" | "lr" | "hr+lr" (see REFERENCE_KINDS)
    best_value: ClassVar[float | None] = None  # perfect score of a bounded metric (calibrated gap-closed)
    size_agnostic: ClassVar[bool] = False  # True when the reference may have another size than SR
    direction: ClassVar[str] = ""  # per-column directions of a multi-column metric, for ``srmetrics metrics``
    nan_reason: ClassVar[str] = "e.g. no valid/clear pixels"  # why a value can be NaN, for the per-pair error

    def __init__(self, spec: str | None = None, *, device: str | torch.device = "cpu", **options: Any) -> None:
        if spec is not None and not self.spec_help:
            raise UnknownMetricError(f"metric '{self.name}' takes no ':SPEC' part (got '{self.name}:{spec}')")
        self.spec = spec
        self.device = torch.device(device)
        self.options = options

    @property
    def id(self) -> str:
        return self.name if self.spec is None else f"{self.name}:{self.spec}"

    def to(self, device: str | torch.device) -> Metric:
        self.device = torch.device(device)
        return self

    def compute(
        self,
        sr: torch.Tensor,
        gt: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        data_range: torch.Tensor | None = None,
        sr_ids: Sequence[str] | None = None,
        gt_ids: Sequence[str] | None = None,
    ) -> torch.Tensor:
        """Score a batch. ``mask`` ([B,1,H,W] bool, True = clear pixel, aligned with ``gt``) is used by
        metrics with ``uses_mask``; ``data_range`` ([B]) is the files' original range, for conventions
        that depend on it (8-bit rounding); ``*_ids`` identify image content for embedding caches."""
        raise NotImplementedError

    def __call__(self, sr: torch.Tensor, gt: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        if sr.ndim == 3:
            sr, gt = sr.unsqueeze(0), gt.unsqueeze(0)
            if isinstance(kwargs.get("lr"), torch.Tensor) and kwargs["lr"].ndim == 3:
                kwargs["lr"] = kwargs["lr"].unsqueeze(0)
        return self.compute(sr, gt, **kwargs)

    def columns(self) -> list[Column]:
        """Output columns; one (the id) unless a subclass writes several (then ``compute`` returns a dict)."""
        return [Column(self.id, bool(self.higher_is_better), self.best_value)]

    def provenance(self) -> dict[str, Any]:
        """JSON-serialisable description of exactly what this metric computes (for result sidecars)."""
        prov = {"id": self.id, "higher_is_better": self.higher_is_better, "options": _jsonable(self.options)}
        if self.reference != "hr":
            prov["reference"] = self.reference
        return prov

    @classmethod
    def info(cls) -> MetricInfo:
        return MetricInfo(
            name=cls.name,
            higher_is_better=cls.higher_is_better,
            units=cls.units,
            value_range=cls.value_range,
            description=cls.description,
            is_differentiable=cls.is_differentiable,
            needs_weights=cls.needs_weights,
            spec_help=cls.spec_help,
            reference=cls.reference,
            direction=cls.direction or f"{'higher' if cls.higher_is_better else 'lower'} is better",
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r})"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


_REGISTRY: dict[str, type[Metric]] = {}
_loaded = False


def register_metric(cls: type[Metric]) -> type[Metric]:
    """Class decorator adding a metric to the registry under ``cls.name``."""
    if cls.reference not in REFERENCE_KINDS:
        raise ValueError(f"metric '{cls.name}': reference {cls.reference!r} is not one of {REFERENCE_KINDS}")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"metric name '{cls.name}' registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def _ensure_loaded() -> None:
    global _loaded
    if _loaded:
        return
    for module in _METRIC_MODULES:
        importlib.import_module(f"{__package__}.{module}")
    _loaded = True


def split_metric_id(metric_id: str) -> tuple[str, str | None]:
    """``'clipscore:clip-rn50'`` -> ``('clipscore', 'clip-rn50')``; ``'psnr'`` -> ``('psnr', None)``."""
    metric_id = metric_id.strip()
    name, sep, spec = metric_id.partition(":")
    return name.strip().lower(), (spec.strip() if sep else None)


def get_metric_class(name: str) -> type[Metric]:
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownMetricError(
            f"unknown metric '{name}'{hint} (run 'srmetrics metrics' for the list)"
        ) from None


def get_metric(metric_id: str, *, device: str | torch.device = "cpu", **options: Any) -> Metric:
    """Build any metric by id, e.g. ``get_metric('ssim', crop_border=4)`` or ``get_metric('clipscore:clip-rn50')``.

    Unknown ids raise :class:`UnknownMetricError` with the closest valid names.
    """
    name, spec = split_metric_id(metric_id)
    cls = get_metric_class(name)
    return cls(spec, device=device, **options)


def metric_bounds(column: str) -> tuple[float, float]:
    """Declared ``bounds`` of the metric a result column belongs to (unbounded for unknown/derived columns)."""
    try:
        return tuple(get_metric_class(split_metric_id(column)[0]).bounds)
    except UnknownMetricError:
        return (float("-inf"), float("inf"))


def metric_direction(metric: str | Metric) -> bool:
    """``higher_is_better`` of a metric id (looked up in the registry, unknown ids raise) or a metric object."""
    if isinstance(metric, str):
        return bool(get_metric_class(split_metric_id(metric)[0]).higher_is_better)
    return bool(metric.higher_is_better)


def list_metrics() -> list[MetricInfo]:
    """Every registered metric, sorted by name."""
    _ensure_loaded()
    return [_REGISTRY[name].info() for name in sorted(_REGISTRY)]


def parse_metric_list(text: str | Sequence[str]) -> list[str]:
    """Split a comma list of metric ids, keeping ``name:SPEC`` parts that themselves contain commas out."""
    if isinstance(text, str):
        items = [t.strip() for t in text.split(",")]
    else:
        items = [t.strip() for t in text]
    ids = [t for t in items if t]
    if not ids:
        raise UnknownMetricError("no metric ids given")
    seen: set[str] = set()
    unique = []
    for i in ids:
        if i not in seen:
            seen.add(i)
            unique.append(i)
    return unique
