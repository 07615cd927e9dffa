"""The scoring loop: decode in worker threads, group same-size images into batches, move each batch to the
device once, run every metric, and hand rows to an incremental, atomic writer.

One bad pair (unreadable file, size mismatch, NaN) never stops a run: its row gets an ``error`` and the rest
are scored. Under ``torchrun`` the pairs are sharded across ranks and rank 0 writes the merged result.
"""

from __future__ import annotations

import inspect
import math
import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import io
from .devices import resolve_device, resolve_precision
from .errors import ConfigError, InputMismatchError, SRMetricsError
from .metrics.base import Metric, get_metric, get_metric_class, parse_metric_list, split_metric_id
from .results import (
    ROW_INPUTS,
    OutputLock,
    ResultWriter,
    load_previous,
    read_journal_header,
    safe_text,
    summarize,
)


@dataclass
class DecodedPair:
    """One decoded pair, or the error that prevented decoding it."""

    pair: io.Pair
    gt: np.ndarray | None = None
    sr: np.ndarray | None = None
    mask: np.ndarray | None = None
    lr: np.ndarray | None = None
    data_range: float = 1.0
    gt_id: str = ""
    sr_id: str = ""
    error: str = ""
    #: role ('gt', 'sr', 'lr') -> (storage dtype, data range used, largest stored value) of each decoded file
    seen: dict[str, tuple[str, float, float]] = field(default_factory=dict)

    def shape_key(self) -> tuple:
        return (None if self.gt is None else self.gt.shape, self.sr.shape, self.mask is not None,
                None if self.lr is None else self.lr.shape)


@dataclass
class ScoreRun:
    """What :func:`score_pairs` returns besides the table (available as ``df.attrs['run']``)."""

    metric_ids: list[str]
    n_pairs: int
    n_scored: int = 0
    n_skipped: int = 0
    n_failed: int = 0
    provenance: list[dict[str, Any]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)  # value columns (metric ids, extra and baseline columns)
    directions: dict[str, bool] = field(default_factory=dict)  # column -> higher_is_better
    #: what ``--resume`` kept, rescored and dropped, and why ('' without --resume)
    resume_note: str = ""
    #: per input role: dtypes, data ranges used, largest stored value (see :class:`InputRanges`)
    inputs_range: dict[str, Any] = field(default_factory=dict)
    #: the data-range warning of this run ('' when none)
    range_warning: str = ""


def _decode_lr(pair: io.Pair, sr: io.LoadedImage, bands: Sequence[int] | None, data_range: float | None,
               lr_frame: int | str | None, seen: dict | None = None) -> np.ndarray:
    """The pair's LR input ``[C,h,w]`` (frame chosen from a strip), checked against SR: same bands and data
    range, an integer scale."""
    from .metrics.consistency import integer_scale

    lr = io.read_image(pair.lr, bands=bands, data_range=data_range)
    if seen is not None:
        seen["lr"] = (lr.dtype, lr.data_range, lr.max_value)
    data = io.select_lr_frame(lr.data, lr_frame, pair.lr)
    if data.shape[0] != sr.data.shape[0]:
        raise InputMismatchError(f"lr {pair.lr} has {data.shape[0]} band(s) but sr {pair.sr} has {sr.data.shape[0]}")
    if lr.data_range != sr.data_range:
        raise InputMismatchError(
            f"data range mismatch: lr {pair.lr} ({lr.dtype}, range {lr.data_range:g}) vs sr {pair.sr} "
            f"({sr.dtype}, range {sr.data_range:g}); pass --data-range")
    if not np.isfinite(data).all():
        raise InputMismatchError(f"lr {pair.lr} contains NaN or inf values")
    integer_scale(sr.data.shape, data.shape, what=f"lr {pair.lr}")
    return data


