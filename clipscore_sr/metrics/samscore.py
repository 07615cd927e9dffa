"""SAMScore (Li et al. 2023): cosine similarity of Segment Anything image-encoder embeddings of GT and SR.

For each pair the SAM image encoder (``vit_b``, ``vit_l`` or ``vit_h``, from the ``segment-anything`` package)
embeds both images into a ``[256, 64, 64]`` map; the score is the cosine similarity of the two 256-d vectors at
each of the 64 x 64 locations, averaged over locations. Higher is better, 1 for identical images.

Preprocessing follows the SAMScore reference implementation (``samscore`` package), which uses SAM's own steps:

1. RGB input in ``[0, 1]`` scaled to ``[0, 255]`` (1-band images are repeated to RGB);
2. resize so the longest side is 1024 px (SAM's ``ResizeLongestSide`` target size; aspect ratio kept, rounded
   to the nearest pixel) with antialiased bilinear interpolation on the batched tensor;
3. SAM's normalisation ``(x - pixel_mean) / pixel_std`` with mean ``(123.675, 116.28, 103.53)`` and std
   ``(58.395, 57.12, 57.375)``;
4. zero padding at the bottom/right to 1024 x 1024.

Known differences from the reference, all documented choices:

* The reference averages the cosine over **all** 64 x 64 locations, padded ones included (for non-square
  images the padded area contributes near-identical embeddings and pulls the score towards 1). That is our
  default (``padding="include"``); ``padding="exclude"`` averages only over locations whose 16 x 16 patch
  overlaps the resized image.
* The reference's file-based entry point reads images with OpenCV, so it feeds **BGR** to a model normalised
  for RGB; we feed RGB (``channel_order="rgb"``), and ``channel_order="bgr"`` reproduces the reference.
* The reference resizes 8-bit images with PIL (bilinear, result rounded to uint8); we resize float tensors
  without rounding (differences of at most about one grey level, 0.3 on average; 16-bit data keep
  their precision).
* The reference's default encoder is ``vit_l``; so is ours for plain ``samscore``.

Checkpoints are the official SAM files (full ``Sam`` state dicts; encoder-only state dicts also work): option
``sam_checkpoint`` (CLI ``--sam-checkpoint``), else ``<cache root>/sam/<official file name>``
(:func:`default_checkpoint`), else a download into that place unless offline mode is on.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..devices import inference, resolve_precision
from ..errors import ConfigError, InputMismatchError, UnknownMetricError, WeightsNotFoundError
from ..weights import cache_root, is_offline, missing_weights
from .base import Metric, register_metric

#: SAM's pixel statistics (ImageNet mean/std on the 0-255 scale), as in ``segment_anything.modeling.Sam``.
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)
CHECKPOINT_URL = "https://dl.fbaipublicfiles.com/segment_anything/{file}"
DEFAULT_ENCODER = "vit_l"


@dataclass(frozen=True)
class SamEncoderConfig:
    """Hyper-parameters of a SAM ``ImageEncoderViT`` (defaults: the official 1024-px encoders' shared values)."""

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    img_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    out_chans: int = 256
    mlp_ratio: float = 4.0


#: Official encoders (``segment_anything.build_sam``) and their official checkpoint file names.
SAM_ENCODERS: dict[str, SamEncoderConfig] = {
    "vit_b": SamEncoderConfig(embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11)),
    "vit_l": SamEncoderConfig(embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23)),
    "vit_h": SamEncoderConfig(embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31)),
}
CHECKPOINT_FILES: dict[str, str] = {
    "vit_b": "sam_vit_b_01ec64.pth",
    "vit_l": "sam_vit_l_0b3195.pth",
    "vit_h": "sam_vit_h_4b8939.pth",
}
PADDING_MODES = ("include", "exclude")
CHANNEL_ORDERS = ("rgb", "bgr")


def default_checkpoint(encoder: str) -> Path:
    """``<cache root>/sam/<official file name>`` for ``encoder`` (vit_b|vit_l|vit_h)."""
    return cache_root() / "sam" / CHECKPOINT_FILES[encoder]


