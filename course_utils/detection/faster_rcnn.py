"""Lesson 03: Faster R-CNN (Ren et al., 2015) with a feature pyramid, for the digit scenes: a
two-stage detector, trained end to end.

1. The **RPN** scores every anchor as object / not object and refines it. Its targets: anchors
   with IoU ``>= 0.7`` with a gt box are objects, ``< 0.3`` background (plus each gt box's best
   anchor, so that no object is left without one). Of ~4,000 anchors per scene a few dozen are
   objects, so the loss does not look at them all: it **samples** 256 per image, at most half of
   them objects, and scores them with a binary cross-entropy.
2. Its best boxes after NMS, the **proposals**, are cut out of the pyramid (RoI Align, ``7 x 7``)
   and the **box head** classifies each into ``num_classes + 1`` classes (0: "not an object") and
   refines its box once more, per class. In training the gt boxes are added to the proposals (an
   untrained RPN proposes nothing useful: without them the box head would see no object for the
   first hundreds of steps), matched at 0.5 (no in-between), and 64 RoIs per image are sampled
   (Fast R-CNN's number; torchvision's 512 are for images with dozens of objects, and 128 made a
   step here 1.7x slower), at most a quarter of them objects.

The sampling draws from a :class:`torch.Generator` the model owns (``seed``), never from the
global random state: training is the same for the same seed, and it does not change the random
numbers of any other code. The anchors and the target matching are those of
:mod:`~course_utils.detection.retinanet`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import PyramidBackbone
from .batch import check_targets, image_batch
from .boxes import encode_boxes
from .one_stage import anchors_per_position, multilevel_anchors
from .retinanet import DIGIT_ANCHOR_RATIOS, DIGIT_ANCHOR_SCALES, match_targets
from .two_stage import (
    BOX_HEAD_WEIGHTS,
    RPNHead,
    TwoStageBoxHead,
    box_head_detections,
    roi_align_fpn,
    select_proposals,
)

__all__ = ["FasterRCNN"]

#: torchvision's smooth-L1 ``beta`` for both stages: L1 beyond 1/9, quadratic below.
SMOOTH_L1_BETA = 1 / 9


def _sample_balanced(
    matches: torch.Tensor,
    num_samples: int,
    positive_fraction: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random subset of one image's anchors (or RoIs) for the loss: ``matches [N]`` (as
    :func:`~.boxes.match_boxes`: ``>= 0`` object, ``-1`` background, ``-2`` ignored) ->
    ``(positive [N], negative [N])`` bool masks.

    At most ``num_samples * positive_fraction`` objects, the rest background, ``num_samples`` in
    all when there are enough of both (a scene without objects gives only background). Draws a
    permutation of the objects, then one of the background, with ``torch.randperm`` from
    ``generator`` (the global generator if ``None``): the very draws of torchvision's
    ``BalancedPositiveNegativeSampler``, so the same seed picks the same anchors.
    """
    if matches.ndim != 1 or matches.is_floating_point():
        raise ValueError(
            f"expected integer matches [N], got {matches.dtype} {tuple(matches.shape)}"
        )
    if num_samples < 1 or not 0 <= positive_fraction <= 1:
        raise ValueError(
            f"expected num_samples >= 1 and positive_fraction in [0, 1], got {num_samples} and "
            f"{positive_fraction}"
        )
    positive = torch.nonzero(matches >= 0).squeeze(1)
    negative = torch.nonzero(matches == -1).squeeze(1)
    num_positive = min(len(positive), int(num_samples * positive_fraction))
    num_negative = min(len(negative), num_samples - num_positive)
    masks = []
    for candidates, n in ((positive, num_positive), (negative, num_negative)):
        # drawn on the generator's device (the CPU) whatever the matches' device, then moved
        order = torch.randperm(len(candidates), generator=generator)[:n]
        mask = torch.zeros_like(matches, dtype=torch.bool)
        mask[candidates[order.to(matches.device)]] = True
        masks.append(mask)
    return masks[0], masks[1]


