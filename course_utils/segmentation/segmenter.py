"""Lesson 04: Training and evaluating a semantic segmenter on the digit scenes, lesson 04's
benchmark.

Any model [B, 3, H, W] -> logits [B, K, H, W] will do. The training pairs come from
:func:`~course_utils.data.scene_masks` (re-exported here), ``(image, mask)`` with 0 for the
background and digit d as class d + 1 (K = 11).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..checks import check_images
from ..data import scene_masks
from ..train import fit_one_cycle, predict
from .losses import CombinedSegmentationLoss
from .metrics import mean_iou, pixel_accuracy

__all__ = ["scene_masks", "train_segmenter", "segment", "evaluate_segmenter"]


def train_segmenter(
    model: nn.Module,
    pairs,
    *,
    epochs: int,
    lr: float,
    batch_size: int = 32,
    weight_decay: float = 1e-4,
    loss_fn: nn.Module | None = None,
    max_steps_per_epoch: int | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
):
    """Train ``model`` in place on ``(image, mask)`` pairs with AdamW, a one-cycle learning rate
    (warm-up over the first 20 % of steps) and ``loss_fn`` (default: cross-entropy + dice).

    Batches are shuffled by a generator seeded with 0: on the CPU the same call gives the same
    weights. Returns the :class:`~course_utils.train.History` (training loss per epoch).
    """
    shuffle = torch.Generator().manual_seed(0)
    loader = DataLoader(pairs, batch_size, shuffle=True, drop_last=True, generator=shuffle)
    return fit_one_cycle(
        model,
        loader,
        epochs=epochs,
        lr=lr,
        pct_start=0.2,
        weight_decay=weight_decay,
        loss_fn=loss_fn if loss_fn is not None else CombinedSegmentationLoss(),
        device=device,
        max_steps_per_epoch=max_steps_per_epoch,
        progress=progress,
    )


def segment(model: nn.Module, images: torch.Tensor, batch_size: int = 50) -> torch.Tensor:
    """Label maps [N, H, W] (int64, on the CPU) of ``model`` in ``eval()`` mode on images
    [N, C, H, W], ``batch_size`` at a time, on the device the model is on.

    The model is given back in the mode it came in (``predict`` does that): scoring it in the
    middle of a training loop must not leave its batch norms frozen for the steps that follow.
    """
    # The course's segmenters learned scenes in [0, 1]: [0, 255] images give blank maps silently.
    check_images(images, what="segment", value_range=(0.0, 1.0))
    device = next(model.parameters()).device
    return predict(model, images, device=device, batch_size=batch_size).argmax(1)


def evaluate_segmenter(model: nn.Module, pairs, num_classes: int) -> dict:
    """Scores of ``model`` on ``(image, mask)`` pairs with ``num_classes`` classes, counted over
    all their pixels together (the dataset-level IoU benchmarks report, not a mean of per-image
    IoUs).

    Returns ``{"miou", "per_class", "pixel_accuracy", "foreground_iou"}``: ``miou`` and
    ``per_class`` as in :func:`mean_iou`; ``foreground_iou`` is the IoU of "any object" (label > 0)
    against background, which asks only *where* the objects are, not *which* they are.
    """
    images = torch.stack([image for image, _ in pairs])
    target = torch.stack([mask for _, mask in pairs])
    pred = segment(model, images)
    scores = mean_iou(pred, target, num_classes)
    foreground = mean_iou((pred > 0).long(), (target > 0).long(), 2)["per_class"][1].item()
    return scores | {"pixel_accuracy": pixel_accuracy(pred, target), "foreground_iou": foreground}