def encoder_config(value: str | SamEncoderConfig | dict[str, Any]) -> SamEncoderConfig:
    """An encoder name (``vit_b``...), a :class:`SamEncoderConfig`, or a dict of its fields -> config."""
    if isinstance(value, SamEncoderConfig):
        return value
    if isinstance(value, str):
        key = value.strip().lower().replace("-", "_")
        if key not in SAM_ENCODERS:
            raise UnknownMetricError(f"samscore: unknown SAM encoder '{value}' (use one of {', '.join(SAM_ENCODERS)})")
        return SAM_ENCODERS[key]
    if isinstance(value, dict):
        names = {f.name for f in fields(SamEncoderConfig)}
        unknown = sorted(set(value) - names)
        if unknown:
            raise ConfigError(f"samscore: encoder_config has unknown fields {unknown} (known: {sorted(names)})")
        try:
            cfg = dict(value)
            if "global_attn_indexes" in cfg:
                cfg["global_attn_indexes"] = tuple(int(i) for i in cfg["global_attn_indexes"])
            return SamEncoderConfig(**cfg)
        except TypeError as exc:
            raise ConfigError(f"samscore: encoder_config is incomplete ({exc})") from None
    raise ConfigError(f"samscore: encoder must be a name or a config dict, got {type(value).__name__}")


_encoder_config = encoder_config  # the metric's constructor has a parameter of the same name


