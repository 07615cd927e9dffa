"""Where CLIP weights come from: local path / local-dir -> our cache root -> HF/open_clip cache -> download."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import ConfigError, SRMetricsError
from ...weights import (
    HF_DEFAULT_WEIGHTS,
    WEIGHT_SUFFIXES,
    cache_root,
    file_fingerprint,
    find_hub_file,
    find_open_clip_weights,
    hf_cached_file,
    hf_download,
    hf_hub_cache,
    hf_repo_dir,
    is_offline,
    missing_weights,
    open_clip_weight_names,
    url_download,
)
from .spec import ClipSpec, import_open_clip, parse_clip_spec

_DIR_WEIGHT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
                     "open_clip_pytorch_model.bin", "open_clip_pytorch_model.pth", "model.safetensors",
                     "pytorch_model.bin", "pytorch_model.pth", "model.pth")


@dataclass
class ResolvedClip:
    """Where the weights of a spec are on disk and how to build/preprocess for them."""

    spec: ClipSpec
    checkpoint: Path
    arch: str                          # open_clip create_model name (built-in or ``local-dir:DIR``)
    quick_gelu: bool
    preprocess_cfg: dict[str, Any]     # mean/std/interpolation/resize_mode(/fill_color); size comes from model
    preprocess_source: str
    fingerprint: str
    model_cfg: dict[str, Any] | None = None
    config_dir: Path | None = None
    strict: bool = True                # load_state_dict strictness (False: GeoRSCLIP, as its official code)

    @property
    def identity(self) -> str:
        """Stable id of the weights (architecture + content fingerprint), independent of where the file is."""
        arch = self.spec.model if self.model_cfg is None else \
            "cfg:" + hashlib.sha256(json.dumps(self.model_cfg, sort_keys=True).encode()).hexdigest()[:12]
        return f"{arch}|qg={int(self.quick_gelu)}|{self.fingerprint}"


def _how(spec: ClipSpec, extra: str = "") -> str:
    name = spec.alias or spec.text
    parts = [f"run 'srmetrics models --fetch {name}' (needs internet; for an offline machine copy the Hugging Face "
             f"cache it fills, {hf_hub_cache()}, and point HF_HOME at the copy)"]
    if spec.kind == "hub-file":
        parts.append(f"or download {spec.path} from https://huggingface.co/{spec.repo}")
    if spec.kind == "pretrained":
        parts.append(f"or pass a downloaded file as clipscore:{spec.model}/{spec.pretrained}@/path/to/weights")
    if extra:
        parts.append(extra)
    return ", ".join(parts)


def _tag_preprocess(model: str, tag: str) -> tuple[dict[str, Any], bool]:
    cfg = import_open_clip().get_pretrained_cfg(model, tag)
    keys = ("mean", "std", "interpolation", "resize_mode")
    return {k: cfg[k] for k in keys if k in cfg}, bool(cfg.get("quick_gelu", False))


def _resolve_pretrained(spec: ClipSpec, download: bool) -> ResolvedClip:
    assert spec.model and spec.pretrained
    oc = import_open_clip()
    pcfg = oc.get_pretrained_cfg(spec.model, spec.pretrained)
    what = f"clipscore:{spec.text} (open_clip {spec.model}/{spec.pretrained})"
    hf_hub, url = pcfg.get("hf_hub", ""), pcfg.get("url", "")
    found, looked = find_open_clip_weights(spec.model, spec.pretrained, hf_hub, url)
    if found is None:
        if not download or is_offline():
            how = _how(spec) + ("" if download else " (downloads disabled here)")
            raise missing_weights(what, looked, how, offline=is_offline() and download)
        repo, names = open_clip_weight_names(hf_hub)
        own = cache_root() / "open_clip" / spec.model / spec.pretrained
        found = _download_pretrained(spec, repo, names, url, own, what, looked)
    prep, qg = _tag_preprocess(spec.model, spec.pretrained)
    return ResolvedClip(spec, found, spec.model, qg, prep, f"open_clip pretrained tag {spec.model}/{spec.pretrained}",
                        file_fingerprint(found))


def _download_pretrained(spec: ClipSpec, repo: str, names: Sequence[str], url: str, own: Path, what: str,
                         looked: list[str]) -> Path:
    if repo:
        last: SRMetricsError | None = None
        for n in names:  # the safetensors variant may not exist: try the next name
            try:
                return hf_download(repo, n, what=what, looked_in=looked, how=_how(spec))
            except SRMetricsError as exc:
                last = exc
        assert last is not None
        raise last
    sha = url.split("/")[-2] if "openaipublic" in url else ""
    return url_download(url, own / os.path.basename(url), what=what, looked_in=looked, how=_how(spec),
                        sha256_prefix=sha)


def _dir_checkpoint(d: Path, what: str, how: str) -> Path:
    for n in _DIR_WEIGHT_NAMES:
        if (d / n).is_file():
            return d / n
    files = sorted(p for p in d.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if len(files) == 1:
        return files[0]
    if len(files) > 1:
        raise ConfigError(f"{what}: several weight files in {d} ({', '.join(p.name for p in files)}); "
                          f"keep one or name it open_clip_model.safetensors")
    raise missing_weights(what, [d], how)


def _dir_config(d: Path, what: str) -> tuple[dict[str, Any], dict[str, Any]]:
    path = d / "open_clip_config.json"
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{what}: {path} not found (a local-dir:/hf-hub: model needs open_clip_config.json "
                          f"with 'model_cfg' and 'preprocess_cfg')") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{what}: cannot read {path}: {exc}") from None
    if not isinstance(cfg, dict) or "model_cfg" not in cfg:
        raise ConfigError(f"{what}: {path} has no 'model_cfg' (not an open_clip model folder)")
    return cfg["model_cfg"], dict(cfg.get("preprocess_cfg") or {})


def _resolve_dir(spec: ClipSpec, d: Path, what: str, how: str) -> ResolvedClip:
    model_cfg, prep = _dir_config(d, what)
    ckpt = _dir_checkpoint(d, what, how)
    fp = hashlib.sha256((file_fingerprint(ckpt) + json.dumps(model_cfg, sort_keys=True)).encode()).hexdigest()[:16]
    return ResolvedClip(spec, ckpt, f"local-dir:{d}", bool(model_cfg.get("quick_gelu", False)), prep,
                        f"preprocess_cfg of {d / 'open_clip_config.json'}", fp, model_cfg=model_cfg, config_dir=d)


def _resolve_hf(spec: ClipSpec, download: bool) -> ResolvedClip:
    assert spec.repo
    what = f"clipscore:{spec.text}"
    looked = [str(hf_repo_dir(spec.repo))]
    cfg = hf_cached_file(spec.repo, "open_clip_config.json")
    weights = None
    if cfg is not None:
        weights = next((p for n in HF_DEFAULT_WEIGHTS if (p := cfg.parent / n).is_file()), None)
    if cfg is None or weights is None:
        if not download or is_offline():
            raise missing_weights(what, looked, _how(spec), offline=is_offline())
        if cfg is None:
            cfg = hf_download(spec.repo, "open_clip_config.json", what=what, looked_in=looked, how=_how(spec))
        last: SRMetricsError | None = None
        for n in HF_DEFAULT_WEIGHTS:
            try:
                weights = hf_download(spec.repo, n, what=what, looked_in=looked, how=_how(spec))
                break
            except SRMetricsError as exc:
                last = exc
        if weights is None:
            assert last is not None
            raise last
        if weights.parent != cfg.parent:  # a new revision appeared between the two downloads
            cfg = hf_download(spec.repo, "open_clip_config.json", what=what, looked_in=looked, how=_how(spec))
    resolved = _resolve_dir(spec, cfg.parent, what, _how(spec))  # picks `weights` (same preference order)
    resolved.preprocess_source = f"preprocess_cfg of hf-hub:{spec.repo} (revision {cfg.parent.name})"
    return resolved


def _resolve_file(spec: ClipSpec) -> ResolvedClip:
    assert spec.model and spec.path
    what = f"clipscore:{spec.text}"
    path = Path(spec.path)
    if not path.is_file():
        raise missing_weights(what, [path], "check the path after '@' (a checkpoint file for "
                              f"{spec.model}), or use local-dir:FOLDER for an open_clip folder")
    oc = import_open_clip()
    if spec.pretrained:
        prep, qg = _tag_preprocess(spec.model, spec.pretrained)
        source = f"open_clip pretrained tag {spec.model}/{spec.pretrained}"
    else:
        tags = oc.list_pretrained_tags_by_model(spec.model)
        variants = {json.dumps(_tag_preprocess(spec.model, t), sort_keys=True) for t in tags}
        if len(variants) == 1:
            prep, qg = _tag_preprocess(spec.model, tags[0])
            source = f"the pretrained tags of {spec.model} ({', '.join(tags)}), which all agree"
        else:
            prep, qg, source = {}, bool((oc.get_model_config(spec.model) or {}).get("quick_gelu", False)), ""
    return ResolvedClip(spec, path, spec.model, qg, prep, source, file_fingerprint(path))


def _resolve_hub_file(spec: ClipSpec, download: bool) -> ResolvedClip:
    """An alias's weights file in a Hugging Face repository: our cache root, the hub cache, then download."""
    from .aliases import CLIP_ALIASES

    assert spec.repo and spec.path and spec.model and spec.alias
    alias = CLIP_ALIASES[spec.alias]
    what = f"clipscore:{spec.text} ({alias.family} {spec.repo}/{spec.path})"
    found, looked = find_hub_file(spec.repo, spec.path)
    how = _how(spec, f"or put the file at {looked[0]}")
    if found is None:
        if not download or is_offline():
            extra = " (offline mode is on: HF_HUB_OFFLINE/CLIPSCORE_SR_OFFLINE)" if is_offline() else \
                ("" if download else " (downloads disabled here)")
            raise missing_weights(what, looked, how + extra)
        found = hf_download(spec.repo, spec.path, what=what, looked_in=looked, how=how)
    return ResolvedClip(spec, found, spec.model, alias.quick_gelu, alias.preprocess_cfg(), alias.preprocess_source,
                        file_fingerprint(found), strict=alias.strict)


