"""CNN architectures of lesson 02, from LeNet-5 to ConvNeXt, and the tools to look inside them.

Models, in historical order, each adding one idea:

- ``LeNet5`` (1998): convolution + pooling + fully connected layers.
- ``AlexNet`` (2012): scale -- ReLU, dropout, large convolutions trained on GPUs.
- ``VGGBlock``, ``VGG16`` (2014): depth from stacks of 3x3 convolutions.
- ``InceptionModule`` (2014): width -- parallel 1x1 / 3x3 / 5x5 / pooling branches.
- ``ResidualBlock``, ``BottleneckBlock``, ``ResNet`` (2015): skip connections;
  ``resnet18/34/50/101`` load torchvision's weights, ``resnet_small`` suits small digits.
- ``SEBlock``, ``MBConvBlock``, ``EfficientNet``, ``EfficientNetB0`` (2019): channel attention,
  depthwise separable inverted bottlenecks, compound scaling (``EFFICIENTNET_SCALING``).
- ``ConvNeXtBlock`` (2022): a ConvNet modernised with Transformer habits.
- ``MiniVGG``: a small VGG-style network for 8x8 to 32x32 digits.

Every model checks its input and says what it expected; ``input_size`` is the [C, H, W] it was
designed for. Tools: ``count_parameters``, ``count_by_type``, ``trace_shapes`` (+ ``format_table``),
``receptive_field``, ``count_flops`` (multiply-accumulates) and ``compound_scaling``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

__all__ = [
    "LeNet5",
    "AlexNet",
    "TORCHVISION_ALEXNET_WIDTHS",
    "VGGBlock",
    "VGG16",
    "MiniVGG",
    "InceptionModule",
    "ResidualBlock",
    "BottleneckBlock",
    "ResNet",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet_small",
    "StochasticDepth",
    "ConvBNAct",
    "SEBlock",
    "MBConvBlock",
    "EfficientNet",
    "EfficientNetB0",
    "efficientnet",
    "EFFICIENTNET_SCALING",
    "compound_scaling",
    "ConvNeXtBlock",
    "count_parameters",
    "count_by_type",
    "trace_shapes",
    "format_table",
    "receptive_field",
    "count_flops",
]


def _check_input(
    x: torch.Tensor,
    model: str,
    channels: int,
    size: int | None = None,
    why: str = "",
    min_size: int = 1,
) -> None:
    """Raise a ValueError naming what ``model`` expected unless x is [B, channels, H, W].

    ``size``: the exact H = W the model needs (``why`` explains the reason); ``min_size``: the
    smallest H, W that survives its pooling layers.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        hint = ": add a batch dimension with x.unsqueeze(0)" if getattr(x, "ndim", 0) == 3 else ""
        raise ValueError(f"{model} expects a batch [B, C, H, W], got {got}{hint}")
    c, h, w = x.shape[1:]
    want = f"{channels}x{size}x{size}" if size else f"{channels}xHxW"
    got = f"{c}x{h}x{w}"
    if c != channels:
        raise ValueError(
            f"{model} expects {want} input (got {got}): it was built for {channels}-channel input"
        )
    if size is not None and (h, w) != (size, size):
        raise ValueError(f"{model} expects {want} input (got {got}): {why}")
    if min(h, w) < min_size:
        raise ValueError(
            f"{model} expects input of at least {min_size}x{min_size} pixels (got {got}): "
            f"its pooling layers would shrink anything smaller to nothing"
        )


# --------------------------------------------------------------------------------------------
# LeNet-5 (1998)
# --------------------------------------------------------------------------------------------


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
        _check_input(
            x,
            "LeNet5",
            self.input_size[0],
            size=32,
            why="three 5x5 convs and two 2x2 pools take 32 down to 1x1 "
            "(pad 28x28 MNIST digits by 2)",
        )
        return self.classifier(self.features(x))


# --------------------------------------------------------------------------------------------
# AlexNet (2012)
# --------------------------------------------------------------------------------------------

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
        _check_input(
            x,
            "AlexNet",
            3,
            size=227,
            why="the 11x11 stride-4 first conv was designed for 227 ((227 - 11) / 4 + 1 = 55), "
            "and the classifier for the 256x6x6 maps that follow",
        )
        return self.classifier(self.flatten(self.features(x)))


