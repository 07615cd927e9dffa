"""Trainers for the reference generators: L2 models, ESRGAN (optionally with the CLIP loss) and SR3.

Usage::

    from clipscore_sr.baselines.trainer import Trainer, train
    result = train("run.yaml")                 # or Trainer(load_config("run.yaml")).run()
    result = train("run.yaml", resume=True)    # continue from the newest checkpoint in output_dir

What one optimiser step does, per model family (losses are means over the batch):

* **L2 models** (SRCNN, HighRes-net): ``mse*MSE + mae*MAE + ssim*(1-SSIM)/2`` (+ optional CLIP loss).
* **ESRGAN**: generator ``l1*L1 + perceptual*VGG19 + gan*BCE(D(sr), real) + ClipLoss(sr, target)``, the L1,
  VGG and CLIP target optionally unsharp-masked (the authors' ``l1_gt_usm``/``percep_gt_usm``; D sees the raw HR); then the U-Net discriminator ``BCE(D(hr), real) + BCE(D(sr), fake)``
  (two forward passes, real then fake, as BasicSR / the authors: with spectral norm each forward is one power
  iteration). During ``pixel_warmup_steps`` only the L1 term is used and D is not trained.
* **SR3**: the DDPM noise-prediction loss; the noise level and noise of every sample come from a generator
  seeded by ``(seed, step, sample index)``, so they do not depend on the number of processes.

Data order: ``data.sampler: authors`` (the shipped configs) is the authors' ``ssr/train.py``: BasicSR's
``EnlargedSampler`` whose ``set_epoch`` is never called, so every epoch visits the same permutation
``randperm(ceil(n / W) * W, seed 0) % n``, process ``r`` of ``W`` taking every ``W``-th index from ``r`` in
batches of ``batch_size / W`` (the incomplete last batch dropped). ``uniform``: epoch ``e`` visits
``randperm(n, seed(seed, e))``; ``tile_weights``: ``n`` draws with replacement proportional to the tile
weights (an option: the authors' training does not use it); both in consecutive global batches of
``train.batch_size``, process ``r`` taking the ``r``-th slice of ``batch_size / W`` samples. The batch of every step is a function of the
step number, so resuming needs no data-loader state and DDP sees the same global batch as one process.

Run folder (``output_dir``): ``config.yaml`` (the validated config), ``log.csv`` (one row per logged step:
``step, epoch, time_s`` (wall-clock seconds since the run started, summed over resumed sessions), ``lr``,
``loss`` and each weighted loss term, and ``val_<metric id>`` columns on validation steps),
``checkpoints/step_XXXXXXXX.pt`` (everything needed for an exact resume, written atomically, the newest
``keep_checkpoints`` kept), ``generator.safetensors`` (the EMA generator, or the raw one without EMA, in the
format ``srmetrics generate`` reads) and ``tensorboard/`` when TensorBoard is installed.
"""

from __future__ import annotations

import copy
import csv
import inspect
import math
import os
import random
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from clipscore_sr.errors import ConfigError, SRMetricsError

from .train_config import comparable_sections, family, load_config, reader_class, run_label, validate_config
from .train_losses import L2ModelLoss, gan_loss, unsharp_mask

CHECKPOINT_FORMAT = "clipscore-sr-train-state"
CHECKPOINT_VERSION = 1


class TrainingDivergedError(SRMetricsError):
    """A loss or gradient became NaN/inf; training stopped and the last good checkpoint was kept."""


@dataclass
class TrainResult:
    """What a finished (or stopped) run produced."""

    output_dir: Path
    step: int
    checkpoint: Path | None
    exported: Path | None
    log_path: Path
    validation: dict[str, float] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# helpers

def _seed_from(*parts: int) -> int:
    """A 63-bit seed derived from integers (independent streams for (seed, epoch), (seed, step, i), ...)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def _collate(items: Sequence[Mapping[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
    if any("hr" not in it for it in items):
        raise ConfigError(f"data: sample '{items[0].get('key')}' has no target image (hr); training needs targets")
    return torch.stack([it["lr"] for it in items]), torch.stack([it["hr"] for it in items])


def _base_dataset(ds: Dataset) -> Any:
    return ds.dataset if isinstance(ds, Subset) else ds


def _rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {"python": random.getstate(),
                             "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss),
                                       float(cached)],
                             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def export_generator(model: nn.Module, path: str | os.PathLike, *, extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``model`` in the generator checkpoint format (safetensors + JSON) atomically."""
    from .checkpoints import save_checkpoint

    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.safetensors")
    save_checkpoint(model, tmp, extra=extra)
    mode = _umask_mode()
    for f in (tmp, tmp.with_suffix(".json")):  # safetensors writes 0600; follow the umask as other outputs
        os.chmod(f, mode)
    os.replace(tmp.with_suffix(".json"), path.with_suffix(".json"))
    os.replace(tmp, path)
    return path


