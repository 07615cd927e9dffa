"""ESRGAN: the RRDBNet generator and the U-Net discriminator with spectral normalisation.

Generator (Wang et al. 2018, as used by the paper's authors): the T frames are concatenated along
channels, frame-major (``[f0c0, f0c1, f0c2, f1c0, ...]``, i.e. ``lr.reshape(B, T*C, h, w)``), so
``num_in_ch = C*T``. Parameter names follow BasicSR (``conv_first``, ``body.N.rdbK.convM``,
``conv_body``, ``conv_up1``, ``conv_up2``, ``conv_hr``, ``conv_last``) so the authors' released state
dicts load directly (see :mod:`clipscore_sr.baselines.checkpoints`).

Upsampling per scale factor:

* x4: two nearest-neighbour x2 stages (``conv_up1``, ``conv_up2``), exactly as BasicSR.
* x2: as BasicSR, the input is first pixel-unshuffled by 2 (``num_in_ch = 4*C*T``) and then upsampled
  by two x2 stages; odd input sizes are edge-padded and the output cropped.
* x3: as the authors' x3 RRDBNet (satlas-super-resolution, ``experiments`` branch, used by their PROBA-V
  and OLI2MSI configs): one nearest x3 stage followed by ``conv_up2``; ``conv_up1`` exists (so parameter
  names and shapes are those of the x4 network and their x3 weights load) but is not used.

Sizes: small (64 features, 23 blocks, growth 32), medium (128, 23, 64), large (256, 23, 128).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import as_frames, check_arch

ESRGAN_SIZES: dict[str, dict[str, int]] = {
    "small": {"num_feat": 64, "num_block": 23, "num_grow_ch": 32},
    "medium": {"num_feat": 128, "num_block": 23, "num_grow_ch": 64},
    "large": {"num_feat": 256, "num_block": 23, "num_grow_ch": 128},
}

RESIDUAL_SCALE = 0.2


def _scaled_init(module: nn.Module, factor: float) -> None:
    """Kaiming-normal weights multiplied by ``factor``, zero biases (BasicSR's default for RRDBs)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            if m.weight.device.type == "meta":
                continue
            nn.init.kaiming_normal_(m.weight)
            m.weight.data.mul_(factor)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs; output = x + 0.2 * conv5(...)."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)
        _scaled_init(self, 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            feats.append(self.lrelu(conv(torch.cat(feats, 1))))
        return x + RESIDUAL_SCALE * self.conv5(torch.cat(feats, 1))


class RRDB(nn.Module):
    """Residual-in-residual dense block: three RDBs, output = x + 0.2 * rdb3(rdb2(rdb1(x)))."""

    def __init__(self, num_feat: int, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + RESIDUAL_SCALE * self.rdb3(self.rdb2(self.rdb1(x)))


class RRDBNet(nn.Module):
    """ESRGAN generator for a T-frame stack: ``[B, T, C, h, w]`` -> ``[B, out_channels, s*h, s*w]``.

    Args:
        in_channels: channels per frame (3 for RGB TCI).
        out_channels: output channels.
        n_frames: number of input frames T (1..16); frames are concatenated along channels.
        scale: 2, 3 or 4.
        num_feat, num_block, num_grow_ch: width, number of RRDBs, dense growth channels.
    """

    name = "esrgan"

    def __init__(self, in_channels: int = 3, out_channels: int = 3, n_frames: int = 8, scale: int = 4,
                 num_feat: int = 64, num_block: int = 23, num_grow_ch: int = 32) -> None:
        super().__init__()
        check_arch("esrgan", scale, n_frames)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.n_frames, self.scale = int(n_frames), int(scale)
        self.config = {"in_channels": self.in_channels, "out_channels": self.out_channels,
                       "n_frames": self.n_frames, "scale": self.scale, "num_feat": num_feat,
                       "num_block": num_block, "num_grow_ch": num_grow_ch}
        self.unshuffle = 2 if self.scale == 2 else 1
        # (factor, conv) upsampling stages; x3 skips conv_up1 as the authors' x3 network does
        self.up_stages = (("conv_up2", 3),) if self.scale == 3 else (("conv_up1", 2), ("conv_up2", 2))
        num_in_ch = self.in_channels * self.n_frames * self.unshuffle ** 2
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(num_feat, num_grow_ch) for _ in range(num_block)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, self.out_channels, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)
        if self.scale == 3:  # kept for the authors' state dicts; frozen so DDP and optimisers skip it
            self.conv_up1.requires_grad_(False)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        lr = as_frames(lr, n_frames=self.n_frames, in_channels=self.in_channels, who="esrgan")
        b, t, c, h, w = lr.shape
        x = lr.reshape(b, t * c, h, w)
        if self.unshuffle > 1:
            ph, pw = (-h) % self.unshuffle, (-w) % self.unshuffle
            if ph or pw:
                x = F.pad(x, (0, pw, 0, ph), mode="replicate")
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for conv_name, factor in self.up_stages:
            feat = F.interpolate(feat, scale_factor=factor, mode="nearest")
            feat = self.lrelu(getattr(self, conv_name)(feat))
        out = self.conv_last(self.lrelu(self.conv_hr(feat)))
        return out[..., : h * self.scale, : w * self.scale]


class UNetDiscriminatorSN(nn.Module):
    """U-Net discriminator with spectral normalisation (Real-ESRGAN style); per-pixel realness logits.

    Input ``hr`` ``[B, C, H, W]`` (H, W multiples of 8). With ``lr_conditioned=True`` the LR stack
    ``[B, T, C, h, w]`` is nearest-upsampled to ``H x W`` and concatenated to the input
    (``in_ch = out_channels + in_channels*T``). Parameter names match BasicSR's ``UNetDiscriminatorSN``.
    """

    name = "esrgan-discriminator"

    def __init__(self, in_channels: int = 3, num_feat: int = 64, skip_connection: bool = True,
                 lr_conditioned: bool = False, n_frames: int = 8, lr_channels: int = 3) -> None:
        super().__init__()
        sn = nn.utils.spectral_norm
        self.in_channels, self.lr_conditioned = int(in_channels), bool(lr_conditioned)
        self.n_frames, self.lr_channels = int(n_frames), int(lr_channels)
        self.skip_connection = skip_connection
        self.config = {"in_channels": self.in_channels, "num_feat": num_feat, "skip_connection": skip_connection,
                       "lr_conditioned": self.lr_conditioned, "n_frames": self.n_frames,
                       "lr_channels": self.lr_channels}
        num_in = self.in_channels + (self.lr_channels * self.n_frames if self.lr_conditioned else 0)
        nf = num_feat
        self.conv0 = nn.Conv2d(num_in, nf, 3, 1, 1)
        self.conv1 = sn(nn.Conv2d(nf, nf * 2, 4, 2, 1, bias=False))
        self.conv2 = sn(nn.Conv2d(nf * 2, nf * 4, 4, 2, 1, bias=False))
        self.conv3 = sn(nn.Conv2d(nf * 4, nf * 8, 4, 2, 1, bias=False))
        self.conv4 = sn(nn.Conv2d(nf * 8, nf * 4, 3, 1, 1, bias=False))
        self.conv5 = sn(nn.Conv2d(nf * 4, nf * 2, 3, 1, 1, bias=False))
        self.conv6 = sn(nn.Conv2d(nf * 2, nf, 3, 1, 1, bias=False))
        self.conv7 = sn(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
        self.conv8 = sn(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(nf, 1, 3, 1, 1)

    def forward(self, hr: torch.Tensor, lr: torch.Tensor | None = None) -> torch.Tensor:
        """``hr`` [B,C,H,W] (+ ``lr`` [B,T,C,h,w] when conditioned) -> logits [B,1,H,W]."""
        if hr.dim() != 4 or hr.shape[1] != self.in_channels:
            raise ValueError(f"discriminator: expected [B, {self.in_channels}, H, W], got {tuple(hr.shape)}")
        if hr.shape[-1] % 8 or hr.shape[-2] % 8:
            raise ValueError(f"discriminator: H and W must be multiples of 8, got {tuple(hr.shape[-2:])}")
        x = hr
        if self.lr_conditioned:
            if lr is None:
                raise ValueError("discriminator: built with lr_conditioned=True but no LR stack was given")
            lr = as_frames(lr, n_frames=self.n_frames, in_channels=self.lr_channels, who="discriminator")
            b, t, c, h, w = lr.shape
            up = F.interpolate(lr.reshape(b, t * c, h, w), size=hr.shape[-2:], mode="nearest")
            x = torch.cat([hr, up.to(hr.dtype)], 1)
        act = lambda v: F.leaky_relu(v, 0.2)  # noqa: E731
        x0 = act(self.conv0(x))
        x1 = act(self.conv1(x0))
        x2 = act(self.conv2(x1))
        x3 = act(self.conv3(x2))
        up = lambda v: F.interpolate(v, scale_factor=2, mode="bilinear", align_corners=False)  # noqa: E731
        x4 = act(self.conv4(up(x3)))
        if self.skip_connection:
            x4 = x4 + x2
        x5 = act(self.conv5(up(x4)))
        if self.skip_connection:
            x5 = x5 + x1
        x6 = act(self.conv6(up(x5)))
        if self.skip_connection:
            x6 = x6 + x0
        out = act(self.conv7(x6))
        out = act(self.conv8(out))
        return self.conv9(out)