# --------------------------------------------------------------------------------------------
# VGG (2014)
# --------------------------------------------------------------------------------------------


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
        _check_input(x, "VGGBlock", self.in_channels)
        return super().forward(x)


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

    138,357,544 parameters, like torchvision's ``vgg16``: 14.7 million in the convolutions and
    123.6 million (89%) in the classifier, 102.8 million of them in the first Linear layer. That
    imbalance is why later networks replace the flatten + big Linear by global average pooling.
    (torchvision also puts an adaptive 7x7 average pool before the classifier so that other sizes
    run; here the input must be 224x224 so that the shapes above hold.)
    """

    input_size = (3, 224, 224)

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.features = nn.Sequential(
            VGGBlock(3, 64, 2),
            VGGBlock(64, 128, 2),
            VGGBlock(128, 256, 3),
            VGGBlock(256, 512, 3),
            VGGBlock(512, 512, 3),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=0.5),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=0.5),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(
            x,
            "VGG16",
            3,
            size=224,
            why="five 2x2 max-pools take 224 to 7, and the first Linear layer is sized for 512x7x7",
        )
        return self.classifier(self.features(x))


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
        blocks, channels = [], in_channels
        for i, width in enumerate(widths):
            last = i == len(widths) - 1
            blocks.append(
                VGGBlock(channels, width, convs_per_block, batch_norm=True, pool=not last)
            )
            channels = width
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(channels, num_classes)
        self._min_size = 2 ** (len(widths) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, "MiniVGG", self.input_size[0], min_size=self._min_size)
        return self.classifier(self.flatten(self.pool(self.features(x))))


# --------------------------------------------------------------------------------------------
# GoogLeNet / Inception (2014)
# --------------------------------------------------------------------------------------------


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
        _check_input(x, "InceptionModule", self.in_channels)
        branches = (self.branch1, self.branch2, self.branch3, self.branch4)
        return torch.cat([branch(x) for branch in branches], dim=1)  # stack along channels


# --------------------------------------------------------------------------------------------
# ResNet (2015) -- module names and structure identical to torchvision.models.resnet
# --------------------------------------------------------------------------------------------


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
        _check_input(x, type(self).__name__, self.in_channels)
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
        _check_input(x, type(self).__name__, self.in_channels)
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
        _check_input(x, "ResNet", self.conv1.in_channels)
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


# --------------------------------------------------------------------------------------------
# EfficientNet (2019) -- module names and structure identical to torchvision.models.efficientnet
# --------------------------------------------------------------------------------------------


class StochasticDepth(nn.Module):
    """Stochastic depth (Huang et al., 2016): drop a residual branch for whole samples.

    x: [B, ...] -> same shape. In training each sample's branch output is zeroed with
    probability ``p`` and the survivors are scaled by 1 / (1 - p), so the expected value is
    unchanged; in eval mode it is the identity. Put on the branch before the skip addition, it
    trains an ensemble of shallower networks: a regulariser for deep nets (also called DropPath).
    """

    def __init__(self, p: float):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty([x.shape[0]] + [1] * (x.ndim - 1)).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias, "same" padding) -> BatchNorm2d -> SiLU (or no activation).

    x: [B, in_channels, H, W] -> [B, out_channels, H / stride, W / stride]

    Indices 0, 1, 2 match torchvision's ``Conv2dNormActivation``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        activation: bool = True,
    ):
        padding = (kernel_size - 1) // 2
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False
            ),
            nn.BatchNorm2d(out_channels),
        ]
        if activation:
            layers.append(nn.SiLU(inplace=True))
        super().__init__(*layers)


class SEBlock(nn.Module):
    """Squeeze-and-excitation (Hu et al., 2018): reweight channels by a learned global gate.

    x: [B, channels, H, W] -> x * s, with s: [B, channels, 1, 1] in (0, 1)

    Squeeze: average each channel over the image ([B, C, 1, 1]) -- a summary of what is present
    anywhere. Excitation: a two-layer bottleneck MLP (C -> reduced_channels -> C, SiLU, then a
    sigmoid) turns the summary into one gate per channel, so the block can amplify the feature
    maps that matter for this image and damp the others (channel attention). The MLP layers are
    1x1 convolutions, which on a 1x1 map are exactly Linear layers (named like torchvision's).
    The SE paper used ReLU inside; EfficientNet uses SiLU (swish), as here.
    """

    def __init__(self, channels: int, reduced_channels: int):
        super().__init__()
        self.channels = channels
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, reduced_channels, kernel_size=1)
        self.fc2 = nn.Conv2d(reduced_channels, channels, kernel_size=1)
        self.activation = nn.SiLU(inplace=True)
        self.scale_activation = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, "SEBlock", self.channels)
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return x * self.scale_activation(scale)


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck (MobileNetV2 / EfficientNet) with squeeze-and-excitation.

    x: [B, in_channels, H, W] -> [B, out_channels, H / stride, W / stride]

    ::

        expand   1x1 conv  in -> in * expand_ratio, BN, SiLU     (skipped when expand_ratio = 1)
        depthwise k x k conv, one filter per channel, stride, BN, SiLU
        SE       gate the expanded channels, squeezed to max(1, int(in_channels * se_ratio))
        project  1x1 conv -> out_channels, BN, no activation
        + x      when stride = 1 and in_channels = out_channels (through StochasticDepth)

    Depthwise separable convolution: a full k x k conv mixes space and channels at once, costing
    k*k*C_in*C_out weights; splitting it into a depthwise k x k (space, k*k*C) and a 1x1
    (channels, C_in*C_out) costs about k*k times less once the channels outnumber k*k. The block
    is "inverted": ResNet's bottleneck is wide -> narrow -> wide, this one narrow -> wide ->
    narrow, with the cheap depthwise conv in the wide part and the skip connection between the
    narrow ends. The projection has no activation:
    a ReLU/SiLU on so few channels would destroy information ("linear bottleneck").

    The SE squeeze width is computed from the block's *input* width, as in the EfficientNet
    reference code and torchvision (e.g. 16 -> 4 for in_channels = 16, even though SE acts on
    96 expanded channels); the seed's listing used the expanded width instead. ``se_ratio=0``
    leaves SE out (a MobileNetV2 block).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        expand_ratio: int,
        kernel_size: int,
        stride: int,
        se_ratio: float = 0.25,
        drop_path: float = 0.0,
    ):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"MBConvBlock stride must be 1 or 2, got {stride}")
        self.in_channels = in_channels
        hidden = in_channels * expand_ratio
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(in_channels, hidden, kernel_size=1))
        layers.append(ConvBNAct(hidden, hidden, kernel_size, stride=stride, groups=hidden))
        if se_ratio > 0:
            layers.append(SEBlock(hidden, max(1, int(in_channels * se_ratio))))
        layers.append(ConvBNAct(hidden, out_channels, kernel_size=1, activation=False))
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels
        self.stochastic_depth = StochasticDepth(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, "MBConvBlock", self.in_channels)
        out = self.block(x)
        if self.use_residual:
            out = self.stochastic_depth(out) + x
        return out


#: EfficientNet-B0's stages (Table 1 of the paper, found by neural architecture search):
#: (expand_ratio, kernel, stride, out_channels, repeats). The stem gives 32 channels.
_B0_STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)

#: The released EfficientNets: the nominal compound coefficient ``phi`` (B_k <-> phi = k, the
#: usual reading; the paper lists no phi per model), then the official width and depth
#: multipliers, input resolution and dropout of the reference implementation (the same in
#: torchvision). The released multipliers follow ``compound_scaling(phi)`` only roughly: they
#: were rounded and tuned (B1 has depth 1.1 and width 1.0, where 1.2 and 1.1 would be phi = 1's).
EFFICIENTNET_SCALING: dict[str, dict[str, float]] = {
    "b0": {"phi": 0, "width": 1.0, "depth": 1.0, "resolution": 224, "dropout": 0.2},
    "b1": {"phi": 1, "width": 1.0, "depth": 1.1, "resolution": 240, "dropout": 0.2},
    "b2": {"phi": 2, "width": 1.1, "depth": 1.2, "resolution": 260, "dropout": 0.3},
    "b3": {"phi": 3, "width": 1.2, "depth": 1.4, "resolution": 300, "dropout": 0.3},
    "b4": {"phi": 4, "width": 1.4, "depth": 1.8, "resolution": 380, "dropout": 0.4},
    "b5": {"phi": 5, "width": 1.6, "depth": 2.2, "resolution": 456, "dropout": 0.4},
    "b6": {"phi": 6, "width": 1.8, "depth": 2.6, "resolution": 528, "dropout": 0.5},
    "b7": {"phi": 7, "width": 2.0, "depth": 3.1, "resolution": 600, "dropout": 0.5},
}


def compound_scaling(
    phi: float, alpha: float = 1.2, beta: float = 1.1, gamma: float = 1.15
) -> tuple[float, float, float]:
    """EfficientNet's compound scaling: (depth, width, resolution) multipliers for coefficient phi.

    depth = alpha ** phi, width = beta ** phi, resolution = gamma ** phi.

    Scaling one dimension alone saturates quickly (a very deep but narrow network, or a huge
    image seen by a shallow one); the paper scales all three together. The FLOPs of a conv net
    grow linearly with depth but quadratically with width (channels in x channels out) and with
    resolution (H x W), so one step of phi multiplies them by alpha * beta**2 * gamma**2. The
    constraint alpha * beta**2 * gamma**2 ~= 2 therefore means "each +1 of phi doubles the
    compute"; a small grid search on B0 under it found alpha = 1.2, beta = 1.1, gamma = 1.15
    (1.2 * 1.1**2 * 1.15**2 = 1.92). All three must be >= 1.
    """
    if phi < 0 or min(alpha, beta, gamma) < 1:
        raise ValueError(
            f"compound scaling needs phi >= 0 and alpha, beta, gamma >= 1 (it scales up), "
            f"got phi={phi}, alpha={alpha}, beta={beta}, gamma={gamma}"
        )
    return alpha**phi, beta**phi, gamma**phi


def _round_channels(channels: float, divisor: int = 8) -> int:
    """Round a scaled width to a multiple of 8 (fast on hardware), never more than 10% down."""
    rounded = max(divisor, int(channels + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * channels else rounded


class EfficientNet(nn.Module):
    """EfficientNet (Tan & Le, 2019): B0's MBConv stages scaled in width and depth.

    x: [B, 3, H, W] -> logits [B, num_classes]; any H, W (global average pooling).

    ``features`` = a 3x3 stride-2 stem (32 channels), 7 stages of ``MBConvBlock`` and a 1x1 head
    conv to 4x the last width; then global average pooling, dropout and a Linear layer. Widths
    are multiplied by ``width_mult`` (rounded to multiples of 8) and the number of blocks per
    stage by ``depth_mult`` (rounded up); the matching resolution is up to the data. The
    stochastic-depth probability grows linearly from 0 at the first block to ``drop_path`` at the
    last. ``resolution`` only records the intended input size in ``input_size``. Names, structure
    and initialisation are torchvision's: ``EfficientNetB0`` loads a
    ``torchvision.models.efficientnet_b0().state_dict()`` with ``strict=True``.
    """

    def __init__(
        self,
        width_mult: float = 1.0,
        depth_mult: float = 1.0,
        dropout: float = 0.2,
        num_classes: int = 1000,
        drop_path: float = 0.2,
        resolution: int = 224,
    ):
        super().__init__()
        self.input_size = (3, resolution, resolution)
        channels = _round_channels(32 * width_mult)
        features: list[nn.Module] = [ConvBNAct(3, channels, kernel_size=3, stride=2)]
        stages = [
            (expand, kernel, stride, _round_channels(out * width_mult), math.ceil(n * depth_mult))
            for expand, kernel, stride, out, n in _B0_STAGES
        ]
        total_blocks, block_id = sum(stage[-1] for stage in stages), 0
        for expand, kernel, stride, out_channels, repeats in stages:
            blocks = []
            for i in range(repeats):
                p = drop_path * block_id / total_blocks
                s = stride if i == 0 else 1
                blocks.append(MBConvBlock(channels, out_channels, expand, kernel, s, drop_path=p))
                channels, block_id = out_channels, block_id + 1
            features.append(nn.Sequential(*blocks))
        features.append(ConvBNAct(channels, 4 * channels, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout, inplace=True), nn.Linear(4 * channels, num_classes)
        )

        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, "EfficientNet", 3)
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class EfficientNetB0(EfficientNet):
    """EfficientNet-B0, the searched baseline: 5,288,548 parameters for 1000 classes.

    x: [B, 3, 224, 224] (nominal; any size runs) -> logits [B, num_classes]

    ::

        stem 3x3 stride 2            [B,   32, 112, 112]
        stage 1  MBConv1 3x3 x1      [B,   16, 112, 112]
        stage 2  MBConv6 3x3 x2 s2   [B,   24,  56,  56]
        stage 3  MBConv6 5x5 x2 s2   [B,   40,  28,  28]
        stage 4  MBConv6 3x3 x3 s2   [B,   80,  14,  14]
        stage 5  MBConv6 5x5 x3      [B,  112,  14,  14]
        stage 6  MBConv6 5x5 x4 s2   [B,  192,   7,   7]
        stage 7  MBConv6 3x3 x1      [B,  320,   7,   7]
        head 1x1 conv                [B, 1280,   7,   7]
        avgpool -> dropout 0.2 -> linear  [B, num_classes]

    Half the parameters of ResNet-18 (5.3 M against 11.7 M) and a tenth of ResNet-50's
    multiply-adds (0.39 G against 4.09 G, see ``count_flops``), thanks to depthwise separable
    convolutions.
    """

    def __init__(self, num_classes: int = 1000):
        super().__init__(num_classes=num_classes)


def efficientnet(variant: str = "b0", num_classes: int = 1000) -> EfficientNet:
    """EfficientNet-B0..B7 from the official coefficients in ``EFFICIENTNET_SCALING``.

    The parameter counts equal torchvision's ``efficientnet_bN`` (whose B5-B7 also use
    BatchNorm eps 1e-3 instead of 1e-5, which does not change the parameters).
    """
    if variant not in EFFICIENTNET_SCALING:
        raise ValueError(f"variant must be one of {list(EFFICIENTNET_SCALING)}, got {variant!r}")
    c = EFFICIENTNET_SCALING[variant]
    return EfficientNet(
        c["width"], c["depth"], c["dropout"], num_classes, resolution=int(c["resolution"])
    )


# --------------------------------------------------------------------------------------------
# ConvNeXt (2022)
# --------------------------------------------------------------------------------------------


class ConvNeXtBlock(nn.Module):
    """ConvNeXt block (Liu et al., 2022): a ResNet block redesigned with Transformer habits.

    x: [B, dim, H, W] -> [B, dim, H, W]

    ::

        dwconv   7x7 depthwise conv                 [B, dim, H, W]
        permute to channels-last                    [B, H, W, dim]
        norm     LayerNorm over the channels
        pwconv1  Linear dim -> 4 dim, GELU          [B, H, W, 4 dim]
        pwconv2  Linear 4 dim -> dim                [B, H, W, dim]
        gamma    per-channel layer scale
        permute back, stochastic depth, + x         [B, dim, H, W]

    Each change mirrors a Vision Transformer block: the large 7x7 depthwise conv mixes space
    (like attention, but local), the 4x-wide MLP mixes channels (an inverted bottleneck like
    MBConv), there is a single normalisation (LayerNorm, not BatchNorm) and a single activation
    (GELU) per block. The Linear layers on channels-last tensors are exactly 1x1 convolutions.
    Layer scale multiplies the branch by a learnable ``gamma`` initialised tiny (1e-6), so each
    block starts close to the identity and deep stacks train stably; ``layer_scale_init=0``
    removes it. Attribute names follow the official implementation.
    """

    def __init__(self, dim: int, layer_scale_init: float = 1e-6, drop_path: float = 0.0):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = (
            nn.Parameter(torch.full((dim,), layer_scale_init)) if layer_scale_init > 0 else None
        )
        self.stochastic_depth = StochasticDepth(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, "ConvNeXtBlock", self.dwconv.in_channels)
        y = self.dwconv(x).permute(0, 2, 3, 1)  # LayerNorm and Linear act on the last dimension
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        if self.gamma is not None:
            y = self.gamma * y
        return x + self.stochastic_depth(y.permute(0, 3, 1, 2))


# --------------------------------------------------------------------------------------------
# Looking inside a model
# --------------------------------------------------------------------------------------------


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``model`` (a shared parameter counts once).

    ``trainable_only=True`` counts only those with ``requires_grad`` (e.g. after freezing).
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_by_type(model: nn.Module) -> dict[str, int]:
    """Parameters per module type, e.g. ``{"Conv2d": 1044, "BatchNorm2d": 48, "Linear": 27}``.

    Each parameter counts once, for the module that owns it directly (a ``ConvNeXtBlock``'s
    ``gamma`` counts as "ConvNeXtBlock"), so the values add up to ``count_parameters(model)``.
    Sorted from the largest to the smallest; types without parameters are left out.
    """
    counts: dict[str, int] = {}
    seen: set[int] = set()
    for module in model.modules():
        own = [p for p in module.parameters(recurse=False) if id(p) not in seen]
        seen.update(id(p) for p in own)
        if own:
            name = type(module).__name__
            counts[name] = counts.get(name, 0) + sum(p.numel() for p in own)
    return dict(sorted(counts.items(), key=lambda item: -item[1]))


def _run_with_hooks(
    model: nn.Module,
    example: torch.Tensor | Sequence[int],
    modules: Iterable[tuple[str, nn.Module]],
    hook: Callable[[str, nn.Module, object], None],
) -> None:
    """Run ``model`` once in eval mode without gradients, calling ``hook(name, module, output)``
    after each of ``modules``; removes the hooks and restores every module's mode afterwards."""
    if not isinstance(example, torch.Tensor):
        param = next(model.parameters(), None)
        example = torch.zeros(tuple(example), device=param.device if param is not None else "cpu")
    modes = {m: m.training for m in model.modules()}
    handles = [
        m.register_forward_hook(lambda mod, inp, out, name=name: hook(name, mod, out))
        for name, m in modules
    ]
    try:
        model.eval()  # BatchNorm must not update its statistics (and works on a batch of 1)
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
        for m, training in modes.items():
            m.training = training


