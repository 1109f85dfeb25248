"""Lesson 02: RegNet (Radosavovic et al., 2020): a whole family of networks from a few numbers.

"Designing Network Design Spaces" did not search for one network but for a *rule*. Every RegNet
is a stem, a sequence of stages of identical residual bottleneck blocks (1x1 conv, grouped 3x3
conv, 1x1 conv; RegNetY adds squeeze-and-excitation) and a head; members of the family differ
only in how wide and how deep each stage is. The paper sampled thousands of networks and found
that the good ones share a simple shape, which it turned into the RegNet rule:

1. the widths grow **linearly** with the block index: ``u_j = w0 + wa * j`` for the blocks
   ``j = 0 .. depth - 1`` (``w0`` the initial width, ``wa`` the slope);
2. that line is **quantised** to a geometric series, so that blocks come in stages of equal
   width: ``s_j = round(log(u_j / w0) / log(wm))`` and block j gets ``w0 * wm ** s_j`` channels,
   rounded to a multiple of 8 (``wm`` is the ratio between the widths of consecutive stages);
3. each stage's 3x3 convolution works on ``width * bottleneck_ratio`` channels split into groups
   of ``group_width`` channels, so that width is rounded to a multiple of the group width.

``regnet_block_widths`` does steps 1-2 for every block, ``regnet_stages`` groups the blocks into
stages and applies step 3, returning what torchvision's ``BlockParams.from_init_params`` builds
its RegNets from.
"""

from __future__ import annotations

import math
from typing import NamedTuple

__all__ = ["RegNetStages", "regnet_block_widths", "regnet_stages"]

#: Every block width is a multiple of 8 channels (hardware likes channel counts in multiples of 8).
_REGNET_QUANTUM = 8


class RegNetStages(NamedTuple):
    """Per-stage settings of a RegNet, first stage first (one entry per stage in each list)."""

    widths: list[int]  #: output channels of the stage's blocks
    depths: list[int]  #: number of blocks in the stage
    group_widths: list[int]  #: channels per group of the stage's grouped 3x3 convolutions


def _check(w0: int, wa: float, wm: float, depth: int) -> None:
    if isinstance(w0, bool) or not isinstance(w0, int) or w0 <= 0 or w0 % _REGNET_QUANTUM:
        raise ValueError(
            f"w0 must be a positive multiple of {_REGNET_QUANTUM} (channels), got {w0!r}"
        )
    if wa < 0:
        raise ValueError(f"wa (the slope of the widths) must be >= 0, got {wa}")
    if wm <= 1:
        raise ValueError(f"wm (the ratio between stage widths) must be > 1, got {wm}")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be a positive integer (number of blocks), got {depth!r}")


def regnet_block_widths(w0: int, wa: float, wm: float, depth: int) -> list[int]:
    """The width of each of the ``depth`` blocks: the line ``w0 + wa * j`` quantised (steps 1-2).

    Returns ``depth`` integers, non-decreasing, each a multiple of :data:`_REGNET_QUANTUM`. For
    RegNetY-400MF (``w0=48, wa=27.89, wm=2.09, depth=16``): 1 block of 48, 3 of 104, 6 of 208 and
    6 of 440 channels. ``round`` rounds halves to even, like ``torch.round``; torchvision computes
    in float32, so on an exact tie (``200 * 2.3 / 8 = 57.5``) the two can end one quantum apart.
    """
    _check(w0, wa, wm, depth)
    widths = []
    for j in range(depth):
        linear = w0 + wa * j  # u_j: the continuous width the rule asks for
        step = round(math.log(linear / w0) / math.log(wm))  # s_j: which power of wm is closest
        widths.append(round(w0 * wm**step / _REGNET_QUANTUM) * _REGNET_QUANTUM)
    return widths


def _round_to_groups(width: float, group_width: int) -> int:
    """``width`` rounded to the nearest multiple of ``group_width`` (at least one group), but never
    more than 10 % below ``width`` (the rounding of torchvision's ``_make_divisible``)."""
    rounded = max(group_width, int(width + group_width / 2) // group_width * group_width)
    return rounded + group_width if rounded < 0.9 * width else rounded


def regnet_stages(
    w0: int,
    wa: float,
    wm: float,
    depth: int,
    group_width: int,
    bottleneck_ratio: float = 1.0,
) -> RegNetStages:
    """Stage widths, depths and group widths of the RegNet ``(w0, wa, wm, depth, group_width,
    bottleneck_ratio)``: consecutive blocks of equal width form one stage (step 3 above).

    A stage whose bottleneck (``width * bottleneck_ratio`` channels) is narrower than
    ``group_width`` gets one group of the bottleneck's width; otherwise the bottleneck is rounded to
    a multiple of ``group_width`` and the stage width follows from it. Same result as
    ``torchvision.models.regnet.BlockParams.from_init_params`` (tested on every RegNet it ships).
    """
    if isinstance(group_width, bool) or not isinstance(group_width, int) or group_width < 1:
        raise ValueError(f"group_width must be a positive integer, got {group_width!r}")
    if bottleneck_ratio <= 0:
        raise ValueError(f"bottleneck_ratio must be positive, got {bottleneck_ratio}")
    widths, depths = [], []
    for width in regnet_block_widths(w0, wa, wm, depth):
        if widths and widths[-1] == width:
            depths[-1] += 1  # same width as the block before: same stage
        else:
            widths.append(width)
            depths.append(1)
    stage_widths, group_widths = [], []
    for width in widths:
        bottleneck = int(width * bottleneck_ratio)
        groups_of = min(group_width, bottleneck)
        stage_widths.append(int(_round_to_groups(bottleneck, groups_of) / bottleneck_ratio))
        group_widths.append(groups_of)
    return RegNetStages(stage_widths, depths, group_widths)
