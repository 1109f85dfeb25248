"""Lesson 04: Losses for semantic segmentation, all taking logits [B, K, H, W] and targets [B, H,
W].

Per-pixel cross-entropy treats every pixel alike, so a small object drowns in its background.
``DiceLoss`` (overlap of soft masks) is insensitive to that imbalance, ``FocalLossSegmentation``
down-weights the easy pixels, ``CombinedSegmentationLoss`` adds cross-entropy and dice, and
``BoundaryLoss`` compares soft class boundaries. Every loss leaves out the pixels equal to
``ignore_index``: they change neither the loss nor any gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_finite, check_labels
from ..detection.losses import FocalLoss
from .pixels import valid_pixels

__all__ = ["DiceLoss", "FocalLossSegmentation", "CombinedSegmentationLoss", "BoundaryLoss"]


def _check_logits_target(
    what: str, logits: torch.Tensor, target: torch.Tensor, ignore_index: int | None
) -> torch.Tensor:
    """Validate logits [B, K, H, W] against target [B, H, W]; return the mask [B, H, W] of the
    pixels that count. NaN logits are refused: the loss would be NaN and train nothing."""
    check_finite(logits, what=what)
    check_finite(target, what=what)
    if logits.dim() != 4 or not logits.is_floating_point():
        raise ValueError(
            f"expected float logits [B, K, H, W], got {logits.dtype} {tuple(logits.shape)}"
        )
    if target.shape != logits.shape[:1] + logits.shape[2:] or target.is_floating_point():
        raise ValueError(
            f"expected integer target [B, H, W] = {tuple(logits.shape[:1] + logits.shape[2:])}, "
            f"got {target.dtype} {tuple(target.shape)}"
        )
    valid = valid_pixels(target, ignore_index)
    check_labels(
        target[valid], what=f"{what} (ignore_index={ignore_index})", num_classes=logits.shape[1]
    )
    return valid


def _valid_one_hot(target: torch.Tensor, valid: torch.Tensor, num_classes: int) -> torch.Tensor:
    """One-hot target [B, K, H, W] (float) that is all zeros at ignored pixels.

    Ignored pixels (e.g. 255) are first replaced by class 0 so ``F.one_hot`` never sees an
    out-of-range label, then zeroed by the mask.
    """
    safe = torch.where(valid, target, torch.zeros_like(target))
    one_hot = F.one_hot(safe.long(), num_classes).permute(0, 3, 1, 2).float()
    return one_hot * valid.unsqueeze(1)


def _soft_dice_loss(pred: torch.Tensor, true: torch.Tensor, smooth: float) -> torch.Tensor:
    """``1 - mean_c dice_c`` of soft masks pred, true [B, K, H, W], summed over batch and pixels.

    ``dice_c = (2 * sum(pred * true) + smooth) / (sum(pred) + sum(true) + smooth)``.
    """
    dims = (0, 2, 3)
    intersection = (pred * true).sum(dims)
    cardinality = pred.sum(dims) + true.sum(dims)
    dice = (2 * intersection + smooth) / (cardinality + smooth)
    return 1 - dice.mean()


class DiceLoss(nn.Module):
    """Soft dice loss, ``1 - mean_c dice_c``, on softmax probabilities.

    For class ``c``, with probabilities ``p`` and one-hot target ``g`` summed over valid pixels
    of the whole batch, ``dice_c = (2 * sum(p * g) + smooth) / (sum(p) + sum(g) + smooth)``.
    ``smooth`` keeps absent classes at dice 1 (0 / 0 would be undefined) and smooths the
    gradient. Ignored pixels enter neither the numerator nor the denominator.
    """

    def __init__(self, smooth: float = 1.0, ignore_index: int | None = None):
        super().__init__()
        self.smooth = smooth
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits [B, K, H, W], target [B, H, W] -> scalar loss in [0, 1]."""
        valid = _check_logits_target(type(self).__name__, logits, target, self.ignore_index)
        probs = logits.softmax(dim=1) * valid.unsqueeze(1)
        one_hot = _valid_one_hot(target, valid, logits.shape[1])
        return _soft_dice_loss(probs, one_hot, self.smooth)