def _shape(output: object) -> tuple | None:
    if isinstance(output, torch.Tensor):
        return tuple(output.shape)
    if isinstance(output, (tuple, list)):
        return tuple(_shape(o) for o in output)
    return None


def trace_shapes(model: nn.Module, example: torch.Tensor | Sequence[int]) -> list[dict]:
    """Run ``model`` once and list every leaf layer it calls, in order.

    example: an input tensor, or its full shape including the batch, e.g. ``(1, 1, 32, 32)``
    (zeros are used). Returns one dict per call::

        {"name": "features.c1", "type": "Conv2d", "output_shape": (1, 6, 28, 28), "params": 156}

    A module called several times (torchvision-style blocks reuse one ReLU) gets one row per
    call, with its parameters on the first row only, so the column adds up to the parameters
    used. Runs in eval mode without gradients; hooks and train/eval modes are restored after.
    Show it with ``print(format_table(rows))``.
    """
    rows: list[dict] = []
    counted: set[int] = set()

    def record(name: str, module: nn.Module, output: object) -> None:
        params = 0 if id(module) in counted else count_parameters(module)
        counted.add(id(module))
        rows.append(
            {
                "name": name or type(module).__name__,
                "type": type(module).__name__,
                "output_shape": _shape(output),
                "params": params,
            }
        )

    leaves = [(name, m) for name, m in model.named_modules() if next(m.children(), None) is None]
    _run_with_hooks(model, example, leaves, record)
    return rows