def _decode(pair: io.Pair, bands: Sequence[int] | None, data_range: float | None, want_ids: bool,
            lr_frame: int | str | None = None, mixed_sizes: bool = False, lr_from_gt: bool = False) -> DecodedPair:
    out = DecodedPair(pair)
    try:
        sr = io.read_image(pair.sr, bands=bands, data_range=data_range)
        out.seen["sr"] = (sr.dtype, sr.data_range, sr.max_value)
        if pair.lr:
            out.lr = _decode_lr(pair, sr, bands, data_range, lr_frame, out.seen)
        if not pair.gt:  # no HR: LR-reference scoring only
            out.sr, out.data_range = sr.data, sr.data_range
            if want_ids:
                out.sr_id = io.file_digest(pair.sr, f"bands={bands};range={out.data_range:g}")
            return out
        gt = io.read_image(pair.gt, bands=bands, data_range=data_range)
        out.seen["gt"] = (gt.dtype, gt.data_range, gt.max_value)
        if lr_from_gt and not pair.lr and _is_lr_of(gt.data, sr.data):  # real-world SR studies: gt = LR input
            lr_pair = io.Pair(pair.key, "", pair.sr, lr=pair.gt)
            out.lr = _decode_lr(lr_pair, sr, bands, data_range, None)
            out.seen["lr"] = out.seen.pop("gt")
            out.sr, out.data_range = sr.data, sr.data_range
            if want_ids:
                out.sr_id = io.file_digest(pair.sr, f"bands={bands};range={out.data_range:g}")
            return out
        if gt.data.shape != sr.data.shape and not (mixed_sizes and gt.data.shape[0] == sr.data.shape[0]):
            (gh, gw), (sh, sw) = gt.data.shape[-2:], sr.data.shape[-2:]
            k = gh // sh if sh and gh % sh == 0 else 0
            hint = (f"; the SR is exactly 1/{k} of the GT: was the LR input given instead of the SR output?"
                    if k > 1 and sw * k == gw else "")
            raise InputMismatchError(
                f"size mismatch: gt {pair.gt} is {_shape(gt.data)} but sr {pair.sr} is {_shape(sr.data)}{hint}")
        if gt.data_range != sr.data_range:
            raise InputMismatchError(
                f"data range mismatch: gt {pair.gt} ({gt.dtype}, range {gt.data_range:g}) vs sr {pair.sr} "
                f"({sr.dtype}, range {sr.data_range:g}); pass --data-range")
        for name, img in (("gt", gt), ("sr", sr)):
            if not np.isfinite(img.data).all():
                raise InputMismatchError(f"{name} {img.path} contains NaN or inf values")
            bad = io.out_of_range(img.data)
            if bad is not None:
                raise InputMismatchError(
                    f"{name} {img.path} has values {bad[0] * img.data_range:g}..{bad[1] * img.data_range:g}, "
                    f"outside [0, {img.data_range:g}] (the data range; pass the right --data-range)")
        out.gt, out.sr, out.data_range = gt.data, sr.data, gt.data_range
        if pair.mask is not None:
            mask = io.read_mask(pair.mask)
            if mask.shape != gt.data.shape[1:] and not mixed_sizes:
                raise InputMismatchError(f"mask {pair.mask} is {mask.shape[1]}x{mask.shape[0]} but gt is "
                                         f"{gt.data.shape[2]}x{gt.data.shape[1]}")
            out.mask = mask
        if want_ids:
            extra = f"bands={bands};range={out.data_range:g}"
            out.gt_id, out.sr_id = io.file_digest(pair.gt, extra), io.file_digest(pair.sr, extra)
    except SRMetricsError as exc:
        out.error = str(exc)
    except Exception as exc:  # keep the run going; report the pair
        out.error = f"{type(exc).__name__}: {exc}"
    return out


def _is_lr_of(gt: np.ndarray, sr: np.ndarray) -> bool:
    """True when ``gt`` is smaller than ``sr`` by one integer scale > 1 (same bands)."""
    (c, h, w), (sc, sh, sw) = gt.shape, sr.shape
    return c == sc and h < sh and sh % h == 0 and sw % w == 0 and sh // h == sw // w


def _shape(chw: np.ndarray) -> str:
    c, h, w = chw.shape
    return f"{w}x{h}x{c}"


def _decoded_stream(pairs: Sequence[io.Pair], workers: int, prefetch: int, **kw: Any) -> Iterator[DecodedPair]:
    """Decode pairs in a thread pool, at most ``prefetch`` ahead of the consumer (memory stays flat)."""
    if workers <= 0:
        for p in pairs:
            yield _decode(p, **kw)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        pending: list[Future] = []
        it = iter(pairs)
        for p in it:
            pending.append(pool.submit(_decode, p, **kw))
            if len(pending) >= prefetch:
                break
        while pending:
            fut = pending.pop(0)
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(_decode, nxt, **kw))
            yield fut.result()


def _batches(stream: Iterator[DecodedPair], batch_size: int, max_buffered: int
             ) -> Iterator[tuple[list[DecodedPair], list[DecodedPair]]]:
    """Group decoded pairs of the same shape; yields (batch, failed-to-decode) lists."""
    buckets: OrderedDict[tuple, list[DecodedPair]] = OrderedDict()
    buffered = 0
    for item in stream:
        if item.error:
            yield [], [item]
            continue
        key = item.shape_key()
        bucket = buckets.setdefault(key, [])
        bucket.append(item)
        buffered += 1
        if len(bucket) >= batch_size:
            buffered -= len(bucket)
            yield buckets.pop(key), []
        elif buffered > max_buffered:  # many different sizes: flush the fullest bucket
            key = max(buckets, key=lambda k: len(buckets[k]))
            buffered -= len(buckets[key])
            yield buckets.pop(key), []
    for bucket in buckets.values():
        yield bucket, []


