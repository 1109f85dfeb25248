"""Lessons 02, 13: LeNet-5 (1998), the template of every CNN.

Convolution + pooling, then fully connected layers."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from ..checks import check_images

__all__ = ["LeNet5"]


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al., 1998) in its classic flavour: tanh activations, average pooling.

    x: [B, in_channels, 32, 32] -> logits [B, num_classes]

    Layer names follow the paper (C = convolution, S = subsampling, F = fully connected)::

        input                     [B,   1, 32, 32]
        c1  5x5 conv, 6 maps      [B,   6, 28, 28]   32 - 5 + 1 = 28 (no padding)
        s2  2x2 average pool      [B,   6, 14, 14]
        c3  5x5 conv, 16 maps     [B,  16, 10, 10]
        s4  2x2 average pool      [B,  16,  5,  5]
        c5  5x5 conv, 120 maps    [B, 120,  1,  1]   the kernel covers all of s4: fully connected
        f6  linear                [B, 84]
        output linear             [B, num_classes]

    10 classes from 1 channel: 61,706 parameters. The pattern -- convolutions that share one small
    kernel across the image, pooling that trades resolution for invariance, then a classifier --
    is still the template of every network in this module.

    Modern re-implementations use ReLU and max-pooling, which train faster; we keep tanh and
    average pooling to stay close to the original. Left out for clarity: in the paper c3 saw only
    a hand-picked subset of s2's maps (1,516 parameters instead of 2,416), s2/s4 had a trainable
    scale and bias per map, the tanh was scaled (1.7159 tanh(2x/3)), and the output layer was made
    of radial basis functions.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.input_size = (in_channels, 32, 32)
        self.features = nn.Sequential(
            OrderedDict(
                c1=nn.Conv2d(in_channels, 6, kernel_size=5),
                act1=nn.Tanh(),
                s2=nn.AvgPool2d(kernel_size=2, stride=2),
                c3=nn.Conv2d(6, 16, kernel_size=5),
                act3=nn.Tanh(),
                s4=nn.AvgPool2d(kernel_size=2, stride=2),
                c5=nn.Conv2d(16, 120, kernel_size=5),
                act5=nn.Tanh(),
            )
        )
        self.classifier = nn.Sequential(
            OrderedDict(
                flatten=nn.Flatten(),
                f6=nn.Linear(120, 84),
                act6=nn.Tanh(),
                output=nn.Linear(84, num_classes),
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Three 5x5 convs and two 2x2 pools take 32 down to 1x1 (pad 28x28 MNIST digits by 2).
        check_images(x, what="LeNet5", channels=self.input_size[0], size=32)
        return self.classifier(self.features(x))
