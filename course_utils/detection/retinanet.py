"""Lesson 03: RetinaNet (Lin et al., 2017, "Focal Loss for Dense Object Detection") for the digit
scenes: a one-stage, anchor-based detector.

Every position of every pyramid level carries ``A`` anchors; for each the head predicts ``K``
class probabilities (independent sigmoids) and the deltas that turn the anchor into a box. Training
decides what each anchor should predict by **matching** it to the ground truth:

* IoU with its best gt box ``>= 0.5``: a *foreground* anchor, it must predict that box's class and
  regress onto it;
* ``< 0.4``: *background*, all ``K`` sigmoids should say no;
* in between: *ignored* -- neither clearly an object nor clearly not, so it takes no part;
* and every gt box gets its best anchor(s) even below 0.5, so that no object goes unlearned.

Of ~4,000 anchors per scene a few dozen are foreground: the focal loss keeps the easy background
from drowning them, and both losses are divided by the number of foreground anchors.

The anchors (:data:`DIGIT_ANCHOR_SCALES`, :data:`DIGIT_ANCHOR_RATIOS`) are sized from the data: the
digits of the scenes are 10-30 pixels (square root of the area) and always taller than wide (height
/ width 1.1-3.4, a thin "1" the most), so only the stride-4 and stride-8 levels are used, with
upright anchors. :func:`match_targets` is shared with
:mod:`~course_utils.detection.faster_rcnn`, whose RPN and box head match the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import PyramidBackbone
from .batch import check_targets, image_batch
from .boxes import encode_boxes, match_boxes
from .losses import sigmoid_focal_loss
from .one_stage import (
    RetinaNetHead,
    anchor_head_detections,
    anchors_per_position,
    multilevel_anchors,
)

__all__ = [
    "DIGIT_ANCHOR_SCALES",
    "DIGIT_ANCHOR_RATIOS",
    "match_targets",
    "RetinaNet",
]

#: Anchor sizes (square root of the area, pixels) of the two levels used, strides 4 and 8:
#: RetinaNet's three scales per octave, ``11 * 2 ** (k / 3)`` for ``k = 0..5``, from the smallest
#: digits (10-12 px) to the largest (30 px). Over 800 training scenes every digit has an anchor
#: with IoU >= 0.5 (the worst 0.54, the median 0.74): see ``tests/test_detector_families.py``.
#: A stride-16 level would add no anchor that is any digit's best: its centres are 16 px apart,
#: too far for a 20-pixel-wide digit to reach IoU 0.5 with an anchor that is not centred on it.
DIGIT_ANCHOR_SCALES = tuple(
    tuple(11.0 * 2 ** (level + k / 3) for k in range(3)) for level in range(2)
)
#: Anchor shapes, ``height / width``: the digits' ratios are 1.24-2.15 (2nd-98th percentile,
#: median 1.46), so both anchors are upright; (0.5, 1, 2), the default, would waste two of three.
DIGIT_ANCHOR_RATIOS = (1.25, 2.0)


def match_targets(
    anchors: torch.Tensor,
    boxes: torch.Tensor,
    labels: torch.Tensor,
    high: float,
    low: float,
    allow_low_quality: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What each anchor of one image must predict: ``anchors [N, 4]``, gt ``boxes [G, 4]`` and
    ``labels [G]`` -> ``(matches [N], matched_labels [N], matched_boxes [N, 4])``.

    ``matches`` as :func:`~.boxes.match_boxes` (``>= 0`` the gt index, ``-1`` background, ``-2``
    ignored); ``matched_labels`` the gt label of foreground anchors and 0 (background) elsewhere;
    ``matched_boxes`` the gt box of foreground anchors (elsewhere some gt box, or zeros in a
    scene without objects: meaningless, so read it only where ``matches >= 0``).
    """
    matches = match_boxes(anchors, boxes, high, low, allow_low_quality)
    if len(boxes) == 0:  # nothing to gather from: everything is background
        return matches, torch.zeros_like(matches), anchors.new_zeros(anchors.shape)
    index = matches.clamp(min=0)  # a valid index everywhere; the mask below drops the rest
    matched_labels = torch.where(matches >= 0, labels[index].long(), 0)
    return matches, matched_labels, boxes[index].to(anchors.dtype)


