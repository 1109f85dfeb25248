"""Lesson 01: conversions between the course's ``[C, H, W]`` float and ``[H, W, C]`` uint8 layouts.

:func:`to_tensor` / :func:`to_numpy` cross between tensors and NumPy/PIL images;
:func:`hwc_to_chw` / :func:`chw_to_hwc` only move the channel axis of a tensor.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..checks import check_images

__all__ = ["to_tensor", "to_numpy", "hwc_to_chw", "chw_to_hwc"]


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
    check_images(t, what="to_numpy", layout="CHW", channels=(1, 3), value_range=(0, 1))
    out = (t.detach().cpu() * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return out[:, :, 0] if out.shape[2] == 1 else out


def hwc_to_chw(x: torch.Tensor) -> torch.Tensor:
    """``[..., H, W, C]`` -> ``[..., C, H, W]`` (a view: no copy, only the strides change)."""
    return x.movedim(-1, -3)


def chw_to_hwc(x: torch.Tensor) -> torch.Tensor:
    """``[..., C, H, W]`` -> ``[..., H, W, C]`` (a view: no copy, only the strides change)."""
    return x.movedim(-3, -1)
