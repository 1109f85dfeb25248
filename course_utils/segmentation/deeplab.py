"""Lesson 04: DeepLab v3+ (Chen et al., 2018): atrous spatial pyramid pooling for context, a light
decoder for sharp edges.

``ASPP`` looks at every position through atrous convolutions of several rates side by side
(small and large objects both find a branch of their size) plus one whole-image branch;
``DeepLabV3Plus`` puts it on the coarse features of a backbone and sharpens the result with the
backbone's fine features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_images
from .backbone import AtrousConv, TinyBackbone

__all__ = ["ASPP", "DeepLabV3Plus"]


class ASPP(nn.Module):
    """Atrous Spatial Pyramid Pooling (DeepLab v3): context at several scales, side by side.

    Parallel branches -- a 1x1 convolution, one ``AtrousConv`` per rate in ``rates`` and an
    image-pooling branch (global average, 1x1 convolution, broadcast back to H x W) for
    whole-image context -- are concatenated and projected to ``out_channels`` by a 1x1
    convolution. The pooling branch has no batch norm: it sees one value per channel and image,
    which batch norm cannot normalise in training with a batch of one.

    Shapes: [B, in_channels, H, W] -> [B, out_channels, H, W].
    """

    def __init__(self, in_channels: int, out_channels: int = 256, rates=(6, 12, 18)):
        super().__init__()
        self.in_channels = in_channels
        pointwise = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )
        self.branches = nn.ModuleList([pointwise])
        self.branches.extend(AtrousConv(in_channels, out_channels, rate) for rate in rates)
        self.image_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, out_channels, 1), nn.ReLU(inplace=True)
        )
        self.project = nn.Sequential(
            nn.Conv2d((len(rates) + 2) * out_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x, what="ASPP", channels=self.in_channels)
        features = [branch(x) for branch in self.branches]
        features.append(self.image_pool(x).expand(-1, -1, *x.shape[-2:]))
        return self.project(torch.cat(features, dim=1))


class DeepLabV3Plus(nn.Module):
    """DeepLab v3+ (Chen et al., 2018): ASPP for context, a light decoder for sharp edges.

    The backbone's coarsest ("high-level") features go through ``ASPP``, are upsampled to the
    resolution of its finest ("low-level", stride 4) features -- reduced to 48 channels by a 1x1
    convolution so they do not drown the ASPP output -- concatenated with them, refined by two
    3x3 convolutions, scored and upsampled to the input size.

    ``backbone`` returns a list of features from fine to coarse (first = low-level, last =
    high-level) and lists their channels in ``backbone.channels``; by default a
    ``TinyBackbone(dilate_last=True)`` (output stride 16).

    Shapes: [B, C, H, W] -> [B, num_classes, H, W], any H, W.
    """

    def __init__(
        self,
        num_classes: int,
        backbone: nn.Module | None = None,
        aspp_channels: int = 64,
        rates=(6, 12, 18),
    ):
        super().__init__()
        self.backbone = backbone if backbone is not None else TinyBackbone(dilate_last=True)
        low_channels, high_channels = self.backbone.channels[0], self.backbone.channels[-1]
        self.aspp = ASPP(high_channels, aspp_channels, rates)
        self.reduce_low = nn.Sequential(
            nn.Conv2d(low_channels, 48, 1, bias=False), nn.BatchNorm2d(48), nn.ReLU(inplace=True)
        )
        self.refine = nn.Sequential(
            AtrousConv(aspp_channels + 48, aspp_channels),
            AtrousConv(aspp_channels, aspp_channels),
        )
        self.classifier = nn.Conv2d(aspp_channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)
        low, high = self.reduce_low(features[0]), self.aspp(features[-1])
        high = F.interpolate(high, size=low.shape[-2:], mode="bilinear", align_corners=False)
        logits = self.classifier(self.refine(torch.cat([low, high], dim=1)))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