class FocalLossSegmentation(FocalLoss):
    """Focal loss per pixel: cross-entropy scaled by ``alpha[y] * (1 - p_y) ** gamma``.

    ``p_y`` is the probability the model gives the true class. Well-classified pixels (``p_y``
    near 1) contribute almost nothing, so training concentrates on the hard ones: the
    detection lesson's :class:`~course_utils.detection.losses.FocalLoss`, checked for logits
    [B, K, H, W] and averaged over the valid pixels. ``alpha`` ([K], optional) weights each
    class. With ``gamma=0`` and no ``alpha`` it is exactly
    ``F.cross_entropy(..., ignore_index=...)``.
    """

    def __init__(
        self,
        alpha: torch.Tensor | None = None,
        gamma: float = 2.0,
        ignore_index: int | None = None,
    ):
        super().__init__(alpha, gamma, reduction="mean", ignore_index=ignore_index)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits [B, K, H, W], target [B, H, W] -> scalar loss."""
        _check_logits_target(type(self).__name__, logits, target, self.ignore_index)
        return super().forward(logits, target)


class CombinedSegmentationLoss(nn.Module):
    """``ce_weight * cross_entropy + dice_weight * dice``: per-pixel accuracy plus region overlap.

    Both terms skip pixels equal to ``ignore_index``.
    """

    def __init__(
        self, ce_weight: float = 1.0, dice_weight: float = 1.0, ignore_index: int | None = None
    ):
        super().__init__()
        self.ce_weight = ce_weight
        self.dice_weight = dice_weight
        self.ignore_index = ignore_index
        self.dice = DiceLoss(ignore_index=ignore_index)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits [B, K, H, W], target [B, H, W] -> scalar loss."""
        valid = _check_logits_target(type(self).__name__, logits, target, self.ignore_index)
        if valid.any():
            ignore = self.ignore_index if self.ignore_index is not None else -100
            ce = F.cross_entropy(logits, target.long(), ignore_index=ignore)
        else:  # cross_entropy would return nan for an all-ignored batch
            ce = logits.sum() * 0.0
        return self.ce_weight * ce + self.dice_weight * self.dice(logits, target)


def _soft_boundary(masks: torch.Tensor) -> torch.Tensor:
    """Morphological gradient of soft masks [B, K, H, W]: 3x3 dilation minus 3x3 erosion.

    It is about 1 on a class's border and about 0 inside and outside it. Max pooling passes
    gradients, so on probabilities this boundary map is differentiable.
    """
    dilation = F.max_pool2d(masks, 3, stride=1, padding=1)
    erosion = -F.max_pool2d(-masks, 3, stride=1, padding=1)
    return dilation - erosion


class BoundaryLoss(nn.Module):
    """Soft boundary loss: 1 - dice between the predicted and the true class boundaries.

    Boundaries come from ``_soft_boundary`` applied to the softmax probabilities and to the one-hot
    target. Comparing them as soft masks keeps the gradient that ``argmax`` would destroy.
    Only pixels whose whole 3x3 neighbourhood is valid are compared, so logits at ignored
    pixels cannot leak into the loss through the pooling window.
    """

    def __init__(self, smooth: float = 1.0, ignore_index: int | None = None):
        super().__init__()
        self.smooth = smooth
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits [B, K, H, W], target [B, H, W] -> scalar loss in [0, 1]."""
        valid = _check_logits_target(type(self).__name__, logits, target, self.ignore_index)
        # Erode the valid mask: a pixel counts only if no ignored pixel lies in its 3x3 window.
        # Outside the image counts as valid (padding with -inf leaves the window's min unchanged).
        inner = -F.max_pool2d(-valid[:, None].float(), 3, stride=1, padding=1)
        pred = _soft_boundary(logits.softmax(dim=1)) * inner
        true = _soft_boundary(_valid_one_hot(target, valid, logits.shape[1])) * inner
        return _soft_dice_loss(pred, true, self.smooth)
