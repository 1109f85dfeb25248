"""Input checks shared by the segmentation files: which pixels count, and image batches.

A wrong shape should fail with a sentence that names the expected layout, not with an obscure
error three layers deeper. These helpers are for the other files of the package; learners never
call them, so the package does not re-export them.
"""

from __future__ import annotations

import torch


def valid_pixels(target: torch.Tensor, ignore_index: int | None) -> torch.Tensor:
    """Boolean mask shaped like ``target``: True where the pixel counts (not ``ignore_index``)."""
    if ignore_index is None:
        return torch.ones_like(target, dtype=torch.bool)
    return target != ignore_index


def check_images(x: torch.Tensor, in_channels: int, name: str) -> None:
    """Raise a ValueError unless ``x`` is an image batch [B, in_channels, H, W]; ``name`` is the
    model that expects it."""
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ValueError(f"{name} expects images [B, {in_channels}, H, W], got {tuple(x.shape)}")
