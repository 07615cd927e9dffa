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
from .errors import InputMismatchError, SRMetricsError
from .metrics.base import Metric, get_metric, get_metric_class, parse_metric_list, split_metric_id
from .results import ResultWriter, load_previous, summarize


@dataclass
class DecodedPair:
    """One decoded pair, or the error that prevented decoding it."""

    pair: io.Pair
    gt: np.ndarray | None = None
    sr: np.ndarray | None = None
    mask: np.ndarray | None = None
    data_range: float = 1.0
    gt_id: str = ""
    sr_id: str = ""
    error: str = ""

    def shape_key(self) -> tuple:
        return (self.gt.shape, self.sr.shape, self.mask is not None)


@dataclass
class ScoreRun:
    """What :func:`score_pairs` returns besides the table (available as ``df.attrs['run']``)."""

    metric_ids: list[str]
    n_pairs: int
    n_scored: int = 0
    n_skipped: int = 0
    n_failed: int = 0
    provenance: list[dict[str, Any]] = field(default_factory=list)


def _decode(pair: io.Pair, bands: Sequence[int] | None, data_range: float | None, want_ids: bool) -> DecodedPair:
    out = DecodedPair(pair)
    try:
        gt = io.read_image(pair.gt, bands=bands, data_range=data_range)
        sr = io.read_image(pair.sr, bands=bands, data_range=data_range)
        if gt.data.shape != sr.data.shape:
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
        out.gt, out.sr, out.data_range = gt.data, sr.data, gt.data_range
        if pair.mask is not None:
            mask = io.read_mask(pair.mask)
            if mask.shape != gt.data.shape[1:]:
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
    """Instantiate metrics by id, passing each only the options its constructor names."""
    metric_options = dict(metric_options or {})
    metric_options.setdefault("precision", precision)
    metrics = []
    for mid in metric_ids:
        cls = get_metric_class(split_metric_id(mid)[0])
        params = inspect.signature(cls.__init__).parameters
        opts = {k: v for k, v in metric_options.items()
                if k in params and params[k].kind in (inspect.Parameter.KEYWORD_ONLY,
                                                       inspect.Parameter.POSITIONAL_OR_KEYWORD)}
        metric = get_metric(mid, device=device, **opts)
        metrics.append(metric)
    return metrics


def prepare_metrics(metrics: Sequence[Metric]) -> None:
    """Load weights before any decoding so missing weights fail fast."""
    for m in metrics:
        loader = getattr(m, "load", None)
        if callable(loader):
            loader()


def _metric_batch(metric: Metric, items: list[DecodedPair], tensors: dict[str, Any]) -> tuple[list[float], list[str]]:
    """Run one metric on a batch; on failure retry pair by pair so one bad pair can't sink the batch."""
    try:
        with torch.inference_mode():  # metrics apply their own precision (autocast) where they support it
            values = metric.compute(tensors["sr"], tensors["gt"], mask=tensors["mask"],
                                    data_range=tensors["range"], sr_ids=tensors["sr_ids"],
                                    gt_ids=tensors["gt_ids"])
        values = values.detach().double().cpu().tolist()
        if len(values) != len(items):
            raise SRMetricsError(f"metric {metric.id} returned {len(values)} values for {len(items)} images")
        # NaN means "undefined for this pair" (e.g. cpsnr with no clear pixel in any window): report it
        errors = [f"{metric.id}: undefined (NaN) for this pair, e.g. no valid/clear pixels" if math.isnan(v) else ""
                  for v in values]
        return values, errors
    except Exception as batch_exc:
        if len(items) == 1:
            msg = str(batch_exc) if isinstance(batch_exc, SRMetricsError) else f"{type(batch_exc).__name__}: {batch_exc}"
            return [math.nan], [f"{metric.id}: {msg}"]
    values, errors = [], []
    for i, item in enumerate(items):
        single = {k: (v[i:i + 1] if v is not None else None) for k, v in tensors.items()}
        v, e = _metric_batch(metric, [item], single)
        values += v
        errors += e
    return values, errors


