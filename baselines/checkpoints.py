"""Generator checkpoints: our format, and the paper authors' BasicSR-style ESRGAN weights.

Our format
----------
``model.safetensors`` holds the ``state_dict`` (tensors only); the architecture arguments are stored
twice: embedded in the safetensors header metadata under the key ``clipscore_sr`` and in a sidecar
``model.json`` next to it::

    {"format": "clipscore-sr-generator", "version": 1, "name": "esrgan", "size": "small",
     "config": {"in_channels": 3, "n_frames": 8, "scale": 4, "num_feat": 64, ...}, "extra": {...}}

Loading rebuilds the model from ``config`` with :func:`~clipscore_sr.baselines.registry.build_generator`
and loads the weights with a shape check; the embedded metadata wins over the sidecar.

Authors' format
---------------
BasicSR / satlas-super-resolution checkpoints (``.pth``) are dicts with ``params_ema`` (preferred) and/or
``params`` holding an RRDBNet state dict (``conv_first``, ``body.N.rdb1.conv1``, ``conv_body``,
``conv_up1``, ``conv_up2``, ``conv_hr``, ``conv_last``). Original ESRGAN names (``RRDB_trunk.N.RDB1``,
``trunk_conv``, ``upconv1``, ``HRconv``) and ``module.`` prefixes are mapped too. The architecture is
inferred from the tensor shapes (features, growth, blocks, ``num_in_ch = 3*T``). The scale factor cannot be
inferred (an x3 RRDBNet has the x4 tensor shapes): pass ``scale``; without it x4 is assumed with a
``UserWarning`` and the model's ``scale_known`` is False (``srmetrics generate`` then refuses to run without
``--scale``). The authors' SRCNN / HighRes-net state dicts (``encoder.doubleconv2d...``) load too, their
architecture and scale read from the shapes (:func:`~clipscore_sr.baselines.worldstrat.infer_worldstrat_config`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from clipscore_sr.errors import SRMetricsError

FORMAT = "clipscore-sr-generator"
VERSION = 1
META_KEY = "clipscore_sr"


class CheckpointError(SRMetricsError):
    """A checkpoint is missing, unreadable, or does not fit the architecture."""


# Largest architecture arguments a checkpoint may ask for (at least 4x every preset). A safetensors header declares
# shapes for free (an empty tensor of shape [100000, 3, 0, 3] takes no byte), so a stored or inferred config is checked
# against these before any module is built, and the state dict against a model built on the meta device (no memory).
ARCH_LIMITS: dict[str, int] = {
    "in_channels": 64, "out_channels": 64, "lr_channels": 64, "n_frames": 16, "scale": 4,
    "num_feat": 1024, "num_block": 256, "num_grow_ch": 1024,  # esrgan
    "features": 1024, "encoder_blocks": 256, "decoder_features": 1024, "kernel": 31,  # highresnet
    "n1": 1024, "n2": 1024, "f1": 31, "f2": 31, "f3": 31, "fuse_kernel": 31, "fuse_channels": 1024,  # srcnn
    "inner_channel": 1024, "channel_mults": 64, "attn_res": 8192, "res_blocks": 64, "norm_groups": 1024,  # sr3
    "image_size": 8192, "n_timestep": 100_000,
}
_MAY_BE_ZERO = ("num_block", "encoder_blocks", "res_blocks", "attn_res")


def check_arch_config(config: Mapping[str, Any], source: str) -> None:
    """Refuse architecture arguments that are not whole numbers within :data:`ARCH_LIMITS` (one line naming the
    file and the argument), before anything is allocated."""
    for key, value in config.items():
        cap = ARCH_LIMITS.get(key)
        if cap is None:
            continue
        items = list(value) if isinstance(value, list | tuple) else [value]
        low = 0 if key in _MAY_BE_ZERO else 1
        if len(items) > 16 or any(isinstance(v, bool) or not isinstance(v, int) or not low <= v <= cap for v in items):
            raise CheckpointError(f"{source}: architecture argument {key}={value!r} is not a whole number in "
                                  f"{low}..{cap} (a damaged or foreign checkpoint?)")


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def save_checkpoint(model: nn.Module, path: str | os.PathLike, *, extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``model``'s weights to ``path`` (.safetensors) plus the architecture JSON (embedded + sidecar)."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path}: our checkpoints use the .safetensors extension")
    name = getattr(model, "name", None)
    config = getattr(model, "config", None)
    if name is None or config is None:
        raise CheckpointError(f"{type(model).__name__}: not a clipscore_sr generator (no name/config)")
    meta = {"format": FORMAT, "version": VERSION, "name": name, "size": getattr(model, "size", None),
            "config": config, "extra": dict(extra or {})}
    # clone: the authors' WorldStrat networks register some modules under two names (shared tensors)
    state = {k: v.detach().to("cpu").clone().contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={META_KEY: json.dumps(meta)})
    _sidecar(path).write_text(json.dumps(meta, indent=2) + "\n")
    return path


def read_checkpoint_meta(path: str | os.PathLike) -> dict[str, Any] | None:
    """Our architecture metadata of a .safetensors checkpoint, or None for a plain state dict."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with safe_open(str(path), framework="pt") as fh:
            header = fh.metadata() or {}
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({str(exc).splitlines()[0]})") from None
    text = header.get(META_KEY)
    source = f"{path} (embedded metadata)"
    if text is None and _sidecar(path).is_file():
        text, source = _sidecar(path).read_text(), str(_sidecar(path))
    if text is None:
        return None
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{source}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("name"), str) or \
            not isinstance(meta.get("config"), dict):
        raise CheckpointError(f"{source}: not a {FORMAT} description (needs 'format', 'name' and 'config')")
    extra = meta.get("extra", {})
    if meta.get("size") is not None and not isinstance(meta["size"], str) or not isinstance(extra, dict) or \
            not isinstance(extra.get("tile", 0), int) or isinstance(extra.get("tile"), bool) or \
            not isinstance(extra.get("bands", []), list | type(None)) or \
            not all(isinstance(b, str) for b in extra.get("bands") or []):
        raise CheckpointError(f"{source}: malformed 'size' or 'extra' (size a name; extra a dict with an integer "
                              "'tile' and a list of band names 'bands')")
    return meta


