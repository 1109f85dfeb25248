"""Lesson 02: GoogLeNet's Inception module (2014), width instead of depth.

Parallel 1x1 / 3x3 / 5x5 / pooling branches, made affordable by 1x1 "reduce" convolutions."""

from __future__ import annotations

import torch
from torch import nn

from ..checks import check_images

__all__ = ["InceptionModule"]


class InceptionModule(nn.Module):
    """Inception module of GoogLeNet (Szegedy et al., 2014): four parallel branches, concatenated.

    x: [B, in_channels, H, W] -> [B, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W]

    ::

        branch1: 1x1 conv                          -> ch1x1 maps
        branch2: 1x1 conv (ch3x3red) -> 3x3 conv   -> ch3x3 maps
        branch3: 1x1 conv (ch5x5red) -> 5x5 conv   -> ch5x5 maps
        branch4: 3x3 max-pool (stride 1) -> 1x1    -> pool_proj maps

    Instead of choosing one kernel size, the module looks at several scales at once and lets the
    next layer pick. What makes it affordable is the 1x1 "reduce" conv in front of the expensive
    ones: a 5x5 conv from 256 to 256 channels costs 5*5*256*256 = 1,638,400 multiply-adds per
    pixel; reducing to 64 channels first costs 256*64 + 5*5*64*256 = 425,984, 3.8 times fewer
    (``count_flops`` measures it). A 1x1 conv is a small fully connected layer applied at every
    pixel: it mixes channels without looking at neighbours. Every conv is followed by a ReLU (no
    BatchNorm in v1). GoogLeNet's first module, "3a", is
    ``InceptionModule(192, 64, 96, 128, 16, 32, 32)``: 192 -> 256 channels.
    """

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
    ):
        super().__init__()

        def conv_relu(c_in: int, c_out: int, kernel_size: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2), nn.ReLU()]

        self.in_channels = in_channels
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj
        self.branch1 = nn.Sequential(*conv_relu(in_channels, ch1x1, 1))
        self.branch2 = nn.Sequential(
            *conv_relu(in_channels, ch3x3red, 1), *conv_relu(ch3x3red, ch3x3, 3)
        )
        self.branch3 = nn.Sequential(
            *conv_relu(in_channels, ch5x5red, 1), *conv_relu(ch5x5red, ch5x5, 5)
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1), *conv_relu(in_channels, pool_proj, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x, what="InceptionModule", channels=self.in_channels)
        branches = (self.branch1, self.branch2, self.branch3, self.branch4)
        return torch.cat([branch(x) for branch in branches], dim=1)  # stack along channels
