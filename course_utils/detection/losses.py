"""Lesson 03: Detection losses: focal losses for classification, generalised IoU for box regression.

A one-stage detector scores ~100,000 anchors or locations per image, of which a handful hold an
object. With plain cross-entropy the many *easy* background examples, each with a small loss, add
up to dominate the gradient. The focal loss (Lin et al., 2017, RetinaNet) multiplies each term by
``(1 - p_t) ** gamma``: about 1 for a badly classified example, about 0 for one already right, so
training concentrates on the hard ones. Segmentation has the same imbalance (most pixels are
easy background): :class:`~course_utils.segmentation.FocalLossSegmentation` is the softmax focal
loss here, per pixel.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .boxes import check_boxes, matched_giou

__all__ = ["sigmoid_focal_loss", "FocalLoss", "giou_loss"]

REDUCTIONS = ("none", "mean", "sum")


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _reduce_counted(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    """:func:`_reduce` for a loss over however many pairs or examples count, where a batch with
    none is normal (an image without objects): its mean is 0 with a graph, not ``mean()``'s NaN,
    so ``loss.backward()`` still works (as in torchvision's box losses)."""
    if reduction == "mean" and not loss.numel():
        return loss.sum()
    return _reduce(loss, reduction)


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


def _softmax_focal_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    alpha: Sequence[float] | torch.Tensor | None = None,
    gamma: float = 2.0,
    ignore_index: int | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Multi-class focal loss on softmax probabilities, one class per example.

    ``logits [N, C]`` (or ``[N, C, d1, ...]`` for dense predictions, e.g. ``[B, K, H, W]`` for a
    segmentation), ``targets [N]`` (or ``[N, d1, ...]``) integer class indices. Per example:

        ``FL = -alpha[y] * (1 - p_y) ** gamma * log(p_y)``

    ``alpha``: ``None`` (every class weighs 1) or one weight per class, ``[C]``. Which class is
    the background is *your* choice: give it a small weight explicitly, e.g.
    ``alpha = [0.25, 1, 1, ...]`` when class 0 is the background -- nothing here assumes it.
    Examples whose target is ``ignore_index`` (e.g. 255 on object borders) count nowhere: not
    in the loss, not in the mean, and their logits get no gradient.

    ``reduction``: ``"none"`` gives the loss of every example, shaped like ``targets`` (0 at
    ignored ones); ``"mean"`` is the plain mean over the counted examples (not divided by the
    sum of the weights as ``cross_entropy(weight=...)`` is), and 0 when none counts (where
    ``cross_entropy`` gives NaN); ``"sum"`` sums them. ``gamma = 0`` and ``alpha = None`` give
    ``F.cross_entropy(..., ignore_index=...)``.
    """
    _check_reduction(reduction)
    if (
        logits.ndim < 2
        or not logits.is_floating_point()
        or targets.shape != logits.shape[:1] + logits.shape[2:]
        or targets.is_floating_point()
    ):
        raise ValueError(
            f"expected float logits [N, C, ...] and integer class indices [N, ...], got "
            f"{logits.dtype} {tuple(logits.shape)} and {targets.dtype} {tuple(targets.shape)}"
        )
    num_classes = logits.shape[1]
    if alpha is not None:
        alpha = torch.as_tensor(alpha, dtype=logits.dtype, device=logits.device)
        if alpha.shape != (num_classes,):
            raise ValueError(f"alpha has {alpha.numel()} weights for {num_classes} classes")
    valid = torch.ones_like(targets, dtype=torch.bool)  # which examples count
    if ignore_index is not None:
        valid = targets != ignore_index
    labels = targets[valid].long()  # [P]: gather and indexing need int64
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"targets must be class indices in [0, {num_classes}) outside ignore_index="
            f"{ignore_index}, got values in [{labels.min().item()}, {labels.max().item()}]"
        )
    # The counted examples only, as [P, C] logits (classes last): an ignored label never
    # indexes anything and an ignored example's logits never enter the graph.
    log_p = logits.movedim(1, -1)[valid].log_softmax(dim=1)
    # gather picks the log-probability of the true class; unsqueeze/squeeze on dim 1 only,
    # so that a batch of one example keeps its batch dimension.
    log_p = log_p.gather(1, labels.unsqueeze(1)).squeeze(1)
    loss = -((1 - log_p.exp()) ** gamma) * log_p
    if alpha is not None:
        loss = alpha[labels] * loss
    if reduction == "none":
        per_example = loss.new_zeros(targets.shape)
        per_example[valid] = loss
        return per_example
    return _reduce_counted(loss, reduction)


class FocalLoss(nn.Module):
    """:func:`_softmax_focal_loss` as a module: ``FocalLoss(alpha, gamma)(logits, targets)``.

    ``logits [N, C]`` (or ``[N, C, d1, ...]``), ``targets [N]`` (or ``[N, d1, ...]``) int64 class
    indices -> ``-alpha[y] * (1 - p_y) ** gamma * log(p_y)``, reduced by ``reduction``;
    ``alpha`` ([C] or ``None``) and ``ignore_index`` as in :func:`_softmax_focal_loss`.
    """

    def __init__(
        self,
        alpha: Sequence[float] | torch.Tensor | None = None,
        gamma: float = 2.0,
        reduction: str = "mean",
        ignore_index: int | None = None,
    ):
        super().__init__()
        _check_reduction(reduction)
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = gamma
        self.reduction = reduction
        self.ignore_index = ignore_index
        # A buffer, so that .to(device) moves it along with the model.
        alpha_t = None if alpha is None else torch.as_tensor(alpha, dtype=torch.float32)
        if alpha_t is not None and alpha_t.ndim != 1:
            raise ValueError(f"alpha must be None or one weight per class [C], got {alpha!r}")
        self.register_buffer("alpha", alpha_t)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return _softmax_focal_loss(
            logits, targets, self.alpha, self.gamma, self.ignore_index, self.reduction
        )


def giou_loss(pred: torch.Tensor, target: torch.Tensor, reduction: str = "none") -> torch.Tensor:
    """``1 - GIoU`` of matched pairs ``pred [N, 4]``, ``target [N, 4]`` (xyxy) -> ``[N]``.

    In [0, 2]: 0 for a perfect box, and unlike ``1 - IoU`` it still decreases as two disjoint boxes
    move closer, so a box that misses its object gets a useful gradient. Equals
    ``torchvision.ops.generalized_box_iou_loss``, including its details: ``eps = 1e-7`` in the
    divisions (two zero-area boxes give 1, not NaN), float32 for half-precision boxes, and a
    ``"mean"`` of no pairs that is 0 with a gradient.
    """
    _check_reduction(reduction)
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must match")
    # The check only reads the values: gradients still flow through pred.
    check_boxes(pred.detach(), "pred")
    check_boxes(target, "target")
    return _reduce_counted(1 - matched_giou(pred, target, eps=1e-7), reduction)
