"""Lessons 02, 05, 06: ResNet (2015): skip connections, so that very deep networks train.

Basic and bottleneck residual blocks, the ResNet stem + stages, ``resnet18/34/50/101`` (module
names, structure and initialisation identical to ``torchvision.models.resnet``, so they load its
weights) and ``resnet_small`` for small digits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..checks import check_images

__all__ = [
    "ResidualBlock",
    "BottleneckBlock",
    "ResNet",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet_small",
]


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """The identity, or a strided 1x1 conv + BN ("projection") when the shapes must change."""
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class ResidualBlock(nn.Module):
    """Basic residual block of ResNet-18/34: ``relu(F(x) + shortcut(x))``, F = two 3x3 convs.

    x: [B, in_channels, H, W] -> [B, channels, H / stride, W / stride]

    Instead of asking two layers to learn a mapping H(x), the block learns the residual
    F(x) = H(x) - x and adds x back. If the best thing to do is nothing, F only has to go to
    zero, which is easy; and in the backward pass the addition copies the gradient straight to
    the block's input, so even a 100-layer network has short gradient paths to its first layers.
    When the block changes the shape (stride 2 or more channels), the shortcut becomes a strided
    1x1 conv + BN, called ``downsample`` as in torchvision.
    """

    expansion = 1  # output channels = channels * expansion

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        self.in_channels = in_channels
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = _shortcut(in_channels, channels * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x, what=type(self).__name__, channels=self.in_channels)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.downsample(x))


class BottleneckBlock(nn.Module):
    """Bottleneck residual block of ResNet-50/101/152: 1x1 reduce -> 3x3 -> 1x1 expand (x4).

    x: [B, in_channels, H, W] -> [B, 4 * channels, H / stride, W / stride]

    The 1x1 convs squeeze the channels before the expensive 3x3 and restore them after. On a
    256-channel input, two 3x3 convs at full width would need 2 * 9 * 256 * 256 = 1,179,648
    weights; the bottleneck 256 -> 64 -> 64 -> 256 needs 256*64 + 9*64*64 + 64*256 = 69,632,
    17 times fewer -- which is what lets ResNet-50 be deeper than ResNet-34 at similar cost.

    The stride sits on the 3x3 conv ("ResNet v1.5", as in torchvision): the original put it on
    the first 1x1 conv, which then simply skipped 3 of every 4 pixels without looking at them.
    """

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        out_channels = channels * self.expansion
        self.in_channels = in_channels
        self.conv1 = nn.Conv2d(in_channels, channels, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, out_channels, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x, what=type(self).__name__, channels=self.in_channels)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.downsample(x))


class ResNet(nn.Module):
    """ResNet (He et al., 2015): a stem, stages of residual blocks, global pool, Linear.

    x: [B, in_channels, H, W] -> logits [B, num_classes]; any H, W (global average pooling).

    With the ImageNet stem and 224x224 input (C = widths[-1] * block.expansion)::

        conv1 7x7 stride 2 -> bn1 -> relu   [B, 64, 112, 112]
        maxpool 3x3 stride 2                [B, 64,  56,  56]
        layer1 (stride 1)                   [B, 64 * e, 56, 56]
        layer2 (stride 2)                   [B, 128 * e, 28, 28]
        layer3 (stride 2)                   [B, 256 * e, 14, 14]
        layer4 (stride 2)                   [B, 512 * e,  7,  7]
        avgpool -> flatten -> fc            [B, num_classes]

    Each stage halves the resolution (its first block has stride 2) and doubles the width, so
    every stage costs about the same compute. ``layers`` gives the number of blocks per stage,
    ``widths`` their ``channels``. ``stem="small"`` (a 3x3 stride-1 conv and no max-pool) keeps
    the resolution of tiny inputs such as 8x8 or 32x32 digits, which the ImageNet stem would
    shrink 4 times before the first block.

    Module names, structure and initialisation are torchvision's: ``resnet18/34/50/101`` load a
    ``torchvision.models.resnetXX().state_dict()`` with ``strict=True`` and compute the same.
    """

    def __init__(
        self,
        block: type[ResidualBlock] | type[BottleneckBlock],
        layers: Sequence[int],
        num_classes: int = 1000,
        in_channels: int = 3,
        stem: str = "imagenet",
        widths: Sequence[int] = (64, 128, 256, 512),
    ):
        super().__init__()
        if stem not in ("imagenet", "small"):
            raise ValueError(f"stem must be 'imagenet' or 'small', got {stem!r}")
        if len(layers) != len(widths) or not all(n >= 1 for n in layers):
            raise ValueError(
                f"need one width per stage and at least one block per stage, got layers={layers}, "
                f"widths={widths}"
            )
        if stem == "imagenet":  # 224x224 -> 56x56 before the first block
            conv1 = nn.Conv2d(in_channels, widths[0], 7, stride=2, padding=3, bias=False)
            maxpool: nn.Module = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
            self.input_size = (in_channels, 224, 224)
        else:  # tiny images keep their resolution
            conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
            maxpool = nn.Identity()
            self.input_size = (in_channels, 32, 32)
        self.conv1 = conv1
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = maxpool

        channels = widths[0]
        self.num_stages = len(layers)
        for i, (width, num_blocks) in enumerate(zip(widths, layers)):
            blocks = []
            for j in range(num_blocks):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(block(channels, width, stride))
                channels = width * block.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

        # torchvision's initialisation: He for the ReLU network, BatchNorm starting as identity.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x, what="ResNet", channels=self.conv1.in_channels)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNet-18: basic blocks [2, 2, 2, 2], 11,689,512 parameters (1000 classes)."""
    return ResNet(ResidualBlock, [2, 2, 2, 2], num_classes, **kwargs)


def resnet34(num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNet-34: basic blocks [3, 4, 6, 3], 21,797,672 parameters."""
    return ResNet(ResidualBlock, [3, 4, 6, 3], num_classes, **kwargs)


def resnet50(num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNet-50: bottleneck blocks [3, 4, 6, 3], 25,557,032 parameters."""
    return ResNet(BottleneckBlock, [3, 4, 6, 3], num_classes, **kwargs)


def resnet101(num_classes: int = 1000, **kwargs) -> ResNet:
    """ResNet-101: bottleneck blocks [3, 4, 23, 3], 44,549,160 parameters."""
    return ResNet(BottleneckBlock, [3, 4, 23, 3], num_classes, **kwargs)


def resnet_small(
    num_classes: int = 10,
    in_channels: int = 1,
    widths: Sequence[int] = (16, 32, 64),
    blocks: Sequence[int] = (1, 1, 1),
) -> ResNet:
    """A small ResNet of basic blocks for 8x8 to 32x32 digits (3x3 stem, no max-pool).

    x: [B, in_channels, H, W] -> logits [B, num_classes]. With the defaults, 8x8 input becomes
    16 x 8x8 -> 32 x 4x4 -> 64 x 2x2 -> global average pool -> Linear.
    """
    return ResNet(ResidualBlock, blocks, num_classes, in_channels, stem="small", widths=widths)
