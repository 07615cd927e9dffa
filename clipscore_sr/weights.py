"""Where model weights come from: local paths, caches, offline mode, and one fast, clear failure.

Resolution order for every learned metric: an explicit local path -> our cache root -> the library's own
cache (open_clip/Hugging Face cache, torchvision's ``TORCH_HOME``) -> download, unless offline.

Environment variables
---------------------
``CLIPSCORE_SR_CACHE``  cache root for weights this project manages (default ``~/.cache/clipscore-sr``)
``CLIPSCORE_SR_OFFLINE`` / ``HF_HUB_OFFLINE``  never try the network (fail fast instead)
``HF_HOME`` / ``HF_HUB_CACHE``  Hugging Face cache (used by open_clip ``hf-hub:`` and pretrained tags)
``TORCH_HOME``  torchvision / torch.hub cache (LPIPS backbones, VGG)
``CLIPSCORE_SR_NET_TIMEOUT``  seconds before a connection/metadata request gives up (default 10)

Online, a host that cannot be reached is detected with one TCP connection attempt (``net_timeout`` seconds)
before any download client (with its own retries) is started, so a machine without internet fails in seconds.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from .errors import WeightsNotFoundError

_TRUE = {"1", "true", "yes", "on"}


def cache_root() -> Path:
    """Root of this project's weight cache (``$CLIPSCORE_SR_CACHE`` or ``~/.cache/clipscore-sr``)."""
    env = os.environ.get("CLIPSCORE_SR_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "clipscore-sr"


def torch_home() -> Path:
    """torch.hub / torchvision cache (``$TORCH_HOME`` or ``~/.cache/torch``)."""
    env = os.environ.get("TORCH_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "torch"


_FORCED_OFFLINE: list[str] = []  # reasons pushed by :func:`offline` (innermost last)


@contextlib.contextmanager
def offline(reason: str) -> Iterator[None]:
    """Never touch the network inside this block; missing-weights messages say ``reason`` (e.g. "the demo runs
    offline") instead of blaming environment variables the user never set."""
    _FORCED_OFFLINE.append(reason)
    try:
        yield
    finally:
        _FORCED_OFFLINE.pop()


def is_offline() -> bool:
    """True when the user (or an enclosing :func:`offline` block) asked never to touch the network."""
    return bool(_FORCED_OFFLINE) or any(os.environ.get(v, "").strip().lower() in _TRUE
                                        for v in ("CLIPSCORE_SR_OFFLINE", "HF_HUB_OFFLINE"))


def offline_note() -> str:
    """Why nothing was downloaded: the enclosing :func:`offline` reason, else the environment variables."""
    return _FORCED_OFFLINE[-1] if _FORCED_OFFLINE else "offline mode is on: HF_HUB_OFFLINE/CLIPSCORE_SR_OFFLINE"


def missing_weights(what: str, looked_in: Sequence[str | os.PathLike], how: str, *,
                    offline: bool = False, network: str = "") -> WeightsNotFoundError:
    """The one message format for missing weights: the cause first (no network, offline mode), then which
    weights and what to do, then the detail (where we looked). ``network``: why a download could not start."""
    places = ", ".join(str(p) for p in looked_in) or "nowhere"
    if network:
        return WeightsNotFoundError(f"no network ({network}): weights for {what} not downloaded; {how}. "
                                    f"Looked in: {places}")
    note = f" ({offline_note()})" if offline else ""
    return WeightsNotFoundError(f"weights for {what} not found: {how}. Looked in: {places}{note}")


# ---------------------------------------------------------------------------------------------------------
# Hugging Face / open_clip caches and downloads
# ---------------------------------------------------------------------------------------------------------

#: seconds before an online metadata request gives up (``CLIPSCORE_SR_NET_TIMEOUT`` overrides)
DEFAULT_NET_TIMEOUT = 10.0


def net_timeout() -> float:
    """Timeout in seconds for any network request we make (``$CLIPSCORE_SR_NET_TIMEOUT``, default 10)."""
    try:
        return float(os.environ.get("CLIPSCORE_SR_NET_TIMEOUT", DEFAULT_NET_TIMEOUT))
    except ValueError:
        return DEFAULT_NET_TIMEOUT


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache, read from the environment at call time.

    ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``$XDG_CACHE_HOME/huggingface/hub``, else
    ``~/.cache/huggingface/hub`` (the same order ``huggingface_hub`` uses; we re-read it on every call so
    changing ``HF_HOME`` after import still takes effect).
    """
    env = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if env:
        return Path(env).expanduser()
    home = os.environ.get("HF_HOME")
    if home:
        return Path(home).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def openclip_url_cache() -> Path:
    """Where open_clip itself stores weights downloaded from plain URLs (``~/.cache/clip``)."""
    return Path.home() / ".cache" / "clip"


def hf_repo_dir(repo_id: str) -> Path:
    """``<hub cache>/models--ORG--REPO``: the folder the hub cache uses for a model repository."""
    return hf_hub_cache() / ("models--" + repo_id.replace("/", "--"))


def hf_cached_file(repo_id: str, filename: str, revision: str | None = None) -> Path | None:
    """Path of ``filename`` of ``repo_id`` in the local hub cache, or None. Never touches the network."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, filename, cache_dir=str(hf_hub_cache()), revision=revision)
    except Exception:  # malformed cache folder, invalid repo id: treat as absent
        return None
    return Path(found) if isinstance(found, str) and os.path.isfile(found) else None


#: weight file suffixes looked for in a cache folder, and the names open_clip uses on the hub
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".npz")
HF_DEFAULT_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def open_clip_weight_names(hf_hub: str) -> tuple[str, list[str]]:
    """``(repo, file names to try)`` for an open_clip pretrained tag's ``hf_hub`` entry (``ORG/REPO/`` or
    ``ORG/REPO/file``): the safetensors variant first, then the named file, else open_clip's defaults."""
    repo, fname = os.path.split(hf_hub) if hf_hub else ("", "")
    if fname:
        names = ([fname.rsplit(".", 1)[0] + ".safetensors"] if fname.endswith((".bin", ".pth")) else []) + [fname]
    else:
        names = list(HF_DEFAULT_WEIGHTS)
    return repo, names


def find_open_clip_weights(model: str, tag: str, hf_hub: str, url: str) -> tuple[Path | None, list[str]]:
    """Local weights of open_clip's ``model``/``tag`` (never the network): our cache folder, then the hub cache,
    then open_clip's URL cache. Returns ``(file or None, places looked)``; ``hf_hub``/``url`` are the tag's
    entries in ``open_clip.get_pretrained_cfg`` (also stored in the static alias catalog)."""
    repo, names = open_clip_weight_names(hf_hub)
    url_name = os.path.basename(url) if url else ""
    own = cache_root() / "open_clip" / model / tag
    looked: list[str] = [str(own)]
    candidates = [*names, url_name, *(p.name for p in sorted(own.glob("*")) if p.suffix in WEIGHT_SUFFIXES)]
    for n in candidates:
        if n and (own / n).is_file():
            return own / n, looked
    if repo:
        looked.append(str(hf_repo_dir(repo)))
        for n in names:
            found = hf_cached_file(repo, n)
            if found:
                return found, looked
    if url_name:
        looked.append(str(openclip_url_cache() / url_name))
        if (openclip_url_cache() / url_name).is_file():
            return openclip_url_cache() / url_name, looked
    return None, looked


def hub_file_parts(hub_file: str) -> tuple[str, str]:
    """``ORG/REPO/path/in/repo`` -> ``("ORG/REPO", "path/in/repo")``."""
    parts = hub_file.split("/")
    return "/".join(parts[:2]), "/".join(parts[2:])


def find_hub_file(repo: str, path: str) -> tuple[Path | None, list[str]]:
    """A weights file of a hub repository on disk: our cache root, then the hub cache (never the network)."""
    own = cache_root() / repo.replace("/", "--") / path
    looked = [str(own), str(hf_repo_dir(repo))]
    return (own if own.is_file() else hf_cached_file(repo, path)), looked


def hf_download(repo_id: str, filename: str, *, what: str, looked_in: Sequence[str | os.PathLike],
                how: str) -> Path:
    """Download one file of a hub repository into the hub cache (respects ``HF_HOME``/``HF_HUB_CACHE``).

    Offline (``HF_HUB_OFFLINE``/``CLIPSCORE_SR_OFFLINE``) this never touches the network and raises the
    missing-weights error at once; online, metadata requests time out after :func:`net_timeout` seconds.
    """
    if is_offline():
        raise missing_weights(what, looked_in, how, offline=True)
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    problem = unreachable(endpoint)
    if problem:
        raise missing_weights(what, [*looked_in, f"{endpoint}/{repo_id}"], how, network=problem)
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id, filename, cache_dir=str(hf_hub_cache()), etag_timeout=net_timeout(),
                                    library_name="clipscore-sr"))
    except Exception as exc:  # network error, 404, gated repo...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise missing_weights(what, [*looked_in, f"https://huggingface.co/{repo_id} ({reason})"], how) from None


