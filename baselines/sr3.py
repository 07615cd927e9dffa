"""SR3 (Saharia et al. 2021): conditional diffusion super-resolution.

Pieces, each usable alone (the trainer builds on them):

* :func:`linear_beta_schedule` - float64 betas, linear from ``linear_start`` to ``linear_end``.
* :class:`SR3UNet` - the noise-prediction U-Net: input = noisy image (``out_channels``) concatenated with
  the bicubic-upsampled LR frames (``in_channels * n_frames``), conditioned on the continuous noise level
  ``gamma = sqrt(alpha_bar)`` through a sinusoidal encoding + MLP added in every residual block.
  Defaults: base channels 64, multipliers (1, 2, 4, 8, 8), self-attention at 16 px (relative to
  ``image_size=128``, so the architecture does not depend on the input size), 2 residual blocks per
  level, dropout 0.2, GroupNorm(32).
* :class:`GaussianDiffusion` - the schedule (float64), :meth:`~GaussianDiffusion.q_sample`, the DDPM noise
  prediction objective :meth:`~GaussianDiffusion.training_loss`, ancestral :meth:`~GaussianDiffusion.ddpm_sample`
  over all steps and :meth:`~GaussianDiffusion.ddim_sample` with a chosen number of steps and ``eta``.
* :class:`SR3` - a generator module tying the two together with the common ``[B,T,C,h,w]`` LR interface.

Conventions: step indices ``t`` are 0-based, ``alpha_bar[t] = prod_{s<=t} (1 - beta[s])``,
``x_t = sqrt(alpha_bar[t]) x_0 + sqrt(1 - alpha_bar[t]) eps``. The network always receives
``sqrt(alpha_bar[t])`` of the step it denoises. Inside the diffusion, images live in [-1, 1]; :class:`SR3`
maps from/to the package's [0, 1] convention. Random draws use CPU ``torch.Generator`` objects (one, or a
list with one per batch item) so results are identical on every device and independent of batch size
when a list is given.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clipscore_sr.errors import ConfigError

from .common import as_frames, check_arch

Generators = torch.Generator | Sequence[torch.Generator] | None
Denoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def linear_beta_schedule(n_timestep: int = 2000, linear_start: float = 1e-6, linear_end: float = 1e-2) -> np.ndarray:
    """Linearly spaced betas (float64), ``n_timestep`` values from ``linear_start`` to ``linear_end``."""
    if n_timestep < 1:
        raise ConfigError(f"sr3: n_timestep must be >= 1, got {n_timestep}")
    if not 0 < linear_start <= linear_end < 1:
        raise ConfigError(f"sr3: need 0 < linear_start <= linear_end < 1, got {linear_start}, {linear_end}")
    return np.linspace(linear_start, linear_end, n_timestep, dtype=np.float64)


def randn(shape: Sequence[int], generator: Generators = None, *, device: torch.device | str = "cpu",
          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal noise drawn on the CPU (device-independent) and moved to ``device``.

    With a list of generators, item ``i`` of the batch is drawn from ``generator[i]``.
    """
    shape = tuple(int(s) for s in shape)
    if isinstance(generator, (list, tuple)):
        if len(generator) != shape[0]:
            raise ValueError(f"randn: {len(generator)} generators for a batch of {shape[0]}")
        out = torch.stack([torch.randn(shape[1:], generator=g, dtype=torch.float32) for g in generator])
    else:
        out = torch.randn(shape, generator=generator, dtype=torch.float32)
    return out.to(device=device, dtype=dtype)


def _rand(n: int, generator: Generators) -> torch.Tensor:
    if isinstance(generator, (list, tuple)):
        return torch.stack([torch.rand((), generator=g, dtype=torch.float64) for g in generator])
    return torch.rand(n, generator=generator, dtype=torch.float64)