def resolve_clip(spec: ClipSpec | str, *, download: bool = True) -> ResolvedClip:
    """Find the weights of ``spec`` on disk, downloading them only when ``download`` and not offline.

    Missing weights raise :class:`~clipscore_sr.errors.WeightsNotFoundError` (one line: which weights, where we
    looked, how to provide them) without waiting on the network when offline.
    """
    if isinstance(spec, str):
        spec = parse_clip_spec(spec)
    if spec.kind == "pretrained":
        return _resolve_pretrained(spec, download)
    if spec.kind == "hf-hub":
        return _resolve_hf(spec, download)
    if spec.kind == "hub-file":
        return _resolve_hub_file(spec, download)
    if spec.kind == "local-dir":
        d = Path(spec.path or "")
        what = f"clipscore:{spec.text}"
        if not d.is_dir():
            raise missing_weights(what, [d], "check the folder after 'local-dir:' (it must hold "
                                  "open_clip_config.json and the weights file)")
        return _resolve_dir(spec, d, what, "put the weights file (open_clip_model.safetensors or "
                            "open_clip_pytorch_model.bin) next to open_clip_config.json")
    return _resolve_file(spec)


def weights_present(spec: ClipSpec | str) -> Path | None:
    """The local weights file of ``spec`` if present (no download, no network), else None."""
    try:
        return resolve_clip(spec, download=False).checkpoint
    except SRMetricsError:
        return None