def check_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """The keys and shapes of ``state`` against ``model`` (a meta-device model will do): one-line errors naming
    the layer and both shapes, or the missing/unexpected keys."""
    expected = model.state_dict()
    for key, tensor in state.items():
        if key in expected and tuple(tensor.shape) != tuple(expected[key].shape):
            raise CheckpointError(
                f"{source}: layer '{key}' has shape {tuple(tensor.shape)} in the checkpoint but "
                f"{tuple(expected[key].shape)} in the {getattr(model, 'name', type(model).__name__)} model "
                f"(config {getattr(model, 'config', {})})")
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s), e.g. {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), e.g. {', '.join(unexpected[:3])}")
        raise CheckpointError(f"{source}: state dict does not match the model: {'; '.join(parts)}")


def load_state_dict_checked(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with one-line errors naming the layer and both shapes."""
    check_state_dict(model, state, source)
    model.load_state_dict(dict(state), strict=True)


def _build_checked(build: Callable[[], nn.Module], state: Mapping[str, torch.Tensor], source: str) -> nn.Module:
    """``build()`` on the meta device first (no memory) and ``state`` checked against it, then built for real and
    loaded: a checkpoint that does not fit its architecture never gets a real model allocated."""
    try:
        with torch.device("meta"):
            shell = build()
    except (TypeError, ValueError, RuntimeError, ZeroDivisionError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{source}: cannot build the architecture it describes ({first})") from None
    check_state_dict(shell, state, source)
    model = build()
    load_state_dict_checked(model, state, source)
    return model


def _build(name: str, meta_size: str | None, config: dict[str, Any]) -> nn.Module:
    from .registry import build_discriminator, build_generator, legacy_name

    name = legacy_name(name, config)
    if name == "esrgan-discriminator":
        return build_discriminator(**config)
    cfg = dict(config)
    return build_generator(name, meta_size or "small", cfg.pop("n_frames"), cfg.pop("scale"), **cfg)


def load_checkpoint(path: str | os.PathLike, *, device: str | torch.device = "cpu", name: str | None = None,
                    size: str = "small", n_frames: int | None = None, scale: int | None = None,
                    **overrides: Any) -> nn.Module:
    """Load a generator from our .safetensors format, a plain safetensors state dict, or the authors'
    BasicSR ``.pth`` (ESRGAN). ``name``/``n_frames``/``scale`` given together with a described
    checkpoint must agree with it; for plain state dicts they define the architecture."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.suffix in (".pth", ".pt", ".ckpt", ".bin"):
        state = extract_state_dict(_torch_load(path), None, source=str(path))
        from .worldstrat import looks_like_worldstrat

        if looks_like_worldstrat(state):
            return _worldstrat_from_state(state, str(path), name=name, n_frames=n_frames, scale=scale,
                                          device=device, **overrides)
        if name is not None and _canonical(name) != "esrgan":
            raise CheckpointError(f"{path}: .pth checkpoints are read as BasicSR ESRGAN (or the authors' SRCNN / "
                                  f"HighRes-net) weights, not '{name}'")
        return _esrgan_from_state(state, str(path), n_frames=n_frames, scale=scale, device=device, **overrides)
    meta = read_checkpoint_meta(path)
    from safetensors.torch import load_file

    state = load_file(str(path))
    if meta is None:
        if _looks_like_rrdbnet(state) and (name is None or _canonical(name) == "esrgan"):
            return _esrgan_from_state(state, str(path), n_frames=n_frames, scale=scale, device=device, **overrides)
        if name is None:
            raise CheckpointError(f"{path}: no architecture metadata (no embedded '{META_KEY}' entry and no "
                                  f"{_sidecar(path).name}); pass --model/--size/--frames/--scale")
        from .registry import build_generator

        model = _build_checked(lambda: build_generator(name, size, n_frames or 8, scale or 4, **overrides), state,
                               str(path))
    else:
        cfg = dict(meta["config"])
        for label, given, stored in (("model", name and _canonical(name), meta["name"]),
                                     ("frames", n_frames, cfg.get("n_frames")), ("scale", scale, cfg.get("scale"))):
            if given is not None and stored is not None and given != stored:
                raise CheckpointError(f"{path}: --{label} {given} does not match the checkpoint ({label} {stored})")
        cfg.update(overrides)
        if meta["name"] != "esrgan-discriminator":
            missing = [k for k in ("n_frames", "scale") if k not in cfg]
            if missing:
                raise CheckpointError(f"{path}: the config lacks {' and '.join(missing)}")
        check_arch_config(cfg, str(path))
        model = _build_checked(lambda: _build(meta["name"], meta.get("size"), cfg), state, str(path))
    return model.to(device).eval()


def _canonical(name: str) -> str:
    from .registry import resolve_name

    return "esrgan-discriminator" if name == "esrgan-discriminator" else resolve_name(name)


# --------------------------------------------------------------------------------------------------
# Authors' (BasicSR) ESRGAN weights

_OLD_ESRGAN_NAMES = [
    (re.compile(r"^RRDB_trunk\.(\d+)\.RDB(\d)\.conv(\d)\.(weight|bias)$"), r"body.\1.rdb\2.conv\3.\4"),
    (re.compile(r"^trunk_conv\."), "conv_body."),
    (re.compile(r"^upconv1\."), "conv_up1."),
    (re.compile(r"^upconv2\."), "conv_up2."),
    (re.compile(r"^HRconv\."), "conv_hr."),
]


def extract_state_dict(obj: Any, key: str | None = None, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The weights inside a loaded checkpoint object: ``obj[key]`` if given, else ``params_ema``, else
    ``params``, else ``state_dict``/``model``, else ``obj`` itself; ``module.`` prefixes stripped."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source}: expected a dict of tensors, got {type(obj).__name__}")
    if key is not None:
        if key not in obj:
            raise CheckpointError(f"{source}: no '{key}' entry (found: {', '.join(map(str, list(obj)[:8]))})")
        obj = obj[key]
    else:
        for candidate in ("params_ema", "params", "state_dict", "model"):
            if candidate in obj and isinstance(obj[candidate], Mapping):
                obj = obj[candidate]
                break
    state = {}
    for k, v in obj.items():
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"{source}: entry '{k}' is not a tensor")
        state[k[len("module."):] if k.startswith("module.") else k] = v
    return state