class GaussianDiffusion:
    """Linear-beta Gaussian diffusion with SR3's continuous noise-level conditioning.

    ``denoise_fn(x_t, cond, gamma)`` must return the predicted noise; ``gamma`` is a ``[B]`` tensor of
    ``sqrt(alpha_bar)`` values.
    """

    def __init__(self, betas: np.ndarray) -> None:
        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or (betas <= 0).any() or (betas >= 1).any():
            raise ConfigError("sr3: betas must be a 1-D array with values in (0, 1)")
        self.betas = betas
        self.num_timesteps = len(betas)
        self.alphas = 1.0 - betas
        self.alphas_cumprod = np.cumprod(self.alphas)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        # sqrt(alpha_bar) with alpha_bar[-1] = 1 prepended: the interval [sqrt_ab_ext[t+1], sqrt_ab_ext[t]]
        # holds the continuous noise levels of step t.
        self.sqrt_alphas_cumprod_ext = np.sqrt(np.append(1.0, self.alphas_cumprod))
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef1 = betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * np.sqrt(self.alphas) / (1.0 - self.alphas_cumprod)

    # ----------------------------------------------------------------------------------------------
    def noise_level(self, t: int) -> float:
        """``sqrt(alpha_bar[t])``: the conditioning value for denoising step ``t`` (0-based)."""
        return float(np.sqrt(self.alphas_cumprod[t]))

    def sample_noise_levels(self, batch: int, generator: Generators = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Training-time levels: ``t ~ U{0..T-1}``, ``gamma ~ U(sqrt(ab[t]), sqrt(ab[t-1]))`` (ab[-1] = 1).

        Returns ``(t [B] int64, gamma [B] float64)``.
        """
        if isinstance(generator, (list, tuple)):
            t = torch.stack([torch.randint(0, self.num_timesteps, (), generator=g) for g in generator])
        else:
            t = torch.randint(0, self.num_timesteps, (batch,), generator=generator)
        lo = torch.from_numpy(self.sqrt_alphas_cumprod_ext[t.numpy() + 1])
        hi = torch.from_numpy(self.sqrt_alphas_cumprod_ext[t.numpy()])
        return t, lo + (hi - lo) * _rand(batch, generator)

    @staticmethod
    def q_sample(x0: torch.Tensor, gamma: torch.Tensor | float, noise: torch.Tensor) -> torch.Tensor:
        """Forward process at noise level ``gamma = sqrt(alpha_bar)``: ``gamma x0 + sqrt(1 - gamma^2) noise``."""
        if not isinstance(gamma, torch.Tensor):
            gamma = torch.full((x0.shape[0],), float(gamma), dtype=torch.float64)
        g = gamma.to(device=x0.device, dtype=torch.float64).reshape(-1, *([1] * (x0.dim() - 1)))
        return (g * x0 + torch.sqrt(1 - g * g) * noise).to(x0.dtype)

    def training_loss(self, denoise_fn: Denoiser, x0: torch.Tensor, cond: torch.Tensor,
                      generator: Generators = None, loss_type: str = "l2") -> torch.Tensor:
        """DDPM objective (noise prediction): ``mean |eps - denoise_fn(q_sample(x0), cond, gamma)|^p``.

        ``x0`` in [-1, 1]; ``loss_type`` 'l2' (mean squared error, Ho et al.) or 'l1' (SR3's code).
        """
        if loss_type not in ("l1", "l2"):
            raise ConfigError(f"sr3: loss_type must be 'l1' or 'l2', got {loss_type!r}")
        _, gamma = self.sample_noise_levels(x0.shape[0], generator)
        noise = randn(x0.shape, generator, device=x0.device, dtype=x0.dtype)
        x_noisy = self.q_sample(x0, gamma, noise)
        pred = denoise_fn(x_noisy, cond, gamma.to(device=x0.device, dtype=x0.dtype))
        return F.mse_loss(pred, noise) if loss_type == "l2" else F.l1_loss(pred, noise)

    # ----------------------------------------------------------------------------------------------
    def ddim_timesteps(self, steps: int) -> np.ndarray:
        """``steps`` distinct step indices, ascending, evenly spread over ``0..T-1`` (first 0, last T-1)."""
        if not 1 <= steps <= self.num_timesteps:
            raise ConfigError(f"sr3: DDIM steps must be in 1..{self.num_timesteps}, got {steps}")
        if steps == 1:
            return np.array([self.num_timesteps - 1])
        return np.unique(np.round(np.linspace(0, self.num_timesteps - 1, steps)).astype(np.int64))

    def _level(self, t: int, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0],), self.noise_level(t), device=x.device, dtype=x.dtype)

    @torch.no_grad()
    def ddpm_sample(self, denoise_fn: Denoiser, cond: torch.Tensor, shape: Sequence[int],
                    generator: Generators = None, clip_denoised: bool = True,
                    progress: Callable[[int], None] | None = None) -> torch.Tensor:
        """Ancestral sampling over all T steps; returns ``x_0`` in [-1, 1] (clipped x0 predictions).

        Step t: ``x0 = (x - sqrt(1-ab[t]) eps) / sqrt(ab[t])``, ``x <- c1[t] x0 + c2[t] x + sqrt(var[t]) z``
        (posterior mean/variance of q(x_{t-1} | x_t, x_0); no noise at t = 0).
        """
        x = randn(shape, generator, device=cond.device, dtype=cond.dtype)
        for t in range(self.num_timesteps - 1, -1, -1):
            eps = denoise_fn(x, cond, self._level(t, x))
            ab = self.alphas_cumprod[t]
            x0 = (x - math.sqrt(1.0 - ab) * eps) / math.sqrt(ab)
            if clip_denoised:
                x0 = x0.clamp(-1.0, 1.0)
            mean = self.posterior_mean_coef1[t] * x0 + self.posterior_mean_coef2[t] * x
            if t > 0:
                z = randn(shape, generator, device=x.device, dtype=x.dtype)
                x = mean + math.sqrt(self.posterior_variance[t]) * z
            else:
                x = mean
            if progress is not None:
                progress(1)
        return x

    @torch.no_grad()
    def ddim_sample(self, denoise_fn: Denoiser, cond: torch.Tensor, shape: Sequence[int], steps: int = 50,
                    eta: float = 0.0, generator: Generators = None, clip_denoised: bool = True,
                    progress: Callable[[int], None] | None = None) -> torch.Tensor:
        """DDIM (Song et al. 2021) over :meth:`ddim_timesteps` ``(steps)``; ``eta=0`` is deterministic
        given the initial noise, ``eta=1`` with ``steps=T`` is DDPM's ancestral sampler.

        From step ``t`` to the previous chosen step ``p`` (ab[p] = 1 after the last):
        ``x0 = (x - sqrt(1-ab_t) eps)/sqrt(ab_t)`` (clipped; eps re-derived from the clipped x0),
        ``sigma = eta sqrt((1-ab_p)/(1-ab_t)) sqrt(1 - ab_t/ab_p)``,
        ``x <- sqrt(ab_p) x0 + sqrt(1 - ab_p - sigma^2) eps + sigma z``.
        """
        if eta < 0:
            raise ConfigError(f"sr3: eta must be >= 0, got {eta}")
        taus = self.ddim_timesteps(steps)
        x = randn(shape, generator, device=cond.device, dtype=cond.dtype)
        for i in range(len(taus) - 1, -1, -1):
            t = int(taus[i])
            ab_t = self.alphas_cumprod[t]
            ab_p = self.alphas_cumprod[int(taus[i - 1])] if i > 0 else 1.0
            eps = denoise_fn(x, cond, self._level(t, x))
            x0 = (x - math.sqrt(1.0 - ab_t) * eps) / math.sqrt(ab_t)
            if clip_denoised:
                x0 = x0.clamp(-1.0, 1.0)
                eps = (x - math.sqrt(ab_t) * x0) / math.sqrt(1.0 - ab_t)
            sigma = eta * math.sqrt((1.0 - ab_p) / (1.0 - ab_t) * (1.0 - ab_t / ab_p))
            x_new = math.sqrt(ab_p) * x0 + math.sqrt(max(1.0 - ab_p - sigma ** 2, 0.0)) * eps
            if i > 0 and eta > 0:
                x_new = x_new + sigma * randn(shape, generator, device=x.device, dtype=x.dtype)
            x = x_new
            if progress is not None:
                progress(1)
        return x


# --------------------------------------------------------------------------------------------------
# U-Net

class NoiseLevelEncoding(nn.Module):
    """Sinusoidal encoding of a continuous noise level ``[B]`` -> ``[B, dim]``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, level: torch.Tensor) -> torch.Tensor:
        count = self.dim // 2
        step = torch.arange(count, dtype=level.dtype, device=level.device) / count
        enc = level.reshape(-1, 1) * torch.exp(-math.log(1e4) * step.reshape(1, -1))
        return torch.cat([torch.sin(enc), torch.cos(enc)], dim=-1)


class ResBlock(nn.Module):
    """GN-SiLU-conv, + noise embedding (per channel), GN-SiLU-dropout-conv, + skip; optional self-attention."""

    def __init__(self, dim: int, dim_out: int, emb_dim: int, dropout: float, groups: int,
                 with_attn: bool = False) -> None:
        super().__init__()
        self.noise = nn.Linear(emb_dim, dim_out)
        self.block1 = nn.Sequential(nn.GroupNorm(groups, dim), nn.SiLU(), nn.Conv2d(dim, dim_out, 3, padding=1))
        self.block2 = nn.Sequential(nn.GroupNorm(groups, dim_out), nn.SiLU(), nn.Dropout(dropout),
                                    nn.Conv2d(dim_out, dim_out, 3, padding=1))
        self.skip = nn.Conv2d(dim, dim_out, 1) if dim != dim_out else nn.Identity()
        self.attn = SelfAttention(dim_out, groups) if with_attn else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.block1(x) + self.noise(emb)[:, :, None, None]
        h = self.block2(h) + self.skip(x)
        return self.attn(h) if self.attn is not None else h


class SelfAttention(nn.Module):
    """Single-head spatial self-attention with a residual connection."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, channels * 3, 1, bias=False)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)
        y = F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1)).squeeze(1)
        return x + self.out(y.transpose(-1, -2).reshape(b, c, h, w))


class SR3UNet(nn.Module):
    """Noise-prediction U-Net: ``(x_noisy [B,Co,H,W], cond [B,Cc,H,W], gamma [B]) -> eps [B,Co,H,W]``.

    Inputs of any size are edge-padded to a multiple of ``2**(len(channel_mults)-1)`` and cropped back.
    """

    def __init__(self, in_channels: int, out_channels: int = 3, inner_channel: int = 64,
                 channel_mults: Sequence[int] = (1, 2, 4, 8, 8), attn_res: Sequence[int] = (16,),
                 res_blocks: int = 2, dropout: float = 0.2, norm_groups: int = 32, image_size: int = 128) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.factor = 2 ** (len(channel_mults) - 1)
        emb = inner_channel
        self.noise_mlp = nn.Sequential(NoiseLevelEncoding(inner_channel), nn.Linear(inner_channel, inner_channel * 4),
                                       nn.SiLU(), nn.Linear(inner_channel * 4, inner_channel))
        downs: list[nn.Module] = [nn.Conv2d(in_channels + out_channels, inner_channel, 3, padding=1)]
        skips, pre, res = [inner_channel], inner_channel, image_size
        for i, mult in enumerate(channel_mults):
            ch = inner_channel * mult
            for _ in range(res_blocks):
                downs.append(ResBlock(pre, ch, emb, dropout, norm_groups, with_attn=res in attn_res))
                skips.append(ch)
                pre = ch
            if i < len(channel_mults) - 1:
                downs.append(nn.Conv2d(pre, pre, 3, stride=2, padding=1))
                skips.append(pre)
                res //= 2
        self.downs = nn.ModuleList(downs)
        self.mid = nn.ModuleList([ResBlock(pre, pre, emb, dropout, norm_groups, with_attn=True),
                                  ResBlock(pre, pre, emb, dropout, norm_groups, with_attn=False)])
        ups: list[nn.Module] = []
        for i in reversed(range(len(channel_mults))):
            ch = inner_channel * channel_mults[i]
            for _ in range(res_blocks + 1):
                ups.append(ResBlock(pre + skips.pop(), ch, emb, dropout, norm_groups, with_attn=res in attn_res))
                pre = ch
            if i > 0:
                ups.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                         nn.Conv2d(pre, pre, 3, padding=1)))
                res *= 2
        self.ups = nn.ModuleList(ups)
        self.final = nn.Sequential(nn.GroupNorm(norm_groups, pre), nn.SiLU(), nn.Conv2d(pre, out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, cond: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.factor, (-w) % self.factor
        inp = torch.cat([cond.to(x.dtype), x], 1)
        if ph or pw:
            inp = F.pad(inp, (0, pw, 0, ph), mode="replicate")
        emb = self.noise_mlp(gamma.to(x.dtype).reshape(-1))
        feats = []
        y = inp
        for layer in self.downs:
            y = layer(y, emb) if isinstance(layer, ResBlock) else layer(y)
            feats.append(y)
        for layer in self.mid:
            y = layer(y, emb)
        for layer in self.ups:
            y = layer(torch.cat([y, feats.pop()], 1), emb) if isinstance(layer, ResBlock) else layer(y)
        return self.final(y)[..., :h, :w]


# --------------------------------------------------------------------------------------------------

class SR3(nn.Module):
    """SR3 generator: ``[B,T,C,h,w]`` in [0,1] -> sampled ``[B,C_out,s*h,s*w]`` in [0,1].

    The condition is every frame bicubic-upsampled to the target size, concatenated frame-major and
    mapped to [-1, 1]. ``forward`` samples with the instance's ``sampler``/``steps``/``eta`` settings;
    training uses :meth:`loss`.
    """

    name = "sr3"

    def __init__(self, in_channels: int = 3, out_channels: int = 3, n_frames: int = 8, scale: int = 4,
                 inner_channel: int = 64, channel_mults: Sequence[int] = (1, 2, 4, 8, 8),
                 attn_res: Sequence[int] = (16,), res_blocks: int = 2, dropout: float = 0.2,
                 norm_groups: int = 32, image_size: int = 128, n_timestep: int = 2000,
                 linear_start: float = 1e-6, linear_end: float = 1e-2, loss_type: str = "l2") -> None:
        super().__init__()
        check_arch("sr3", scale, n_frames)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.n_frames, self.scale = int(n_frames), int(scale)
        self.config = {"in_channels": self.in_channels, "out_channels": self.out_channels,
                       "n_frames": self.n_frames, "scale": self.scale, "inner_channel": inner_channel,
                       "channel_mults": list(channel_mults), "attn_res": list(attn_res),
                       "res_blocks": res_blocks, "dropout": dropout, "norm_groups": norm_groups,
                       "image_size": image_size, "n_timestep": n_timestep, "linear_start": linear_start,
                       "linear_end": linear_end, "loss_type": loss_type}
        self.unet = SR3UNet(self.in_channels * self.n_frames, self.out_channels, inner_channel, channel_mults,
                            attn_res, res_blocks, dropout, norm_groups, image_size)
        self.diffusion = GaussianDiffusion(linear_beta_schedule(n_timestep, linear_start, linear_end))
        self.loss_type = loss_type
        # inference settings (not architecture): used by forward()
        self.sampler, self.steps, self.eta = "ddim", 50, 0.0
        self.generator: Generators = None

    def condition(self, lr: torch.Tensor) -> torch.Tensor:
        """Bicubic-upsampled frames, frame-major along channels, in [-1, 1]: ``[B, C*T, s*h, s*w]``."""
        lr = as_frames(lr, n_frames=self.n_frames, in_channels=self.in_channels, who="sr3")
        b, t, c, h, w = lr.shape
        up = F.interpolate(lr.reshape(b, t * c, h, w), scale_factor=self.scale, mode="bicubic", align_corners=False)
        return up * 2.0 - 1.0

    def loss(self, hr: torch.Tensor, lr: torch.Tensor, generator: Generators = None) -> torch.Tensor:
        """DDPM noise-prediction loss for targets ``hr`` [B,C,H,W] in [0,1] given ``lr``."""
        return self.diffusion.training_loss(self.unet, hr * 2.0 - 1.0, self.condition(lr), generator, self.loss_type)

    @torch.no_grad()
    def sample(self, lr: torch.Tensor, sampler: str | None = None, steps: int | None = None,
               eta: float | None = None, generator: Generators = None,
               progress: Callable[[int], None] | None = None) -> torch.Tensor:
        """Sample SR images in [0, 1] (not clamped beyond the sampler's x0 clipping)."""
        sampler = sampler or self.sampler
        cond = self.condition(lr)
        shape = (cond.shape[0], self.out_channels, *cond.shape[-2:])
        generator = generator if generator is not None else self.generator
        if sampler == "ddpm":
            x = self.diffusion.ddpm_sample(self.unet, cond, shape, generator, progress=progress)
        elif sampler == "ddim":
            x = self.diffusion.ddim_sample(self.unet, cond, shape, steps if steps is not None else self.steps,
                                           self.eta if eta is None else eta, generator, progress=progress)
        else:
            raise ConfigError(f"sr3: sampler must be 'ddpm' or 'ddim', got {sampler!r}")
        return (x + 1.0) / 2.0

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.sample(lr)