def build_image_encoder(config: SamEncoderConfig, device: str | torch.device = "meta") -> torch.nn.Module:
    """A ``segment_anything`` ``ImageEncoderViT`` with ``config``'s hyper-parameters (uninitialised on ``meta``)."""
    from segment_anything.modeling import ImageEncoderViT

    with torch.device(device):
        return ImageEncoderViT(
            img_size=config.img_size,
            patch_size=config.patch_size,
            embed_dim=config.embed_dim,
            depth=config.depth,
            num_heads=config.num_heads,
            mlp_ratio=config.mlp_ratio,
            out_chans=config.out_chans,
            qkv_bias=True,
            norm_layer=functools.partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            window_size=config.window_size,
            global_attn_indexes=config.global_attn_indexes,
        )


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise WeightsNotFoundError(
            f"SAM checkpoint {path} could not be read ({type(exc).__name__}: {first}); "
            "is it an official segment-anything .pth file?"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsNotFoundError(f"SAM checkpoint {path} is not a state dict of tensors")
    prefix = "image_encoder."
    if any(k.startswith(prefix) for k in state):
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return state


def infer_encoder(state: dict[str, torch.Tensor]) -> str | None:
    """Which official encoder a (stripped) state dict belongs to, from its width and depth; None if none."""
    weight = state.get("patch_embed.proj.weight")
    if weight is None:
        return None
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    for name, cfg in SAM_ENCODERS.items():
        if cfg.embed_dim == weight.shape[0] and cfg.depth == depth:
            return name
    return None


def load_image_encoder(
    checkpoint: str | Path, config: SamEncoderConfig, device: str | torch.device = "cpu"
) -> torch.nn.Module:
    """Load the image encoder from an official SAM checkpoint (or an encoder-only state dict): frozen, eval,
    float32, on ``device``. A checkpoint that does not fit ``config`` raises one clear :class:`ConfigError`."""
    path = Path(checkpoint)
    state = _read_state_dict(path)
    encoder = build_image_encoder(config)
    expected = {k: v.shape for k, v in encoder.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(state[k].shape) != tuple(expected[k]))
    if missing or unexpected or wrong:
        found = infer_encoder(state)
        hint = f"it looks like a {found} checkpoint (use samscore:{found})" if found else "check the encoder type"
        problems = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                problems.append(f"{len(keys)} {label} (e.g. {keys[0]})")
        raise ConfigError(f"SAM checkpoint {path} does not fit the encoder {_describe(config)}: {', '.join(problems)}; {hint}")
    encoder.load_state_dict(state, strict=True, assign=True)
    encoder = encoder.float().eval().requires_grad_(False)
    return encoder.to(torch.device(device))


def _describe(config: SamEncoderConfig) -> str:
    for name, cfg in SAM_ENCODERS.items():
        if cfg == config:
            return name
    return f"(embed_dim={config.embed_dim}, depth={config.depth}, img_size={config.img_size})"


def resized_shape(height: int, width: int, target: int) -> tuple[int, int]:
    """SAM's ``ResizeLongestSide`` output size: longest side ``target``, aspect kept, rounded half up."""
    scale = target / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def sam_preprocess(
    images: torch.Tensor, img_size: int = 1024, *, channel_order: str = "rgb"
) -> tuple[torch.Tensor, tuple[int, int]]:
    """``[B, C, H, W]`` in ``[0, 1]`` (C = 1 or 3, RGB) -> SAM encoder input ``[B, 3, img_size, img_size]`` and
    the resized (unpadded) height and width. Steps: RGB (or BGR) on the 0-255 scale, antialiased bilinear resize
    of the longest side to ``img_size``, ``(x - PIXEL_MEAN) / PIXEL_STD``, zero padding bottom/right."""
    if images.ndim != 4:
        raise InputMismatchError(f"samscore: images must be [B,C,H,W], got shape {tuple(images.shape)}")
    channels = images.shape[1]
    if channels == 1:
        images = images.expand(-1, 3, -1, -1)
    elif channels != 3:
        raise InputMismatchError(
            f"samscore: images have {channels} channels; SAM needs 1 or 3 (select RGB bands with --bands, e.g. --bands 4,3,2)"
        )
    if channel_order not in CHANNEL_ORDERS:
        raise ConfigError(f"samscore: channel_order must be one of {', '.join(CHANNEL_ORDERS)} (got {channel_order!r})")
    if channel_order == "bgr":
        images = images.flip(1)
    x = images.float()
    new_h, new_w = resized_shape(x.shape[-2], x.shape[-1], img_size)
    if (new_h, new_w) != tuple(x.shape[-2:]):
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(PIXEL_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(PIXEL_STD, device=x.device).view(1, 3, 1, 1)
    x = (x * 255.0 - mean) / std
    x = F.pad(x, (0, img_size - new_w, 0, img_size - new_h))
    return x, (new_h, new_w)


def embedding_cosine(
    emb_sr: torch.Tensor, emb_gt: torch.Tensor, valid: tuple[int, int] | None = None
) -> torch.Tensor:
    """Cosine similarity of ``[B, D, h, w]`` embeddings per location, averaged over locations -> ``[B]`` float64.

    ``valid=(rows, cols)`` restricts the mean to the top-left ``rows x cols`` locations (unpadded area)."""
    a, b = emb_sr.double(), emb_gt.double()
    if valid is not None:
        a, b = a[:, :, : valid[0], : valid[1]], b[:, :, : valid[0], : valid[1]]
    cos = (F.normalize(a, dim=1, eps=1e-10) * F.normalize(b, dim=1, eps=1e-10)).sum(dim=1)
    return cos.flatten(1).mean(dim=1)


def samscore(
    sr: torch.Tensor,
    gt: torch.Tensor,
    encoder: torch.nn.Module,
    *,
    padding: str = "include",
    channel_order: str = "rgb",
    precision: str = "fp32",
    encoder_batch: int | None = None,
) -> torch.Tensor:
    """SAMScore per image (``[B]`` float64, higher is better, 1 for identical images).

    ``sr``/``gt``: ``[B, C, H, W]`` in ``[0, 1]``, same shape; ``encoder``: a SAM ``ImageEncoderViT``
    (see :func:`load_image_encoder`). ``padding``: ``include`` (reference) or ``exclude`` padded locations.
    ``encoder_batch``: at most this many images per encoder forward pass (SAM's global attention over
    64 x 64 tokens takes about 1 GB per image in fp32); default 2 on CPU, 8 on accelerators.
    """
    if padding not in PADDING_MODES:
        raise ConfigError(f"samscore: padding must be one of {', '.join(PADDING_MODES)} (got {padding!r})")
    if sr.shape != gt.shape:
        raise InputMismatchError(f"samscore: sr shape {tuple(sr.shape)} differs from gt shape {tuple(gt.shape)}")
    device = next(encoder.parameters()).device
    chunk = encoder_batch if encoder_batch is not None else (2 if device.type == "cpu" else 8)
    if chunk < 1:
        raise ConfigError(f"samscore: encoder_batch must be >= 1 (got {chunk})")
    img_size = encoder.img_size
    images = torch.cat([sr, gt])
    scores = []
    for start in range(0, images.shape[0], chunk):
        x, (new_h, new_w) = sam_preprocess(images[start : start + chunk].to(device), img_size, channel_order=channel_order)
        with inference(device, precision):
            scores.append(encoder(x).float())
    emb = torch.cat(scores)
    valid = None
    if padding == "exclude":
        stride = img_size // emb.shape[-1]
        valid = (math.ceil(new_h / stride), math.ceil(new_w / stride))
    n = sr.shape[0]
    return embedding_cosine(emb[:n], emb[n:], valid)


@register_metric
class SAMScore(Metric):
    """``samscore`` / ``samscore:vit_b|vit_l|vit_h``: SAM image-encoder embedding similarity (see module doc).

    Options: ``sam_checkpoint`` (path), ``sam_encoder`` (name; same as the spec), ``encoder_config`` (dict of
    :class:`SamEncoderConfig` fields, for non-standard encoders; needs ``sam_checkpoint``), ``padding``
    (``include``|``exclude``), ``channel_order`` (``rgb``|``bgr``), ``precision`` (fp32|bf16|fp16),
    ``encoder_batch`` (images per encoder forward pass; default 2 on CPU, 8 on accelerators).
    """

    name = "samscore"
    best_value = 1.0
    higher_is_better = True
    units = "cosine"
    value_range = "[-1, 1]; 1 = identical"
    description = (
        "SAMScore: per-location cosine of SAM image-encoder embeddings, averaged (longest side 1024, SAM "
        "mean/std, zero pad; padded area included as in the reference; default encoder vit_l)"
    )
    needs_weights = True
    spec_help = "SAM encoder: vit_b | vit_l | vit_h (checkpoint from --sam-checkpoint or <cache>/sam/)"

    def __init__(
        self,
        spec: str | None = None,
        *,
        device: str | torch.device = "cpu",
        sam_checkpoint: str | Path | None = None,
        sam_encoder: str | None = None,
        encoder_config: dict[str, Any] | SamEncoderConfig | None = None,
        padding: str = "include",
        channel_order: str = "rgb",
        precision: str = "fp32",
        encoder_batch: int | None = None,
        **options: Any,
    ) -> None:
        recorded = {"sam_checkpoint": sam_checkpoint, "sam_encoder": sam_encoder, "padding": padding,
                    "channel_order": channel_order}
        super().__init__(spec, device=device, **{k: v for k, v in recorded.items() if v is not None}, **options)
        if spec and sam_encoder and _encoder_config(spec) != _encoder_config(sam_encoder):
            raise ConfigError(f"samscore: encoder '{spec}' in the id conflicts with sam_encoder='{sam_encoder}'")
        self.encoder_name: str | None = None
        for value in (spec, sam_encoder):
            if value:
                _encoder_config(value)  # validates the name
                self.encoder_name = value.strip().lower().replace("-", "_")
        self.config: SamEncoderConfig | None = _encoder_config(encoder_config) if encoder_config is not None else None
        self.checkpoint: Path | None = Path(sam_checkpoint).expanduser() if sam_checkpoint else None
        if self.config is not None and self.checkpoint is None:
            raise ConfigError("samscore: encoder_config needs sam_checkpoint (a file with the matching weights)")
        self.padding = padding or "include"
        if self.padding not in PADDING_MODES:
            raise ConfigError(f"samscore: padding must be one of {', '.join(PADDING_MODES)} (got {self.padding!r})")
        self.channel_order = (channel_order or "rgb").lower()
        if self.channel_order not in CHANNEL_ORDERS:
            raise ConfigError(
                f"samscore: channel_order must be one of {', '.join(CHANNEL_ORDERS)} (got {self.channel_order!r})"
            )
        self.precision = resolve_precision(precision, self.device)
        if encoder_batch is not None and int(encoder_batch) < 1:
            raise ConfigError(f"samscore: encoder_batch must be >= 1 (got {encoder_batch})")
        self.encoder_batch = int(encoder_batch) if encoder_batch is not None else None
        self._encoder: torch.nn.Module | None = None
        self._resolved: tuple[Path, SamEncoderConfig, str] | None = None

    # -- weights ---------------------------------------------------------------------------------------------
    def check_weights(self) -> Path:
        """Return the checkpoint path, downloading the official file into the cache root when it is missing and
        we are online; raise :class:`WeightsNotFoundError` (one line) otherwise. Fast: reads nothing."""
        if self.checkpoint is not None:
            if not self.checkpoint.is_file():
                raise missing_weights(
                    f"SAMScore (--sam-checkpoint {self.checkpoint})",
                    [self.checkpoint],
                    "check the path; official SAM checkpoints are "
                    + ", ".join(f"{k}: {v}" for k, v in CHECKPOINT_FILES.items()),
                )
            return self.checkpoint
        encoder = self.encoder_name or DEFAULT_ENCODER
        path = default_checkpoint(encoder)
        if path.is_file():
            return path
        file = CHECKPOINT_FILES[encoder]
        how = (
            f"download the official checkpoint {CHECKPOINT_URL.format(file=file)} and put it in {path.parent} "
            "(or in the folder $CLIPSCORE_SR_CACHE/sam), or pass --sam-checkpoint PATH"
        )
        if is_offline():
            raise missing_weights(f"SAMScore encoder {encoder}", [path], how, offline=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(CHECKPOINT_URL.format(file=file), str(path), progress=False)
        except Exception as exc:
            reason = f"download failed: {type(exc).__name__}: {exc}".replace("\n", " ")
            raise missing_weights(f"SAMScore encoder {encoder}", [path], f"{reason}; {how}") from None
        return path

    def _resolve(self) -> tuple[Path, SamEncoderConfig, str]:
        if self._resolved is None:
            path = self.check_weights()
            if self.config is not None:
                config, label = self.config, "custom"
            elif self.encoder_name is not None or self.checkpoint is None:
                label = self.encoder_name or DEFAULT_ENCODER
                config = SAM_ENCODERS[label]
            else:  # a checkpoint without an encoder name: take the encoder it was saved from
                label = infer_encoder(_read_state_dict(path)) or ""
                if not label:
                    raise ConfigError(
                        f"SAM checkpoint {path}: cannot tell which encoder it is; name it (samscore:vit_b|vit_l|vit_h)"
                    )
                config = SAM_ENCODERS[label]
            self._resolved = (path, config, label)
        return self._resolved

    def load(self) -> torch.nn.Module:
        """Load the encoder once (frozen, eval, on the metric's device) and return it."""
        if self._encoder is None:
            path, config, _ = self._resolve()
            self._encoder = load_image_encoder(path, config, self.device)
        return self._encoder

    def to(self, device: str | torch.device) -> Metric:
        super().to(device)
        self.precision = resolve_precision(self.precision, self.device)
        if self._encoder is not None:
            self._encoder.to(self.device)
        return self

    # -- scoring ---------------------------------------------------------------------------------------------
    def compute(self, sr: torch.Tensor, gt: torch.Tensor, **_: Any) -> torch.Tensor:
        encoder = self.load()
        return samscore(
            sr,
            gt,
            encoder,
            padding=self.padding,
            channel_order=self.channel_order,
            precision=self.precision,
            encoder_batch=self.encoder_batch,
        )

    def provenance(self) -> dict[str, Any]:
        info = super().provenance()
        path, config, label = self._resolve()
        info.update(
            {
                "model": f"segment-anything ImageEncoderViT {label}",
                "encoder_config": asdict(config),
                "checkpoint": str(path),
                "preprocessing": (
                    f"{self.channel_order.upper()} x255, longest side {config.img_size} (bilinear, antialias), "
                    f"SAM mean/std, zero pad to {config.img_size}x{config.img_size}"
                ),
                "padding": self.padding,
                "precision": self.precision,
            }
        )
        return info