def format_table(rows: Sequence[Mapping], columns: Sequence[str] | None = None) -> str:
    """Render a list of dicts (``trace_shapes``, ``receptive_field``...) as an aligned text table.

    ``columns`` defaults to every key, in order of first appearance. Integers get thousands
    separators and, like all numbers, are right-aligned.
    """
    if not rows:
        return ""
    columns = list(columns or dict.fromkeys(key for row in rows for key in row))

    def is_number(v: object) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    def cell(v: object) -> str:
        if v is None:
            return ""
        if isinstance(v, int) and not isinstance(v, bool):
            return f"{v:,}"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    right = [all(is_number(row.get(c)) for row in rows) for c in columns]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(columns), line(["-" * w for w in widths]), *map(line, cells)])


# Layers that act on each pixel separately: they do not change the receptive field.
_POINTWISE = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.Identity,
    nn.BatchNorm2d,
    nn.Dropout,
    nn.Dropout2d,
    nn.LocalResponseNorm,
)


def _square(value: int | tuple, what: str, where: str) -> int:
    if isinstance(value, int):
        return value
    if len(set(value)) != 1:
        raise ValueError(f"receptive_field handles square layers only; {where} has {what}={value}")
    return value[0]


def _layer_geometry(name: str, m: nn.Module) -> tuple[int, int, int, float]:
    """(kernel, stride, dilation, padding) of one Conv2d / MaxPool2d / AvgPool2d."""
    where = f"'{name}' ({type(m).__name__})"
    k = _square(m.kernel_size, "kernel_size", where)
    s = _square(m.stride, "stride", where)
    d = _square(getattr(m, "dilation", 1), "dilation", where)
    if m.padding in ("same", "valid"):  # Conv2d's string forms
        p = (d * (k - 1)) / 2 if m.padding == "same" else 0
    else:
        p = _square(m.padding, "padding", where)
    return k, s, d, p


