"""Lesson 02: AlexNet (2012), LeNet's template at ImageNet scale.

ReLU, dropout, large convolutions, GPUs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..checks import check_images

__all__ = ["AlexNet", "TORCHVISION_ALEXNET_WIDTHS"]

#: torchvision's AlexNet conv widths (from "One weird trick for parallelizing convolutional
#: neural networks", Krizhevsky 2014); the 2012 paper's are (96, 256, 384, 384, 256).
TORCHVISION_ALEXNET_WIDTHS = (64, 192, 384, 256, 256)


class AlexNet(nn.Module):
    """AlexNet (Krizhevsky, Sutskever & Hinton, 2012), single-tower, with local response norm.

    x: [B, 3, 227, 227] -> logits [B, num_classes]

    ::

        input                                    [B,   3, 227, 227]
        conv1 11x11 stride 4, 96 -> ReLU -> LRN  [B,  96,  55,  55]   (227 - 11) / 4 + 1 = 55
        max-pool 3x3 stride 2 (overlapping)      [B,  96,  27,  27]
        conv2 5x5 pad 2, 256 -> ReLU -> LRN      [B, 256,  27,  27]
        max-pool 3x3 stride 2                    [B, 256,  13,  13]
        conv3, conv4 3x3 pad 1, 384 -> ReLU      [B, 384,  13,  13]
        conv5 3x3 pad 1, 256 -> ReLU             [B, 256,  13,  13]
        max-pool 3x3 stride 2                    [B, 256,   6,   6]
        flatten -> dropout -> linear 4096 -> ReLU -> dropout -> linear 4096 -> ReLU -> linear

    What made it win ImageNet 2012: ReLU instead of tanh (non-saturating, so gradients do not
    vanish and training is several times faster), dropout in the huge fully connected layers,
    data augmentation, and enough GPU compute to train 60 million parameters. The paper says
    224x224 input, but only 227 makes the arithmetic above work (a well-known erratum).

    Parameters: 62,378,344 (``lrn`` adds none: LRN has no weights). 58,631,144 of them (94%)
    sit in the three Linear layers -- the first one alone, 9216 x 4096, has 37.7 million.

    torchvision's ``alexnet`` has 61,100,840: it follows Krizhevsky's 2014 "One weird trick"
    paper, with narrower convolutions (``TORCHVISION_ALEXNET_WIDTHS`` = 64/192/384/256/256), no
    LRN, padding 2 in conv1 so that 224x224 input gives 55x55, and an adaptive 6x6 average pool
    (no parameters) so that other sizes work too. Its Linear layers are identical to ours (both
    end in 256x6x6 maps), so the whole difference, 1,277,504, is in the convolutions: 3,747,200
    here against 2,469,696. ``AlexNet(widths=TORCHVISION_ALEXNET_WIDTHS, lrn=False)`` has exactly
    torchvision's parameters and loads its ``state_dict``. (The 2012 network, split over two GPUs,
    had conv2, conv4 and conv5 see only the half of the maps on their own GPU -- ``groups=2`` --
    which gives 60,965,224: the paper's "60 million parameters".)
    """

    input_size = (3, 227, 227)

    def __init__(
        self,
        num_classes: int = 1000,
        lrn: bool = True,
        widths: Sequence[int] = (96, 256, 384, 384, 256),
    ):
        super().__init__()
        if len(widths) != 5:
            raise ValueError(f"AlexNet has 5 conv layers, got {len(widths)} widths: {widths}")
        c1, c2, c3, c4, c5 = widths

        def relu_lrn() -> list[nn.Module]:
            # Local response normalisation: each activation is divided by the energy of its 5
            # neighbouring channels, a "lateral inhibition" that BatchNorm has since replaced.
            # The paper's alpha = 1e-4 multiplies a sum; PyTorch's divides alpha by size (a mean),
            # so the paper's value is alpha = 5 * 1e-4 here.
            norm = [nn.LocalResponseNorm(size=5, alpha=5e-4, beta=0.75, k=2.0)] if lrn else []
            return [nn.ReLU(inplace=True), *norm]

        self.features = nn.Sequential(
            nn.Conv2d(3, c1, kernel_size=11, stride=4),
            *relu_lrn(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c1, c2, kernel_size=5, padding=2),
            *relu_lrn(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c2, c3, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c4, c5, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            nn.Dropout(p=0.5),
            nn.Linear(c5 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=0.5),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The 11x11 stride-4 first conv was designed for 227 ((227 - 11) / 4 + 1 = 55), and the
        # classifier for the 256x6x6 maps that follow: any other size fails in the first Linear.
        check_images(x, what="AlexNet", channels=3, size=227)
        return self.classifier(self.flatten(self.features(x)))
