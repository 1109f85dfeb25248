"""The check at the door of every shipped model: images of the kind it was trained on, or an error.

A network does not know what its input means. Given uint8 pixels in [0, 255], ImageNet-normalised
images or 28x28 digits where it learned 16x16 ones in [0, 1], it still returns numbers -- wrong
ones, without a word. Every checkpoint records what it was trained on (``model.config``, see
``course_utils.zoo``); :func:`check_images` compares a batch with that record and names the fix.
It costs one min/max over the batch per call, nothing next to a convolution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

__all__ = ["check_images", "config_guard"]

#: How far outside its range an input may stray (float rounding, a slightly overshooting sample).
TOLERANCE = 1e-3


def check_images(
    x,
    *,
    what: str,
    channels: int | None = None,
    size: int | None = None,
    value_range: Sequence[float] | None = None,
) -> None:
    """Raise a clear error unless ``x`` is a non-empty float batch [B, C, H, W] of finite values,
    with ``channels`` channels, ``size`` x ``size`` pixels and values in ``value_range`` (each
    check only when given). ``what`` names the model or function in the message."""
    if isinstance(x, np.ndarray):
        raise TypeError(
            f"{what} takes a torch tensor, got a NumPy array {x.shape}: "
            "torch.from_numpy(x) (or image.to_tensor(x) for an HWC image)"
        )
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} takes a tensor [B, C, H, W], got {type(x).__name__}")
    if x.ndim != 4:
        hint = ": add a batch dimension with x.unsqueeze(0)" if x.ndim == 3 else ""
        raise ValueError(f"{what} takes a batch [B, C, H, W], got shape {tuple(x.shape)}{hint}")
    if len(x) == 0:
        raise ValueError(f"{what} got an empty batch (0 images)")
    if not x.is_floating_point():
        raise TypeError(
            f"{what} takes float images, got {x.dtype}: for 8-bit pixels use x.float() / 255"
        )
    if channels is not None and x.shape[1] != channels:
        raise ValueError(
            f"{what} was trained on {channels}-channel images, got {x.shape[1]} channels "
            f"(shape {tuple(x.shape)})"
            + (": is it HWC? use x.permute(0, 3, 1, 2)" if x.shape[-1] == channels else "")
        )
    if size is not None and tuple(x.shape[2:]) != (size, size):
        raise ValueError(
            f"{what} was trained on {size}x{size} images, got {x.shape[2]}x{x.shape[3]}: resize "
            f"them, e.g. data.digits(size={size}) or F.interpolate(x, size={size})"
        )
    low, high = x.min().item(), x.max().item()  # one pass: NaN and inf show up here too
    if not (np.isfinite(low) and np.isfinite(high)):
        raise ValueError(f"{what} got NaN or infinite values")
    if value_range is not None:
        _check_range(low, high, tuple(value_range), what)


def _check_range(low: float, high: float, value_range: tuple[float, float], what: str) -> None:
    lo, hi = value_range
    if lo - TOLERANCE <= low and high <= hi + TOLERANCE:
        return
    found = f"values in [{low:.3g}, {high:.3g}]"
    if (lo, hi) == (0, 1) and low < 0:  # checked first: normalised images also exceed 1
        fix = (
            "negative values: ImageNet-normalised images (use image.denormalize) or samples "
            "in [-1, 1] (use quality.to01)?"
        )
    elif (lo, hi) == (0, 1) and high > 2:
        fix = "they look like 8-bit pixels in [0, 255]: divide by 255"
    elif (lo, hi) == (-1, 1) and high > 2:
        fix = "they look like [0, 255] pixels: x / 127.5 - 1"
    else:
        fix = f"rescale them to [{lo}, {hi}]"
    raise ValueError(f"{what} takes images in [{lo}, {hi}], got {found}; {fix}")


def _check_steps(t: torch.Tensor, num_timesteps: int, what: str) -> None:
    """A diffusion model's timesteps lie in [0, T) (integers, or floats from a diffusers
    scheduler that interpolates between them)."""
    if t.numel() and (t.min() < 0 or t.max() >= num_timesteps):
        raise ValueError(
            f"{what} was trained on steps t in [0, {num_timesteps}) (0-based), got "
            f"[{t.min().item()}, {t.max().item()}]"
        )


def config_guard(name: str, config: Mapping):
    """A forward pre-hook for ``module.register_forward_pre_hook`` that checks each call's first
    argument against ``config`` (its ``in_channels``, ``image_size``, ``input_range``) and, for a
    diffusion model (``noise_schedule``), its timesteps."""

    what = f"{name} ({{}})"
    steps = config.get("noise_schedule", {}).get("num_timesteps")

    def hook(module, args):
        if args and isinstance(args[0], torch.Tensor | np.ndarray):  # a list of images: no batch
            check_images(
                args[0],
                what=what.format(type(module).__name__),
                channels=config.get("in_channels"),
                size=config.get("image_size"),
                value_range=config.get("input_range"),
            )
        if steps is not None and len(args) > 1 and isinstance(args[1], torch.Tensor):
            _check_steps(args[1], steps, what.format(type(module).__name__))

    return hook
