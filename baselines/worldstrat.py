"""The paper authors' SRCNN and HighRes-net (satlas-super-resolution ``ssr/archs``, from the WorldStrat code).

These are the networks behind the authors' ``srcnn_s2naip_urban.yml`` and ``highresnet_s2naip_urban.yml``
(128 hidden channels, kernel 3, one residual layer, 8 revisits, x4, 1x1 SR kernels; 1,773,816 and 3,249,019
parameters). Module names follow theirs, so their BasicSR state dicts (``params``/``params_ema``) load
strictly, including the entries their code registers but never uses.

Building block ("double conv"): ``conv(k, reflect "same") -> PReLU -> Dropout(0.5) -> conv -> PReLU ->
Dropout(0.5)``, stored as ``<name>.doubleconv2d.{0..7}`` (the BatchNorm slots 1 and 5 are identities in
their configs). Dropout is active in training mode, as theirs.

:class:`WorldStratSRCNN` (``srcnn``): each frame (optionally stacked with the per-pixel median of the
frames, ``use_reference_frame``) is encoded at LR resolution by one shared double conv; the T encodings are
concatenated frame-major along channels and fused by a double conv (``T*hidden -> hidden``) followed by
``residual_layers`` residual double convs; the upsampler pixel-shuffles the hidden channels by the scale
(``hidden // scale**2`` channels), then ``conv(sr_kernel) -> PReLU -> conv(sr_kernel) -> PReLU``; finally a
bilinear, antialiased (Gaussian pre-blur when shrinking) resize to ``output_size`` (their 128 is 4 x 32,
so on 32-pixel frames it is the identity; ``None`` = scale x input size).

:class:`WorldStratHighResNet` (``highresnet``): the same encoder, then recursive fusion: the encodings are
zero-padded to the next power of two of frames and one shared fusion block is applied ``ceil(log2 T)``
times; each application pairs frame ``i`` of the first half with frame ``i`` of the second half, and maps
the ``2*hidden`` channels through a residual double conv, a conv to ``hidden`` and a PReLU. Then the same
upsampler, without the final resize (as theirs). The SRCNN fusion layers (``doubleconv2d``,
``residualblocks``) exist but are unused, as in theirs (a subclass of their SRCNN).

The mask encoder of theirs (``mask_channels: 0`` in every config) is kept for the state dict and unused;
unused parameters are frozen so that DDP and the optimiser skip them.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from clipscore_sr.errors import ConfigError

from .common import as_frames, check_arch


def _conv(cin: int, cout: int, k: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding="same", padding_mode="reflect")


class _DoubleConv(nn.Module):
    def __init__(self, cin: int, cout: int, k: int = 3) -> None:
        super().__init__()
        self.doubleconv2d = nn.Sequential(_conv(cin, cout, k), nn.Identity(), nn.PReLU(), nn.Dropout(0.5),
                                          _conv(cout, cout, k), nn.Identity(), nn.PReLU(), nn.Dropout(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.doubleconv2d(x)


class _Residual(nn.Module):
    def __init__(self, channels: int, k: int = 3) -> None:
        super().__init__()
        self.residualblock = _DoubleConv(channels, channels, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.residualblock(x)


class _PairFusion(nn.Module):
    """``[B, N, F, h, w]`` -> ``[B, N/2, F, h, w]``: frame i of the first half with frame i of the second."""

    def __init__(self, channels: int, k: int = 3) -> None:
        super().__init__()
        self.fuse = nn.Sequential(_Residual(2 * channels, k), _conv(2 * channels, channels, k), nn.Identity(),
                                  nn.PReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, f, h, w = x.shape
        half = n // 2
        pair = torch.cat([x[:, :half].reshape(b * half, f, h, w), x[:, half:].reshape(b * half, f, h, w)], 1)
        return self.fuse(pair).reshape(b, half, f, h, w)


class _RecursiveFusion(nn.Module):
    def __init__(self, channels: int, k: int, frames: int) -> None:
        super().__init__()
        block = _PairFusion(channels, k)
        steps = math.ceil(math.log2(frames)) if frames > 1 else 0
        self.fusion = nn.Sequential(*([block] * steps))  # one block, shared by every step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, f, h, w = x.shape
        n = 1 << (t - 1).bit_length() if t > 1 else 1
        if n > t:
            x = torch.cat([x, x.new_zeros(b, n - t, f, h, w)], 1)
        return self.fusion(x).squeeze(1)


class _NoMask(nn.Module):
    """Parameter-free first slot of the authors' mask encoder (their one-hot layer)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - masks are not supported
        raise NotImplementedError


