"""Lessons 07-10: a small conditional noise-prediction network, the timestep embedding, the
residual block and the U-Net built from them.

The network ε̂(x_t, t, y) must denoise at *every* noise level and for every class, so it is told
both: the timestep as a sinusoidal vector (:func:`timestep_embedding`) passed through an MLP, the
label as a row of a learned table. Their sum reaches every :class:`ResBlock`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_images, check_labels, check_timesteps

__all__ = ["timestep_embedding", "ResBlock", "ConditionalUNet", "CPU_BATCH"]

#: The times :class:`ConditionalUNet` is trained on: diffusion steps 0, ..., 999, or flow times
#: scaled to [0, 1000] (``FLOW_TIME_SCALE``). A float time in [0, 1] is a flow time not scaled.
_TIME_LIMIT = 1001

#: The largest batch :class:`ConditionalUNet` computes at once on a CPU. There a batch's
#: activations must fit in the processor's cache: on the course's 2-core machine one call on
#: 1,000 16x16 images (a guided batch of 500) takes 2.0 s, the same images in slices of 256 take
#: 1.0 s. A GPU is fastest on the whole batch, so there it is not split.
CPU_BATCH = 256


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps, as for positions in a transformer.

    t [B] -> [B, dim]: sin(t ω_i) and cos(t ω_i) for frequencies ω_i = max_period^(-i / (dim/2)),
    i = 0 ... dim/2 - 1. Nearby timesteps get similar vectors, and the network can read both
    coarse (slow frequencies) and fine (fast ones) differences in t.
    """
    if dim % 2:
        raise ValueError(f"dim must be even, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class ResBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection; the (time + class) embedding is added
    between them as a per-channel shift, so that every block knows the noise level and the label.

    Shapes: x [B, in_channels, H, W], emb [B, emb_dim] -> [B, out_channels, H, W].
    """

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(8, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_channels)
        self.norm2 = nn.GroupNorm(8, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Conv2d(in_channels, out_channels, 1)
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class ConditionalUNet(nn.Module):
    """A small U-Net ε̂(x_t, t, y) for 16x16 images, conditioned on timestep and class.

    Two resolutions below the input (16 -> 8 -> 4 and back) with skip connections. The timestep
    goes through :func:`timestep_embedding` and an MLP; the label through a learned embedding with
    ``num_classes + 1`` rows: index ``num_classes`` (:attr:`null_class`) is the "no label" used for
    classifier-free guidance, and ``y=None`` means exactly that.

    Shapes: x [B, in_channels, H, W] with H, W divisible by 4, t [B] long, y [B] long or None
    -> ε̂ [B, in_channels, H, W]. On a CPU a batch larger than :data:`CPU_BATCH` is computed in
    slices: each sample's output depends on that sample only, so the numbers are the same.
    """

    def __init__(self, in_channels: int = 1, base: int = 32, num_classes: int = 10) -> None:
        super().__init__()
        if base % 8:
            raise ValueError(f"base must be a multiple of 8 (GroupNorm with 8 groups), got {base}")
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.null_class = num_classes
        self.base = base
        emb = 4 * base
        self.time_mlp = nn.Sequential(nn.Linear(base, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.label_emb = nn.Embedding(num_classes + 1, emb)
        self.conv_in = nn.Conv2d(in_channels, base, 3, padding=1)
        self.down1 = ResBlock(base, base, emb)  # 16x16
        self.pool1 = nn.Conv2d(base, base, 3, stride=2, padding=1)
        self.down2 = ResBlock(base, 2 * base, emb)  # 8x8
        self.pool2 = nn.Conv2d(2 * base, 2 * base, 3, stride=2, padding=1)
        self.mid = ResBlock(2 * base, 2 * base, emb)  # 4x4
        self.up2 = ResBlock(4 * base, 2 * base, emb)  # 8x8, after concatenating the skip
        self.up1 = ResBlock(3 * base, base, emb)  # 16x16
        self.norm_out = nn.GroupNorm(8, base)
        self.conv_out = nn.Conv2d(base, in_channels, 3, padding=1)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        what = "ConditionalUNet"
        check_images(x, what=what, channels=self.in_channels, multiple_of=4)
        check_timesteps(t, what=what, num_timesteps=_TIME_LIMIT, length=len(x))
        if y is None:
            y = torch.full((x.shape[0],), self.null_class, dtype=torch.long, device=x.device)
        check_class_labels(y, what=what, model=self, length=len(x))
        if x.device.type == "cpu" and x.shape[0] > CPU_BATCH:
            parts = zip(x.split(CPU_BATCH), t.split(CPU_BATCH), y.split(CPU_BATCH))
            return torch.cat([self._predict(*part) for part in parts])
        return self._predict(x, t, y)

    def _predict(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.base)) + self.label_emb(y)
        h1 = self.down1(self.conv_in(x), emb)
        h2 = self.down2(self.pool1(h1), emb)
        h = self.mid(self.pool2(h2), emb)
        h = self.up2(torch.cat([F.interpolate(h, scale_factor=2.0), h2], dim=1), emb)
        h = self.up1(torch.cat([F.interpolate(h, scale_factor=2.0), h1], dim=1), emb)
        return self.conv_out(F.silu(self.norm_out(h)))


def check_class_labels(y: torch.Tensor, *, what: str, model: nn.Module, length: int) -> None:
    """Class labels [B] for ``model``: integers in [0, model.num_classes), or its null class
    (``model.null_class``, "no label"). A model without ``num_classes`` is not range-checked."""
    num_classes = getattr(model, "num_classes", None)
    null_class = getattr(model, "null_class", None)
    if num_classes is not None and null_class is not None and isinstance(y, torch.Tensor):
        y = torch.where(y == null_class, 0, y)  # the null class is a label too, just not a class
    check_labels(y, what=what, num_classes=num_classes, length=length)
