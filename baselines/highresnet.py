"""Our compact HighRes-net variant (``highresnet-compact``; after Deudon et al. 2020): recursive pairwise fusion
with presence weights. The paper authors' HighRes-net (``highresnet``) is :class:`~.worldstrat.WorldStratHighResNet`.

1. Reference frame: the per-pixel median of the T frames (lower median for even T).
2. Encoder (shared over frames): ``[frame, reference]`` (2C channels) -> conv3x3 + PReLU -> residual
   blocks -> conv3x3, giving F-channel features per frame at LR resolution.
3. Recursive fusion: the frame features are padded with zero features to the next power of two; each
   padded slot has presence ``alpha = 0``. At every step the first half is paired with the reversed second
   half, ``a <- a + alpha_b * g([a, b])`` with one fusion network ``g`` shared by all steps (residual block
   on 2F channels, conv to F, PReLU), and ``alpha <- max(alpha_a, alpha_b)``; this halves the number of
   frames until one remains. The weights do not depend on T, so one network handles 1..16 frames.
4. Decoder: transposed conv with kernel = stride = scale + PReLU, then a conv to the output channels.
"""

from __future__ import annotations

import torch
from torch import nn

from .common import as_frames, check_arch


class _ResBlock(nn.Module):
    def __init__(self, channels: int, kernel: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, kernel, padding=kernel // 2), nn.PReLU(),
            nn.Conv2d(channels, channels, kernel, padding=kernel // 2), nn.PReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class HighResNet(nn.Module):
    """HighRes-net for ``[B,T,C,h,w]`` -> ``[B,C_out,s*h,s*w]``; any T in 1..16 at run time."""

    name = "highresnet-compact"

    def __init__(self, in_channels: int = 3, out_channels: int = 3, n_frames: int = 8, scale: int = 4,
                 features: int = 64, encoder_blocks: int = 2, decoder_features: int = 64, kernel: int = 3) -> None:
        super().__init__()
        check_arch("highresnet-compact", scale, n_frames)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.n_frames, self.scale = int(n_frames), int(scale)
        self.config = {"in_channels": self.in_channels, "out_channels": self.out_channels,
                       "n_frames": self.n_frames, "scale": self.scale, "features": features,
                       "encoder_blocks": encoder_blocks, "decoder_features": decoder_features, "kernel": kernel}
        pad = kernel // 2
        self.encoder = nn.Sequential(
            nn.Conv2d(2 * self.in_channels, features, kernel, padding=pad), nn.PReLU(),
            *[_ResBlock(features, kernel) for _ in range(encoder_blocks)],
            nn.Conv2d(features, features, kernel, padding=pad))
        self.fusion = nn.Sequential(
            _ResBlock(2 * features, kernel),
            nn.Conv2d(2 * features, features, kernel, padding=pad), nn.PReLU())
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(features, decoder_features, kernel_size=self.scale, stride=self.scale),
            nn.PReLU(),
            nn.Conv2d(decoder_features, self.out_channels, 1))

    def encode(self, lr: torch.Tensor) -> torch.Tensor:
        """Per-frame features ``[B, T, F, h, w]`` of the frames stacked with their median reference."""
        b, t, c, h, w = lr.shape
        ref = lr.median(dim=1, keepdim=True).values.expand(b, t, c, h, w)
        x = torch.cat([lr, ref], 2).reshape(b * t, 2 * c, h, w)
        return self.encoder(x).reshape(b, t, -1, h, w)

    def fuse(self, feats: torch.Tensor) -> torch.Tensor:
        """Recursive pairwise fusion ``[B, T, F, h, w]`` -> ``[B, F, h, w]``."""
        b, t, f, h, w = feats.shape
        n = 1
        while n < t:
            n *= 2
        alpha = torch.zeros(b, n, 1, 1, 1, dtype=feats.dtype, device=feats.device)
        alpha[:, :t] = 1
        if n > t:
            feats = torch.cat([feats, feats.new_zeros(b, n - t, f, h, w)], 1)
        while n > 1:
            half = n // 2
            a, b_ = feats[:, :half], feats[:, half:n].flip(1)
            alpha_a, alpha_b = alpha[:, :half], alpha[:, half:n].flip(1)
            pair = torch.cat([a, b_], 2).reshape(b * half, 2 * f, h, w)
            g = self.fusion(pair).reshape(b, half, f, h, w)
            feats = a + alpha_b * g
            alpha = torch.maximum(alpha_a, alpha_b)
            n = half
        return feats[:, 0]

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        lr = as_frames(lr, n_frames=None, in_channels=self.in_channels, who="highresnet-compact")
        return self.decoder(self.fuse(self.encode(lr)))
