"""Lessons 02, 06, 13: VGG (2014), depth from stacks of 3x3 convolutions.

``VGGBlock``, ``VGG16``, and ``MiniVGG``, the small VGG-style network the course trains on digits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..checks import check_images

__all__ = ["VGGBlock", "VGG16", "MiniVGG"]


class VGGBlock(nn.Sequential):
    """``num_convs`` 3x3 convolutions (+ BatchNorm) + ReLU, then a 2x2 max-pool that halves H, W.

    x: [B, in_channels, H, W] -> [B, out_channels, H/2, W/2]  (H, W unchanged if ``pool=False``)

    Why only 3x3 kernels: two stacked 3x3 convs see a 5x5 window and three see 7x7 (see
    ``receptive_field``), but with C channels in and out they cost 2 * 9 C^2 = 18 C^2 and
    27 C^2 weights instead of 25 C^2 and 49 C^2 -- and put a ReLU between every pair, so the
    same window is analysed by a deeper, more non-linear function.

    ``batch_norm=True`` adds BatchNorm after each conv (VGG predates it); the conv then has no
    bias, because BatchNorm subtracts the mean right away and brings its own shift (beta).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_convs: int,
        batch_norm: bool = False,
        pool: bool = True,
    ):
        layers: list[nn.Module] = []
        for i in range(num_convs):
            conv_in = in_channels if i == 0 else out_channels
            layers.append(nn.Conv2d(conv_in, out_channels, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
        if pool:
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        super().__init__(*layers)
        self.in_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x, what="VGGBlock", channels=self.in_channels)
        return super().forward(x)


def _vgg_blocks(
    in_channels: int, blocks: Sequence[tuple[int, int]], batch_norm: bool, pool_last: bool
) -> nn.Sequential:
    """One ``VGGBlock`` per ``(num_convs, width)`` of ``blocks``, each one's output feeding the
    next; every block ends in a 2x2 max-pool, the last one only if ``pool_last``."""
    layers, channels = [], in_channels
    for i, (num_convs, width) in enumerate(blocks):
        pool = pool_last or i < len(blocks) - 1
        layers.append(VGGBlock(channels, width, num_convs, batch_norm=batch_norm, pool=pool))
        channels = width
    return nn.Sequential(*layers)


#: VGG-16's convolutional part (configuration "D" of the paper): (3x3 convs, width) per block.
#: Each block halves the resolution with its max-pool and doubles the width (up to 512): a conv
#: of the next block has 4x the weights but 1/4 of the pixels, so it costs the same compute.
_VGG16_BLOCKS = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))


class VGG16(nn.Module):
    """VGG-16 (Simonyan & Zisserman, 2014): 13 3x3 convs in 5 blocks, then 3 Linear layers.

    x: [B, 3, 224, 224] -> logits [B, num_classes]

    ::

        block 1: 2 x conv 64   -> pool   [B,  64, 112, 112]
        block 2: 2 x conv 128  -> pool   [B, 128,  56,  56]
        block 3: 3 x conv 256  -> pool   [B, 256,  28,  28]
        block 4: 3 x conv 512  -> pool   [B, 512,  14,  14]
        block 5: 3 x conv 512  -> pool   [B, 512,   7,   7]
        flatten 25088 -> linear 4096 -> linear 4096 -> linear num_classes (ReLU + dropout between)

    The whole design is one idea repeated: only 3x3 kernels (see ``VGGBlock``). In block 5, three
    of them see a 7x7 window of the block's input with 3 * 9 * 512^2 = 7,077,888 weights and three
    ReLUs, where one 7x7 conv would need 49 * 512^2 = 12,845,056 and apply a single ReLU. Stacked
    with the poolings, whose stride multiplies the growth of every later conv, the 13 convs see
    196x196 pixels and the last pool 212x212 (``receptive_field(model.features)``).

    138,357,544 parameters, like torchvision's ``vgg16``: 14.7 million in the convolutions and
    123.6 million (89%) in the classifier, 102.8 million of them in the first Linear layer. That
    imbalance is why later networks replace the flatten + big Linear by global average pooling.
    (torchvision also puts an adaptive 7x7 average pool before the classifier so that other sizes
    run; here the input must be 224x224 so that the shapes above hold.) ``features[b][i]`` is
    layer ``i`` of block ``b``; with the blocks flattened in order, the weights are torchvision's
    one for one.
    """

    input_size = (3, 224, 224)

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.features = _vgg_blocks(3, _VGG16_BLOCKS, batch_norm=False, pool_last=True)
        width = _VGG16_BLOCKS[-1][1]
        # Five pools took 224 down to 7: the classifier sees every one of the 512 x 7 x 7 values,
        # so its first layer alone has 25088 x 4096 weights. Dropout (p = 0.5) after both hidden
        # layers regularises them, as in AlexNet: BatchNorm did not exist yet.
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(width * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=0.5),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=0.5),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Five 2x2 max-pools take 224 to 7, and the first Linear layer is sized for 512x7x7.
        check_images(x, what="VGG16", channels=3, size=224)
        return self.classifier(self.features(x))  # [B, 512, 7, 7] -> [B, num_classes]


class MiniVGG(nn.Module):
    """A small VGG-style classifier for 8x8 to 32x32 images, with global average pooling.

    x: [B, in_channels, H, W] -> logits [B, num_classes], H, W >= 2 ** (len(widths) - 1)

    One ``VGGBlock`` per entry of ``widths`` (``convs_per_block`` conv-BN-ReLU each), a 2x2
    max-pool between blocks, then global average pooling and a single Linear layer. E.g. for
    8x8 digits with the defaults::

        input                           [B,  1, 8, 8]
        block 1: 2 x conv 32 -> pool    [B, 32, 4, 4]
        block 2: 2 x conv 64            [B, 64, 4, 4]
        global average pool -> linear   [B, num_classes]

    Global average pooling keeps the head tiny (650 parameters with the defaults, against 123.6
    million in VGG-16's classifier) and makes the network accept any input size.
    ``MiniVGG(in_channels=3, widths=(64, 128, 256))`` is the CIFAR-10 network of the exercise
    (3 blocks, 3 -> 64 -> 128 -> 256 channels).
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        widths: Sequence[int] = (32, 64),
        convs_per_block: int = 2,
    ):
        super().__init__()
        if not widths:
            raise ValueError("MiniVGG needs at least one block width")
        self.input_size = (in_channels, 32, 32)
        blocks = [(convs_per_block, width) for width in widths]
        # No pool after the last block: the global average pool below follows it anyway.
        self.features = _vgg_blocks(in_channels, blocks, batch_norm=True, pool_last=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(widths[-1], num_classes)
        self._min_size = 2 ** (len(widths) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x, what="MiniVGG", channels=self.input_size[0], min_size=self._min_size)
        return self.classifier(self.flatten(self.pool(self.features(x))))
