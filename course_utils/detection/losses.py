"""Detection losses: focal losses for classification, generalised IoU for box regression.

A one-stage detector scores ~100,000 anchors or locations per image, of which a handful hold an
object. With plain cross-entropy the many *easy* background examples, each with a small loss, add
up to dominate the gradient. The focal loss (Lin et al., 2017, RetinaNet) multiplies each term by
``(1 - p_t) ** gamma``: about 1 for a badly classified example, about 0 for one already right, so
training concentrates on the hard ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .boxes import _check_boxes, _giou

__all__ = ["sigmoid_focal_loss", "FocalLoss", "giou_loss"]

REDUCTIONS = ("none", "mean", "sum")


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def sigmoid_focal_loss(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
) -> torch.Tensor:
    """Binary focal loss on logits, one independent yes/no per class (RetinaNet's version).

    ``inputs``: logits of any shape, e.g. ``[B, anchors, classes]``; ``targets``: the same shape,
    1 for the true class and 0 elsewhere (background = all zeros). Per element:

        ``FL = -alpha_t * (1 - p_t) ** gamma * log(p_t)``

    where ``p_t`` is the probability given to the right answer and ``alpha_t = alpha`` for
    positives, ``1 - alpha`` for negatives (``alpha < 0`` turns the weighting off). ``gamma = 0``,
    ``alpha < 0`` is binary cross-entropy. Equals ``torchvision.ops.sigmoid_focal_loss``.
    """
    _check_reduction(reduction)
    if inputs.shape != targets.shape:
        raise ValueError(
            f"inputs {tuple(inputs.shape)} and targets {tuple(targets.shape)} must have the same "
            "shape: targets are one-hot (0/1) per class, not class indices"
        )
    targets = targets.to(inputs.dtype)
    p = torch.sigmoid(inputs)
    # The cross-entropy from the logits, not log(p): stable for large |logits|.
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return _reduce(loss, reduction)


class FocalLoss(nn.Module):
    """Multi-class focal loss on softmax probabilities.

    ``logits [N, C]`` (or ``[N, C, d1, ...]`` for dense predictions), ``targets [N]`` (or
    ``[N, d1, ...]``) int64 class indices -> ``-alpha[y] * (1 - p_y) ** gamma * log(p_y)``.

    ``alpha``: ``None`` (every class weighs 1) or one weight per class, ``[C]``. Which class is
    the background is *your* choice: give it a small weight explicitly, e.g.
    ``alpha = [0.25, 1, 1, ...]`` when class 0 is the background -- nothing here assumes it.
    ``gamma = 0`` and ``alpha = None`` give ``F.cross_entropy``. ``"mean"`` is the plain mean
    over examples (not divided by the sum of the weights as ``cross_entropy(weight=...)`` is).
    """

    def __init__(
        self,
        alpha: Sequence[float] | torch.Tensor | None = None,
        gamma: float = 2.0,
        reduction: str = "mean",
    ):
        super().__init__()
        _check_reduction(reduction)
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = gamma
        self.reduction = reduction
        # A buffer, so that .to(device) moves it along with the model.
        alpha_t = None if alpha is None else torch.as_tensor(alpha, dtype=torch.float32)
        if alpha_t is not None and alpha_t.ndim != 1:
            raise ValueError(f"alpha must be None or one weight per class [C], got {alpha!r}")
        self.register_buffer("alpha", alpha_t)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if logits.ndim < 2 or targets.shape != logits.shape[:1] + logits.shape[2:]:
            raise ValueError(
                f"expected logits [N, C, ...] and class indices [N, ...], got {tuple(logits.shape)}"
                f" and {tuple(targets.shape)}"
            )
        num_classes = logits.shape[1]
        if self.alpha is not None and len(self.alpha) != num_classes:
            raise ValueError(f"alpha has {len(self.alpha)} weights for {num_classes} classes")
        if targets.numel() and (targets.min() < 0 or targets.max() >= num_classes):
            raise ValueError(f"targets must be class indices in [0, {num_classes})")
        targets = targets.long()  # gather and indexing need int64
        # gather picks the log-probability of the true class; unsqueeze/squeeze on dim 1 only,
        # so that a batch of one sample keeps its batch dimension.
        log_p = F.log_softmax(logits, dim=1).gather(1, targets.unsqueeze(1)).squeeze(1)
        loss = -((1 - log_p.exp()) ** self.gamma) * log_p
        if self.alpha is not None:
            loss = self.alpha.to(loss.dtype)[targets] * loss
        return _reduce(loss, self.reduction)


def giou_loss(pred: torch.Tensor, target: torch.Tensor, reduction: str = "none") -> torch.Tensor:
    """``1 - GIoU`` of matched pairs ``pred [N, 4]``, ``target [N, 4]`` (xyxy) -> ``[N]``.

    In [0, 2]: 0 for a perfect box, and unlike ``1 - IoU`` it still decreases as two disjoint boxes
    move closer, so a box that misses its object gets a useful gradient. Equals
    ``torchvision.ops.generalized_box_iou_loss`` (which adds a tiny epsilon) up to ~1e-6.
    """
    _check_reduction(reduction)
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must match")
    # The check only reads the values: gradients still flow through pred.
    _check_boxes(pred.detach(), "pred")
    _check_boxes(target, "target")
    return _reduce(1 - _giou(pred, target), reduction)