class _ShuffleUp(nn.Module):
    def __init__(self, hidden: int, out_channels: int, scale: int, k: int) -> None:
        super().__init__()
        c = hidden // scale ** 2
        self.upsample = nn.Sequential(nn.PixelShuffle(scale), _conv(c, c, k), nn.Identity(), nn.PReLU(),
                                      _conv(c, out_channels, k), nn.Identity(), nn.PReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.upsample(x)


def antialiased_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize (``align_corners=False``); when shrinking, a Gaussian pre-blur with sigma
    ``(factor - 1) / 2`` and an odd kernel of about ``4 sigma`` (at least 3), reflect-padded."""
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    fh, fw = h / size[0], w / size[1]
    if max(fh, fw) > 1:
        for dim, f, n in ((-2, fh, h), (-1, fw, w)):
            sigma = max((f - 1.0) / 2.0, 0.001)
            k = int(max(4.0 * sigma, 3))
            k = k if k % 2 else k + 1
            if n == 1:
                continue
            r = torch.arange(k, dtype=x.dtype, device=x.device) - k // 2
            g = torch.exp(-(r ** 2) / (2 * sigma ** 2))
            g = g / g.sum()
            c = x.shape[1]
            if dim == -2:
                x = F.conv2d(F.pad(x, (0, 0, k // 2, k // 2), mode="reflect"), g.view(1, 1, k, 1).expand(c, 1, k, 1),
                             groups=c)
            else:
                x = F.conv2d(F.pad(x, (k // 2, k // 2, 0, 0), mode="reflect"), g.view(1, 1, 1, k).expand(c, 1, 1, k),
                             groups=c)
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class WorldStratSRCNN(nn.Module):
    """The authors' SRCNN: ``[B, T, C, h, w]`` (T = ``n_frames``) -> ``[B, C_out, H, W]``."""

    name = "srcnn"

    def __init__(self, in_channels: int = 3, out_channels: int = 3, n_frames: int = 8, scale: int = 4,
                 hidden_channels: int = 128, kernel_size: int = 3, residual_layers: int = 1,
                 sr_kernel_size: int = 1, output_size: int | None = None, use_reference_frame: bool = False,
                 mask_channels: int = 0) -> None:
        super().__init__()
        check_arch(self.name, scale, n_frames)
        if hidden_channels % scale ** 2:
            raise ConfigError(f"{self.name}: hidden_channels {hidden_channels} is not divisible by scale^2 = "
                              f"{scale ** 2} (the pixel-shuffle upsampler needs it)")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.n_frames, self.scale = int(n_frames), int(scale)
        self.hidden_channels, self.use_reference_frame = int(hidden_channels), bool(use_reference_frame)
        self.output_size = None if output_size is None else int(output_size)
        self.config = {"in_channels": self.in_channels, "out_channels": self.out_channels,
                       "n_frames": self.n_frames, "scale": self.scale, "hidden_channels": self.hidden_channels,
                       "kernel_size": kernel_size, "residual_layers": residual_layers,
                       "sr_kernel_size": sr_kernel_size, "output_size": self.output_size,
                       "use_reference_frame": self.use_reference_frame, "mask_channels": mask_channels}
        enc_in = self.in_channels * (2 if self.use_reference_frame else 1)
        self.encoder = _DoubleConv(enc_in, hidden_channels, kernel_size)
        with warnings.catch_warnings():  # mask_channels 0: a zero-element conv, kept for the state dict
            warnings.simplefilter("ignore", UserWarning)
            self.mask_encoder = nn.Sequential(_NoMask(), _DoubleConv(mask_channels, 1, 3), nn.Sigmoid())
        self.mask_encoder.requires_grad_(False)
        self.doubleconv2d = _DoubleConv(hidden_channels * self.n_frames, hidden_channels, kernel_size)
        self.residualblocks = nn.Sequential(*[_Residual(hidden_channels, kernel_size)
                                              for _ in range(residual_layers)])
        self.fusion: nn.Module = nn.Sequential(self.doubleconv2d, self.residualblocks)
        self.sr = _ShuffleUp(hidden_channels, self.out_channels, self.scale, sr_kernel_size)

    def _frames(self, lr: torch.Tensor) -> torch.Tensor:
        lr = as_frames(lr, n_frames=self.n_frames, in_channels=self.in_channels, who=self.name)
        if self.use_reference_frame:
            ref = lr.median(dim=1, keepdim=True).values.expand_as(lr)
            lr = torch.cat([lr, ref], 2)
        return lr

    def _encode(self, lr: torch.Tensor) -> torch.Tensor:
        b, t, c, h, w = lr.shape
        return self.encoder(lr.reshape(b * t, c, h, w)).reshape(b, t, self.hidden_channels, h, w)

    def _target_size(self, h: int, w: int) -> tuple[int, int]:
        """The resize target for an upsampled ``h x w`` output (``output_size`` None: unchanged)."""
        if self.output_size is None:
            return h, w
        aspect = w / h  # kornia's Resize(int, side="short")
        if aspect < 1.0:
            return int(self.output_size / aspect), self.output_size
        return self.output_size, int(self.output_size * aspect)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        x = self._encode(self._frames(lr))
        b, t, f, h, w = x.shape
        out = self.sr(self.fusion(x.reshape(b, t * f, h, w)))
        return antialiased_resize(out, self._target_size(*out.shape[-2:]))


class WorldStratHighResNet(WorldStratSRCNN):
    """The authors' HighRes-net: the SRCNN encoder and upsampler around recursive pairwise fusion."""

    name = "highresnet"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.config.pop("output_size")
        self.output_size = None
        # their HighResNet subclasses their SRCNN: the SRCNN fusion layers stay registered but unused
        self.doubleconv2d.requires_grad_(False)
        self.residualblocks.requires_grad_(False)
        self.fusion = _RecursiveFusion(self.hidden_channels, self.config["kernel_size"], self.n_frames)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.sr(self.fusion(self._encode(self._frames(lr))))


def infer_worldstrat_config(state: dict[str, torch.Tensor], source: str = "checkpoint") -> tuple[str, dict]:
    """``(name, arguments)`` of the authors' SRCNN / HighRes-net from their state dict's tensor shapes: hidden
    width, kernels, residual layers, frames (the SRCNN fusion input is ``frames * hidden``, registered in both),
    scale (``hidden // scale**2`` upsampler channels) and output channels. ``in_channels`` is the encoder's
    input (``use_reference_frame`` cannot be told from the shapes: pass it to halve it)."""
    try:
        enc = state["encoder.doubleconv2d.0.weight"]
        fuse_in = state["doubleconv2d.doubleconv2d.0.weight"].shape[1]
        up = state["sr.upsample.1.weight"]
        last = state["sr.upsample.4.weight"]
    except KeyError as exc:
        raise ConfigError(f"{source}: not a WorldStrat SRCNN/HighRes-net state dict (no {exc})") from None
    hidden = int(enc.shape[0])
    scale = round(math.sqrt(hidden / up.shape[1]))
    if scale < 1 or hidden // scale ** 2 != up.shape[1] or fuse_in % hidden:
        raise ConfigError(f"{source}: tensor shapes do not fit the WorldStrat SRCNN/HighRes-net")
    layers = {int(k.split(".")[1]) for k in state if k.startswith("residualblocks.")}
    name = "highresnet" if any(k.startswith("fusion.fusion.") for k in state) else "srcnn"
    return name, {"in_channels": int(enc.shape[1]), "out_channels": int(last.shape[0]),
                  "n_frames": fuse_in // hidden, "scale": scale, "hidden_channels": hidden,
                  "kernel_size": int(enc.shape[-1]), "residual_layers": len(layers),
                  "sr_kernel_size": int(up.shape[-1]),
                  "mask_channels": int(state.get("mask_encoder.1.doubleconv2d.0.weight", enc.new_zeros(1, 0)).shape[1])}


def looks_like_worldstrat(state) -> bool:
    return "encoder.doubleconv2d.0.weight" in state and "sr.upsample.1.weight" in state
