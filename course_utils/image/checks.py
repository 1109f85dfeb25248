"""Checks and conversions: the course's ``[C, H, W]`` float layout and the ``[H, W, C]`` uint8 one.

:func:`check_image` is what every function of ``course_utils.image`` calls first, so that a wrong
layout, dtype or range fails loudly with a hint. :func:`to_tensor` / :func:`to_numpy` cross
between tensors and NumPy/PIL images; :func:`hwc_to_chw` / :func:`chw_to_hwc` only move the
channel axis of a tensor.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

__all__ = ["check_image", "to_tensor", "to_numpy", "hwc_to_chw", "chw_to_hwc"]


_LAYOUT_DIMS = {"CHW": (3,), "BCHW": (4,), "*CHW": (3, 4)}
_LAYOUT_TEXT = {"CHW": "[C, H, W]", "BCHW": "[B, C, H, W]", "*CHW": "[C, H, W] or [B, C, H, W]"}


def check_image(
    x: torch.Tensor,
    layout: str = "CHW",
    dtype: str | None = "float",
    value_range: tuple[float, float] | None = (0.0, 1.0),
    channels: int | Sequence[int] | None = (1, 3),
    name: str = "image",
) -> torch.Tensor:
    """Raise a clear error unless ``x`` is an image tensor as described; return ``x`` unchanged.

    layout: ``"CHW"`` (one image), ``"BCHW"`` (a batch) or ``"*CHW"`` (either).
    dtype: ``"float"``, ``"uint8"`` or ``None`` (any).
    value_range: ``(low, high)`` the values must lie in, or ``None`` (e.g. normalised images).
    channels: allowed channel counts, or ``None`` (any, e.g. feature maps).
    """
    if layout not in _LAYOUT_DIMS:
        raise ValueError(f"layout must be one of {sorted(_LAYOUT_DIMS)}, got {layout!r}")
    wanted = _LAYOUT_TEXT[layout]
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"expected {name} as a torch.Tensor {wanted}, got {type(x).__name__}: "
            "use to_tensor() for NumPy arrays and PIL images"
        )
    shape = tuple(x.shape)
    allowed = (channels,) if isinstance(channels, int) else channels
    if x.ndim not in _LAYOUT_DIMS[layout]:
        raise ValueError(f"expected {name} as a {wanted} tensor, got shape {shape}")
    if allowed is not None and shape[-3] not in allowed:
        if shape[-1] in allowed:  # e.g. (32, 32, 3): channels last
            raise ValueError(
                f"expected {name} as a {wanted} tensor with {_channels_text(allowed)}, got shape "
                f"{shape}: this looks like HWC (channels last); use to_tensor() for NumPy/PIL "
                "images or hwc_to_chw() for tensors"
            )
        raise ValueError(
            f"expected {name} with {_channels_text(allowed)}, got {shape[-3]} in shape {shape}"
        )
    if dtype == "float" and not x.is_floating_point():
        raise TypeError(
            f"expected {name} as a float tensor, got {x.dtype}: "
            "convert with x.float() / 255 (or to_tensor() for NumPy/PIL images)"
        )
    if dtype == "uint8" and x.dtype != torch.uint8:
        raise TypeError(f"expected {name} as a uint8 tensor, got {x.dtype}")
    if value_range is not None and x.numel() > 0:
        low, high = value_range
        lo, hi = x.min().item(), x.max().item()
        if lo < low - 1e-6 or hi > high + 1e-6:
            hint = ""
            if lo < 0 <= low:
                hint = ": it looks normalised; use denormalize() first"
            elif hi > 1.5 and high <= 1:
                hint = ": it looks like 0-255 values; divide by 255"
            raise ValueError(
                f"expected {name} values in [{low:g}, {high:g}], got [{lo:.3g}, {hi:.3g}]{hint}"
            )
    return x


def _channels_text(allowed: Sequence[int]) -> str:
    return " or ".join(str(c) for c in allowed) + " channels"


def to_tensor(img: np.ndarray | Image.Image) -> torch.Tensor:
    """A NumPy/PIL image -> the course's tensor layout.

    img: ``[H, W, 3]`` or ``[H, W]`` uint8 NumPy array in ``[0, 255]``, or a PIL image.
    returns: ``[3, H, W]`` (or ``[1, H, W]`` for grey) float32 in ``[0, 1]``, contiguous.
    """
    if isinstance(img, torch.Tensor):
        raise TypeError("to_tensor() expects a NumPy array or a PIL image, got a torch.Tensor")
    if isinstance(img, Image.Image):
        img = np.asarray(img if img.mode in ("L", "RGB") else img.convert("RGB"))
    if not isinstance(img, np.ndarray):
        raise TypeError(f"expected a NumPy array or a PIL image, got {type(img).__name__}")
    if img.dtype != np.uint8:
        raise TypeError(
            f"expected a uint8 image with values 0-255, got {img.dtype}: for a float array "
            "already in [0, 1] use hwc_to_chw(torch.from_numpy(img).float())"
        )
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in (1, 3):
        raise ValueError(
            f"expected an [H, W, 3] or [H, W] image, got shape {img.shape}"
            + (
                ": drop the alpha channel with img[..., :3]"
                if img.ndim == 3 and img.shape[2] == 4
                else ""
            )
        )
    # transpose() only changes the strides (a view); np.array() then copies the pixels into
    # channel-first memory order, as float32 (and writable, even if the input array was not).
    chw = np.array(img.transpose(2, 0, 1), dtype=np.float32, order="C")
    return torch.from_numpy(chw).div_(255)


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """The course's tensor layout -> a NumPy image for OpenCV, PIL or matplotlib.

    t: ``[3, H, W]`` or ``[1, H, W]`` float in ``[0, 1]`` (any device).
    returns: ``[H, W, 3]`` or ``[H, W]`` uint8 array (values rounded to the nearest level).
    """
    check_image(t)
    out = (t.detach().cpu() * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return out[:, :, 0] if out.shape[2] == 1 else out


def hwc_to_chw(x: torch.Tensor) -> torch.Tensor:
    """``[..., H, W, C]`` -> ``[..., C, H, W]`` (a view: no copy, only the strides change)."""
    return x.movedim(-1, -3)


def chw_to_hwc(x: torch.Tensor) -> torch.Tensor:
    """``[..., C, H, W]`` -> ``[..., H, W, C]`` (a view: no copy, only the strides change)."""
    return x.movedim(-3, -1)