def receptive_field(layers: nn.Module | Iterable[Sequence[int]]) -> list[dict]:
    """Receptive field after each layer of a chain of convolutions and poolings.

    layers: an ``nn.Sequential`` (nested Sequentials allowed) of Conv2d / MaxPool2d / AvgPool2d
    plus pointwise layers (activations, BatchNorm, dropout), or tuples
    ``(kernel, stride, dilation)`` / ``(kernel, stride, dilation, padding)``.

    Returns one dict per conv/pool layer: ``layer`` (name or index), ``kernel``, ``stride``,
    ``dilation``, ``padding``, then

    - ``rf``: side of the input window one output pixel sees,
      ``rf_out = rf_in + (k_eff - 1) * jump_in`` with ``k_eff = dilation * (k - 1) + 1``;
    - ``jump``: distance in input pixels between neighbouring outputs, ``jump_in * stride``;
    - ``start``: input coordinate of the centre of output pixel 0's window (pixel i's centre is
      at i), ``start_in + ((k_eff - 1) / 2 - padding) * jump_in``; output pixel i sees the
      window centred on ``start + i * jump``.

    The last dict describes the whole stack. Two 3x3 convs give rf 5, three give 7: the VGG
    argument. Only chains have a single receptive field: a block with branches (Inception,
    residual blocks) is rejected.
    """
    if isinstance(layers, nn.Module):
        items = []
        for name, m in layers.named_modules():
            if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
                items.append((name, _layer_geometry(name, m)))
            elif next(m.children(), None) is not None:
                if not isinstance(m, nn.Sequential):
                    raise ValueError(
                        f"receptive_field follows a chain of layers, but '{name or 'model'}' is a "
                        f"{type(m).__name__}, whose forward may branch; pass nn.Sequential parts"
                    )
            elif not isinstance(m, _POINTWISE):
                raise ValueError(
                    f"receptive_field knows Conv2d, MaxPool2d, AvgPool2d and pointwise layers; "
                    f"'{name}' is a {type(m).__name__}"
                )
    else:
        items = []
        for i, spec in enumerate(layers):
            if len(spec) not in (3, 4):
                raise ValueError(
                    f"layer {i}: expected (kernel, stride, dilation[, padding]), got {spec}"
                )
            items.append((i, (*spec, 0) if len(spec) == 3 else tuple(spec)))
    if not items:
        raise ValueError("receptive_field needs at least one conv or pooling layer")

    rows, rf, jump, start = [], 1, 1, 0.0
    for name, (k, s, d, p) in items:
        if min(k, s, d) < 1:
            raise ValueError(f"layer {name}: kernel, stride and dilation must be >= 1")
        k_eff = d * (k - 1) + 1
        rf += (k_eff - 1) * jump
        start += ((k_eff - 1) / 2 - p) * jump
        jump *= s
        rows.append(
            {
                "layer": name,
                "kernel": k,
                "stride": s,
                "dilation": d,
                "padding": p,
                "rf": rf,
                "jump": jump,
                "start": start,
            }
        )
    return rows


def count_flops(model: nn.Module, example: torch.Tensor | Sequence[int]) -> int:
    """Multiply-accumulates (MACs) of the Conv2d and Linear layers for one forward pass.

    example: an input tensor or its full shape including the batch, e.g. ``(1, 3, 224, 224)``;
    the count is for the whole batch, so use a batch of 1 for "per image". A conv costs
    ``(C_in / groups) * k_h * k_w`` MACs per output value, a Linear ``in_features``; biases,
    norms, activations and pooling are ignored (they are a few percent). Papers and torchvision
    usually quote this number as "FLOPs" (ResNet-50: 4.09 G), although a MAC is two
    floating-point operations.
    """
    total = 0

    def add(name: str, module: nn.Module, output: object) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += output.numel() * (module.in_channels // module.groups) * kh * kw
        else:
            total += output.numel() * module.in_features

    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    _run_with_hooks(model, example, layers, add)
    return total
