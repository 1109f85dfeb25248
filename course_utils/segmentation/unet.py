"""Lesson 04: U-Net (Ronneberger et al., 2015): an encoder-decoder whose skip connections restore
detail.

The encoder halves the resolution step by step and widens the features; the decoder upsamples
them back and, at every resolution, concatenates the encoder's features of that size (the
*skip connection*), so the edges lost by pooling come back. ``MiniUNet`` is a two-level one that
trains on a CPU in minutes, ``UNet`` the general one with ``depth`` levels.

Shapes: images [B, C, H, W] -> logits [B, K, H, W], one score per class and pixel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_images

__all__ = ["UpBlock", "MiniUNet", "UNet"]


class _DoubleConv(nn.Sequential):
    """Two 3x3 convolutions, each followed by batch norm and ReLU.

    Shapes: [B, C_in, H, W] -> [B, C_out, H, W].
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class UpBlock(nn.Module):
    """One decoder step of a U-Net: upsample x2, concatenate the encoder's skip, ``_DoubleConv``.

    ``bilinear=True`` upsamples by bilinear interpolation and halves the channels with a 1x1
    convolution (no learned upsampling, no checkerboard artefacts); ``bilinear=False`` uses a
    learned 2x2 transposed convolution. Either way the result is resized to the skip's size, so
    odd input sizes (where pooling floored the size) work.

    Shapes: x [B, C_in, h, w], skip [B, C_in // 2, H, W] -> [B, C_out, H, W].
    """

    def __init__(self, in_channels: int, out_channels: int, bilinear: bool = True):
        super().__init__()
        self.bilinear = bilinear
        if bilinear:
            self.reduce = nn.Conv2d(in_channels, in_channels // 2, 1)
        else:
            self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, 2, stride=2)
        self.conv = _DoubleConv(in_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        size = skip.shape[-2:]
        if self.bilinear:
            x = self.reduce(F.interpolate(x, size=size, mode="bilinear", align_corners=False))
        else:
            x = self.up(x)
            # 2 * floor(H / 2) falls one short of an odd H: pad the missing row / column.
            x = F.pad(x, (0, size[1] - x.shape[-1], 0, size[0] - x.shape[-2]))
        return self.conv(torch.cat([skip, x], dim=1))


class MiniUNet(nn.Module):
    """A two-level U-Net, small enough to train on a CPU in minutes.

    Encoder: ``_DoubleConv`` (``base``) -> pool -> ``_DoubleConv`` (2 * ``base``) -> pool ->
    bottleneck (4 * ``base``). Decoder: two ``UpBlock`` s, each concatenating the encoder features
    of the same resolution (the skip connections that restore detail lost by pooling), then a 1x1
    convolution to ``num_classes`` logits.

    Shapes: [B, in_channels, H, W] -> [B, num_classes, H, W], any H, W >= 4.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 2, base: int = 16):
        super().__init__()
        self.in_channels = in_channels
        self.enc1 = _DoubleConv(in_channels, base)
        self.enc2 = _DoubleConv(base, 2 * base)
        self.bottleneck = _DoubleConv(2 * base, 4 * base)
        self.up2 = UpBlock(4 * base, 2 * base, bilinear=False)
        self.up1 = UpBlock(2 * base, base, bilinear=False)
        self.head = nn.Conv2d(base, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x, what="MiniUNet", channels=self.in_channels, min_size=4)  # pools twice
        s1 = self.enc1(x)  # [B, base, H, W]
        s2 = self.enc2(F.max_pool2d(s1, 2))  # [B, 2 base, H/2, W/2]
        x = self.bottleneck(F.max_pool2d(s2, 2))  # [B, 4 base, H/4, W/4]
        x = self.up2(x, s2)
        x = self.up1(x, s1)
        return self.head(x)


class UNet(nn.Module):
    """U-Net (Ronneberger et al., 2015) with ``depth`` pooling steps.

    Level ``i`` of the encoder has ``base * 2**i`` channels; the bottleneck, after ``depth``
    poolings, has ``base * 2**depth``. The decoder mirrors the encoder with ``UpBlock`` s
    (``bilinear`` chooses interpolation or transposed convolutions).

    Shapes: [B, in_channels, H, W] -> [B, num_classes, H, W], any H, W >= 2**depth.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 2,
        base: int = 32,
        depth: int = 4,
        bilinear: bool = True,
    ):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.in_channels = in_channels
        self.depth = depth
        widths = [base * 2**i for i in range(depth + 1)]
        self.encoder = nn.ModuleList([_DoubleConv(in_channels, widths[0])])
        self.encoder.extend(_DoubleConv(widths[i], widths[i + 1]) for i in range(depth))
        self.decoder = nn.ModuleList(
            UpBlock(widths[i + 1], widths[i], bilinear) for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(base, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # ``depth`` poolings halve H and W ``depth`` times
        check_images(x, what="UNet", channels=self.in_channels, min_size=2**self.depth)
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()  # the bottleneck
        for block in self.decoder:
            x = block(x, skips.pop())
        return self.head(x)
