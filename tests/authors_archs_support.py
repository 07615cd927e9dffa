"""TEST-ONLY transcription of the paper authors' code, for comparisons with ours (no tests here).

Transcribed from allenai/satlas-super-resolution (reference only, not part of the package):
* ssr/archs/arch_util.py @ 417b87a: OneHot, DoubleConv2d, ResidualBlock, FusionBlock, RecursiveFusion,
  ConvTransposeBlock, PixelShuffleBlock (BasicSR imports and docstrings dropped)
* ssr/archs/srcnn_arch.py, ssr/archs/highresnet_arch.py @ 417b87a: SRCNN, HighResNet (ARCH_REGISTRY dropped;
  kornia's Resize as theirs)
* BasicSR basicsr/data/data_sampler.py (XPixelGroup/BasicSR @ 049ca62): EnlargedSampler, used by their
  ssr/train.py with ``train_sampler.set_epoch(epoch)`` commented out.
"""
# ruff: noqa
import math
from math import log2

import torch
import torch.nn.functional as F
from kornia.geometry.transform import Resize
from torch import nn


class OneHot(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.num_classes = num_classes

    def forward(self, x):
        x = x.to(torch.int64)
        x = x.squeeze(-3)
        x = F.one_hot(x, num_classes=self.num_classes)
        if x.ndim == 5:
            x = x.permute(0, 1, 4, 2, 3)
        elif x.ndim == 4:
            x = x.permute(0, 3, 1, 2)
        return x


class DoubleConv2d(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size=3, use_batchnorm=False):
        super().__init__()
        self.doubleconv2d = nn.Sequential(
            nn.Conv2d(in_channels=in_channels, out_channels=out_channels, kernel_size=kernel_size, padding="same",
                      bias=not use_batchnorm, padding_mode="reflect"),
            nn.BatchNorm2d(out_channels) if use_batchnorm else nn.Identity(),
            nn.PReLU(),
            nn.Dropout(p=0.5),
            nn.Conv2d(in_channels=out_channels, out_channels=out_channels, kernel_size=kernel_size, padding="same",
                      bias=not use_batchnorm, padding_mode="reflect"),
            nn.BatchNorm2d(out_channels) if use_batchnorm else nn.Identity(),
            nn.PReLU(),
            nn.Dropout(p=0.5),
        )

    def forward(self, x):
        return self.doubleconv2d(x)


class ResidualBlock(nn.Module):
    def __init__(self, in_channels, kernel_size=3, **kws):
        super().__init__()
        self.residualblock = DoubleConv2d(in_channels=in_channels, out_channels=in_channels,
                                          kernel_size=kernel_size, **kws)

    def forward(self, x):
        x = x + self.residualblock(x)
        return x


class FusionBlock(nn.Module):
    def __init__(self, in_channels, kernel_size=3, use_batchnorm=False):
        super().__init__()
        number_of_revisits_to_fuse = 2
        self.fuse = nn.Sequential(
            ResidualBlock(number_of_revisits_to_fuse * in_channels, kernel_size, use_batchnorm=use_batchnorm),
            nn.Conv2d(in_channels=number_of_revisits_to_fuse * in_channels, out_channels=in_channels,
                      kernel_size=kernel_size, padding="same", bias=not use_batchnorm, padding_mode="reflect"),
            nn.BatchNorm2d(in_channels) if use_batchnorm else nn.Identity(),
            nn.PReLU(),
        )

    @staticmethod
    def split(x):
        number_of_revisits = x.shape[1]
        first_half = x[:, : number_of_revisits // 2].contiguous()
        second_half = x[:, number_of_revisits // 2:].contiguous()
        return first_half, second_half

    def forward(self, x):
        first_half, second_half = self.split(x)
        batch_size, half_revisits, channels, height, width = first_half.shape
        first_half = first_half.view(batch_size * half_revisits, channels, height, width)
        second_half = second_half.view(batch_size * half_revisits, channels, height, width)
        x = torch.cat([first_half, second_half], dim=-3)
        fused_x = self.fuse(x)
        fused_x = fused_x.view(batch_size, half_revisits, channels, height, width)
        return fused_x


class RecursiveFusion(nn.Module):
    def __init__(self, in_channels, kernel_size, revisits):
        super().__init__()
        log2_revisits = log2(revisits)
        if log2_revisits % 1 == 0:
            num_fusion_layers = int(log2_revisits)
        else:
            num_fusion_layers = int(log2_revisits) + 1
        pairwise_fusion = FusionBlock(in_channels, kernel_size, use_batchnorm=False)
        self.fusion = nn.Sequential(*(pairwise_fusion for _ in range(num_fusion_layers)))

    @staticmethod
    def pad(x):
        batch_size, revisits, channels, height, width = x.shape
        log2_revisits = torch.log2(torch.tensor(revisits))
        if log2_revisits % 1 > 0:
            nextpower = torch.ceil(log2_revisits)
            number_of_black_padding_revisits = int(2 ** nextpower - revisits)
            black_revisits = torch.zeros(batch_size, number_of_black_padding_revisits, channels, height, width,
                                         dtype=x.dtype, device=x.device)
            x = torch.cat([x, black_revisits], dim=1)
        return x

    def forward(self, x):
        x = self.pad(x)
        x = self.fusion(x)
        return x.squeeze(1)


class ConvTransposeBlock(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, sr_kernel_size, zoom_factor, use_batchnorm=False):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.sr_kernel_size = sr_kernel_size
        self.zoom_factor = zoom_factor
        self.use_batchnorm = use_batchnorm
        self.upsample = nn.Sequential(
            nn.ConvTranspose2d(in_channels=self.in_channels, out_channels=self.in_channels,
                               kernel_size=self.kernel_size, stride=self.zoom_factor, padding=0),
            nn.PReLU(),
            nn.Conv2d(in_channels=self.in_channels, out_channels=self.in_channels, kernel_size=self.kernel_size,
                      stride=1, padding="same", bias=not use_batchnorm, padding_mode="reflect"),
            nn.BatchNorm2d(self.in_channels) if use_batchnorm else nn.Identity(),
            nn.PReLU(),
            nn.Conv2d(in_channels=self.in_channels, out_channels=self.out_channels, kernel_size=self.sr_kernel_size,
                      stride=1, padding="same", bias=not use_batchnorm, padding_mode="reflect"),
            nn.BatchNorm2d(self.out_channels) if use_batchnorm else nn.Identity(),
            nn.PReLU(),
        )

    def forward(self, x):
        return self.upsample(x)


class PixelShuffleBlock(ConvTransposeBlock):
    def __init__(self, **kws):
        super().__init__(**kws)
        self.in_channels = self.in_channels // self.zoom_factor ** 2
        self.upsample = nn.Sequential(
            nn.PixelShuffle(self.zoom_factor),
            nn.Conv2d(in_channels=self.in_channels, out_channels=self.in_channels, kernel_size=self.sr_kernel_size,
                      stride=1, padding="same", bias=not self.use_batchnorm, padding_mode="reflect"),
            nn.BatchNorm2d(self.in_channels) if self.use_batchnorm else nn.Identity(),
            nn.PReLU(),
            nn.Conv2d(in_channels=self.in_channels, out_channels=self.out_channels, kernel_size=self.sr_kernel_size,
                      stride=1, padding="same", bias=not self.use_batchnorm, padding_mode="reflect"),
            nn.BatchNorm2d(self.out_channels) if self.use_batchnorm else nn.Identity(),
            nn.PReLU(),
        )


class SRCNN(nn.Module):
    def __init__(self, in_channels, mask_channels, revisits, hidden_channels, out_channels, kernel_size,
                 residual_layers, output_size, zoom_factor, sr_kernel_size, use_reference_frame=False, **kws):
        super().__init__()
        self.in_channels = 2 * in_channels if use_reference_frame else in_channels
        self.mask_channels = mask_channels
        self.revisits = revisits
        self.hidden_channels = hidden_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.residual_layers = residual_layers
        self.output_size = output_size
        self.zoom_factor = zoom_factor
        self.sr_kernel_size = sr_kernel_size
        self.use_batchnorm = False
        self.use_reference_frame = use_reference_frame
        self.encoder = DoubleConv2d(in_channels=self.in_channels, out_channels=hidden_channels,
                                    kernel_size=kernel_size, use_batchnorm=self.use_batchnorm)
        self.mask_encoder = nn.Sequential(
            OneHot(num_classes=12),
            DoubleConv2d(in_channels=self.mask_channels, out_channels=1, kernel_size=3),
            nn.Sigmoid(),
        )
        self.doubleconv2d = DoubleConv2d(in_channels=hidden_channels * revisits, out_channels=hidden_channels,
                                         kernel_size=kernel_size, use_batchnorm=self.use_batchnorm)
        self.residualblocks = nn.Sequential(*(ResidualBlock(in_channels=hidden_channels, kernel_size=kernel_size,
                                                            use_batchnorm=self.use_batchnorm)
                                              for _ in range(residual_layers)))
        self.fusion = nn.Sequential(self.doubleconv2d, self.residualblocks)
        self.sr = PixelShuffleBlock(in_channels=hidden_channels, out_channels=out_channels, kernel_size=kernel_size,
                                    sr_kernel_size=sr_kernel_size, zoom_factor=zoom_factor,
                                    use_batchnorm=self.use_batchnorm)
        self.resize = Resize(self.output_size, interpolation="bilinear", align_corners=False, antialias=True)

    def reference_frame(self, x, mask=None):
        return x.median(dim=-4, keepdim=True).values

    def forward(self, x, y=None, mask=None):
        if self.use_reference_frame:
            x = self.compute_and_concat_reference_frame_to_input(x)
        batch_size, revisits, channels, height, width = x.shape
        hidden_channels = self.hidden_channels
        x = x.view(batch_size * revisits, channels, height, width)
        x = self.encoder(x)
        x, mask_channels = self.encode_and_concatenate_masks_to_input(x, mask, batch_size, revisits, height, width)
        x = x.view(batch_size, revisits * (hidden_channels + mask_channels), height, width)
        x = self.fusion(x)
        x = self.sr(x)
        x = self.resize(x)
        x = x[:, None]
        return x

    def compute_and_concat_reference_frame_to_input(self, x):
        reference_frame = self.reference_frame(x).expand_as(x)
        x = torch.cat([x, reference_frame], dim=-3)
        return x

    def encode_and_concatenate_masks_to_input(self, x, mask, batch_size, revisits, height, width):
        if mask is not None:
            mask, mask_channels = mask, self.mask_channels
            mask = mask.view(batch_size * revisits, mask_channels, height, width)
            mask = self.mask_encoder(mask)
            mask_channels = mask.shape[-3]
            x = torch.cat([x, mask], dim=-3)
        else:
            mask_channels = 0
        return x, mask_channels


class HighResNet(SRCNN):
    def __init__(self, skip_paddings=True, **kws):
        super().__init__(**kws)
        self.skip_paddings = skip_paddings
        self.fusion = RecursiveFusion(in_channels=self.hidden_channels, kernel_size=self.kernel_size,
                                      revisits=self.revisits)

    def forward(self, x, y=None, mask=None):
        hidden_channels = self.hidden_channels
        if self.use_reference_frame:
            x = self.compute_and_concat_reference_frame_to_input(x)
        batch_size, revisits, channels, height, width = x.shape
        x = x.view(batch_size * revisits, channels, height, width)
        x = self.encoder(x)
        x, mask_channels = self.encode_and_concatenate_masks_to_input(x, mask, batch_size, revisits, height, width)
        x = x.view(batch_size, revisits, hidden_channels + mask_channels, height, width)
        x = self.fusion(x)
        x = self.sr(x)
        x = x[:, None]
        return x


# their srcnn_s2naip_urban.yml / highresnet_s2naip_urban.yml network_g (experiments branch, 01de805)
AUTHORS_NETWORK_G = dict(in_channels=3, mask_channels=0, hidden_channels=128, out_channels=3, kernel_size=3,
                         residual_layers=1, output_size=128, revisits=8, zoom_factor=4, sr_kernel_size=1)


class EnlargedSampler(torch.utils.data.sampler.Sampler):
    def __init__(self, dataset, num_replicas, rank, ratio=1):
        self.dataset = dataset
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.num_samples = int(math.ceil(len(self.dataset) * ratio / self.num_replicas))
        self.total_size = self.num_samples * self.num_replicas

    def __iter__(self):
        g = torch.Generator()
        g.manual_seed(self.epoch)
        indices = torch.randperm(self.total_size, generator=g).tolist()
        dataset_size = len(self.dataset)
        indices = [v % dataset_size for v in indices]
        indices = indices[self.rank:self.total_size:self.num_replicas]
        assert len(indices) == self.num_samples
        return iter(indices)

    def __len__(self):
        return self.num_samples

    def set_epoch(self, epoch):
        self.epoch = epoch
