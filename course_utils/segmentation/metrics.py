"""Lesson 04: Scoring a semantic segmentation: confusion matrix, pixel accuracy and mean IoU.

A model's prediction is compared pixel by pixel with the target label map [N, H, W] (int64).
Pixels equal to ``ignore_index`` (object borders in PASCAL VOC, unlabelled regions in
Cityscapes, usually 255) are left out entirely. Pixel accuracy is dominated by large classes
(sky, road); mean IoU weighs every class equally and is the standard benchmark number.
"""

from __future__ import annotations

import torch

from .pixels import valid_pixels

__all__ = ["confusion_matrix", "pixel_accuracy", "mean_iou"]


def _as_labels(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Check ``pred`` against ``target`` and return predicted labels shaped like ``target``.

    ``pred`` is either labels [N, ...] with ``target``'s shape or logits [N, K, ...] with one more
    dimension (class scores in dimension 1), which are turned into labels by argmax.
    """
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise ValueError(f"target must hold integer class labels, got dtype {target.dtype}")
    if pred.dim() == target.dim() + 1 and pred.is_floating_point():
        if pred.shape[:1] + pred.shape[2:] != target.shape:
            raise ValueError(
                f"logits {tuple(pred.shape)} do not match target {tuple(target.shape)}: "
                "expected logits [N, K, ...] for a target [N, ...]"
            )
        return pred.argmax(dim=1)
    if pred.is_floating_point():
        raise ValueError(
            f"pred must be integer labels shaped like target {tuple(target.shape)} or float "
            f"logits with a class dimension, got {pred.dtype} {tuple(pred.shape)}"
        )
    if pred.shape != target.shape:
        raise ValueError(
            f"pred labels {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape"
        )
    return pred


def confusion_matrix(
    pred: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    ignore_index: int | None = None,
) -> torch.Tensor:
    """Count pixels by (true class, predicted class).

    Args:
        pred: labels [N, ...] or logits [N, K, ...].
        target: labels [N, ...]; pixels equal to ``ignore_index`` are not counted.
        num_classes: K.

    Returns:
        [K, K] int64 matrix ``cm`` with ``cm[t, p]`` = number of pixels of class ``t`` predicted
        as ``p``. The diagonal holds the correct pixels.
    """
    pred = _as_labels(pred, target)
    valid = valid_pixels(target, ignore_index)
    t, p = target[valid].long(), pred[valid].long()
    for name, labels in (("target", t), ("pred", p)):
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(
                f"{name} labels must lie in [0, {num_classes}) outside ignore_index={ignore_index}, "
                f"got values in [{labels.min().item()}, {labels.max().item()}]"
            )
    # Each (t, p) pair becomes one bin index t * K + p: a single bincount fills the whole matrix.
    counts = torch.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def pixel_accuracy(
    pred: torch.Tensor, target: torch.Tensor, ignore_index: int | None = None
) -> float:
    """Fraction of (non-ignored) pixels whose predicted label equals the target label.

    Args:
        pred: labels [N, ...] or logits [N, K, ...].
        target: labels [N, ...].

    Returns:
        A float in [0, 1]; ``nan`` when every pixel is ignored.
    """
    pred = _as_labels(pred, target)
    valid = valid_pixels(target, ignore_index)
    num_valid = int(valid.sum())
    if num_valid == 0:
        return float("nan")
    return int((pred[valid] == target[valid]).sum()) / num_valid


def mean_iou(
    pred: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    ignore_index: int | None = None,
) -> dict:
    """Intersection over union per class, and its mean over the classes that occur.

    For class ``c``, IoU = |pred == c and target == c| / |pred == c or target == c|. A class that
    is neither predicted nor present has an empty union: its IoU is undefined (``nan``) and it is
    left out of the mean, so it neither rewards nor punishes the model.

    ``ignore_index`` may be a real class, e.g. 0 to score only the objects and not the
    background: its pixels in the target are not counted (a pixel of another class predicted as
    it is still a miss for that class), and the class itself is not scored: ``nan``, out of the
    mean, as in torchmetrics' ``MulticlassJaccardIndex(ignore_index=0)``.

    Args:
        pred: labels [N, ...] or logits [N, K, ...].
        target: labels [N, ...]; pixels equal to ``ignore_index`` are not counted.
        num_classes: K.

    Returns:
        ``{"miou": float, "per_class": [K] float64 tensor}``; ``miou`` is ``nan`` if no class
        occurs at all. (torchmetrics' ``MulticlassJaccardIndex(average=None)`` reports 0 instead of
        ``nan`` for the classes not scored; its ``average="macro"`` skips them, as here.)
    """
    cm = confusion_matrix(pred, target, num_classes, ignore_index).double()
    intersection = cm.diag()
    union = cm.sum(0) + cm.sum(1) - intersection
    per_class = intersection / union  # 0 / 0 = nan marks the classes that do not occur
    if ignore_index is not None and 0 <= ignore_index < num_classes:
        per_class[ignore_index] = float("nan")  # an ignored class is not scored
    present = ~per_class.isnan()
    miou = per_class[present].mean().item() if present.any() else float("nan")
    return {"miou": miou, "per_class": per_class}