def _umask_mode() -> int:
    """``0o666`` less the process umask: the mode ``open()`` gives new files."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Training checkpoints of a run folder, oldest first."""
    d = Path(output_dir) / "checkpoints"
    return sorted(d.glob("step_*.pt")) if d.is_dir() else []


def load_train_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read a training checkpoint written by :class:`Trainer` (CPU tensors)."""
    path = Path(path)
    expected = "expected a training checkpoint checkpoints/step_*.pt written by `srmetrics train`"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        detail = str(exc).splitlines()[0] if str(exc) else ""
        if isinstance(exc, (IndexError, KeyError, EOFError, ValueError)) or "Unpickl" in type(exc).__name__:
            reason = "not a PyTorch checkpoint, or a damaged one"  # the unpickler's own words help nobody
        else:
            reason = f"torch.load: {type(exc).__name__}{': ' + detail[:120] if detail else ''}"
        raise SRMetricsError(f"{path}: not readable as a training checkpoint ({reason}; {expected})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        kind = "a generator file for `srmetrics generate`" if path.suffix == ".safetensors" else "another file"
        raise SRMetricsError(f"{path}: not a clipscore-sr training checkpoint ({expected}; this is {kind})")
    for key in ("config", "generator", "step"):
        if key not in state:
            raise SRMetricsError(f"{path}: training checkpoint lacks '{key}' (damaged or from another version)")
    return state


def export_from_checkpoint(checkpoint: str | os.PathLike, out: str | os.PathLike, *, ema: bool = True) -> Path:
    """Export the (EMA) generator of a training checkpoint to the generator checkpoint format."""
    from .registry import build_generator

    state = load_train_state(checkpoint)
    cfg = state["config"]
    m = cfg["model"]
    model = build_generator(m["name"], m["size"], m["n_frames"], m["scale"], **m["options"])
    use_ema = ema and state.get("ema") is not None
    model.load_state_dict(state["ema"] if use_ema else state["generator"])
    return export_generator(model, out, extra={"step": state["step"], "ema": use_ema, **export_extra(cfg)})


def export_extra(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """What `srmetrics generate` reads from an exported generator: run label, training tile, S2-NAIP bands."""
    data = cfg["data"]
    extra: dict[str, Any] = {"run": run_label(cfg), "tile": data["crop_size"] or 32}
    if data["reader"] == "s2naip":
        extra["bands"] = [str(b).lower() for b in data["train"].get("bands", ("tci",))]
    return extra


def _lr_factor(cfg: Mapping[str, Any], total: int):
    sched = cfg["schedule"]
    warm, kind = sched["warmup_steps"], sched["type"]

    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        if kind == "multistep":
            return sched["gamma"] ** sum(step >= m for m in sched["milestones"])
        if kind == "cosine":
            t = min(1.0, (step - warm) / max(1, total - warm))
            lo = sched["min_lr_ratio"]
            return lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * t))
        return 1.0

    return factor


class _SR3Loss(nn.Module):
    """Wraps SR3 so that DDP's forward computes the training loss."""

    def __init__(self, sr3: nn.Module) -> None:
        super().__init__()
        self.sr3 = sr3

    def forward(self, hr: torch.Tensor, lr: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
        return self.sr3.loss(hr, lr, generators)


# --------------------------------------------------------------------------------------------------

class Trainer:
    """One training run (see the module docstring). ``config``: a validated config dict, or a YAML path.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) the process group is initialised here (NCCL on GPUs, gloo on CPU)
    unless it already is; only rank 0 writes files and validates.
    """

    def __init__(self, config: Mapping[str, Any] | str | os.PathLike, *, resume: bool = False,
                 check_only: bool = False) -> None:
        if isinstance(config, (str, os.PathLike)):
            config = load_config(config)
        else:
            config = validate_config(dict(config), check_paths=True)
        self.cfg: dict[str, Any] = copy.deepcopy(dict(config))
        cfg = self.cfg
        self.family = family(cfg["model"]["name"])
        self._init_distributed()
        self.out = Path(cfg["output_dir"]).expanduser()
        self.ckpt_dir = self.out / "checkpoints"
        self.log_path = self.out / "log.csv"
        existing = list_checkpoints(self.out)
        if resume and not existing:
            raise ConfigError(f"--resume: no checkpoint in {self.ckpt_dir} (start without --resume)")
        if not resume and existing:
            raise ConfigError(f"output_dir {self.out}: holds checkpoints of an earlier run (up to "
                              f"{existing[-1].name}); pass --resume to continue it or choose another output_dir")
        self.check_only = check_only
        if not resume and not check_only and self.rank == 0 and self.log_path.exists():
            self.log_path.unlink()  # a run that never reached its first checkpoint starts over

        seed = cfg["seed"]
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        self._build_data()
        self._build_models()
        self._build_losses()
        self._build_optim()
        torch.manual_seed(_seed_from(seed, 1, self.rank))  # per-process stream for dropout etc.
        self.step = 0
        self.elapsed_before = 0.0
        self.last_checkpoint: Path | None = None
        self.last_validation: dict[str, float] = {}
        self._start_time = time.perf_counter()
        if resume:
            self._load(existing)
        self._wrap_ddp()
        self._columns = self._log_columns()
        self._tb = None
        if check_only:
            from clipscore_sr.pipeline import prepare_metrics

            prepare_metrics(self.metrics)  # validation metric weights (e.g. CLIP) resolve now
            return
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            self._write_config()
            self._prepare_log(resume)
            self._tb = self._tensorboard()

    # ---------------------------------------------------------------------------------------------- setup
    def _init_distributed(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        from clipscore_sr.devices import init_distributed, resolve_device, resolve_precision

        device = resolve_device(self.cfg["train"]["device"])
        if self.world > 1:
            if device.type == "cuda":
                device = torch.device("cuda", self.local_rank)
                torch.cuda.set_device(device)
            init_distributed("nccl" if device.type == "cuda" else "gloo")
            if self.cfg["train"]["batch_size"] % self.world:
                raise ConfigError(f"train.batch_size: {self.cfg['train']['batch_size']} is not divisible by "
                                  f"the {self.world} processes")
        self.device = device
        try:
            self.precision = resolve_precision(self.cfg["train"]["precision"], device)
        except SRMetricsError as exc:
            raise ConfigError(f"train.precision: {str(exc).split(': ', 1)[-1]}") from None
        self.local_batch = self.cfg["train"]["batch_size"] // self.world

    def _make_dataset(self, which: str, crop: int | None) -> Dataset:
        data, m = self.cfg["data"], self.cfg["model"]
        cls = reader_class(data["reader"])
        args = dict(data[which] if data.get(which) else data["train"])
        params = inspect.signature(cls.__init__).parameters
        if "n_frames" in params:
            args["n_frames"] = m["n_frames"]
        try:
            return cls(**args, seed=self.cfg["seed"], crop_size=crop)
        except TypeError as exc:
            raise ConfigError(f"data.{which}: {exc}") from None

    def _build_data(self) -> None:
        data, m = self.cfg["data"], self.cfg["model"]
        if data["crop_size"] and self.family == "gan" and (data["crop_size"] * m["scale"]) % 8:
            raise ConfigError(f"data.crop_size: {data['crop_size']} x scale {m['scale']} must be a multiple of 8 "
                              "for the ESRGAN discriminator")
        train = self._make_dataset("train", data["crop_size"])
        val: Dataset | None = None
        if data["val"] is not None:
            val = self._make_dataset("val", data["val_crop_size"])
        elif data["val_fraction"]:
            n = len(train)
            order = np.random.default_rng(self.cfg["seed"]).permutation(n)
            n_val = max(1, int(math.ceil(n * data["val_fraction"])))
            if n_val >= n:
                raise ConfigError(f"data.val_fraction: leaves no training samples ({n} in total)")
            val = Subset(self._make_dataset("train", data["val_crop_size"]), sorted(order[n - n_val:].tolist()))
            train = Subset(train, sorted(order[: n - n_val].tolist()))
        if val is not None and data["max_val_samples"]:
            val = Subset(val, list(range(min(len(val), data["max_val_samples"]))))
        self.train_set, self.val_set = train, val
        self.sample_weights: torch.Tensor | None = None
        if data["sampler"] == "tile_weights":
            w = _base_dataset(train).tile_weights(Path(data["tile_weights"]).expanduser())
            if isinstance(train, Subset):
                w = w[np.asarray(train.indices)]
            self.sample_weights = torch.from_numpy(w)
        if len(train) < self.cfg["train"]["batch_size"]:
            raise ConfigError(f"train.batch_size: {self.cfg['train']['batch_size']} exceeds the "
                              f"{len(train)} training samples")
        self.steps_per_epoch = len(train) // self.cfg["train"]["batch_size"]

    def _build_models(self) -> None:
        from .registry import build_discriminator, build_generator

        m, cfg = self.cfg["model"], self.cfg
        self.generator = build_generator(m["name"], m["size"], m["n_frames"], m["scale"], **m["options"]).to(self.device)
        self.discriminator: nn.Module | None = None
        if self.family == "gan" and cfg["losses"]["gan"] > 0:
            d = cfg["discriminator"]
            self.discriminator = build_discriminator(
                n_frames=m["n_frames"], lr_conditioned=d["lr_conditioned"], in_channels=self.generator.out_channels,
                num_feat=d["num_feat"], lr_channels=self.generator.in_channels,
                skip_connection=d["skip_connection"]).to(self.device)
        decay = cfg["train"]["ema_decay"]
        self.ema: nn.Module | None = None
        if decay is not None:
            self.ema = copy.deepcopy(self.generator).requires_grad_(False).eval()

    def _build_losses(self) -> None:
        L = self.cfg["losses"]
        self.l2_loss = L2ModelLoss(L["mse"], L["mae"], L["ssim"], L["ssim_style"]) if self.family == "l2" else None
        self.perceptual = None
        if self.family == "gan" and L["perceptual"] > 0:
            from .vgg_loss import VGGPerceptualLoss

            self.perceptual = VGGPerceptualLoss(L["perceptual_layers"],
                                                weights_path=L.get("perceptual_weights")).to(self.device)
        self.clip_loss = None
        if self.family != "diffusion" and L["clip"] > 0:
            from clipscore_sr.metrics.clip import ClipLoss

            spec = L["clip_model"]
            spec = spec[len("clipscore:"):] if spec.startswith("clipscore:") else spec
            self.clip_loss = ClipLoss(spec, distance=L["clip_distance"], weight=L["clip"], resize=L["clip_resize"])
            self.clip_loss.clip(self.device)  # load now: missing weights fail before training starts
        self.metrics = []
        if self.rank == 0 and self.val_set is not None and self.cfg["validation"]["interval"]:
            from clipscore_sr.pipeline import build_metrics

            v = self.cfg["validation"]
            self.metrics = build_metrics(v["metrics"], device=self.device,
                                         metric_options={"crop_border": v["crop_border"]})

    def _build_optim(self) -> None:
        o, total = self.cfg["optimizer"], self.cfg["train"]["steps"]
        cls = torch.optim.AdamW if o["name"] == "adamw" else torch.optim.Adam

        def make(params, lr, betas):
            return cls(params, lr=lr, betas=tuple(betas), weight_decay=o["weight_decay"])

        self.opt_g = make(self.generator.parameters(), o["lr"], o["betas"])
        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, _lr_factor(self.cfg, total))
        fp16 = self.precision == "fp16"
        self.scaler_g = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.opt_d = self.sched_d = self.scaler_d = None
        if self.discriminator is not None:
            self.opt_d = make(self.discriminator.parameters(), o["d_lr"] or o["lr"], o["d_betas"] or o["betas"])
            self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, _lr_factor(self.cfg, total))
            self.scaler_d = torch.amp.GradScaler(self.device.type, enabled=fp16)

    def _wrap_ddp(self) -> None:
        self.g_train: nn.Module = _SR3Loss(self.generator) if self.family == "diffusion" else self.generator
        self.d_train = self.discriminator
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.g_train = DDP(self.g_train, device_ids=ids)
            if self.discriminator is not None:
                self.d_train = DDP(self.discriminator, device_ids=ids)

    # ---------------------------------------------------------------------------------------------- data
    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        n, b = len(self.train_set), self.cfg["train"]["batch_size"]
        if self.cfg["data"]["sampler"] == "authors":  # BasicSR EnlargedSampler, epoch stuck at 0
            total = math.ceil(n / self.world) * self.world
            mine = [v % n for v in torch.randperm(total, generator=torch.Generator().manual_seed(0)).tolist()]
            mine = mine[self.rank:total:self.world]
            lb = self.local_batch
            return [mine[i * lb: (i + 1) * lb] for i in range(len(mine) // lb)][: n // b]
        g = torch.Generator().manual_seed(_seed_from(self.cfg["seed"], 2, epoch))
        if self.sample_weights is not None:  # the authors' tile-weight sampler: n draws with replacement
            perm = torch.multinomial(self.sample_weights, n, replacement=True, generator=g).tolist()
        else:
            perm = torch.randperm(n, generator=g).tolist()
        lo, hi = self.rank * self.local_batch, (self.rank + 1) * self.local_batch
        return [perm[i * b: (i + 1) * b][lo:hi] for i in range(n // b)]

    def _batches(self):
        """Yield ``(lr, hr, global_indices)`` for steps ``self.step, self.step + 1, ...``."""
        spe = self.steps_per_epoch
        while True:
            epoch, pos = divmod(self.step, spe)
            _base_dataset(self.train_set).set_epoch(epoch)
            batches = self._epoch_batches(epoch)[pos:]
            loader = DataLoader(self.train_set, batch_sampler=batches, num_workers=self.cfg["data"]["num_workers"],
                                collate_fn=_collate, generator=torch.Generator().manual_seed(_seed_from(epoch)),
                                pin_memory=self.device.type == "cuda")
            for i, (lr, hr) in enumerate(loader):
                gidx = [(epoch * spe + pos + i) * self.cfg["train"]["batch_size"] + self.rank * self.local_batch + j
                        for j in range(lr.shape[0])]
                yield lr.to(self.device, non_blocking=True), hr.to(self.device, non_blocking=True), gidx

    # ---------------------------------------------------------------------------------------------- steps
    def _autocast(self):
        from clipscore_sr.devices import autocast

        return autocast(self.device, self.precision)

    def _reduce(self, terms: dict[str, torch.Tensor], what: str) -> dict[str, float]:
        """Cross-process mean of the loss terms; stops the run if any is NaN/inf (all ranks together)."""
        names = list(terms)
        vals = torch.stack([terms[k].detach().float().reshape(()) for k in names])
        if self.world > 1:
            vals = vals.to(self.device)
            dist.all_reduce(vals)
            vals = vals / self.world
        out = dict(zip(names, vals.tolist()))
        if self.cfg["train"]["nan_check"]:
            for k, v in sorted(out.items(), key=lambda kv: kv[0] == "loss"):  # name a term before the total
                if not math.isfinite(v):
                    self._diverged(f"loss term '{k}' is {v} ({what})")
        return out

    def _diverged(self, what: str) -> None:
        if self.last_checkpoint is not None:
            keep = f"the last good checkpoint is {self.last_checkpoint} (step {self._ckpt_step(self.last_checkpoint)})"
        else:
            keep = "no checkpoint was written yet"
        raise TrainingDivergedError(
            f"step {self.step + 1}: {what}; training stopped and {keep} (try a lower optimizer.lr, "
            "train.grad_clip, or fp32)")

    @staticmethod
    def _ckpt_step(path: Path) -> int:
        return int(path.stem.split("_")[1])

    def _backward_step(self, loss: torch.Tensor, params, opt, scaler) -> None:
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        clip = self.cfg["train"]["grad_clip"]
        if clip is not None:
            scaler.unscale_(opt)
            norm = torch.nn.utils.clip_grad_norm_(list(params), clip)
            if self.cfg["train"]["nan_check"] and not scaler.is_enabled() and not torch.isfinite(norm):
                self._diverged(f"gradient norm is {float(norm)}")
        scaler.step(opt)
        scaler.update()

    def _step_l2(self, lr: torch.Tensor, hr: torch.Tensor) -> dict[str, float]:
        with self._autocast():
            sr = self.g_train(lr)
        sr = sr.float()
        terms = self.l2_loss.terms(sr, hr)
        if self.clip_loss is not None:
            terms["clip"] = self.clip_loss(sr, hr)
        loss = sum(terms.values())
        logged = self._reduce({"loss": loss, **terms}, "generator")
        self._backward_step(loss, self.generator.parameters(), self.opt_g, self.scaler_g)
        return logged

    def _step_gan(self, lr: torch.Tensor, hr: torch.Tensor) -> dict[str, float]:
        L = self.cfg["losses"]
        warm = self.step < L["pixel_warmup_steps"]
        target = unsharp_mask(hr) if L["unsharp_targets"] else hr
        with self._autocast():
            sr = self.g_train(lr)
            terms: dict[str, torch.Tensor] = {}
            if L["l1"]:
                terms["l1"] = L["l1"] * torch.nn.functional.l1_loss(sr.float(), target)
            if not warm:
                if self.perceptual is not None:
                    terms["perceptual"] = L["perceptual"] * self.perceptual(sr, target.to(sr.dtype)).float()
                if self.discriminator is not None:
                    self.discriminator.requires_grad_(False)
                    cond = lr if self.cfg["discriminator"]["lr_conditioned"] else None
                    terms["gan"] = L["gan"] * gan_loss(self.discriminator(sr, cond).float(), True)
                if self.clip_loss is not None:  # the authors compare with the (sharpened) L1 target
                    terms["clip"] = self.clip_loss(sr.float(), target)
        if not terms:
            raise ConfigError("losses: every generator loss weight is 0 at this step")
        loss = sum(terms.values())
        logged = self._reduce({"loss": loss, **terms}, "generator")
        self._backward_step(loss, self.generator.parameters(), self.opt_g, self.scaler_g)
        if warm or self.discriminator is None:
            return logged
        self.discriminator.requires_grad_(True)
        with self._autocast():  # real, then fake: two forwards (two spectral-norm power iterations), as theirs
            cond = lr if self.cfg["discriminator"]["lr_conditioned"] else None
            d_real = gan_loss(self.d_train(hr.to(sr.dtype), cond).float(), True)
            d_fake = gan_loss(self.d_train(sr.detach(), cond).float(), False)
        d_loss = d_real + d_fake
        logged.update(self._reduce({"d_real": d_real, "d_fake": d_fake}, "discriminator"))
        self._backward_step(d_loss, self.discriminator.parameters(), self.opt_d, self.scaler_d)
        return logged

    def _step_diffusion(self, lr: torch.Tensor, hr: torch.Tensor, gidx: list[int]) -> dict[str, float]:
        gens = [torch.Generator().manual_seed(_seed_from(self.cfg["seed"], 3, self.step, i)) for i in gidx]
        with self._autocast():
            loss = self.g_train(hr, lr, gens).float()
        logged = self._reduce({"loss": loss, "noise": loss}, "noise prediction")
        self._backward_step(loss, self.generator.parameters(), self.opt_g, self.scaler_g)
        return logged

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.ema is None:
            return
        d = self.cfg["train"]["ema_decay"]
        for e, p in zip(self.ema.parameters(), self.generator.parameters()):
            e.mul_(d).add_(p.detach(), alpha=1 - d)
        for e, b in zip(self.ema.buffers(), self.generator.buffers()):
            e.copy_(b)

    # ---------------------------------------------------------------------------------------------- validation
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean of every validation metric over the held-out split, using the EMA generator when there is one.
        Runs on rank 0 only (returns ``{}`` elsewhere)."""
        if self.rank != 0 or self.val_set is None or not self.metrics:
            return {}
        v = self.cfg["validation"]
        model = self.ema if self.ema is not None else self.generator
        was_training = model.training
        model.eval()
        sums = {m.id: 0.0 for m in self.metrics}
        count = 0
        loader = DataLoader(self.val_set, batch_size=v["batch_size"], shuffle=False, collate_fn=_collate,
                            num_workers=self.cfg["data"]["num_workers"])
        for lr, hr in loader:
            lr, hr = lr.to(self.device), hr.to(self.device)
            with self._autocast():
                if self.family == "diffusion":
                    gens = [torch.Generator().manual_seed(_seed_from(self.cfg["seed"], 4, count + j))
                            for j in range(lr.shape[0])]
                    sr = model.sample(lr, sampler=v["sampler"], steps=v["sampler_steps"], eta=v["eta"],
                                      generator=gens)
                else:
                    sr = model(lr)
            sr = sr.float().clamp(0, 1)
            for m in self.metrics:
                sums[m.id] += float(m.compute(sr, hr).double().sum())
            count += lr.shape[0]
        model.train(was_training)
        return {k: s / max(count, 1) for k, s in sums.items()}

    # ---------------------------------------------------------------------------------------------- logging
    def _log_columns(self) -> list[str]:
        L, terms = self.cfg["losses"], []
        if self.family == "l2":
            terms = [k for k in ("mse", "mae", "ssim") if L[k]]
        elif self.family == "gan":
            terms = [k for k in ("l1", "perceptual", "gan") if L[k]]
        else:
            terms = ["noise"]
        if self.family != "diffusion" and L["clip"]:
            terms.append("clip")
        if self.discriminator is not None:
            terms += ["d_real", "d_fake"]
        val = [f"val_{mid}" for mid in self.cfg["validation"]["metrics"]] if self.metrics else []
        return ["step", "epoch", "time_s", "lr", "loss", *terms, *val]

    def _write_config(self) -> None:
        import yaml

        text = yaml.safe_dump(self.cfg, sort_keys=False)
        tmp = self.out / f".config.yaml.tmp{os.getpid()}"
        tmp.write_text(text)
        os.replace(tmp, self.out / "config.yaml")

    def _prepare_log(self, resume: bool) -> None:
        """Start log.csv, or on resume drop rows logged after the checkpoint (they will be redone)."""
        rows: list[dict[str, str]] = []
        if resume and self.log_path.exists():
            with open(self.log_path, newline="") as fh:
                reader = csv.DictReader(fh)
                if reader.fieldnames and list(reader.fieldnames) != self._columns:
                    raise ConfigError(f"{self.log_path}: columns {reader.fieldnames} differ from this config's "
                                      f"{self._columns}; the config changed since the run started")
                rows = [r for r in reader if int(r["step"]) <= self.step]
        tmp = self.log_path.with_name(f".log.csv.tmp{os.getpid()}")
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=self._columns)
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, self.log_path)

    def _tensorboard(self) -> Any:
        mode = self.cfg["train"]["tensorboard"]
        if mode == "false":
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            if mode == "true":
                raise ConfigError("train.tensorboard: true but the tensorboard package is not installed "
                                  "(pip install tensorboard, or set it to auto)") from None
            return None
        return SummaryWriter(str(self.out / "tensorboard"), purge_step=self.step if self.step else None)

    def _log(self, row: dict[str, Any]) -> None:
        if self.rank != 0:
            return
        with open(self.log_path, "a", newline="") as fh:
            csv.DictWriter(fh, fieldnames=self._columns).writerow(
                {k: (f"{v:.9g}" if isinstance(v, float) else v) for k, v in row.items() if k in self._columns})
        if self._tb is not None:
            for k, v in row.items():
                if k not in ("step", "epoch") and isinstance(v, (int, float)):
                    self._tb.add_scalar(k.replace("val_", "val/"), v, row["step"], walltime=None)

    def elapsed(self) -> float:
        """Wall-clock seconds of this run, summed over resumed sessions."""
        return self.elapsed_before + time.perf_counter() - self._start_time

    # ---------------------------------------------------------------------------------------------- checkpoints
    def _state(self, rng: list[dict[str, Any]]) -> dict[str, Any]:
        def sd(x: Any) -> Any:
            return None if x is None else x.state_dict()

        return {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "step": self.step,
                "elapsed": self.elapsed(), "config": self.cfg, "world_size": self.world,
                "generator": sd(self.generator), "ema": sd(self.ema), "discriminator": sd(self.discriminator),
                "opt_g": sd(self.opt_g), "opt_d": sd(self.opt_d), "sched_g": sd(self.sched_g),
                "sched_d": sd(self.sched_d), "scaler_g": sd(self.scaler_g), "scaler_d": sd(self.scaler_d),
                "rng": rng, "validation": self.last_validation}

    def save(self) -> Path | None:
        """Write a checkpoint of the current step (atomic; keeps the newest ``keep_checkpoints``)."""
        rng = _rng_state()
        states = [rng]
        if self.world > 1:
            states = [None] * self.world
            dist.all_gather_object(states, rng)
        path = self.ckpt_dir / f"step_{self.step:08d}.pt"
        if self.rank == 0:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            _atomic_torch_save(self._state(states), path)
            for old in list_checkpoints(self.out)[: -self.cfg["train"]["keep_checkpoints"]]:
                old.unlink()
        if self.world > 1:
            dist.barrier()
        self.last_checkpoint = path
        return path

    def _load(self, existing: list[Path]) -> None:
        state, path = None, None
        for p in reversed(existing):  # newest readable checkpoint
            try:
                state, path = load_train_state(p), p
                break
            except SRMetricsError as exc:
                print(f"warning: skipping {exc}", file=sys.stderr)
        if state is None:
            raise SRMetricsError(f"{self.ckpt_dir}: no readable checkpoint to resume from")
        mine, theirs = comparable_sections(self.cfg), comparable_sections(state["config"])
        for k in mine:
            if mine[k] != theirs.get(k):
                raise ConfigError(f"--resume: '{k}' differs from the run in {self.out} ({theirs.get(k)!r} there, "
                                  f"{mine[k]!r} now); start a new output_dir instead")
        steps_then, steps_now = state["config"]["train"]["steps"], self.cfg["train"]["steps"]
        if steps_then != steps_now and self.cfg["schedule"]["type"] == "cosine":
            raise ConfigError(f"--resume: train.steps {steps_now} differs from the run's {steps_then} and the cosine "
                              "schedule depends on it; keep train.steps (changing it is allowed with the constant "
                              "and multistep schedules, whose milestones are absolute steps)")
        if self.rank == 0:
            more = f"; train.steps {steps_then} -> {steps_now}" if steps_then != steps_now else ""
            print(f"resuming from {path} at step {int(state['step'])}{more}", file=sys.stderr)
        self.generator.load_state_dict(state["generator"])
        for name in ("ema", "discriminator", "opt_g", "opt_d", "sched_g", "sched_d", "scaler_g", "scaler_d"):
            obj = getattr(self, name)
            if obj is not None and state.get(name) is not None:
                obj.load_state_dict(state[name])
        self.step, self.elapsed_before = int(state["step"]), float(state["elapsed"])
        self.last_validation = dict(state.get("validation") or {})
        rng = state["rng"]
        if len(rng) != self.world:
            print(f"warning: checkpoint was written by {len(rng)} process(es), resuming with {self.world}: "
                  "random streams continue from process 0's state", file=sys.stderr)
        _set_rng_state(rng[self.rank % len(rng)])
        self.last_checkpoint = path

    # ---------------------------------------------------------------------------------------------- loop
    def export(self, path: str | os.PathLike | None = None) -> Path | None:
        """Write the EMA generator (or the raw one without EMA) as ``output_dir/generator.safetensors``."""
        if self.rank != 0:
            return None
        model = self.ema if self.ema is not None else self.generator
        return export_generator(model, path or self.out / "generator.safetensors",
                                extra={"step": self.step, "ema": self.ema is not None, **export_extra(self.cfg)})

    def run(self, until: int | None = None) -> TrainResult:
        """Train to ``train.steps`` (or stop early after step ``until``, writing a checkpoint there)."""
        t = self.cfg["train"]
        total = t["steps"] if until is None else min(until, t["steps"])
        v = self.cfg["validation"]
        self._start_time = time.perf_counter()
        if self.step == 0 and v["interval"] and v["at_start"] and self.val_set is not None:
            self.last_validation = self.validate()
            if self.rank == 0:
                self._log({"step": 0, "epoch": 0, "time_s": self.elapsed(), "lr": self.sched_g.get_last_lr()[0],
                           **{f"val_{k}": x for k, x in self.last_validation.items()}})
            if self.world > 1:
                dist.barrier()
        self.generator.train()
        if self.discriminator is not None:
            self.discriminator.train()
        batches = self._batches()
        try:
            while self.step < total:
                lr, hr, gidx = next(batches)
                lr_now = self.sched_g.get_last_lr()[0]
                if self.family == "l2":
                    logged = self._step_l2(lr, hr)
                elif self.family == "gan":
                    logged = self._step_gan(lr, hr)
                else:
                    logged = self._step_diffusion(lr, hr, gidx)
                self.sched_g.step()
                if self.sched_d is not None and self.step >= self.cfg["losses"].get("pixel_warmup_steps", 0):
                    self.sched_d.step()
                self._update_ema()
                self.step += 1
                row: dict[str, Any] = {"step": self.step, "epoch": (self.step - 1) // self.steps_per_epoch,
                                       "lr": lr_now, **logged}
                validated = bool(v["interval"]) and self.step % v["interval"] == 0
                if validated:
                    self.last_validation = self.validate()
                    row.update({f"val_{k}": x for k, x in self.last_validation.items()})
                    if self.world > 1:
                        dist.barrier()
                if validated or self.step % t["log_interval"] == 0 or self.step == total:
                    row["time_s"] = self.elapsed()
                    self._log(row)
                if self.step % t["checkpoint_interval"] == 0 or self.step == total:
                    self.save()
        finally:
            batches.close()
            if self._tb is not None:
                self._tb.flush()
        exported = self.export() if self.step == t["steps"] else None
        return TrainResult(self.out, self.step, self.last_checkpoint, exported, self.log_path,
                           dict(self.last_validation))

    def close(self) -> None:
        """Release TensorBoard handles (the process group is left to the caller / torchrun)."""
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def train(config: Mapping[str, Any] | str | os.PathLike, *, resume: bool = False) -> TrainResult:
    """Run (or resume) a training run from a config dict or YAML path; see :class:`Trainer`."""
    trainer = Trainer(config, resume=resume)
    try:
        return trainer.run()
    finally:
        trainer.close()


def describe(result: TrainResult) -> str:
    """One line for the CLI."""
    val = ", ".join(f"{k}={v:.4f}" for k, v in result.validation.items())
    parts = [f"step {result.step}", f"log {result.log_path}"]
    if result.checkpoint:
        parts.append(f"checkpoint {result.checkpoint}")
    if result.exported:
        parts.append(f"generator {result.exported}")
    if val:
        parts.append(f"validation {val}")
    return "; ".join(parts)


__all__ = ["Trainer", "TrainResult", "TrainingDivergedError", "describe", "export_from_checkpoint",
           "export_generator", "list_checkpoints", "load_train_state", "train"]