def _rpn_loss(
    objectness: torch.Tensor,
    deltas: torch.Tensor,
    anchors: torch.Tensor,
    targets: list[dict[str, torch.Tensor]],
    num_samples: int = 256,
    positive_fraction: float = 0.5,
    high: float = 0.7,
    low: float = 0.3,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """The RPN's losses for a batch: ``{"objectness", "rpn_box"}``, scalars.

    ``objectness [B, N]`` logits and ``deltas [B, N, 4]`` (:class:`~.two_stage.RPNHead`),
    ``anchors [N, 4]``, one target per image (only the boxes count: the RPN knows no classes).
    Per image: match the anchors (``high`` / ``low``, low-quality matches allowed) and sample
    ``num_samples`` (:func:`_sample_balanced`); then over the whole batch, a binary cross-entropy
    on the sampled anchors and a smooth-L1 loss (``beta = 1/9``) between the sampled *objects'*
    deltas and their encoded gt boxes, both divided by the number of sampled anchors. Equals
    torchvision's ``RegionProposalNetwork.compute_loss`` with the same samples.
    """
    if objectness.ndim != 2 or deltas.shape != (*objectness.shape, 4):
        raise ValueError(
            f"expected objectness [B, N] and deltas [B, N, 4], got {tuple(objectness.shape)} and "
            f"{tuple(deltas.shape)}"
        )
    if anchors.shape != (objectness.shape[1], 4):
        raise ValueError(f"expected anchors [{objectness.shape[1]}, 4], got {tuple(anchors.shape)}")
    check_targets(targets, len(objectness), num_classes=None)
    samples = []  # per image: (positive [N], negative [N], matched boxes [N, 4])
    for t in targets:
        matches, _, boxes = match_targets(anchors, t["boxes"], t["labels"], high, low)
        samples.append(
            (*_sample_balanced(matches, num_samples, positive_fraction, generator), boxes)
        )
    positive, negative, matched_boxes = (torch.stack(parts) for parts in zip(*samples))
    sampled = positive | negative  # [B, N]
    num_sampled = max(int(sampled.sum()), 1)
    objectness_loss = F.binary_cross_entropy_with_logits(
        objectness[sampled], positive[sampled].to(objectness.dtype), reduction="sum"
    )
    positive_anchors = anchors.expand(len(deltas), -1, -1)[positive]  # [P, 4]
    target_deltas = encode_boxes(positive_anchors, matched_boxes[positive])
    box_loss = F.smooth_l1_loss(
        deltas[positive], target_deltas, beta=SMOOTH_L1_BETA, reduction="sum"
    )
    return {"objectness": objectness_loss / num_sampled, "rpn_box": box_loss / num_sampled}


def _sample_rois(
    proposals: Sequence[torch.Tensor],
    targets: list[dict[str, torch.Tensor]],
    num_samples: int = 128,
    positive_fraction: float = 0.25,
    iou_threshold: float = 0.5,
    generator: torch.Generator | None = None,
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """The RoIs the box head trains on: ``proposals`` (one ``[P_i, 4]`` per image) -> ``(rois,
    labels, matched_boxes)``, lists of ``[R_i, 4]``, ``[R_i]`` (0 = background) and ``[R_i, 4]``.

    Per image: the proposals *and the gt boxes*, matched at ``iou_threshold`` (IoU ``>=`` it: the
    gt's class, below: background; no low-quality matches, no RoI ignored), then
    :func:`_sample_balanced`, kept in their original order. torchvision's
    ``RoIHeads.select_training_samples``, draw for draw.
    """
    check_targets(targets, len(proposals), num_classes=None)
    rois, labels, matched_boxes = [], [], []
    for image_proposals, t in zip(proposals, targets):
        candidates = torch.cat((image_proposals, t["boxes"].to(image_proposals.dtype)))
        matches, image_labels, boxes = match_targets(
            candidates, t["boxes"], t["labels"], iou_threshold, iou_threshold, False
        )
        positive, negative = _sample_balanced(matches, num_samples, positive_fraction, generator)
        keep = torch.nonzero(positive | negative).squeeze(1)
        rois.append(candidates[keep])
        labels.append(image_labels[keep])
        matched_boxes.append(boxes[keep])
    return rois, labels, matched_boxes


def _box_head_loss(
    class_logits: torch.Tensor,
    deltas: torch.Tensor,
    rois: torch.Tensor,
    labels: torch.Tensor,
    matched_boxes: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """The box head's losses: ``{"classification", "box_regression"}``, scalars.

    ``class_logits [R, K + 1]`` and ``deltas [R, K, 4]`` (:class:`~.two_stage.TwoStageBoxHead`)
    for ``rois [R, 4]`` whose ``labels [R]`` (0 = background) and ``matched_boxes [R, 4]`` come
    from :func:`_sample_rois`. Cross-entropy over the ``K + 1`` classes; smooth-L1 (``beta = 1/9``)
    between the deltas *of the true class* and the gt box encoded with
    :data:`~.two_stage.BOX_HEAD_WEIGHTS`, on object RoIs only; both divided by ``R``. Equals
    torchvision's ``fastrcnn_loss``.
    """
    num_rois, num_classes = len(labels), class_logits.shape[-1] - 1
    expected_deltas = (num_rois, num_classes, 4)
    if class_logits.shape != (num_rois, num_classes + 1) or deltas.shape != expected_deltas:
        raise ValueError(
            f"expected class_logits [R, K + 1] and deltas [R, K, 4] for R = {num_rois} labels, "
            f"got {tuple(class_logits.shape)} and {tuple(deltas.shape)}"
        )
    # sum / R, not a mean: a batch without RoIs (no proposals, no objects) gives 0, not NaN
    classification = F.cross_entropy(class_logits, labels, reduction="sum") / max(num_rois, 1)
    positive = torch.nonzero(labels > 0).squeeze(1)
    true_class_deltas = deltas[positive, labels[positive] - 1]  # [P, 4]: column c - 1 is class c
    target_deltas = encode_boxes(rois[positive], matched_boxes[positive], BOX_HEAD_WEIGHTS)
    box_loss = F.smooth_l1_loss(
        true_class_deltas, target_deltas, beta=SMOOTH_L1_BETA, reduction="sum"
    )
    return {"classification": classification, "box_regression": box_loss / max(num_rois, 1)}


class FasterRCNN(nn.Module):
    """:class:`~.backbone.PyramidBackbone` (strides 4 and 8) + :class:`~.two_stage.RPNHead` +
    RoI Align + :class:`~.two_stage.TwoStageBoxHead`, with the interface of
    :class:`~.centernet.CenterNet` and torchvision's detectors:

    * ``model(images, targets)`` in ``train()`` mode -> ``{"objectness", "rpn_box",
      "classification", "box_regression"}`` (:func:`_rpn_loss`, :func:`_sample_rois`,
      :func:`_box_head_loss`);
    * ``model(images)`` in ``eval()`` mode -> one ``{"boxes", "scores", "labels"}`` dict per image,
      labels ``1..num_classes`` (:func:`~.two_stage.box_head_detections` with the attributes
      ``score_threshold``, ``nms_threshold`` and ``max_detections``).

    ``images``: ``[B, 3, H, W]`` in [0, 1] or a list of ``[3, H, W]``, ``H`` and ``W`` multiples of
    16. ``pre_nms_top_k`` / ``post_nms_top_k`` are the RPN's proposals per image before and after
    its NMS, in ``"train"`` and ``"eval"`` mode (torchvision keeps 2,000 / 1,000 for ~7 objects in
    an 800-pixel image; a 96-pixel scene with at most 4 digits needs far fewer). Every RoI smaller
    than 112 px is pooled from the stride-4 level (FPN's rule with torchvision's defaults), so
    here all of them are.
    """

    def __init__(
        self,
        num_classes: int = 10,
        channels: int = 64,
        widths: Sequence[int] = (32, 48, 96, 160),
        scales: Sequence[Sequence[float]] = DIGIT_ANCHOR_SCALES,
        ratios: Sequence[float] = DIGIT_ANCHOR_RATIOS,
        roi_size: int = 7,
        hidden: int = 256,
        seed: int = 0,
    ):
        super().__init__()
        self.backbone = PyramidBackbone(channels, widths, num_outputs=len(scales))
        self.rpn = RPNHead(channels, anchors_per_position(scales, ratios))
        self.box_head = TwoStageBoxHead(channels, roi_size, num_classes, hidden)
        self.num_classes, self.roi_size = num_classes, roi_size
        self.scales, self.ratios = scales, ratios
        self.generator = torch.Generator().manual_seed(seed)  # the samplers' own random numbers
        self.pre_nms_top_k = {"train": 400, "eval": 300}
        self.post_nms_top_k = {"train": 200, "eval": 100}
        self.rpn_nms_threshold = 0.7
        self.rpn_samples, self.roi_samples = 256, 64
        # RoI Align's bilinear samples per bin side. torchvision's 2 suits bins of several cells;
        # a 10-30 px digit on the stride-4 level spans 2.5-7.5 cells, so a 7 x 7 bin is about a
        # cell and one sample per bin reads the same 4 cells: 2 cost 4x the samples, and RoI
        # Align's backward was the largest single cost of a training step on the CPU.
        self.sampling_ratio = 1
        self.score_threshold = 0.05  # low: keeps the weak detections that mAP needs to see
        self.nms_threshold = 0.5
        self.max_detections = 100

    def forward(self, images, targets: list[dict] | None = None):
        images = image_batch(images, "FasterRCNN")
        if self.training:  # check before the forward pass: a bad target fails fast
            check_targets(targets, len(images), self.num_classes, what="FasterRCNN")
        image_size = tuple(images.shape[-2:])
        features = self.backbone(images)
        sizes = [tuple(f.shape[-2:]) for f in features]
        anchors = multilevel_anchors(sizes, image_size, self.scales, self.ratios, images.device)
        objectness, rpn_deltas = self.rpn(features)
        mode = "train" if self.training else "eval"
        proposals = select_proposals(
            anchors,
            objectness,
            rpn_deltas,
            image_size,
            self.pre_nms_top_k[mode],
            self.post_nms_top_k[mode],
            self.rpn_nms_threshold,
        )
        if not self.training:
            return self.detect_proposals(features, proposals, image_size)
        losses = _rpn_loss(
            objectness, rpn_deltas, anchors, targets, self.rpn_samples, generator=self.generator
        )
        rois, labels, matched_boxes = _sample_rois(
            proposals, targets, self.roi_samples, generator=self.generator
        )
        class_logits, deltas = self.box_head(
            roi_align_fpn(features, self.backbone.strides, rois, self.roi_size, self.sampling_ratio)
        )
        return losses | _box_head_loss(
            class_logits, deltas, torch.cat(rois), torch.cat(labels), torch.cat(matched_boxes)
        )

    @torch.no_grad()
    def detect_proposals(self, features, proposals, image_size) -> list[dict[str, torch.Tensor]]:
        """Stage 2 at inference: the box head on ``proposals`` (one ``[P_i, 4]`` per image) ->
        detections per image, with this model's settings."""
        class_logits, deltas = self.box_head(
            roi_align_fpn(
                features, self.backbone.strides, proposals, self.roi_size, self.sampling_ratio
            )
        )
        return box_head_detections(
            class_logits,
            deltas,
            proposals,
            image_size,
            score_threshold=self.score_threshold,
            nms_threshold=self.nms_threshold,
            max_detections=self.max_detections,
        )
