"""Lesson 04: The encoder shared by FCN and DeepLab: ``AtrousConv`` blocks in a small
``TinyBackbone``.

A segmentation backbone is a classification CNN without its classifier: it returns feature
maps at several strides (4, 8, 16, 32), fine ones that know *where* and coarse ones that know
*what*. Heads such as :class:`~course_utils.segmentation.fcn.FCN8s` and
:class:`~course_utils.segmentation.deeplab.DeepLabV3Plus` combine them into per-pixel scores.
"""

from __future__ import annotations

import torch
from torch import nn

from ..checks import check_images

__all__ = ["AtrousConv", "TinyBackbone"]


class AtrousConv(nn.Sequential):
    """3x3 convolution with holes (dilation ``rate``) + batch norm + ReLU.

    Spacing the kernel's taps ``rate`` pixels apart widens its view to (2 * rate + 1)^2 pixels at
    the cost of a 3x3 kernel, without reducing the resolution. Padding ``rate`` keeps H and W.

    Shapes: [B, C_in, H, W] -> [B, C_out, H, W].
    """

    def __init__(self, in_channels: int, out_channels: int, rate: int = 1):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=rate, dilation=rate, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class TinyBackbone(nn.Module):
    """A small CNN encoder returning features at strides 4, 8, 16 and 32, for FCN8s and DeepLab.

    A stride-2 stem is followed by four stages of ``AtrousConv`` s, each halving the resolution,
    with ``widths`` channels. ``dilate_last=True`` keeps the last stage at stride 16 and dilates it
    instead (DeepLab's "output stride 16": more resolution, the same receptive field growth).

    Any backbone with the same interface can replace it: ``forward`` returns a list of feature
    maps from fine to coarse, and ``channels`` lists their channel counts. (A torchvision ResNet
    wrapped in ``torchvision.models._utils.IntermediateLayerGetter`` fits with a small adapter.)

    Shapes: [B, in_channels, H, W] -> [B, widths[i], H / 4 / 2**i, W / 4 / 2**i] for i = 0..3
    (sizes rounded up; the last one is H / 16 with ``dilate_last``).
    """

    def __init__(self, in_channels: int = 3, widths=(16, 32, 64, 128), dilate_last: bool = False):
        super().__init__()
        if len(widths) != 4:
            raise ValueError(f"widths must give 4 stage widths, got {widths}")
        self.in_channels = in_channels
        self.channels = tuple(widths)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        stages = []
        for i, width in enumerate(widths):
            stride = 1 if (dilate_last and i == 3) else 2
            rate = 2 if (dilate_last and i == 3) else 1
            downsample = nn.Conv2d(widths[max(i - 1, 0)], width, 3, stride=stride, padding=1)
            stages.append(nn.Sequential(downsample, AtrousConv(width, width, rate)))
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        check_images(x, what="TinyBackbone", channels=self.in_channels)
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features