_REACHABLE: dict[str, str] = {}


def unreachable(url: str) -> str:
    """'' when a TCP connection to ``url``'s host can be opened within :func:`net_timeout` seconds, else the
    reason. Checked once per host and process, so a machine without internet fails in seconds, not minutes
    of client retries."""
    import socket
    import urllib.parse

    parsed = urllib.parse.urlparse(url)
    host = parsed.hostname or ""
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    key = f"{host}:{port}"
    if key not in _REACHABLE:
        try:
            with socket.create_connection((host, port), timeout=net_timeout()):
                _REACHABLE[key] = ""
        except OSError as exc:
            _REACHABLE[key] = f"cannot reach {host}: {exc.strerror or exc}"
    return _REACHABLE[key]


def url_download(url: str, dest: Path, *, what: str, looked_in: Sequence[str | os.PathLike], how: str,
                 sha256_prefix: str = "") -> Path:
    """Download ``url`` to ``dest`` atomically (temp file + ``os.replace``), checking a SHA-256 prefix if given."""
    if is_offline():
        raise missing_weights(what, looked_in, how, offline=True)
    import hashlib
    import tempfile
    import urllib.request

    problem = unreachable(url)
    if problem:
        raise missing_weights(what, [*looked_in, url], how, network=problem)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=net_timeout()) as src, os.fdopen(fd, "wb") as out:
            while chunk := src.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
        if sha256_prefix and not digest.hexdigest().startswith(sha256_prefix):
            raise OSError(f"SHA-256 mismatch for {url}")
        os.replace(tmp, dest)
    except Exception as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise missing_weights(what, [*looked_in, f"{url} ({type(exc).__name__}: {exc})"], how) from None
    return dest


