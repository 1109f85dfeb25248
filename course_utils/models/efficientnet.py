"""Lesson 02: EfficientNet (2019), inverted bottlenecks with squeeze-and-excitation, scaled.

Depthwise separable inverted bottlenecks (MBConv) with squeeze-and-excitation, and compound
scaling of depth, width and resolution.

Module names, structure and initialisation identical to ``torchvision.models.efficientnet``.
``StochasticDepth`` (dropping whole residual branches) is shared with ``convnext``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..checks import check_images

__all__ = [
    "StochasticDepth",
    "SEBlock",
    "MBConvBlock",
    "EfficientNet",
    "EfficientNetB0",
    "efficientnet",
    "EFFICIENTNET_SCALING",
    "compound_scaling",
]


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


class _ConvBNAct(nn.Sequential):
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
        check_images(x, what="SEBlock", channels=self.channels)
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
            layers.append(_ConvBNAct(in_channels, hidden, kernel_size=1))
        layers.append(_ConvBNAct(hidden, hidden, kernel_size, stride=stride, groups=hidden))
        if se_ratio > 0:
            layers.append(SEBlock(hidden, max(1, int(in_channels * se_ratio))))
        layers.append(_ConvBNAct(hidden, out_channels, kernel_size=1, activation=False))
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels
        self.stochastic_depth = StochasticDepth(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x, what="MBConvBlock", channels=self.in_channels)
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
        features: list[nn.Module] = [_ConvBNAct(3, channels, kernel_size=3, stride=2)]
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
        features.append(_ConvBNAct(channels, 4 * channels, kernel_size=1))
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
        check_images(x, what="EfficientNet", channels=3)
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