def build_metrics(metric_ids: Sequence[str], *, device: torch.device, precision: str = "fp32",
                  metric_options: dict[str, Any] | None = None) -> list[Metric]:
    """Instantiate metrics by id, passing each only the shared options its constructor names; keys
    ``"TARGET.KEY"`` (``--metric-option``) go to the metrics whose id or name is TARGET (an id's own options
    win over its name's), must be one of their options, and win over the shared ones."""
    metric_options = dict(metric_options or {})
    metric_options.setdefault("precision", precision)
    own = {k: v for k, v in metric_options.items() if "." in k}
    shared = {k: v for k, v in metric_options.items() if "." not in k}
    targets = {split_metric_id(mid)[0] for mid in metric_ids} | {mid.strip().lower() for mid in metric_ids}
    for key in own:
        target = key.rsplit(".", 1)[0]
        if target not in targets:
            raise ConfigError(f"--metric-option {key}: no metric '{target}' among the metrics ({', '.join(metric_ids)})")
    metrics = []
    for mid in metric_ids:
        name = split_metric_id(mid)[0]
        cls = get_metric_class(name)
        params = {k: p for k, p in inspect.signature(cls.__init__).parameters.items()
                  if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                  and k not in ("self", "spec", "device")}
        opts = {k: v for k, v in shared.items() if k in params}
        given: dict[str, str] = {}
        for exact in (False, True):  # name first, then the id's own (which win)
            for key, value in own.items():
                target, option = key.rsplit(".", 1)
                if target != (mid.strip().lower() if exact else name):
                    continue
                if option not in params:
                    raise ConfigError(f"--metric-option {key}: {name} has no option '{option}' (its options: "
                                      f"{', '.join(sorted(params)) or 'none'})")
                opts[option] = value
                given[option] = key
        try:
            metric = get_metric(mid, device=device, **opts)
        except (TypeError, ValueError) as exc:  # a constructor choking on a --metric-option value
            if not given:
                raise
            raise ConfigError(f"{mid}: bad value in --metric-option {', '.join(sorted(given.values()))}: "
                              f"{str(exc).splitlines()[0]}") from None
        metrics.append(metric)
    return metrics


def prepare_metrics(metrics: Sequence[Metric]) -> None:
    """Load weights before any decoding so missing weights fail fast."""
    for m in metrics:
        loader = getattr(m, "load", None)
        if callable(loader):
            loader()


def _accepts_lr(metric: Metric) -> bool:
    params = inspect.signature(metric.compute).parameters
    return "lr" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _call_metric(metric: Metric, tensors: dict[str, Any]) -> Any:
    """Run a metric with the reference it declares: ``hr`` -> (sr, gt), ``lr`` -> (sr, lr), ``hr+lr`` ->
    (sr, gt, lr=lr). Size-agnostic metrics compare with LR where a pair has no HR and ``mixed_sizes`` is on."""
    kind = getattr(metric, "reference", "hr")
    common = dict(mask=tensors["mask"], data_range=tensors["range"], sr_ids=tensors["sr_ids"],
                  gt_ids=tensors["gt_ids"])
    lr, gt = tensors.get("lr"), tensors["gt"]
    if kind == "lr" or (gt is None and lr is not None and tensors.get("mixed_sizes")
                        and getattr(metric, "size_agnostic", False)):
        if lr is None:
            raise InputMismatchError("needs the LR input, and this pair has none (no --lr LR_DIR, or no file of this "
                                     "key in it): reference kind 'lr'")
        common["gt_ids"] = None
        return metric.compute(tensors["sr"], lr, **common)
    if gt is None:
        raise InputMismatchError("needs an HR reference of the SR's size; this pair has only an LR reference (use "
                                 "metrics with reference 'lr', see 'srmetrics metrics')")
    if kind == "hr+lr" and lr is None:
        raise InputMismatchError("needs the LR input too, and this pair has none (no --lr LR_DIR, or no file of "
                                 "this key in it): reference kind 'hr+lr'")
    if lr is not None and _accepts_lr(metric):
        common["lr"] = lr
    return metric.compute(tensors["sr"], gt, **common)


def _metric_batch(metric: Metric, items: list[DecodedPair], tensors: dict[str, Any]
                  ) -> tuple[dict[str, list[float]], list[str]]:
    """Run one metric on a batch (values per output column); on failure retry pair by pair so one bad pair
    can't sink the batch."""
    names = [c.name for c in metric.columns()]
    try:
        with torch.inference_mode():  # metrics apply their own precision (autocast) where they support it
            result = _call_metric(metric, tensors)
        if not isinstance(result, dict):
            result = {names[0]: result}
        values = {c: result[c].detach().double().cpu().tolist() for c in names}
        if any(len(v) != len(items) for v in values.values()):
            raise SRMetricsError(f"metric {metric.id} returned {len(values[names[0]])} values for {len(items)} images")
        # NaN means "undefined for this pair" (e.g. cpsnr with no clear pixel in any window): report it
        errors = [f"{metric.id}: undefined (NaN) for this pair, {metric.nan_reason}"
                  if any(math.isnan(values[c][i]) for c in names) else "" for i in range(len(items))]
        return values, errors
    except Exception as batch_exc:
        if len(items) == 1:
            msg = str(batch_exc) if isinstance(batch_exc, SRMetricsError) else f"{type(batch_exc).__name__}: {batch_exc}"
            return {c: [math.nan] for c in names}, [f"{metric.id}: {msg}"]
    values, errors = {c: [] for c in names}, []
    for i, item in enumerate(items):
        single = {k: (v[i:i + 1] if isinstance(v, (torch.Tensor, list)) else v) for k, v in tensors.items()}
        v, e = _metric_batch(metric, [item], single)
        for c in names:
            values[c] += v[c]
        errors += e
    return values, errors


