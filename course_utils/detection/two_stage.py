"""Lesson 03: Two-stage detection (Faster R-CNN, 2015, with a feature pyramid): propose, then
classify.

Stage 1, the **region proposal network** (RPN), scores every anchor as object / not object and
refines it into a *proposal*: a few hundred class-agnostic boxes per image. Stage 2 cuts a fixed
``7 x 7`` feature window out of the pyramid for every proposal (**RoI Align**, on the level that
suits the proposal's size) and a small **box head** classifies it and refines its box once more,
one box per class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torchvision.ops import roi_align

from ..checks import check_num_classes
from .boxes import box_area, check_boxes, clip_boxes, decode_boxes, nms
from .one_stage import anchors_per_position, flatten_levels, multilevel_anchors, select_detections

__all__ = [
    "RPNHead",
    "RegionProposalNetwork",
    "select_proposals",
    "assign_fpn_levels",
    "roi_align_fpn",
    "TwoStageBoxHead",
    "box_head_detections",
]

#: Faster R-CNN's box head scales its regression targets by these (about unit variance).
BOX_HEAD_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


class RPNHead(nn.Module):
    """Shared over levels: ``features`` (list, ``channels`` wide) ->
    ``(objectness [B, N] logits, deltas [B, N, 4])``, ``N = sum(H * W * A)`` in anchor order."""

    def __init__(self, channels: int, num_anchors: int):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU())
        self.objectness = nn.Conv2d(channels, num_anchors, 1)
        self.deltas = nn.Conv2d(channels, num_anchors * 4, 1)

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = [self.conv(x) for x in features]
        objectness = flatten_levels([self.objectness(h) for h in hidden], 1).squeeze(2)
        return objectness, flatten_levels([self.deltas(h) for h in hidden], 4)


def select_proposals(
    anchors: torch.Tensor,
    objectness: torch.Tensor,
    deltas: torch.Tensor,
    image_size: tuple[int, int],
    pre_nms_top_k: int = 1000,
    post_nms_top_k: int = 300,
    nms_threshold: float = 0.7,
    min_size: float = 1e-3,
) -> list[torch.Tensor]:
    """The RPN's proposals: ``anchors [N, 4]``, ``objectness [B, N]``, ``deltas [B, N, 4]`` ->
    one ``[P, 4]`` tensor per image (``P <= post_nms_top_k``), best first.

    Per image: keep the ``pre_nms_top_k`` highest objectness (NMS on all ~10^4 anchors would be
    slow), decode those anchors, clip them to the image, drop boxes thinner than ``min_size``
    pixels, NMS (overlapping proposals are redundant), keep the ``post_nms_top_k`` best.
    No gradient flows through the proposals: stage 2 treats them as fixed boxes.
    """
    results = []
    for scores, image_deltas in zip(objectness.detach(), deltas.detach()):  # per image
        top = scores.topk(min(pre_nms_top_k, len(scores))).indices
        boxes = clip_boxes(decode_boxes(anchors[top], image_deltas[top]), image_size)
        wide = ((boxes[:, 2:] - boxes[:, :2]) >= min_size).all(dim=1)
        boxes, top = boxes[wide], top[wide]
        keep = nms(boxes, scores[top], nms_threshold)[:post_nms_top_k]
        results.append(boxes[keep])
    return results


class RegionProposalNetwork(nn.Module):
    """Anchors + :class:`RPNHead` + :func:`select_proposals`.

    ``features`` (list fine to coarse), ``image_size`` -> ``{"proposals": [[P_i, 4]] per image,
    "objectness": [B, N], "deltas": [B, N, 4], "anchors": [N, 4]}`` (the last three for the
    loss). ``scales[l]`` are the anchor sizes of level ``l``.
    """

    def __init__(
        self,
        channels: int,
        scales: Sequence[Sequence[float]] = ((32.0,), (64.0,), (128.0,)),
        ratios: Sequence[float] = (0.5, 1.0, 2.0),
        **proposal_kwargs,
    ):
        super().__init__()
        self.scales, self.ratios = scales, ratios
        self.head = RPNHead(channels, anchors_per_position(scales, ratios))
        self.proposal_kwargs = proposal_kwargs  # see select_proposals

    def forward(self, features: Sequence[torch.Tensor], image_size: tuple[int, int]) -> dict:
        sizes = [tuple(x.shape[-2:]) for x in features]
        anchors = multilevel_anchors(
            sizes, image_size, self.scales, self.ratios, features[0].device
        )
        objectness, deltas = self.head(features)
        proposals = select_proposals(
            anchors, objectness, deltas, image_size, **self.proposal_kwargs
        )
        return {
            "proposals": proposals,
            "objectness": objectness,
            "deltas": deltas,
            "anchors": anchors,
        }


def assign_fpn_levels(
    boxes: torch.Tensor,
    min_level: int,
    max_level: int,
    canonical_size: float = 224.0,
    canonical_level: int = 4,
) -> torch.Tensor:
    """The pyramid level of each RoI: ``boxes [R, 4]`` -> int64 ``[R]`` in ``[min_level,
    max_level]`` (level ``k`` has stride ``2 ** k``).

    ``k = floor(canonical_level + log2(sqrt(w * h) / canonical_size))`` (FPN paper, eq. 1): a
    224-pixel RoI (an ImageNet-sized object) goes to level 4; one twice as large goes one level
    coarser, so every RoI covers about the same number of cells of its level. Same as
    torchvision's ``LevelMapper`` (with its ``1e-6`` that keeps exact powers of two from
    rounding down).
    """
    check_boxes(boxes, "boxes")
    size = box_area(boxes).sqrt()
    k = torch.floor(canonical_level + torch.log2(size / canonical_size) + 1e-6)
    return k.clamp(min_level, max_level).to(torch.int64)


def roi_align_fpn(
    features: Sequence[torch.Tensor],
    strides: Sequence[int],
    boxes: Sequence[torch.Tensor],
    output_size: int = 7,
    sampling_ratio: int = 2,
    canonical_size: float = 224.0,
    canonical_level: int = 4,
) -> torch.Tensor:
    """RoI Align on a feature pyramid: ``boxes`` (one ``[R_i, 4]`` per image, pixels) ->
    ``[sum(R_i), C, output_size, output_size]``, row ``r`` for RoI ``r`` (images in order).

    Each RoI is pooled from the level :func:`assign_fpn_levels` picks. The pooling is done level
    by level, and every result is written back *at its RoI's row*: concatenating the per-level
    results instead would silently reorder the RoIs relative to their proposals and targets.
    Equals torchvision's ``MultiScaleRoIAlign`` with the same settings.
    """
    if len(features) != len(strides):
        raise ValueError(f"got {len(features)} feature maps for {len(strides)} strides")
    levels = [round(math.log2(s)) for s in strides]
    if any(2**k != s for k, s in zip(levels, strides)):
        raise ValueError(f"strides must be powers of two, got {strides}")
    # roi_align's format: [R, 5] rows (image index, x1, y1, x2, y2)
    image_index = torch.cat(
        [torch.full((len(b),), i, device=b.device) for i, b in enumerate(boxes)]
    )
    all_boxes = torch.cat(list(boxes))
    rois = torch.cat((image_index[:, None].to(all_boxes), all_boxes), dim=1)
    roi_level = assign_fpn_levels(
        all_boxes, min(levels), max(levels), canonical_size, canonical_level
    )
    out = features[0].new_zeros(len(rois), features[0].shape[1], output_size, output_size)
    for x, stride, level in zip(features, strides, levels):
        rows = torch.nonzero(roi_level == level).squeeze(1)
        out[rows] = roi_align(x, rois[rows], output_size, 1 / stride, sampling_ratio)
    return out


class TwoStageBoxHead(nn.Module):
    """Faster R-CNN's second stage: pooled RoIs ``[R, C, s, s]`` -> ``(class_logits [R,
    num_classes + 1], deltas [R, num_classes, 4])``.

    Column 0 of the logits is the background ("this proposal is not an object"); object classes
    are ``1..num_classes``. The deltas are *per class* (``deltas[:, c - 1]`` refines the box for
    class ``c``): a box around a person and one around its bicycle need different corrections.
    """

    def __init__(self, in_channels: int, roi_size: int, num_classes: int, hidden: int = 256):
        super().__init__()
        check_num_classes(num_classes, what=type(self).__name__)
        self.num_classes = num_classes
        self.mlp = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_channels * roi_size * roi_size, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
        )  # fmt: skip
        self.classify = nn.Linear(hidden, num_classes + 1)
        self.regress = nn.Linear(hidden, num_classes * 4)

    def forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.mlp(pooled)
        return self.classify(hidden), self.regress(hidden).reshape(-1, self.num_classes, 4)


def box_head_detections(
    class_logits: torch.Tensor,
    deltas: torch.Tensor,
    proposals: Sequence[torch.Tensor],
    image_size: tuple[int, int],
    **select_kwargs,
) -> list[dict[str, torch.Tensor]]:
    """:class:`TwoStageBoxHead` outputs for the RoIs of ``proposals`` (one ``[R_i, 4]`` per image)
    -> detections per image, labels in ``1..num_classes`` (0 is the background).

    Every proposal gets one decoded box per class (``weights`` (10, 10, 5, 5), as in
    torchvision), scored by the softmax over classes; then :func:`select_detections`.
    """
    probs = class_logits.softmax(-1)[:, 1:]  # drop the background column
    sizes = [len(p) for p in proposals]
    results = []
    for image_probs, image_deltas, image_proposals in zip(
        probs.split(sizes), deltas.split(sizes), proposals
    ):
        anchors = image_proposals[:, None, :].expand(-1, deltas.shape[1], -1)
        boxes = decode_boxes(anchors, image_deltas, BOX_HEAD_WEIGHTS)  # [R_i, K, 4]
        (detections,) = select_detections(
            boxes[None], image_probs[None], image_size, **select_kwargs
        )
        detections["labels"] = detections["labels"] + 1
        results.append(detections)
    return results
