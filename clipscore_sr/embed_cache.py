"""Embedding cache shared by the learned metrics: each image is embedded once per model.

Two levels, both keyed by ``namespace`` (model identity + preprocessing + precision, chosen by the metric)
and a content id (the pipeline's ``sr_ids``/``gt_ids``: a hash of the file bytes plus band/range info):

* **memory**: a process-wide LRU, bounded in bytes (``$CLIPSCORE_SR_EMBED_CACHE_MB``, default 512 MiB),
  so memory stays flat however many pairs are scored;
* **disk** (optional, ``cache_dir`` / ``srmetrics score --cache DIR``): one small file per embedding under
  ``DIR/embeddings/<namespace hash>/<2 hex>/<key>.emb``. Writers write a temporary file in the same folder and
  ``os.replace`` it, so concurrent writers (several ranks, several runs) never leave a half-written entry.
  Every entry carries its key, shape, dtype and a SHA-256 of the payload; an entry that fails any check is
  treated as missing (and removed), so the caller recomputes it.

Only float tensors without gradient are cached (values are stored on the CPU as float32).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

_MAGIC = b"SREMB01\n"
_DEFAULT_MEMORY_MB = 512.0


def _memory_budget() -> int:
    try:
        mb = float(os.environ.get("CLIPSCORE_SR_EMBED_CACHE_MB", _DEFAULT_MEMORY_MB))
    except ValueError:
        mb = _DEFAULT_MEMORY_MB
    return int(mb * 2**20)


class _MemoryLRU:
    """Process-wide LRU of ``key -> tensor`` bounded by total bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._items: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> torch.Tensor | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: str, value: torch.Tensor) -> None:
        size = value.element_size() * value.nelement()
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.nbytes -= old.element_size() * old.nelement()
            self._items[key] = value
            self.nbytes += size
            while self.nbytes > self.max_bytes and self._items:
                _, dropped = self._items.popitem(last=False)
                self.nbytes -= dropped.element_size() * dropped.nelement()

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.nbytes = 0

    def __len__(self) -> int:
        return len(self._items)


_MEMORY = _MemoryLRU(_memory_budget())


def clear_memory_cache() -> None:
    """Drop every in-memory embedding (all namespaces)."""
    _MEMORY.clear()


@dataclass
class CacheStats:
    """Counters for one :class:`EmbeddingCache` (what tests and benchmarks look at)."""

    memory_hits: int = 0
    disk_hits: int = 0
    misses: int = 0
    writes: int = 0
    corrupt: int = 0


class EmbeddingCache:
    """Per-namespace view of the memory LRU and (optionally) a disk folder.

    ``namespace`` is any string that changes whenever the embedding of the same content would change
    (model weights, preprocessing, precision). ``describe`` is stored next to the entries as
    ``namespace.json`` so a human can tell what a cache folder holds.
    """

    def __init__(self, namespace: str, cache_dir: str | os.PathLike | None = None,
                 describe: dict[str, Any] | None = None) -> None:
        self.namespace = namespace
        self.ns_hash = hashlib.sha256(namespace.encode()).hexdigest()[:20]
        self.stats = CacheStats()
        self.dir: Path | None = None
        if cache_dir is not None:
            from .results import check_writable_dir

            self.dir = Path(cache_dir).expanduser() / "embeddings" / self.ns_hash
            check_writable_dir(self.dir, "--cache")  # one-line error, not one per row
            meta = self.dir / "namespace.json"
            if not meta.exists():
                _atomic_write(meta, json.dumps({"namespace": namespace, **(describe or {})}, indent=2,
                                               default=str).encode())

    def key(self, content_id: str) -> str:
        return hashlib.sha256(f"{self.namespace}\0{content_id}".encode()).hexdigest()

    def _path(self, key: str) -> Path:
        assert self.dir is not None
        return self.dir / key[:2] / f"{key}.emb"

    def get(self, content_id: str, expected_shape: Sequence[int] | None = None) -> torch.Tensor | None:
        """The cached float32 CPU tensor for ``content_id``, or None (absent, or a corrupt disk entry)."""
        key = self.key(content_id)
        value = _MEMORY.get(key)
        if value is not None:
            self.stats.memory_hits += 1
            if self.dir is not None and not self._path(key).exists():
                self._write(key, value)  # computed earlier in this process for a run without this cache_dir
            return value
        if self.dir is not None:
            value = self._read(key, expected_shape)
            if value is not None:
                self.stats.disk_hits += 1
                _MEMORY.put(key, value)
                return value
        self.stats.misses += 1
        return None

    def put(self, content_id: str, value: torch.Tensor) -> None:
        """Store one embedding (any float tensor; kept as float32 on the CPU)."""
        value = value.detach().to("cpu", torch.float32).contiguous()
        if value.is_inference():
            value = value.clone()  # ordinary tensor, usable later outside inference mode
        key = self.key(content_id)
        _MEMORY.put(key, value)
        if self.dir is not None:
            self._write(key, value)

    # -- disk format: MAGIC | u32 header length | JSON header | float32 payload ---------------------------
    def _write(self, key: str, value: torch.Tensor) -> None:
        payload = value.numpy().astype("<f4", copy=False).tobytes()
        header = json.dumps({"key": key, "dtype": "<f4", "shape": list(value.shape),
                             "sha256": hashlib.sha256(payload).hexdigest()}).encode()
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, _MAGIC + struct.pack("<I", len(header)) + header + payload)
        self.stats.writes += 1

    def _read(self, key: str, expected_shape: Sequence[int] | None) -> torch.Tensor | None:
        path = self._path(key)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError:
            return self._corrupt(path)
        try:
            if not blob.startswith(_MAGIC):
                return self._corrupt(path)
            (hlen,) = struct.unpack_from("<I", blob, len(_MAGIC))
            start = len(_MAGIC) + 4
            header = json.loads(blob[start:start + hlen])
            payload = blob[start + hlen:]
            shape = [int(s) for s in header["shape"]]
            ok = (header.get("key") == key and header.get("dtype") == "<f4"
                  and len(payload) == 4 * int(np.prod(shape, dtype=np.int64))
                  and hashlib.sha256(payload).hexdigest() == header.get("sha256")
                  and (expected_shape is None or list(expected_shape) == shape))
        except (ValueError, KeyError, TypeError, struct.error):
            return self._corrupt(path)
        if not ok:
            return self._corrupt(path)
        return torch.from_numpy(np.frombuffer(payload, dtype="<f4").reshape(shape).copy())

    def _corrupt(self, path: Path) -> None:
        self.stats.corrupt += 1
        try:
            path.unlink()
        except OSError:
            pass
        return None


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp file next to ``path`` and ``os.replace`` it in (atomic on POSIX and Windows)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
