"""Lesson 03: Training and evaluating a detector on the digit scenes, the course's detection
benchmark.

Works with any model that speaks torchvision's detection language: ``model(images, targets)``
returns a dict of losses in ``train()`` mode and ``model(images)`` returns one
``{"boxes", "scores", "labels"}`` dict per image in ``eval()`` mode. The course's
:class:`~course_utils.detection.centernet.CenterNet` does, and so do torchvision's Faster R-CNN,
RetinaNet and FCOS.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..data import detection_collate, digit_scenes
from ..train import History, evaluating, fit_one_cycle
from .metrics import mean_average_precision

# digit_scenes lives with the scenes in course_utils.data; it is re-exported here, where lesson 03
# first uses it.
__all__ = ["digit_scenes", "detection_step", "train_detector", "detect", "evaluate_detector"]


def detection_step(model: nn.Module, batch, device: torch.device) -> torch.Tensor:
    """One training step's loss for :func:`~course_utils.train.fit`: the sum of the detector's
    losses on a ``(list of images, list of targets)`` batch (``detection_collate``)."""
    images, targets = batch
    images = [image.to(device) for image in images]
    targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
    return sum(model(images, targets).values())


def train_detector(
    model: nn.Module,
    scenes: Sequence[tuple],
    *,
    epochs: int,
    lr: float,
    batch_size: int = 32,
    weight_decay: float = 1e-4,
    max_steps_per_epoch: int | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> History:
    """Train ``model`` in place on ``scenes`` (``(image, target)`` pairs) with AdamW and a
    one-cycle learning rate (warm up to ``lr`` in the first 15 % of steps, then anneal to ~0).

    The batches are shuffled by a generator seeded with 0, so on the CPU the same call gives the
    same weights. Returns the :class:`~course_utils.train.History` (training loss per epoch).
    """
    shuffle = torch.Generator().manual_seed(0)
    loader = DataLoader(
        scenes,
        batch_size,
        shuffle=True,
        drop_last=True,
        collate_fn=detection_collate,
        generator=shuffle,
    )
    return fit_one_cycle(
        model,
        loader,
        epochs=epochs,
        lr=lr,
        pct_start=0.15,
        weight_decay=weight_decay,
        device=device,
        max_steps_per_epoch=max_steps_per_epoch,
        train_step=detection_step,
        grad_clip=10.0,  # a bad batch early on must not throw the heatmap head off
        progress=progress,
    )


@torch.no_grad()
def detect(
    model: nn.Module, scenes: Sequence[tuple], batch_size: int = 50
) -> tuple[list[dict], list[dict]]:
    """Run ``model`` in ``eval()`` mode over ``scenes``: ``(predictions, targets)``, one dict per
    scene, on the CPU, ready for :func:`~course_utils.detection.metrics.mean_average_precision`.

    The model is given back in the mode it came in: evaluating in the middle of a training loop
    must not leave its batch norms frozen for the steps that follow.
    """
    device = next(model.parameters()).device
    preds, targets = [], []
    with evaluating(model):
        for start in range(0, len(scenes), batch_size):
            images, batch_targets = detection_collate(scenes[start : start + batch_size])
            for pred in model([image.to(device) for image in images]):
                preds.append({k: v.cpu() for k, v in pred.items()})
            targets.extend(batch_targets)
    return preds, targets


def evaluate_detector(model: nn.Module, scenes: Sequence[tuple]) -> dict:
    """COCO mean average precision of ``model`` on ``scenes``: ``{"map", "map_50", "map_75", ...}``
    (see :func:`~course_utils.detection.metrics.mean_average_precision`)."""
    return mean_average_precision(*detect(model, scenes))
