"""Lesson 03: A small convolutional backbone with a feature pyramid, for the detectors of lesson 03.

Detectors need features at several resolutions: fine maps (small stride) see small objects
sharply, coarse maps see large objects whole. :class:`_SmallBackbone` halves the resolution four
times (strides 2, 4, 8, 16) and :class:`FPN` (Lin et al., 2017) mixes the coarse, semantically
strong maps back into the fine ones (top-down path with lateral 1x1 convolutions), so that every
level has both: "what" from deep layers and "where" from shallow ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_images
from ..models.resnet import ResidualBlock

__all__ = ["FPN", "PyramidBackbone"]


def _conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution (no bias: BatchNorm has one) -> BatchNorm -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class _SmallBackbone(nn.Module):
    """``x: [B, 3, H, W]`` -> feature maps at strides 4, 8 and 16 (``widths[1:]`` channels).

    A stem at stride 2, then one stage per entry of ``widths[1:]``: a stride-2 convolution and a
    ResNet basic block (:class:`~course_utils.models.ResidualBlock`, lesson 02). With the
    defaults a 128x128 scene gives 48x32x32, 96x16x16 and 160x8x8 maps; the deepest cells see
    more than 80 pixels, more than the largest digit.
    """

    def __init__(self, widths: Sequence[int] = (32, 48, 96, 160), in_channels: int = 3):
        super().__init__()
        self.stem = nn.Sequential(
            _conv_bn_relu(in_channels, widths[0] // 2, stride=2),
            _conv_bn_relu(widths[0] // 2, widths[0]),
        )
        self.stages = nn.ModuleList(
            nn.Sequential(_conv_bn_relu(c_in, c_out, stride=2), ResidualBlock(c_out, c_out))
            for c_in, c_out in zip(widths[:-1], widths[1:])
        )
        self.out_channels = list(widths[1:])
        self.strides = [2 ** (i + 2) for i in range(len(self.stages))]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


class FPN(nn.Module):
    """Feature pyramid: ``[C_i x H_i x W_i]`` fine-to-coarse -> the same sizes, all ``channels``.

    ``T_last = lateral(C_last)``; then, going up in resolution, ``T_i = lateral(C_i) +
    upsample(T_{i+1})``; each output ``P_i`` is ``T_i`` through a 3x3 convolution that smooths the
    upsampling. ``num_outputs`` keeps only the finest levels (default: all): a head that reads P2
    alone, like CenterNet, still gets the coarse levels' context through the top-down sums.
    """

    def __init__(
        self, in_channels: Sequence[int], channels: int = 64, num_outputs: int | None = None
    ):
        super().__init__()
        num_outputs = len(in_channels) if num_outputs is None else num_outputs
        if not 1 <= num_outputs <= len(in_channels):
            raise ValueError(f"num_outputs must be in 1..{len(in_channels)}, got {num_outputs}")
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.smooth = nn.ModuleList(_conv_bn_relu(channels, channels) for _ in range(num_outputs))

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if len(features) != len(self.lateral):
            raise ValueError(f"expected {len(self.lateral)} feature maps, got {len(features)}")
        tops = [self.lateral[-1](features[-1])]
        for i in range(len(features) - 2, -1, -1):  # coarse -> fine
            upsampled = F.interpolate(tops[0], size=features[i].shape[-2:], mode="nearest")
            tops.insert(0, self.lateral[i](features[i]) + upsampled)
        return [smooth(top) for smooth, top in zip(self.smooth, tops)]  # finest levels first


class PyramidBackbone(nn.Module):
    """:class:`_SmallBackbone` + :class:`FPN`: ``[B, 3, H, W]`` -> ``channels``-wide maps at
    strides 4, 8, 16 (``self.strides``; only the first ``num_outputs`` of them if given), what the
    detection heads of the lesson consume."""

    def __init__(
        self,
        channels: int = 64,
        widths: Sequence[int] = (32, 48, 96, 160),
        num_outputs: int | None = None,
    ):
        super().__init__()
        self.body = _SmallBackbone(widths)
        self.fpn = FPN(self.body.out_channels, channels, num_outputs)
        self.strides = self.body.strides[: len(self.fpn.smooth)]
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        check_images(x, what=type(self).__name__, channels=self.body.stem[0][0].in_channels)
        return self.fpn(self.body(x))