def file_fingerprint(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Cheap content fingerprint of a (possibly multi-GB) weights file: SHA-256 of its size and of its first,
    middle and last ``chunk`` bytes, as 16 hex digits. Used in cache keys and result provenance."""
    import hashlib

    p = Path(path)
    size = p.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(p, "rb") as f:
        for offset in sorted({0, max(0, size // 2 - chunk // 2), max(0, size - chunk)}):
            f.seek(offset)
            h.update(f.read(chunk))
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------------------
# Loading third-party weight files safely
# ---------------------------------------------------------------------------------------------------------

_VERIFIED: dict[tuple[str, int, int], str] = {}


def name_hash_prefix(name: str) -> str:
    """The SHA-256 prefix torchvision puts in a weights file name (``vgg16-397923af.pth`` -> ``397923af``);
    '' when the name carries none (at least 8 hex digits after the last ``-``)."""
    import re

    match = re.search(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$", name)
    return match.group(1) if match else ""


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (cached per path, size and mtime within the process)."""
    import hashlib

    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key not in _VERIFIED:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
        _VERIFIED[key] = h.hexdigest()
    return _VERIFIED[key]


def check_sha256_prefix(path: str | os.PathLike, prefix: str, *, what: str,
                        how: str = "delete the file and fetch it again") -> None:
    """Raise :class:`WeightsNotFoundError` unless the file's SHA-256 starts with ``prefix``."""
    digest = sha256_file(path)
    if not digest.startswith(prefix.lower()):
        raise WeightsNotFoundError(f"weights for {what} at {path} fail the integrity check (SHA-256 "
                                   f"{digest[:len(prefix)]}, the file name says {prefix}); not loaded: {how}")


def load_state_dict_file(path: str | os.PathLike, *, what: str, sha256_prefix: str | None = None,
                         how: str = "delete the file and fetch it again") -> dict:
    """A state dict of tensors from a third-party ``.pth`` file, never running code from it.

    ``sha256_prefix`` (e.g. from :func:`name_hash_prefix`) is checked before the file is opened by the unpickler;
    the file is then read with ``torch.load(weights_only=True)``, which refuses anything but tensors and plain
    containers. Raises :class:`WeightsNotFoundError` (one line) on a hash mismatch, a refused or unreadable file,
    or a file that is not a mapping of names to tensors.
    """
    import torch

    path = Path(path)
    if sha256_prefix:
        check_sha256_prefix(path, sha256_prefix, what=what, how=how)
    state = safe_torch_load(path, what=what, how=how)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsNotFoundError(f"weights for {what} at {path} are not a state dict of tensors; {how}")
    return state


def safe_torch_load(path: str | os.PathLike, *, what: str, how: str = "delete the file and fetch it again",
                    mmap: bool = False):
    """``torch.load(path, weights_only=True)`` on CPU with one-line errors: a file holding anything but
    tensors and plain containers (a pickled object that would run code) raises :class:`WeightsNotFoundError`.
    ``mmap=True`` maps zip-format files instead of reading them (for a cheap check of a large file)."""
    import torch

    try:
        if mmap:
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as exc:
                if "mmap" not in str(exc):
                    raise
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # UnpicklingError for refused globals, RuntimeError for corrupt zips, OSError...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise WeightsNotFoundError(f"weights for {what} at {path} could not be loaded safely "
                                   f"({type(exc).__name__}: {first}); {how}") from None
