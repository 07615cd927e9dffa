"""Training run configuration: one YAML file per run, validated up front.

Every key is checked before anything is built: unknown keys (with a close-match suggestion), wrong types,
out-of-range values, keys that do not apply to the chosen model, reader arguments the reader does not take,
missing data folders and unknown validation metric ids all fail with one line naming the key, e.g.
``run.yaml: losses.perceptul: unknown key (did you mean 'perceptual'?)``.

Relative paths (``output_dir``, data roots) are relative to the current working directory.

Sections (defaults in :data:`SCHEMA`; ``*`` = required)::

    name: esrgan-clip            # label in plots (default: derived from model + losses)
    seed: 0
    output_dir*: runs/esrgan-clip
    model:     {name*: esrgan, size: small, n_frames: 8, scale: 4, options: {num_feat: 64}}
    data:      {reader*: s2naip, train*: {root: ...}, val: {root: ...}, val_fraction: 0.0,
                crop_size: null, val_crop_size: null, num_workers: 0, max_val_samples: null,
                sampler: uniform | authors (their ssr/train.py: BasicSR EnlargedSampler, the same permutation
                every epoch) | tile_weights (OSM inverse-frequency weights; their train.py never uses them),
                tile_weights: null}
    losses:    L2 models:  {mse: 0.3, mae: 0.4, ssim: 0.3, ssim_style: authors (kornia 5x5, reflect) | metric
                            (11x11, valid), clip: 0.0, ...clip options}
               ESRGAN:     {l1: 1.0, perceptual: 1.0, perceptual_layers: {...}, gan: 0.1, clip: 0.0,
                            clip_model: clip-rn50, clip_distance: l1, clip_resize: weights | nearest (the
                            authors' F.interpolate(x, 224)), unsharp_targets: false (true = the authors'
                            l1_gt_usm + percep_gt_usm, also the CLIP target; gan_gt_usm stays false),
                            pixel_warmup_steps: 0}
               SR3:        {} (the noise-prediction loss; its type is the model option loss_type)
    discriminator: {num_feat: 64, lr_conditioned: false, skip_connection: true}     (ESRGAN)
    optimizer: {name: adam, lr: 1e-4, betas: [0.9, 0.99], weight_decay: 0.0, d_lr: null, d_betas: null}
    schedule:  {type: constant, warmup_steps: 0, milestones: [], gamma: 0.5, min_lr_ratio: 0.0}
    train:     {steps*: 1000, batch_size: 8, precision: fp32, device: auto, grad_clip: null,
                ema_decay: 0.999 (ESRGAN, SR3) / null (L2 models), log_interval: 1,
                checkpoint_interval: 500, keep_checkpoints: 3, nan_check: true, tensorboard: auto}
    validation: {interval: 500, at_start: true, metrics: [psnr, ssim], crop_border: 0 (authors: 4), batch_size: 8,
                 sampler: ddim, sampler_steps: 50, eta: 0.0}

``train.batch_size`` is the global batch: with ``torchrun --nproc_per_node N`` each process gets
``batch_size / N`` samples.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from clipscore_sr.errors import ConfigError

L2_MODELS = ("srcnn", "highresnet", "srcnn-915", "srcnn-mf", "highresnet-compact")
GAN_MODELS = ("esrgan",)
DIFFUSION_MODELS = ("sr3",)
READERS = ("s2naip", "worldstrat", "probav", "oli2msi", "paired")
PRECISIONS = ("fp32", "bf16", "fp16")
SCHEDULES = ("constant", "multistep", "cosine")
OPTIMIZERS = ("adam", "adamw")

_REQUIRED = object()


def family(model_name: str) -> str:
    """``'l2'``, ``'gan'`` or ``'diffusion'`` for a canonical generator name."""
    if model_name in L2_MODELS:
        return "l2"
    if model_name in GAN_MODELS:
        return "gan"
    return "diffusion"


# --------------------------------------------------------------------------------------------------
# value checkers: each returns the normalised value or raises ValueError with a short reason

def _show(v: Any, limit: int = 80) -> str:
    """A short repr for messages: bounded depth, items and length, whatever ``v`` holds (a YAML alias bomb
    is a small object graph whose full repr is astronomically long)."""
    import reprlib

    r = reprlib.Repr()
    r.maxlevel, r.maxlist, r.maxdict, r.maxtuple, r.maxset = 2, 4, 4, 4, 4
    r.maxstring, r.maxother = limit, limit
    text = r.repr(v)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _int(lo: int | None = None) -> Callable[[Any], int]:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ValueError(f"expected an integer, got {_show(v)}")
        if lo is not None and v < lo:
            raise ValueError(f"must be >= {lo}, got {v}")
        return int(v)
    return check


def _float(lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> Callable[[Any], float]:
    def check(v: Any) -> float:
        if isinstance(v, str):
            try:  # YAML 1.1 reads "1e-4" as a string
                v = float(v)
            except ValueError:
                raise ValueError(f"expected a number, got {_show(v)}") from None
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"expected a number, got {_show(v)}")
        v = float(v)
        if v != v or v in (float("inf"), float("-inf")):
            raise ValueError(f"must be finite, got {v}")
        if lo is not None and (v <= lo if lo_open else v < lo):
            raise ValueError(f"must be {'>' if lo_open else '>='} {lo}, got {v}")
        if hi is not None and v > hi:
            raise ValueError(f"must be <= {hi}, got {v}")
        return v
    return check


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"expected true or false, got {_show(v)}")
    return v


def _str(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError(f"expected a non-empty string, got {_show(v)}")
    return v.strip()


def _choice(*options: str) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        v = _str(v).lower()
        if v not in options:
            close = difflib.get_close_matches(v, options, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(f"'{v}' is not one of {', '.join(options)}{hint}")
        return v
    return check


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def wrapped(v: Any) -> Any:
        return None if v is None else check(v)
    return wrapped


def _mapping(v: Any) -> dict[str, Any]:
    if not isinstance(v, Mapping):
        raise ValueError(f"expected a mapping (key: value lines), got {type(v).__name__}")
    return dict(v)


def _list_of(check: Callable[[Any], Any], min_len: int = 0) -> Callable[[Any], list[Any]]:
    def wrapped(v: Any) -> list[Any]:
        if isinstance(v, str):
            v = [s for s in (p.strip() for p in v.split(",")) if s]
        if not isinstance(v, (list, tuple)):
            raise ValueError(f"expected a list, got {_show(v)}")
        if len(v) < min_len:
            raise ValueError(f"expected at least {min_len} item(s)")
        return [check(x) for x in v]
    return wrapped


def _betas(v: Any) -> list[float]:
    out = _list_of(_float(0.0, 1.0))(v)
    if len(out) != 2 or out[0] >= 1 or out[1] >= 1:
        raise ValueError(f"expected two numbers in [0, 1), got {_show(v)}")
    return out


def _layer_weights(v: Any) -> dict[str, float]:
    from .vgg_loss import vgg19_layer_names

    d = _mapping(v)
    names = [n for n in vgg19_layer_names() if n.startswith("conv")]
    out = {}
    for k, w in d.items():
        if k not in names:
            close = difflib.get_close_matches(str(k), names, n=1)
            raise ValueError(f"unknown VGG19 layer '{k}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        out[k] = _float(0.0)(w)
    if not out:
        raise ValueError("needs at least one layer")
    return out


# --------------------------------------------------------------------------------------------------
# schema: section -> key -> (checker, default); _REQUIRED marks required keys

_CLIP_KEYS = {
    "clip": (_float(0.0), 0.0),
    "clip_model": (_str, "clip-rn50"),
    "clip_distance": (_choice("l1", "cosine"), "l1"),
    "clip_resize": (_choice("weights", "nearest"), "weights"),
}

SCHEMA: dict[str, Any] = {
    "name": (_optional(_str), None),
    "seed": (_int(0), 0),
    "output_dir": (_str, _REQUIRED),
    "model": {
        "name": (_str, _REQUIRED),
        "size": (_str, "small"),
        "n_frames": (_int(1), 8),
        "scale": (_int(1), 4),
        "options": (_mapping, {}),
    },
    "data": {
        "reader": (_choice(*READERS), _REQUIRED),
        "train": (_mapping, _REQUIRED),
        "val": (_optional(_mapping), None),
        "val_fraction": (_float(0.0, 0.9), 0.0),
        "crop_size": (_optional(_int(1)), None),
        "val_crop_size": (_optional(_int(1)), None),
        "num_workers": (_int(0), 0),
        "max_val_samples": (_optional(_int(1)), None),
        "sampler": (_choice("uniform", "authors", "tile_weights"), "uniform"),
        "tile_weights": (_optional(_str), None),
    },
    "losses": {
        "l2": {"mse": (_float(0.0), 0.3), "mae": (_float(0.0), 0.4), "ssim": (_float(0.0), 0.3),
               "ssim_style": (_choice("authors", "metric"), "authors"), **_CLIP_KEYS},
        "gan": {
            "l1": (_float(0.0), 1.0),
            "perceptual": (_float(0.0), 1.0),
            "perceptual_layers": (_layer_weights, None),
            "perceptual_weights": (_optional(_str), None),
            "gan": (_float(0.0), 0.1),
            **_CLIP_KEYS,
            "unsharp_targets": (_bool, False),
            "pixel_warmup_steps": (_int(0), 0),
        },
        "diffusion": {},
    },
    "discriminator": {
        "num_feat": (_int(1), 64),
        "lr_conditioned": (_bool, False),
        "skip_connection": (_bool, True),
    },
    "optimizer": {
        "name": (_choice(*OPTIMIZERS), "adam"),
        "lr": (_float(0.0, lo_open=True), 1e-4),
        "betas": (_betas, [0.9, 0.99]),
        "weight_decay": (_float(0.0), 0.0),
        "d_lr": (_optional(_float(0.0, lo_open=True)), None),
        "d_betas": (_optional(_betas), None),
    },
    "schedule": {
        "type": (_choice(*SCHEDULES), "constant"),
        "warmup_steps": (_int(0), 0),
        "milestones": (_list_of(_int(1)), []),
        "gamma": (_float(0.0, lo_open=True), 0.5),
        "min_lr_ratio": (_float(0.0, 1.0), 0.0),
    },
    "train": {
        "steps": (_int(1), _REQUIRED),
        "batch_size": (_int(1), 8),
        "precision": (_choice(*PRECISIONS), "fp32"),
        "device": (_str, "auto"),
        "grad_clip": (_optional(_float(0.0, lo_open=True)), None),
        "ema_decay": (_optional(_float(0.0, 1.0)), "family"),
        "log_interval": (_int(1), 1),
        "checkpoint_interval": (_int(1), 500),
        "keep_checkpoints": (_int(1), 3),
        "nan_check": (_bool, True),
        "tensorboard": (_choice("auto", "true", "false"), "auto"),
    },
    "validation": {
        "interval": (_int(0), 500),
        "at_start": (_bool, True),
        "metrics": (_list_of(_str), ["psnr", "ssim"]),
        "crop_border": (_int(0), 0),
        "batch_size": (_int(1), 8),
        "sampler": (_choice("ddim", "ddpm"), "ddim"),
        "sampler_steps": (_int(1), 50),
        "eta": (_float(0.0), 0.0),
    },
}


def _unknown(where: str, key: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(str(key), known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ConfigError(f"{where}{key}: unknown key{hint}; expected one of {', '.join(known)}")


def _section(raw: Any, schema: Mapping[str, Any], where: str, src: str) -> dict[str, Any]:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{src}{where.rstrip('.')}: expected a mapping, got {type(raw).__name__}")
    out: dict[str, Any] = {}
    for key in raw:
        if key not in schema:
            raise _unknown(f"{src}{where}", str(key), list(schema))
    for key, spec in schema.items():
        check, default = spec
        if key not in raw:
            if default is _REQUIRED:
                raise ConfigError(f"{src}{where}{key}: missing (required)")
            out[key] = copy.deepcopy(default)
            continue
        try:
            out[key] = check(raw[key])
        except ValueError as exc:
            raise ConfigError(f"{src}{where}{key}: {exc}") from None
    return out


def reader_class(reader: str) -> type:
    """The dataset class behind a ``data.reader`` name."""
    from . import datasets

    return {"s2naip": datasets.S2NAIPDataset, "worldstrat": datasets.WorldStratDataset,
            "probav": datasets.ProbaVDataset, "oli2msi": datasets.OLI2MSIDataset,
            "paired": datasets.PairedFolderDataset}[reader]


#: reader arguments the trainer sets itself
_READER_MANAGED = ("n_frames", "seed", "crop_size")
_PATH_ARGS = ("root", "lr_dir", "hr_dir", "splits_csv")


def _check_reader_args(reader: str, args: dict[str, Any], where: str, check_paths: bool) -> dict[str, Any]:
    cls = reader_class(reader)
    params = {n: p for n, p in inspect.signature(cls.__init__).parameters.items() if n != "self"}
    allowed = [n for n in params if n not in _READER_MANAGED]
    for key in args:
        if key in _READER_MANAGED:
            place = {"n_frames": "model.n_frames", "seed": "seed", "crop_size": "data.crop_size"}[key]
            raise ConfigError(f"{where}{key}: set by the trainer; use {place} instead")
        if key not in params:
            raise _unknown(where, str(key), allowed)
    for name, p in params.items():
        if name not in _READER_MANAGED and p.default is inspect.Parameter.empty and name not in args:
            raise ConfigError(f"{where}{name}: missing (the {reader} reader needs it)")
    if check_paths:
        for key in _PATH_ARGS:
            if args.get(key) is not None and not Path(str(args[key])).expanduser().exists():
                raise ConfigError(f"{where}{key}: {args[key]} does not exist (get the {reader} data: README, "
                                  "'Getting the datasets and the authors' weights')")
    return args


def validate_config(raw: Any, source: str | os.PathLike | None = None, *, check_paths: bool = True
                    ) -> dict[str, Any]:
    """Validate a parsed config and return it complete (every default filled in, values normalised).

    ``source`` prefixes error messages (the file name). ``check_paths`` verifies that data folders exist.
    Raises :class:`ConfigError` with a one-line message naming the key.
    """
    src = f"{source}: " if source else ""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{src}expected a YAML mapping at the top level, got {type(raw).__name__}")
    sections = [k for k, v in SCHEMA.items() if isinstance(v, dict)]
    top = {k: v for k, v in SCHEMA.items() if not isinstance(v, dict)}
    for key in raw:
        if key not in SCHEMA:
            raise _unknown(src, str(key), list(SCHEMA))
    cfg = _section({k: raw[k] for k in top if k in raw}, top, "", src)

    from .registry import GENERATOR_SIZES, resolve_name

    for sec in ("model", "data", "train"):
        if sec not in raw:
            raise ConfigError(f"{src}{sec}: missing (required)")
    model = _section(raw.get("model"), SCHEMA["model"], "model.", src)
    try:
        model["name"] = resolve_name(model["name"])
    except ConfigError as exc:
        raise ConfigError(f"{src}model.name: {str(exc).split(': ', 1)[-1]}") from None
    if model["size"] not in GENERATOR_SIZES[model["name"]]:
        raise ConfigError(f"{src}model.size: '{model['size']}' is not a size of {model['name']} "
                          f"({', '.join(GENERATOR_SIZES[model['name']])})")
    from .registry import build_generator

    try:
        build_generator(model["name"], model["size"], model["n_frames"], model["scale"], device="meta",
                        **model["options"])
    except ConfigError as exc:
        raise ConfigError(f"{src}model: {exc}") from None
    fam = family(model["name"])
    cfg["model"] = model
    for sec in sections:
        if sec == "model":
            continue
        schema = SCHEMA[sec]
        if sec == "losses":
            schema = schema[fam]
        if sec == "discriminator" and fam != "gan":
            if raw.get(sec):
                raise ConfigError(f"{src}discriminator: only ESRGAN has a discriminator "
                                  f"(model.name is {model['name']})")
            cfg[sec] = None
            continue
        try:
            cfg[sec] = _section(raw.get(sec), schema, f"{sec}.", src)
        except ConfigError as exc:
            if sec == "losses" and "unknown key" in str(exc):
                raise ConfigError(f"{exc} (losses for {model['name']})") from None
            raise
    if cfg["losses"].get("perceptual_layers") is None and fam == "gan":
        from .vgg_loss import ESRGAN_LAYER_WEIGHTS

        cfg["losses"]["perceptual_layers"] = dict(ESRGAN_LAYER_WEIGHTS)
    train = cfg["train"]
    if train["ema_decay"] == "family":
        train["ema_decay"] = None if fam == "l2" else 0.999
    data = cfg["data"]
    data["train"] = _check_reader_args(data["reader"], data["train"], f"{src}data.train.", check_paths)
    if data["val"] is not None:
        data["val"] = _check_reader_args(data["reader"], data["val"], f"{src}data.val.", check_paths)
        if data["val_fraction"]:
            raise ConfigError(f"{src}data.val_fraction: give either data.val or data.val_fraction, not both")
    if data["reader"] == "s2naip":  # channels per frame follow from the bands: tci (3) + one per extra band
        bands = [str(b).lower() for b in data["train"].get("bands", ("tci",))]
        derived = 3 + len(bands) - 1
        given = model["options"].get("in_channels")
        if given is None:
            if derived != 3:
                model["options"]["in_channels"] = derived
                build_generator(model["name"], model["size"], model["n_frames"], model["scale"], device="meta",
                                **model["options"])
        elif given != derived:
            raise ConfigError(f"{src}model.options.in_channels: {given} but data.train.bands {bands} give {derived} "
                              "channels per frame (tci 3 + 1 per extra band); leave it out to derive it")
    if data["sampler"] == "tile_weights":
        if data["reader"] != "s2naip":
            raise ConfigError(f"{src}data.sampler: tile_weights needs the s2naip reader (got {data['reader']})")
        if data["tile_weights"] is None:
            raise ConfigError(f"{src}data.tile_weights: needed by sampler: tile_weights (the authors' "
                              "train_tile_weights JSON)")
        if check_paths and not Path(data["tile_weights"]).expanduser().is_file():
            raise ConfigError(f"{src}data.tile_weights: {data['tile_weights']} does not exist")
    elif data["tile_weights"] is not None:
        raise ConfigError(f"{src}data.tile_weights: only used with data.sampler: tile_weights")
    sched = cfg["schedule"]
    if sched["type"] == "multistep" and not sched["milestones"]:
        raise ConfigError(f"{src}schedule.milestones: needed for the multistep schedule")
    if sched["milestones"] != sorted(sched["milestones"]):
        raise ConfigError(f"{src}schedule.milestones: must be increasing, got {sched['milestones']}")
    if sched["warmup_steps"] >= train["steps"]:
        raise ConfigError(f"{src}schedule.warmup_steps: {sched['warmup_steps']} is not below train.steps "
                          f"({train['steps']})")
    if train["precision"] == "fp16" and train["device"].startswith("cpu"):
        raise ConfigError(f"{src}train.precision: fp16 needs a GPU; use fp32 or bf16 on CPU")
    val = cfg["validation"]
    from clipscore_sr.errors import UnknownMetricError
    from clipscore_sr.metrics.base import get_metric_class, split_metric_id

    for i, metric_id in enumerate(val["metrics"]):
        try:
            get_metric_class(split_metric_id(metric_id)[0])
        except UnknownMetricError as exc:
            raise ConfigError(f"{src}validation.metrics[{i}]: {exc}") from None
    if val["interval"] and data["val"] is None and not data["val_fraction"]:
        raise ConfigError(f"{src}validation.interval: {val['interval']} but there is no held-out split "
                          "(set data.val or data.val_fraction, or validation.interval: 0)")
    return cfg


def load_config(path: str | os.PathLike, *, check_paths: bool = True) -> dict[str, Any]:
    """Read and validate a YAML run configuration (see :func:`validate_config`)."""
    from clipscore_sr.yamlsafe import read_yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    return validate_config(read_yaml(path), path.name, check_paths=check_paths)


def run_label(cfg: Mapping[str, Any]) -> str:
    """A short label for plots: ``name`` if set, else model + whether the CLIP loss is on."""
    if cfg.get("name"):
        return str(cfg["name"])
    m = cfg["model"]
    base = f"{m['name']}-{m['size']}"
    w = cfg.get("losses", {}).get("clip", 0.0)
    return f"{base} + CLIP loss (w={w:g})" if w else f"{base} (no CLIP loss)"


def comparable_sections(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a config that must not change when a run is resumed."""
    return {k: cfg.get(k) for k in ("seed", "model", "losses", "discriminator", "optimizer", "schedule")} | {
        "batch_size": cfg["train"]["batch_size"], "precision": cfg["train"]["precision"],
        "ema_decay": cfg["train"]["ema_decay"], "reader": cfg["data"]["reader"],
        "crop_size": cfg["data"]["crop_size"], "sampler": cfg["data"].get("sampler", "uniform")}
