"""Circles: a two-class segmentation set small enough to train a U-Net on in a minute.

:func:`circle_mask` rasterises one filled circle; :func:`circles` paints random ones on plain
backgrounds, with their masks.
"""

from __future__ import annotations

import numpy as np
import torch

from .photos import check_size

__all__ = ["circle_mask", "circles"]


def circle_mask(size: int, cx: float, cy: float, r: float) -> torch.Tensor:
    """Bool ``[size, size]`` mask of the pixels whose centre lies strictly inside the circle
    ``(x - cx)^2 + (y - cy)^2 < r^2`` (pixel ``(row, col)`` has its centre at ``(col + 0.5,
    row + 0.5)``)."""
    check_size(size, "size")
    centres = torch.arange(size, dtype=torch.float64) + 0.5
    return (centres[None, :] - cx) ** 2 + (centres[:, None] - cy) ** 2 < r**2


def circles(
    num_images: int = 250,
    size: int = 64,
    max_circles: int = 3,
    noise: float = 0.1,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random filled circles on plain backgrounds, for the U-Net exercise of lesson 04.

    Image ``i`` has a random background colour, between 1 and ``max_circles`` circles (radius
    ``size / 16`` to ``size / 5``, fully inside the image) painted in a second colour at least 0.5
    away from it (Euclidean RGB distance), and Gaussian pixel noise of standard deviation
    ``noise``. Returns ``(images [N, 3, size, size] float32 in [0, 1], masks [N, size, size]
    int64)``, mask 1 inside any circle and 0 elsewhere. Same seed, same images.
    """
    check_size(num_images, "num_images")
    check_size(size, "size", minimum=8)
    check_size(max_circles, "max_circles")
    rng = np.random.default_rng(seed)
    images = torch.empty(num_images, 3, size, size)
    masks = torch.zeros(num_images, size, size, dtype=torch.int64)
    for i in range(num_images):
        background, ink = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        while np.linalg.norm(ink - background) < 0.5:  # a circle must be visible to be learnable
            ink = rng.uniform(0, 1, 3)
        for _ in range(rng.integers(1, max_circles + 1)):
            r = rng.uniform(size / 16, size / 5)
            cx, cy = rng.uniform(r, size - r, 2)
            masks[i] |= circle_mask(size, cx, cy, r).long()
        colour = np.where(masks[i].numpy()[..., None] == 1, ink, background)  # [size, size, 3]
        colour = colour + rng.normal(0, noise, colour.shape)
        images[i] = torch.from_numpy(colour.clip(0, 1).transpose(2, 0, 1).astype(np.float32))
    return images, masks
