"""Lesson 04: FCN-8s (Long et al., 2015): the first fully convolutional segmenter.

Replace a classifier's last layers by 1x1 convolutions and it scores every position of its
coarsest feature map; upsample those scores to the image and it segments. Adding the scores of
finer feature maps on the way up (strides 16 and 8: the "8s") brings back the detail the coarse
map lost.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import TinyBackbone

__all__ = ["FCN8s"]


class FCN8s(nn.Module):
    """Fully Convolutional Network, 8s variant (Long et al., 2015).

    The coarsest features (stride 32) are scored per class with a 1x1 convolution, upsampled x2
    and added to the scores of the stride-16 features, upsampled x2 again and added to the scores
    of the stride-8 features, then upsampled x8 to the input size. Each addition brings back
    detail that the deeper layers lost. (The original learns its upsampling with transposed
    convolutions initialised to bilinear interpolation; plain bilinear interpolation is used here.)

    ``backbone`` returns features whose last three are at strides 8, 16 and 32 and lists their
    channels in ``backbone.channels``; by default a ``TinyBackbone``.

    Shapes: [B, C, H, W] -> [B, num_classes, H, W], any H, W.
    """

    def __init__(self, num_classes: int, backbone: nn.Module | None = None):
        super().__init__()
        self.backbone = backbone if backbone is not None else TinyBackbone()
        self.score = nn.ModuleList(
            nn.Conv2d(c, num_classes, 1) for c in self.backbone.channels[-3:]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c8, c16, c32 = self.backbone(x)[-3:]
        scores = self.score[2](c32)
        for conv, features in ((self.score[1], c16), (self.score[0], c8)):
            up = F.interpolate(
                scores, size=features.shape[-2:], mode="bilinear", align_corners=False
            )
            scores = up + conv(features)
        return F.interpolate(scores, size=x.shape[-2:], mode="bilinear", align_corners=False)
