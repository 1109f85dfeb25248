"""Lesson 05: augmentation presets for small training sets, from gentle to strong."""

from __future__ import annotations

import torch
from torchvision.transforms import v2

__all__ = ["AUGMENTATIONS", "augmentation"]

#: Names accepted by :func:`augmentation`, from gentle to strong.
AUGMENTATIONS = ("minimal", "moderate", "aggressive", "autoaugment")


def augmentation(preset: str, size: int, flip: bool = True) -> v2.Compose:
    """A training transform for ``uint8`` image tensors ``[3, H, W]`` (or PIL images) that returns
    ``float32 [3, size, size]`` in [0, 1].

    - ``minimal``: resize and (optionally) flip: what every training set can afford;
    - ``moderate``: random crops of 60-100 % of the area, flip, mild colour jitter;
    - ``aggressive``: tighter crops, rotation, strong colour jitter, random greyscale and erasing;
    - ``autoaugment``: the policy AutoAugment searched on ImageNet (Cubuk et al., 2019).

    ``flip=False`` for images whose mirror image means something else (digits, text, road signs):
    which augmentations keep the label is a property of the domain, not of the preset.
    """
    if preset not in AUGMENTATIONS:
        raise ValueError(f"preset must be one of {AUGMENTATIONS}, got {preset!r}")
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"augmentation: size must be a positive int (pixels), got {size!r}")
    flips = [v2.RandomHorizontalFlip()] if flip else []
    steps = {
        "minimal": [v2.Resize((size, size), antialias=True), *flips],
        "moderate": [
            v2.RandomResizedCrop(size, scale=(0.6, 1.0), antialias=True),
            *flips,
            v2.ColorJitter(0.2, 0.2, 0.2),
        ],
        "aggressive": [
            v2.RandomResizedCrop(size, scale=(0.3, 1.0), antialias=True),
            *flips,
            v2.RandomRotation(20),
            v2.ColorJitter(0.4, 0.4, 0.4, 0.1),
            v2.RandomGrayscale(0.2),
        ],
        "autoaugment": [
            v2.Resize((size, size), antialias=True),
            *flips,
            v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET),
        ],
    }[preset]
    tail = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.ToPureTensor()]
    if preset == "aggressive":  # erasing works on float tensors, so after the conversion
        tail.append(v2.RandomErasing(p=0.5, scale=(0.02, 0.15)))
    return v2.Compose([*steps, *tail])