def _score_batch(items: list[DecodedPair], metrics: Sequence[Metric], device: torch.device) -> list[dict[str, Any]]:
    non_blocking = device.type == "cuda"
    tensors: dict[str, Any] = {
        "gt": torch.from_numpy(np.stack([d.gt for d in items])).to(device, non_blocking=non_blocking),
        "sr": torch.from_numpy(np.stack([d.sr for d in items])).to(device, non_blocking=non_blocking),
        "mask": (torch.from_numpy(np.stack([d.mask for d in items]))[:, None].to(device)
                 if items[0].mask is not None else None),
        "range": torch.tensor([d.data_range for d in items], dtype=torch.float64, device=device),
        "sr_ids": [d.sr_id for d in items] if items[0].sr_id else None,
        "gt_ids": [d.gt_id for d in items] if items[0].gt_id else None,
    }
    rows = [{"key": d.pair.key, "gt": d.pair.gt, "sr": d.pair.sr, "error": ""} for d in items]
    for metric in metrics:
        values, errors = _metric_batch(metric, items, tensors)
        for row, v, e in zip(rows, values, errors):
            row[metric.id] = v
            if e:
                row["error"] = "; ".join(x for x in (row["error"], e) if x)
    return rows


def _dist_info() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment, initialising the process group if needed."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
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
) -> pd.DataFrame:
    """Score GT/SR pairs with every metric; returns one row per pair (``key, gt, sr, <metric ids>, error``).

    ``out`` (``.csv``/``.json``/``.parquet``) is written incrementally and atomically; ``resume`` skips pairs
    already scored without error in ``out``. Values are per image; see :func:`clipscore_sr.results.summarize`
    for means and confidence intervals. ``df.attrs['run']`` holds a :class:`ScoreRun`.
    """
    if batch_size < 1:
        raise SRMetricsError(f"--batch-size must be >= 1, got {batch_size}")
    if not pairs:
        raise SRMetricsError("no pairs to score")
    rank, world, local_rank = _dist_info()
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
    prepare_metrics(metric_objs)
    columns = ["key", "gt", "sr", *metric_ids, "error"]

    keys = [p.key for p in pairs]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise SRMetricsError(f"two pairs share the key '{dup}'")

    previous = None
    if resume and out is not None:
        previous = load_previous(out, columns, _rank_journals(out, world))
        previous = previous[previous["error"] == ""]
        done = set(previous["key"])
        todo = [p for p in pairs if p.key not in done]
    else:
        todo = list(pairs)
        if out is not None:
            for jp in [Path(str(out) + ".journal.jsonl"), *_rank_journals(out, world)]:
                if jp.exists():
                    jp.unlink()
    shard = todo[rank::world]

    run = ScoreRun(metric_ids=metric_ids, n_pairs=len(pairs), n_skipped=len(pairs) - len(todo),
                   provenance=[m.provenance() for m in metric_objs])
    writer_out = out if world == 1 else (_rank_out(out, rank) if out is not None else None)
    writer = ResultWriter(writer_out, columns, previous=previous if rank == 0 else None,
                          snapshot_every=snapshot_every)
    want_ids = any(getattr(m, "uses_image_ids", False) for m in metric_objs)
    stream = _decoded_stream(shard, workers, prefetch=max(2 * batch_size, 4), bands=bands,
                             data_range=data_range, want_ids=want_ids)
    from tqdm.auto import tqdm

    bar = tqdm(total=len(shard), desc="scoring", unit="pair", disable=not progress or rank != 0, dynamic_ncols=True)
    try:
        for batch, failed in _batches(stream, batch_size, max_buffered=4 * batch_size):
            rows = [{"key": d.pair.key, "gt": d.pair.gt, "sr": d.pair.sr, "error": d.error,
                     **{m: math.nan for m in metric_ids}} for d in failed]
            if batch:
                rows += _score_batch(batch, metric_objs, dev)
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
    if out is not None and rank == 0:
        _write_sidecar(out, run, dict(bands=bands, data_range=data_range, device=str(dev), precision=precision,
                                      world_size=world))
    return df


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


def _write_sidecar(out: str | os.PathLike, run: ScoreRun, settings: dict[str, Any]) -> None:
    """``<out>.meta.json``: metric ids, their provenance (models, tags, preprocessing) and run settings."""
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
