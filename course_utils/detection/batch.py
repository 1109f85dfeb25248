"""Lesson 03: what every detector of the lesson takes: an image batch and, to train, its targets.

The three trainable detectors (CenterNet, RetinaNet, Faster R-CNN) speak torchvision's language:
images as a ``[B, 3, H, W]`` batch or a list of ``[3, H, W]``, float in [0, 1], and in
``train()`` mode one ``{"boxes", "labels"}`` dict per image, boxes xyxy in pixels, labels
``1..num_classes`` (label = class + 1, 0 is the background). Both are checked here, once per
call, so a mistake fails with its fix before any anchor is matched.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..checks import check_images, check_labels, check_lengths
from .boxes import check_boxes

__all__ = ["check_targets"]


def image_batch(images, what: str) -> torch.Tensor:
    """A list of ``[3, H, W]`` images (torchvision's convention) or a ``[B, 3, H, W]`` batch ->
    the batch, checked: 3 channels, float in [0, 1], H and W multiples of 16 (the backbone halves
    them four times). ``what`` names the detector in the messages."""
    if isinstance(images, list | tuple):
        check_lengths(what, images=images)
        for image in images:
            check_images(image, what=what, layout="CHW", channels=3)
        if len({tuple(image.shape) for image in images}) > 1:
            raise ValueError(f"{what}: all images must have the same size (it does not resize)")
        images = torch.stack(list(images))
    return check_images(images, what=what, channels=3, multiple_of=16, value_range=(0.0, 1.0))


def check_targets(
    targets, num_images: int, num_classes: int | None, what: str = "the detector"
) -> None:
    """Raise a clear error unless ``targets`` is a list of ``num_images`` dicts, each with
    ``"boxes" [G, 4]`` float xyxy pixels of positive width and height and ``"labels" [G]`` int64
    in ``1..num_classes`` (any label from 1, for ``None``: the RPN knows no classes). ``G = 0`` is a scene
    without objects: ``torch.zeros(0, 4)``."""
    if targets is None:
        raise ValueError("in train() mode the model needs targets; call model.eval() to detect")
    if isinstance(targets, dict) or not isinstance(targets, Sequence):
        raise ValueError(
            "targets must be a list with one {'boxes', 'labels'} dict per image, got "
            f"{type(targets).__name__}"
        )
    check_lengths(what, targets=targets, images=range(num_images))
    for i, target in enumerate(targets):
        if not isinstance(target, dict) or not {"boxes", "labels"} <= set(target):
            raise ValueError(f"targets[{i}] must be a dict with 'boxes' and 'labels'")
        boxes, labels = target["boxes"], target["labels"]
        check_boxes(boxes, f"targets[{i}]['boxes']")
        if boxes.ndim != 2:
            raise ValueError(f"expected targets[{i}]['boxes'] [G, 4], got {tuple(boxes.shape)}")
        if ((boxes[:, 2:] - boxes[:, :2]) <= 0).any():
            raise ValueError(
                f"targets[{i}]['boxes'] has a box of zero width or height: its regression target "
                "would be log(0); drop degenerate boxes first"
            )
        check_labels(
            labels,
            what=f"{what}: targets[{i}]['labels']",
            num_classes=num_classes,
            first=1,
            length=len(boxes),
        )