def _score_batch(items: list[DecodedPair], metrics: Sequence[Metric], device: torch.device,
                 extras: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    extras = extras or {}
    non_blocking = device.type == "cuda"
    tensors: dict[str, Any] = {
        "gt": (torch.from_numpy(np.stack([d.gt for d in items])).to(device, non_blocking=non_blocking)
               if items[0].gt is not None else None),
        "lr": (torch.from_numpy(np.stack([d.lr for d in items])).to(device, non_blocking=non_blocking)
               if items[0].lr is not None else None),
        "mixed_sizes": bool(extras.get("mixed_sizes")),
        "sr": torch.from_numpy(np.stack([d.sr for d in items])).to(device, non_blocking=non_blocking),
        "mask": (torch.from_numpy(np.stack([d.mask for d in items]))[:, None].to(device)
                 if items[0].mask is not None else None),
        "range": torch.tensor([d.data_range for d in items], dtype=torch.float64, device=device),
        "sr_ids": [d.sr_id for d in items] if items[0].sr_id else None,
        "gt_ids": [d.gt_id for d in items] if items[0].gt_id else None,
    }
    rows = [{"key": d.pair.key, "gt": d.pair.gt, "sr": d.pair.sr, "error": ""} for d in items]

    def add(values: dict[str, list[float]], errors: list[str], suffix: str = "") -> None:
        for i, (row, e) in enumerate(zip(rows, errors)):
            for col, v in values.items():
                row[col + suffix] = v[i]
            if e:
                row["error"] = "; ".join(x for x in (row["error"], e) if x)

    for metric in metrics:
        values, errors = _metric_batch(metric, items, tensors)
        add(values, errors)
        if extras.get("maps_dir") and getattr(metric, "last_maps", None) is not None and not any(errors):
            _write_maps(metric, items, extras["maps_dir"], extras)
    if extras.get("baseline"):
        _add_baseline(items, metrics, tensors, rows, add, extras["baseline"])
    return rows


def _write_maps(metric: Metric, items: list[DecodedPair], maps_dir: str | os.PathLike,
                extras: dict[str, Any]) -> None:
    """Correctness maps of the batch just scored: PNG, plus GeoTIFF when the SR (or HR) file is one; and the
    captioned figure (LR | SR | HR | map, fractions in the title) for the first ``extras['maps_figures']`` pairs."""
    from .metrics.correctness import write_class_map

    maps = metric.last_maps
    classes = maps.classes.cpu().numpy()
    sub = Path(maps_dir) / metric.id.replace(":", "-") if getattr(metric, "spec", None) else Path(maps_dir)
    for i, d in enumerate(items):
        geo = next((p for p in (d.pair.sr, d.pair.gt) if p and Path(p).suffix.lower() in (".tif", ".tiff")), None)
        png = write_class_map(sub, d.pair.key, classes[i], patch_size=maps.patch_size, geo_source=geo)[0]
        if extras.get("maps_figures", 0) > 0 and d.lr is not None and d.gt is not None:
            from .figures.correctness_maps import draw_correctness_maps

            extras["maps_figures"] -= 1
            cls = np.repeat(np.repeat(classes[i], maps.patch_size, 0), maps.patch_size, 1)
            fr = tuple(float(f) for f in maps.fractions[i])
            draw_correctness_maps(d.lr, d.sr, d.gt, cls, fr, png.with_name(png.name[:-len(".png")] + "-figure.png"),
                                  title=f"{d.pair.key}: improvement {100 * fr[0]:.1f}%, omission {100 * fr[1]:.1f}%, "
                                        f"hallucination {100 * fr[2]:.1f}% ({metric.id})",
                                  dtype=d.seen.get("gt", ("",))[0])
    metric.last_maps = None


BASELINES = ("bicubic",)


def baseline_columns(metrics: Sequence[Metric], baseline: str) -> tuple[list[str], dict[str, bool]]:
    """Columns added by ``baseline``: ``<col>@bicubic`` (the value of the upsampled LR), ``<col>-gain`` (SR minus
    baseline, signed so that > 0 is better) and, for bounded metrics, ``<col>-gap-closed`` =
    gain / (perfect - baseline): the fraction of the way from the baseline to a perfect score."""
    cols, dirs = [], {}
    for m in metrics:
        for c in m.columns():
            if c.signed:
                continue
            cols.append(f"{c.name}@{baseline}")
            dirs[cols[-1]] = c.higher_is_better
            cols.append(f"{c.name}-gain")
            dirs[cols[-1]] = True
            if c.best_value is not None:
                cols.append(f"{c.name}-gap-closed")
                dirs[cols[-1]] = True
    return cols, dirs


def _add_baseline(items: list[DecodedPair], metrics: Sequence[Metric], tensors: dict[str, Any],
                  rows: list[dict[str, Any]], add: Any, baseline: str) -> None:
    from .metrics.correctness import upsample_lr

    if tensors["lr"] is None:
        for row in rows:
            row["error"] = "; ".join(x for x in (row["error"], f"--baseline {baseline} needs the LR input (--lr)") if x)
        return
    lr = tensors["lr"]
    base = dict(tensors, sr=upsample_lr(lr.double(), tuple(tensors["sr"].shape[-2:]), mode="bicubic").to(lr.dtype),
                sr_ids=None)
    for metric in metrics:
        values, errors = _metric_batch(metric, items, base)
        if hasattr(metric, "last_maps"):
            metric.last_maps = None
        unsigned = [c for c in metric.columns() if not c.signed]
        add({c.name: values[c.name] for c in unsigned}, errors, f"@{baseline}")
        for c in unsigned:
            for row in rows:
                v, b = row[c.name], row[f"{c.name}@{baseline}"]
                gain = (v - b) if c.higher_is_better else (b - v)
                row[f"{c.name}-gain"] = gain if not (math.isinf(v) and math.isinf(b)) else math.nan
                if c.best_value is not None:
                    gap = abs(c.best_value - b)
                    row[f"{c.name}-gap-closed"] = gain / gap if gap > 0 else math.nan


def _dist_info() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment, initialising the process group if needed."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    import torch.distributed as dist

    from .devices import init_distributed

    init_distributed("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))


def score_pairs(
    pairs: Sequence[io.Pair],
    metrics: Sequence[str | Metric] | str = ("psnr", "ssim"),
    *,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    batch_size: int = 16,
    workers: int = 2,
    bands: Sequence[int] | str | None = None,
    data_range: float | None = None,
    device: str | torch.device = "auto",
    precision: str = "fp32",
    metric_options: dict[str, Any] | None = None,
    progress: bool = True,
    snapshot_every: float = 30.0,
    lr_frame: int | str | None = None,
    per_band: bool = False,
    baseline: str | None = None,
    maps_dir: str | os.PathLike | None = None,
    maps_figures: int = 50,
    mixed_sizes: bool = False,
    lr_from_gt: bool = False,
) -> pd.DataFrame:
    """Score GT/SR pairs with every metric; returns one row per pair (``key, gt, sr, <metric ids>, error``).

    ``out`` (``.csv``/``.json``/``.parquet``) is written incrementally and atomically under an exclusive lock
    (``<out>.lock``); ``resume`` skips pairs already scored without error in ``out`` whose inputs (path, size,
    mtime) still match, and refuses an ``out`` scored with other settings (see :func:`run_fingerprint`). Values are per image; see :func:`clipscore_sr.results.summarize`
    for means and confidence intervals. ``df.attrs['run']`` holds a :class:`ScoreRun`.

    LR inputs (``pair.lr``, e.g. from :func:`clipscore_sr.io.attach_lr`) feed the metrics whose ``reference`` is
    ``lr`` or ``hr+lr``; ``lr_frame`` picks a frame (1-based) or the ``"mean"`` of multi-frame LR strips.
    ``per_band`` adds one column per band for psnr/ssim/cpsnr; ``baseline="bicubic"`` adds, per column, the
    value of the bicubic-upsampled LR, the gain over it and (bounded metrics) the fraction of the gap closed;
    ``maps_dir`` receives correctness maps (and, for the first ``maps_figures`` pairs with HR and LR, the captioned
    figure ``<key>.correctness-figure.png``); ``mixed_sizes`` lets size-agnostic metrics (CLIPScore) compare SR
    with a reference of another size (or with the LR input where a pair has no HR); ``lr_from_gt`` uses a GT
    smaller than SR by an integer scale as the pair's LR input (judgement files of real-world SR, no HR).
    """
    if batch_size < 1:
        raise SRMetricsError(f"--batch-size must be >= 1, got {batch_size}")
    if not pairs:
        raise SRMetricsError("no pairs to score")
    data_range = io.check_data_range(data_range)  # NaN, inf, 0 or absurd ranges fail before any work
    rank, world, local_rank = _dist_info()
    writer_out = out if world == 1 else (_rank_out(out, rank) if out is not None else None)
    locks = [OutputLock(p) for p in dict.fromkeys([out if rank == 0 else None, writer_out]) if p is not None]
    for lock in locks:  # before any work: a second run on this output fails at once
        lock.acquire()
    try:
        return _score_pairs_locked(pairs, metrics, out=out, resume=resume, batch_size=batch_size, workers=workers,
                                   bands=bands, data_range=data_range, device=device, precision=precision,
                                   metric_options=metric_options, progress=progress,
                                   snapshot_every=snapshot_every, rank=rank, world=world, local_rank=local_rank,
                                   writer_out=writer_out, lr_frame=lr_frame, per_band=per_band, baseline=baseline,
                                   maps_dir=maps_dir, maps_figures=maps_figures, mixed_sizes=mixed_sizes,
                                   lr_from_gt=lr_from_gt)
    finally:
        for lock in locks:
            lock.release()


def _score_pairs_locked(pairs, metrics, *, out, resume, batch_size, workers, bands, data_range, device, precision,
                        metric_options, progress, snapshot_every, rank, world, local_rank, writer_out, lr_frame,
                        per_band, baseline, maps_dir, maps_figures, mixed_sizes, lr_from_gt):
    dev = resolve_device(device)
    if world > 1 and dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    precision = resolve_precision(precision, dev)
    bands = io.parse_bands(bands) if isinstance(bands, str) else (tuple(bands) if bands else None)

    if isinstance(metrics, str):
        metrics = parse_metric_list(metrics)
    ids = [m for m in metrics if isinstance(m, str)]
    built = build_metrics(ids, device=dev, precision=precision, metric_options=metric_options) if ids else []
    it_built = iter(built)
    metric_objs = [next(it_built) if isinstance(m, str) else m.to(dev) for m in metrics]
    metric_ids = [m.id for m in metric_objs]
    if len(set(metric_ids)) != len(metric_ids):
        raise SRMetricsError(f"metric listed twice: {', '.join(metric_ids)}")
    if per_band:
        metric_objs += _per_band_metrics(metric_objs, pairs[0], bands)
    if baseline is not None and baseline not in BASELINES:
        raise SRMetricsError(f"--baseline {baseline}: unknown baseline (choose from {', '.join(BASELINES)})")
    if baseline is not None and not any(p.lr for p in pairs):
        raise SRMetricsError(f"--baseline {baseline} needs the LR inputs (--lr LR_DIR)")
    lr_frame = io.parse_lr_frame(lr_frame)
    prepare_metrics(metric_objs)
    value_columns = [c.name for m in metric_objs for c in m.columns()]
    directions = {c.name: c.higher_is_better for m in metric_objs for c in m.columns() if not c.signed}
    if baseline is not None:
        extra_cols, extra_dirs = baseline_columns(metric_objs, baseline)
        value_columns += extra_cols
        directions.update(extra_dirs)
    if len(set(value_columns)) != len(value_columns):
        dup = next(c for c in value_columns if value_columns.count(c) > 1)
        raise SRMetricsError(f"two metrics write the column '{dup}'")
    columns = ["key", "gt", "sr", *value_columns, "error"]
    extras = {"baseline": baseline, "maps_dir": maps_dir, "mixed_sizes": mixed_sizes, "maps_figures": maps_figures}

    keys = [p.key for p in pairs]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise SRMetricsError(f"two pairs share the key '{dup}'")

    header = run_fingerprint(metric_objs, bands, data_range, lr_frame=lr_frame, baseline=baseline,
                             mixed_sizes=mixed_sizes, lr_from_gt=lr_from_gt)
    idents = {safe_text(p.key): input_identity(p) for p in pairs}
    previous = None
    run_note = ""
    if resume and out is not None:
        previous, run_note = _resumable_rows(out, columns, _rank_journals(out, world), header, idents)
        done = set(previous["key"])
        todo = [p for p in pairs if safe_text(p.key) not in done]
    else:
        todo = list(pairs)
        if out is not None:
            for jp in [Path(str(out) + ".journal.jsonl"), *_rank_journals(out, world)]:
                if jp.exists():
                    jp.unlink()
    shard = todo[rank::world]

    run = ScoreRun(metric_ids=metric_ids, n_pairs=len(pairs), n_skipped=len(pairs) - len(todo),
                   provenance=[m.provenance() for m in metric_objs], columns=value_columns, directions=directions,
                   resume_note=run_note)
    writer = ResultWriter(writer_out, columns, previous=previous if rank == 0 else None,
                          snapshot_every=snapshot_every, header=header)
    want_ids = any(getattr(m, "uses_image_ids", False) for m in metric_objs)
    stream = _decoded_stream(shard, workers, prefetch=max(2 * batch_size, 4), bands=bands,
                             data_range=data_range, want_ids=want_ids, lr_frame=lr_frame, mixed_sizes=mixed_sizes,
                             lr_from_gt=lr_from_gt)
    from tqdm.auto import tqdm

    bar = tqdm(total=len(shard), desc="scoring", unit="pair", disable=not progress or rank != 0, dynamic_ncols=True)
    ranges = InputRanges(requested=data_range is not None, warn=rank == 0)
    try:
        for batch, failed in _batches(stream, batch_size, max_buffered=4 * batch_size):
            ranges.add([*batch, *failed])
            rows = [{"key": d.pair.key, "gt": d.pair.gt, "sr": d.pair.sr, "error": d.error,
                     **{m: math.nan for m in value_columns}} for d in failed]
            if batch:
                rows += _score_batch(batch, metric_objs, dev, extras)
            for row in rows:
                row[ROW_INPUTS] = idents[safe_text(row["key"])]
            writer.add(rows)
            bar.update(len(rows))
    except BaseException:
        writer.close(final=False)  # journal stays for --resume
        raise
    finally:
        bar.close()

    if world > 1:
        df = _gather(writer, out, rank, world, columns)
    else:
        df = writer.close()
    run.n_failed = int((df["error"] != "").sum())
    run.n_scored = len(df) - run.n_failed
    df.attrs["run"] = run
    run.inputs_range, run.range_warning = ranges.table(), ranges.warning
    if out is not None and rank == 0:
        _write_sidecar(out, run, dict(bands=bands, data_range=ranges.used(data_range), data_range_requested=data_range,
                                      inputs_range=run.inputs_range, device=str(dev), precision=precision,
                                      world_size=world, lr_frame=lr_frame, baseline=baseline,
                                      mixed_sizes=mixed_sizes), header, {k: idents.get(k) for k in df["key"]})
    return df


class InputRanges:
    """Per input role (gt, sr, lr): the storage types, data ranges used and the largest stored value seen.
    Warns once per run (:class:`~clipscore_sr.errors.DataRangeWarning`) when default-ranged uint16 data stay
    far below 65535 (see :func:`clipscore_sr.io.small_range_hint`)."""

    def __init__(self, *, requested: bool, warn: bool = True) -> None:
        self.requested, self.warn = requested, warn
        self.roles: dict[str, dict[str, Any]] = {}
        self.warning = ""

    def add(self, decoded: Sequence[DecodedPair]) -> None:
        import warnings

        for d in decoded:
            for role, (dtype, rng, mx) in d.seen.items():
                r = self.roles.setdefault(role, {"dtype": [], "data_range": [], "max_value": None})
                if dtype not in r["dtype"]:
                    r["dtype"].append(dtype)
                if rng not in r["data_range"]:
                    r["data_range"].append(rng)
                if mx == mx:  # not NaN
                    r["max_value"] = mx if r["max_value"] is None else max(r["max_value"], mx)
        if self.warning or self.requested:
            return
        for role in ("gt", "sr", "lr"):
            r = self.roles.get(role)
            if r and r["max_value"] is not None and len(r["dtype"]) == 1:
                hint = io.small_range_hint(r["dtype"][0], r["data_range"][0], r["max_value"])
                if hint:
                    self.warning = f"{hint} (seen in the {role} images)"
                    if self.warn:
                        from .errors import DataRangeWarning

                        warnings.warn(self.warning, DataRangeWarning, stacklevel=2)
                    return

    def table(self) -> dict[str, dict[str, Any]]:
        """``{role: {"dtype": [...], "data_range": [...], "max_value": float | None}}`` (JSON-ready)."""
        return {k: {"dtype": v["dtype"], "data_range": [float(x) for x in v["data_range"]],
                    "max_value": None if v["max_value"] is None else float(v["max_value"])}
                for k, v in self.roles.items()}

    def used(self, requested: float | None) -> float | None:
        """The one data range every input was divided by (the requested one, else the types' default when all
        agree), or None when they differ or nothing was decoded."""
        if requested is not None:
            return float(requested)
        values = {x for v in self.roles.values() for x in v["data_range"]}
        return float(values.pop()) if len(values) == 1 else None


PER_BAND_METRICS = ("psnr", "ssim", "cpsnr")


def _per_band_metrics(metrics: Sequence[Metric], first: io.Pair, bands: Sequence[int] | None) -> list[Metric]:
    """Per-band copies of the psnr/ssim/cpsnr metrics asked for; band numbers from ``--bands`` or the first SR."""
    from .metrics.spectral import PerBand

    chosen = [m for m in metrics if m.name in PER_BAND_METRICS]
    if not chosen:
        raise SRMetricsError(f"--per-band applies to {', '.join(PER_BAND_METRICS)}; none of them is in --metrics")
    numbers = list(bands) if bands else list(range(1, io.read_image(first.sr).data.shape[0] + 1))
    return [PerBand(m, numbers) for m in chosen]


#: metric options that change how a result is computed, not what it is (ignored when resuming)
_NOT_DEFINING = frozenset({"cache_dir", "batch_size", "device", "workers"})


def run_fingerprint(metrics: Sequence[Metric], bands: Sequence[int] | None, data_range: float | None,
                    **lr_options: Any) -> dict[str, Any]:
    """What defines every result of a run besides its inputs: each metric's provenance (id, model, options
    such as ``crop_border``, precision) without the options in ``_NOT_DEFINING``, the bands and the data range.
    Recorded in the journal header and the sidecar; ``--resume`` refuses an output scored otherwise."""
    import json

    described = []
    for m in metrics:
        prov = dict(m.provenance())
        if isinstance(prov.get("options"), dict):
            prov["options"] = {k: v for k, v in prov["options"].items() if k not in _NOT_DEFINING}
        described.append(prov)
    fp = {"metrics": described, "bands": list(bands) if bands else None,
          "data_range": float(data_range) if data_range is not None else None}
    # LR options (--lr-frame, --baseline, ...) are recorded only when set, so plain runs keep their fingerprint
    fp.update({k: v for k, v in sorted(lr_options.items()) if v not in (None, False)})
    return json.loads(json.dumps(fp, default=str))


def input_identity(pair: io.Pair) -> list[str]:
    """``[gt, sr, mask, lr]`` identities: a short hash of each file's absolute path, size and modification time
    ('' for no mask / no LR). A changed file, or the same key from another folder, gets another identity."""
    import hashlib

    out = []
    for path in (pair.gt, pair.sr, pair.mask, pair.lr):
        if not path:
            out.append("")
            continue
        try:
            st = os.stat(path)
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        text = f"{os.path.abspath(path)}\0{stamp}".encode("utf-8", "surrogateescape")
        out.append(hashlib.sha1(text).hexdigest()[:16])
    return out


def _fingerprint_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    """The first field that differs between two run fingerprints, as 'field: was X, now Y'."""
    for key in sorted({"data_range", "bands"} | (set(old) | set(new)) - {"metrics"}):
        if old.get(key) != new.get(key):
            return f"{key.replace('_', '-')}: was {old.get(key)}, now {new.get(key)}"
    om, nm = old.get("metrics") or [], new.get("metrics") or []
    if [m.get("id") for m in om] != [m.get("id") for m in nm]:
        return (f"metrics: were {','.join(str(m.get('id')) for m in om)}, "
                f"now {','.join(str(m.get('id')) for m in nm)}")
    for a, b in zip(om, nm):
        for field_name in sorted(set(a) | set(b)):
            if a.get(field_name) != b.get(field_name):
                return f"{a.get('id')} {field_name}: was {a.get(field_name)}, now {b.get(field_name)}"
    return "settings differ"


def _resumable_rows(out: str | os.PathLike, columns: list[str], rank_journals: list[Path], header: dict[str, Any],
                    idents: dict[str, list[str]]) -> tuple[pd.DataFrame, str]:
    """Rows of ``out`` (and its journals) that still match this run, and a note saying what was rescored.

    Refuses (one line) an output scored with other settings (metrics, options, bands, data range); rows whose
    inputs changed (path, size or mtime of gt/sr/mask), rows with an error and rows with no recorded identity
    are rescored; rows for keys not in this run are dropped."""
    import json

    out = Path(out)
    journals = [out.with_name(out.name + ".journal.jsonl"), *rank_journals]
    meta: dict[str, Any] = {}
    meta_path = Path(str(out) + ".meta.json")
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            meta = {}
    stored = [h for h in [meta.get("fingerprint"), *(read_journal_header(j) for j in journals)] if h is not None]
    for old in stored:
        if old != header:
            raise SRMetricsError(f"{out}: --resume with other settings than the run that wrote it "
                                 f"({_fingerprint_difference(old, header)}); use another --out or drop --resume")
    previous = load_previous(out, columns, rank_journals, with_inputs=True)
    known: dict[str, Any] = dict(meta.get("inputs") or {})
    for key, ident in zip(previous["key"], previous[ROW_INPUTS]):
        if isinstance(ident, list):
            known[key] = ident
    kept, changed, failed, dropped = [], [], 0, []
    for i, (key, err) in enumerate(zip(previous["key"], previous["error"])):
        if key not in idents:
            dropped.append(key)
        elif err:
            failed += 1
        elif known.get(key) != idents[key]:
            changed.append(key)
        else:
            kept.append(i)
    parts = []
    if previous.shape[0]:
        parts.append(f"kept {len(kept)} of {previous.shape[0]} finished row(s)")
    if changed:
        first = changed[0]
        was = known.get(first)
        which = ("no record of its inputs" if not isinstance(was, list) else
                 ", ".join(n for n, a, b in zip(("gt", "sr", "mask", "lr"), was, idents[first]) if a != b) + " changed")
        parts.append(f"rescoring {len(changed)} whose inputs do not match (e.g. '{first}': {which})")
    if failed:
        parts.append(f"retrying {failed} that failed")
    if dropped:
        parts.append(f"dropped {len(dropped)} for keys not in this run (e.g. '{dropped[0]}')")
    note = ("--resume: " + "; ".join(parts)) if parts else ""
    return previous.iloc[kept].drop(columns=[ROW_INPUTS]).reset_index(drop=True), note


def _rank_out(out: str | os.PathLike, rank: int) -> Path:
    out = Path(out)
    return out.with_name(f"{out.stem}.rank{rank}{out.suffix}")


def _rank_journals(out: str | os.PathLike, world: int) -> list[Path]:
    if world <= 1:
        return []
    return [Path(str(_rank_out(out, r)) + ".journal.jsonl") for r in range(world)]


def _gather(writer: ResultWriter, out: str | os.PathLike | None, rank: int, world: int,
            columns: list[str]) -> pd.DataFrame:
    """Merge every rank's rows on rank 0; rank 0 writes ``out``; other ranks get the merged frame too."""
    import torch.distributed as dist

    local = writer.close(final=False)
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, local.to_dict(orient="records"))
    rows = [r for part in gathered for r in part]
    merged = pd.DataFrame(rows, columns=columns)
    merged = merged.drop_duplicates(subset="key", keep="last").sort_values("key", kind="stable")
    merged = merged.reset_index(drop=True)
    merged["error"] = merged["error"].fillna("")
    if out is not None:
        dist.barrier()
        if rank == 0:
            from .results import write_table

            write_table(merged, out)
            for r in range(world):
                jp = Path(str(_rank_out(out, r)) + ".journal.jsonl")
                if jp.exists():
                    jp.unlink()
        dist.barrier()
    return merged


def _write_sidecar(out: str | os.PathLike, run: ScoreRun, settings: dict[str, Any], header: dict[str, Any],
                   inputs: dict[str, list[str] | None]) -> None:
    """``<out>.meta.json``: metric ids, their provenance (models, tags, preprocessing), run settings, and what
    ``--resume`` compares (the settings fingerprint and each row's input identity)."""
    import json
    import time

    from . import __version__

    meta = {
        "clipscore_sr_version": __version__,
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "metrics": run.provenance,
        "n_pairs": run.n_pairs,
        "n_failed": run.n_failed,
        "n_skipped_resume": run.n_skipped,
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.items()},
        "resume_note": run.resume_note,
        "fingerprint": header,
        "inputs": inputs,
    }
    path = Path(str(out) + ".meta.json")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1, default=str))
    os.replace(tmp, path)


def score_folders(
    gt_dir: str | os.PathLike,
    sr_dir: str | os.PathLike,
    metrics: Sequence[str | Metric] | str = ("psnr", "ssim"),
    *,
    strict: bool = False,
    mask_dir: str | os.PathLike | None = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """Pair ``gt_dir`` and ``sr_dir`` by relative path without extension and score every pair.

    Unmatched files are warned about (an error with ``strict``). Keyword arguments go to :func:`score_pairs`.
    """
    import warnings

    pairing = io.pair_folders(gt_dir, sr_dir, strict=strict, mask_dir=mask_dir)
    msg = pairing.warning()
    if msg:
        warnings.warn(msg, stacklevel=2)
    return score_pairs(pairing.pairs, metrics, **kwargs)


__all__ = ["DecodedPair", "ScoreRun", "build_metrics", "score_folders", "score_pairs", "summarize"]
