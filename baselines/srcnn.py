"""Our SRCNNs: the classic SRCNN (Dong et al. 2014, ``srcnn-915``) and a multi-frame variant (``srcnn-mf``).

The paper authors' SRCNN (``srcnn``) is :class:`~.worldstrat.WorldStratSRCNN`.

* :class:`SRCNN`: the classic three-layer 9-1-5 network (64 and 32 filters, ReLU) applied to the
  bicubic-upsampled input. With T frames, the upsampled frames are concatenated along channels
  (frame-major), so the first layer sees ``C*T`` channels. Convolutions are zero-padded ("same"), so the
  output has exactly ``scale`` times the input size.
* :class:`MultiFrameSRCNN`: a per-frame encoder with shared weights (9x9 then 1x1 conv, as SRCNN's first
  two layers) at LR resolution, the revisits fused along channels by a 5x5 conv, and a pixel-shuffle
  upsampler (conv to ``C_out*s^2`` channels + ``PixelShuffle(s)``), as in the WorldStrat SRCNN baseline.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .common import as_frames, check_arch


class SRCNN(nn.Module):
    """Classic 9-1-5 SRCNN on the bicubic-upsampled stack: ``[B,T,C,h,w]`` -> ``[B,C_out,s*h,s*w]``.
    Registered as ``srcnn-915`` (``srcnn`` is the authors' WorldStrat SRCNN, :mod:`.worldstrat`)."""

    name = "srcnn-915"

    def __init__(self, in_channels: int = 3, out_channels: int = 3, n_frames: int = 1, scale: int = 4,
                 n1: int = 64, n2: int = 32, f1: int = 9, f2: int = 1, f3: int = 5) -> None:
        super().__init__()
        check_arch("srcnn-915", scale, n_frames)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.n_frames, self.scale = int(n_frames), int(scale)
        self.config = {"in_channels": self.in_channels, "out_channels": self.out_channels,
                       "n_frames": self.n_frames, "scale": self.scale, "n1": n1, "n2": n2,
                       "f1": f1, "f2": f2, "f3": f3}
        self.conv1 = nn.Conv2d(self.in_channels * self.n_frames, n1, f1, padding=f1 // 2)
        self.conv2 = nn.Conv2d(n1, n2, f2, padding=f2 // 2)
        self.conv3 = nn.Conv2d(n2, self.out_channels, f3, padding=f3 // 2)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        lr = as_frames(lr, n_frames=self.n_frames, in_channels=self.in_channels, who="srcnn-915")
        b, t, c, h, w = lr.shape
        x = F.interpolate(lr.reshape(b, t * c, h, w), scale_factor=self.scale, mode="bicubic",
                          align_corners=False)
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        return self.conv3(x)


class MultiFrameSRCNN(nn.Module):
    """Shared per-frame SRCNN encoder, channel fusion of the revisits, pixel-shuffle upsampling."""

    name = "srcnn-mf"

    def __init__(self, in_channels: int = 3, out_channels: int = 3, n_frames: int = 8, scale: int = 4,
                 n1: int = 64, n2: int = 32, f1: int = 9, f2: int = 1, fuse_kernel: int = 5,
                 fuse_channels: int = 64) -> None:
        super().__init__()
        check_arch("srcnn-mf", scale, n_frames)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.n_frames, self.scale = int(n_frames), int(scale)
        self.config = {"in_channels": self.in_channels, "out_channels": self.out_channels,
                       "n_frames": self.n_frames, "scale": self.scale, "n1": n1, "n2": n2, "f1": f1,
                       "f2": f2, "fuse_kernel": fuse_kernel, "fuse_channels": fuse_channels}
        self.encoder = nn.Sequential(
            nn.Conv2d(self.in_channels, n1, f1, padding=f1 // 2), nn.ReLU(inplace=True),
            nn.Conv2d(n1, n2, f2, padding=f2 // 2), nn.ReLU(inplace=True))
        self.fuse = nn.Sequential(
            nn.Conv2d(n2 * self.n_frames, fuse_channels, fuse_kernel, padding=fuse_kernel // 2),
            nn.ReLU(inplace=True))
        self.upsample = nn.Sequential(
            nn.Conv2d(fuse_channels, self.out_channels * self.scale ** 2, 3, padding=1),
            nn.PixelShuffle(self.scale))

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        lr = as_frames(lr, n_frames=self.n_frames, in_channels=self.in_channels, who="srcnn-mf")
        b, t, c, h, w = lr.shape
        feats = self.encoder(lr.reshape(b * t, c, h, w))
        feats = feats.reshape(b, t * feats.shape[1], h, w)  # frame-major channel concat
        return self.upsample(self.fuse(feats))
