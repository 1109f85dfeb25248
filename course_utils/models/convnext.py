"""Lesson 02: ConvNeXt (2022): a ConvNet modernised with the habits of Vision Transformers.

``ConvNeXtBlock`` keeps the attribute names of the official implementation (``dwconv``, ``norm``,
``pwconv1``, ``pwconv2``, ``gamma``), so its weights map one for one onto the released ones and
onto torchvision's ``CNBlock``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..checks import check_images
from .efficientnet import StochasticDepth

__all__ = ["ConvNeXtBlock"]


class ConvNeXtBlock(nn.Module):
    """ConvNeXt block (Liu et al., 2022): a ResNet block redesigned with Transformer habits.

    x: [B, dim, H, W] -> [B, dim, H, W]

    ::

        dwconv   7x7 depthwise conv                 [B, dim, H, W]     mixes space
        permute to channels-last                    [B, H, W, dim]
        norm     LayerNorm over the channels        [B, H, W, dim]
        pwconv1  Linear dim -> 4 dim, GELU          [B, H, W, 4 dim]   mixes channels
        pwconv2  Linear 4 dim -> dim                [B, H, W, dim]
        gamma    per-channel layer scale            [B, H, W, dim]
        permute back, stochastic depth, + x         [B, dim, H, W]

    A Vision Transformer block does two things in turn: attention mixes information across
    positions, then an MLP mixes the channels of each position. This block does the same with
    convolutions: the large depthwise conv mixes space (like attention, but local and with fixed
    weights), the 4x-wide MLP mixes channels (an inverted bottleneck like MBConv). It also
    copies the Transformer's sparing use of normalisation and activation: one LayerNorm and one
    GELU per block, where a ResNet block has a BatchNorm and a ReLU after every conv. Layer scale
    multiplies the branch by a learnable ``gamma`` initialised tiny (1e-6), so each block starts
    close to the identity and deep stacks train stably; ``layer_scale_init=0`` removes it.
    """

    expansion = 4  # hidden width of the MLP = expansion * dim, as in a Transformer

    def __init__(self, dim: int, layer_scale_init: float = 1e-6, drop_path: float = 0.0):
        super().__init__()
        hidden = self.expansion * dim
        # Space: one 7x7 filter per channel (groups=dim) costs 49 * dim weights, where a full
        # 7x7 conv would cost 49 * dim^2. That is what makes a kernel this large affordable: it
        # sees 7x7 pixels in one layer, close to the windows of local-attention Transformers.
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        # LayerNorm normalises the dim channels of each pixel on their own: unlike BatchNorm it
        # does not depend on the other images of the batch, so training and eval compute the same.
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        # Channels: an inverted bottleneck, narrow -> 4x wide -> narrow. On a channels-last
        # tensor a Linear layer is exactly a 1x1 conv (it acts on the last dimension, at every
        # pixel). GELU, a smooth ReLU, is the Transformer's activation.
        self.pwconv1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(hidden, dim)
        # Layer scale: the branch starts almost silent and each channel learns how loud to be.
        self.gamma = (
            nn.Parameter(torch.full((dim,), layer_scale_init)) if layer_scale_init > 0 else None
        )
        self.stochastic_depth = StochasticDepth(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x, what="ConvNeXtBlock", channels=self.dwconv.in_channels)
        y = self.dwconv(x)  # [B, dim, H, W]: space, channel by channel
        y = y.permute(0, 2, 3, 1)  # [B, H, W, dim]: LayerNorm and Linear act on the last dim
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))  # channels, pixel by pixel
        if self.gamma is not None:
            y = self.gamma * y  # [dim] broadcasts over B, H, W
        y = y.permute(0, 3, 1, 2)  # back to [B, dim, H, W]
        return x + self.stochastic_depth(y)  # the residual connection of ResNet