def map_esrgan_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename original-ESRGAN parameter names to BasicSR/RRDBNet names (BasicSR names pass unchanged)."""
    out = {}
    for k, v in state.items():
        for pattern, repl in _OLD_ESRGAN_NAMES:
            k = pattern.sub(repl, k)
        out[k] = v
    return out


def _looks_like_rrdbnet(state: Mapping[str, torch.Tensor]) -> bool:
    keys = map_esrgan_keys(state).keys()
    return "conv_first.weight" in keys and "body.0.rdb1.conv1.weight" in keys


def infer_rrdbnet_config(state: Mapping[str, torch.Tensor], *, scale: int = 4, in_channels: int = 3,
                         source: str = "checkpoint") -> dict[str, int]:
    """RRDBNet arguments from tensor shapes (features, growth, blocks, input/output channels, frames)."""
    need = ("conv_first.weight", "body.0.rdb1.conv1.weight", "conv_last.weight")
    for k in need:
        if k not in state:
            raise CheckpointError(f"{source}: not an RRDBNet state dict (no '{k}')")
    for k in need:
        if state[k].dim() != 4:
            raise CheckpointError(f"{source}: layer '{k}' has shape {tuple(state[k].shape)}, not a 4-D convolution "
                                  "weight")
    num_in_ch = int(state["conv_first.weight"].shape[1])
    per_frame = in_channels * (4 if scale == 2 else 1)
    if num_in_ch % per_frame:
        raise CheckpointError(
            f"{source}: layer 'conv_first.weight' takes {num_in_ch} input channels, not a multiple of "
            f"{per_frame} ({in_channels} channels per frame at scale {scale})")
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"^body\.(\d+)\.", k))}
    return {"in_channels": in_channels, "out_channels": int(state["conv_last.weight"].shape[0]),
            "n_frames": num_in_ch // per_frame, "scale": scale,
            "num_feat": int(state["conv_first.weight"].shape[0]),
            "num_block": max(blocks) + 1, "num_grow_ch": int(state["body.0.rdb1.conv1.weight"].shape[0])}


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint ({str(exc).splitlines()[0]})") from None


def _worldstrat_from_state(state: Mapping[str, torch.Tensor], source: str, *, name: str | None,
                           n_frames: int | None, scale: int | None, device: str | torch.device,
                           **overrides: Any) -> nn.Module:
    """The authors' SRCNN / HighRes-net from their state dict (architecture and scale from the shapes)."""
    from clipscore_sr.errors import ConfigError

    from .registry import build_generator
    from .worldstrat import infer_worldstrat_config

    try:
        kind, cfg = infer_worldstrat_config(dict(state), source)
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None
    if overrides.get("use_reference_frame"):
        cfg["in_channels"] //= 2
    for label, given, stored in (("model", name and _canonical(name), kind), ("frames", n_frames, cfg["n_frames"]),
                                 ("scale", scale, cfg["scale"])):
        if given is not None and given != stored:
            raise CheckpointError(f"{source}: --{label} {given} does not match the checkpoint ({label} {stored}, "
                                  "read from its tensor shapes)")
    cfg.update(overrides)
    model = build_generator(kind, "small", cfg.pop("n_frames"), cfg.pop("scale"), **cfg)
    load_state_dict_checked(model, state, source)
    return model.to(device).eval()