def _retinanet_loss(
    class_logits: torch.Tensor,
    deltas: torch.Tensor,
    anchors: torch.Tensor,
    targets: list[dict[str, torch.Tensor]],
    high: float = 0.5,
    low: float = 0.4,
    alpha: float = 0.25,
    gamma: float = 2.0,
) -> dict[str, torch.Tensor]:
    """RetinaNet's two losses for a batch: ``{"classification", "box_regression"}``, scalars.

    ``class_logits [B, N, K]`` and ``deltas [B, N, 4]`` (:class:`~.one_stage.RetinaNetHead`),
    ``anchors [N, 4]``, one ``{"boxes", "labels"}`` target per image (labels ``1..K``).

    Per image: match the anchors (``high`` / ``low``, low-quality matches allowed, see
    :func:`match_targets`); the sigmoid focal loss summed over every anchor that is not ignored
    and every class (a foreground anchor's one-hot target says yes to its class only, a background
    anchor's says no to all), and the L1 loss between the foreground anchors' deltas and their
    encoded gt boxes, each divided by the image's number of foreground anchors (at least 1); then
    the mean over images. That is torchvision's RetinaNet, loss for loss.
    """
    if class_logits.ndim != 3 or deltas.shape != (*class_logits.shape[:2], 4):
        raise ValueError(
            f"expected class_logits [B, N, K] and deltas [B, N, 4], got "
            f"{tuple(class_logits.shape)} and {tuple(deltas.shape)}"
        )
    batch, num_anchors, num_classes = class_logits.shape
    if anchors.shape != (num_anchors, 4):
        raise ValueError(f"expected anchors [{num_anchors}, 4], got {tuple(anchors.shape)}")
    check_targets(targets, batch, num_classes)
    matched = [match_targets(anchors, t["boxes"], t["labels"], high, low) for t in targets]
    matches, labels, boxes = (torch.stack(parts) for parts in zip(*matched))  # [B, N], [B, N, 4]
    foreground = matches >= 0
    # One yes/no per class; label 0 (background) maps to the dropped column: all "no".
    one_hot = F.one_hot(labels, num_classes + 1)[..., 1:].to(class_logits.dtype)  # [B, N, K]
    focal = sigmoid_focal_loss(class_logits, one_hot, alpha, gamma).sum(-1)  # [B, N]
    # Each image's sums / its own number of foreground anchors, averaged over the images: every
    # image weighs the same, however many objects it holds.
    weight = 1 / (foreground.sum(1).clamp(min=1) * batch)  # [B]
    weight = weight[:, None].expand(batch, num_anchors)  # [B, N]
    classification = (focal * weight)[matches != -2].sum()  # ignored anchors count nowhere
    target_deltas = encode_boxes(anchors.expand(batch, -1, -1)[foreground], boxes[foreground])
    l1 = F.l1_loss(deltas[foreground], target_deltas, reduction="none").sum(-1)  # [F]
    return {"classification": classification, "box_regression": (l1 * weight[foreground]).sum()}


class RetinaNet(nn.Module):
    """:class:`~.backbone.PyramidBackbone` (levels at strides 4 and 8) + :class:`RetinaNetHead`,
    with the interface of :class:`~.centernet.CenterNet` and torchvision's detectors:

    * ``model(images, targets)`` in ``train()`` mode -> ``{"classification", "box_regression"}``
      (:func:`_retinanet_loss`);
    * ``model(images)`` in ``eval()`` mode -> one ``{"boxes", "scores", "labels"}`` dict per image,
      labels ``1..num_classes`` (:func:`~.one_stage.anchor_head_detections` with the attributes
      ``score_threshold``, ``nms_threshold``, ``max_detections`` and ``pre_nms_top_k``).

    ``images``: ``[B, 3, H, W]`` in [0, 1] or a list of ``[3, H, W]``, ``H`` and ``W`` multiples of
    16. ``scales[l]`` are the anchor sizes of level ``l`` (one level per entry, at most 3), the same
    number on every level since the head is shared; ``num_convs`` is the depth of the head's two
    towers: 4 in the paper, 2 here, where the towers are most of the cost of a step (with 4 a
    training step takes about 2.1x as long as CenterNet's, with 2 about 1.7x) and 2 learned the
    digit scenes as fast.
    """

    def __init__(
        self,
        num_classes: int = 10,
        channels: int = 64,
        widths: Sequence[int] = (32, 48, 96, 160),
        scales: Sequence[Sequence[float]] = DIGIT_ANCHOR_SCALES,
        ratios: Sequence[float] = DIGIT_ANCHOR_RATIOS,
        num_convs: int = 2,
    ):
        super().__init__()
        self.backbone = PyramidBackbone(channels, widths, num_outputs=len(scales))
        self.head = RetinaNetHead(
            channels, anchors_per_position(scales, ratios), num_classes, num_convs
        )
        self.num_classes = num_classes
        self.scales, self.ratios = scales, ratios
        self.score_threshold = 0.05  # low: keeps the weak detections that mAP needs to see
        self.nms_threshold = 0.5
        self.max_detections = 100
        self.pre_nms_top_k = 1000

    def heads(self, images) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(class_logits [B, N, K], deltas [B, N, 4], anchors [N, 4])`` for ``images``."""
        images = image_batch(images, "RetinaNet")
        features = self.backbone(images)
        anchors = multilevel_anchors(
            [tuple(f.shape[-2:]) for f in features],
            tuple(images.shape[-2:]),
            self.scales,
            self.ratios,
            images.device,
        )
        return (*self.head(features), anchors)

    def forward(self, images, targets: list[dict] | None = None):
        images = image_batch(images, "RetinaNet")
        if self.training:  # check before the forward pass: a bad target fails fast
            check_targets(targets, len(images), self.num_classes, what="RetinaNet")
        class_logits, deltas, anchors = self.heads(images)
        if self.training:
            return _retinanet_loss(class_logits, deltas, anchors, targets)
        return self.decode(class_logits, deltas, anchors, tuple(images.shape[-2:]))

    @torch.no_grad()
    def decode(self, class_logits, deltas, anchors, image_size) -> list[dict[str, torch.Tensor]]:
        """The head's outputs -> detections per image, with this model's settings."""
        detections = anchor_head_detections(
            class_logits,
            deltas,
            anchors,
            image_size,
            score_threshold=self.score_threshold,
            nms_threshold=self.nms_threshold,
            max_detections=self.max_detections,
            pre_nms_top_k=self.pre_nms_top_k,
        )
        for detection in detections:  # the head's column c is class c + 1 (0 is the background)
            detection["labels"] = detection["labels"] + 1
        return detections
