"""Lesson 04: which pixels of a target count (all but ``ignore_index``), for the losses and metrics.

A helper for the other files of the package; learners never call it, so the package does not
re-export it.
"""

from __future__ import annotations

import torch


def valid_pixels(target: torch.Tensor, ignore_index: int | None) -> torch.Tensor:
    """Boolean mask shaped like ``target``: True where the pixel counts (not ``ignore_index``)."""
    if ignore_index is None:
        return torch.ones_like(target, dtype=torch.bool)
    return target != ignore_index