def _esrgan_from_state(state: Mapping[str, torch.Tensor], source: str, *, n_frames: int | None, scale: int | None,
                       device: str | torch.device, in_channels: int = 3, **overrides: Any) -> nn.Module:
    import warnings

    from .esrgan import RRDBNet

    scale_known = scale is not None
    if not scale_known:
        warnings.warn(f"{source}: the scale factor of RRDBNet weights cannot be read from the file (x3 weights have "
                      "the x4 shapes); assuming x4 - pass scale (generate --scale) to be sure", UserWarning,
                      stacklevel=3)
        scale = 4
    state = map_esrgan_keys(state)
    cfg = infer_rrdbnet_config(state, scale=scale, in_channels=in_channels, source=source)
    if n_frames is not None and n_frames != cfg["n_frames"]:
        per = in_channels * (4 if scale == 2 else 1)
        raise CheckpointError(
            f"{source}: layer 'conv_first.weight' has {cfg['n_frames'] * per} input channels "
            f"({cfg['n_frames']} frames) but --frames {n_frames} needs {n_frames * per}")
    cfg.update(overrides)
    check_arch_config(cfg, source)
    model = _build_checked(lambda: RRDBNet(**cfg), state, source)
    model.size = next((s for s, v in _sizes().items() if all(cfg.get(k) == x for k, x in v.items())), "custom")  # type: ignore[attr-defined]
    model.scale_known = scale_known  # type: ignore[attr-defined]
    return model.to(device).eval()


def _sizes() -> dict[str, dict[str, int]]:
    from .esrgan import ESRGAN_SIZES

    return ESRGAN_SIZES


def load_esrgan_authors(path: str | os.PathLike, *, n_frames: int | None = None, scale: int | None = 4,
                        key: str | None = None, device: str | torch.device = "cpu", **overrides: Any) -> nn.Module:
    """Load the authors' BasicSR-style ESRGAN checkpoint (``.pth`` with ``params_ema``/``params``, or a
    plain state dict in .pth/.safetensors) into an :class:`~clipscore_sr.baselines.esrgan.RRDBNet`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        obj: Any = load_file(str(path))
    else:
        obj = _torch_load(path)
    state = extract_state_dict(obj, key, source=str(path))
    return _esrgan_from_state(state, str(path), n_frames=n_frames, scale=scale, device=device, **overrides)
