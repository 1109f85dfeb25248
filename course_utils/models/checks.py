"""The input guard every model of this package calls first.

A wrong input shape inside a network fails deep in some layer with a message about matrix sizes;
:func:`check_input` fails at the door instead, naming the model and what it expected.
"""

from __future__ import annotations

import torch

__all__ = ["check_input"]


def check_input(
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
