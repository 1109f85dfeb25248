"""Lesson 03: One-stage detection heads: YOLOv1, SSD, RetinaNet and FCOS, and what turns their
outputs into detections.

A one-stage detector predicts, at every position of one or more feature maps, class scores and a
box, in one pass. The heads differ in *what* a position predicts:

- **YOLOv1** (2016): an ``S x S`` grid, ``B`` boxes per cell (centre in the cell, size relative to
  the image) and one class distribution per cell.
- **SSD** (2016) and **RetinaNet** (2017): ``A`` anchors per position of every level, each with
  class scores and the deltas that turn the anchor into a box (:func:`~.boxes.decode_boxes`).
  SSD uses a softmax with an explicit background class; RetinaNet independent sigmoids trained
  with the focal loss, and towers of convolutions shared by all levels.
- **FCOS** (2019): no anchors: each position predicts its distances to the four sides of the box
  it lies in, plus a "centerness" that down-weights positions near a box's border.

The bookkeeping that the heads share: a level's map ``[B, A * K, H, W]`` becomes ``[B, H * W * A,
K]`` (:func:`flatten_levels`), in the order of :func:`~.boxes.generate_anchors` (row, column,
anchor), and levels are concatenated fine to coarse, like :func:`multilevel_anchors`. So output
row ``n`` always belongs to anchor ``n``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ..checks import check_num_classes
from .boxes import batched_nms, clip_boxes, decode_boxes, generate_anchors

__all__ = [
    "flatten_levels",
    "multilevel_anchors",
    "anchors_per_position",
    "select_detections",
    "YOLOv1Head",
    "yolo_v1_decode",
    "SSDHead",
    "RetinaNetHead",
    "anchor_head_detections",
    "FCOSHead",
    "fcos_points",
    "fcos_decode",
]


def flatten_levels(maps: Sequence[torch.Tensor], k: int) -> torch.Tensor:
    """Per-level maps ``[B, A * K, H, W]`` -> ``[B, sum(H * W * A), K]``.

    The channels of a position hold anchor 0's ``K`` numbers, then anchor 1's, ...: moving them
    last (``permute``) and splitting them into ``(A, K)`` gives rows in (row, column, anchor)
    order, the order of :func:`~.boxes.generate_anchors`.
    """
    rows = []
    for m in maps:
        if m.ndim != 4 or m.shape[1] % k:
            raise ValueError(f"expected a map [B, A * {k}, H, W], got {tuple(m.shape)}")
        rows.append(m.permute(0, 2, 3, 1).reshape(m.shape[0], -1, k))
    return torch.cat(rows, dim=1)


def multilevel_anchors(
    feature_sizes: Sequence[tuple[int, int]],
    image_size: tuple[int, int],
    scales: Sequence[Sequence[float]],
    ratios: Sequence[float] = (0.5, 1.0, 2.0),
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The anchors of every level, concatenated fine to coarse: ``[sum(H * W * A), 4]``.

    ``scales[l]`` are the anchor sizes of level ``l`` (small boxes on fine maps, large ones on
    coarse maps); each level has ``A = len(scales[l]) * len(ratios)`` anchors per position.
    """
    if len(scales) != len(feature_sizes):
        raise ValueError(f"got {len(scales)} scale sets for {len(feature_sizes)} feature maps")
    return torch.cat(
        [
            generate_anchors(size, image_size, s, ratios, device=device)
            for size, s in zip(feature_sizes, scales)
        ]
    )


def anchors_per_position(scales: Sequence[Sequence[float]], ratios: Sequence[float]) -> int:
    """``A``, the anchors at each position of every level (``len(scales[l]) * len(ratios)``); a
    head shared by all levels needs the same ``A`` on each of them, else a clear error."""
    counts = {len(s) * len(ratios) for s in scales}
    if len(counts) != 1:
        raise ValueError(
            f"a head shared by all levels needs the same number of anchors on every level, got "
            f"scales {scales} with {len(ratios)} ratios"
        )
    return counts.pop()


def select_detections(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    image_size: tuple[int, int],
    score_threshold: float = 0.05,
    nms_threshold: float = 0.5,
    max_detections: int = 100,
    pre_nms_top_k: int = 1000,
) -> list[dict[str, torch.Tensor]]:
    """From dense predictions to a few detections per image.

    ``boxes [B, N, 4]`` xyxy pixels (or ``[B, N, K, 4]``, one box per class, as a two-stage box
    head predicts), ``scores [B, N, K]`` probabilities of ``K`` object classes -> one dict per
    image ``{"boxes" [D, 4], "scores" [D], "labels" [D]}`` (torchvision's format, what
    :func:`~.metrics.mean_average_precision` reads). Every (box, class) pair is a candidate: drop
    those scoring ``<= score_threshold``, keep the ``pre_nms_top_k`` best (NMS costs grow with the
    square of its input), NMS within each class, keep ``max_detections``.
    """
    if scores.ndim != 3 or boxes.shape[:2] != scores.shape[:2] or boxes.shape[-1] != 4:
        raise ValueError(
            f"expected boxes [B, N, 4] or [B, N, K, 4] and scores [B, N, K], got "
            f"{tuple(boxes.shape)} and {tuple(scores.shape)}"
        )
    num_classes = scores.shape[2]
    # One box per candidate (box n, class c) = row n * K + c, whether boxes are per class or not.
    if boxes.ndim == 3:
        boxes = boxes[:, :, None, :].expand(-1, -1, num_classes, -1)
    boxes = clip_boxes(boxes.reshape(len(boxes), -1, 4), image_size)
    results = []
    for image_boxes, image_scores in zip(boxes, scores.reshape(len(scores), -1)):  # per image
        candidates = torch.nonzero(image_scores > score_threshold).squeeze(1)
        best = image_scores[candidates].topk(min(pre_nms_top_k, len(candidates))).indices
        candidates = candidates[best]
        labels = candidates % num_classes
        keep = batched_nms(image_boxes[candidates], image_scores[candidates], labels, nms_threshold)
        keep = keep[:max_detections]
        results.append(
            {
                "boxes": image_boxes[candidates[keep]],
                "scores": image_scores[candidates[keep]],
                "labels": labels[keep],
            }
        )
    return results


# --------------------------------------------------------------------------------------------
# YOLOv1
# --------------------------------------------------------------------------------------------


class YOLOv1Head(nn.Module):
    """``features [N, C_in, h, w]`` -> ``[N, S, S, B * 5 + C]`` raw outputs (logits).

    Each of the ``S x S`` cells predicts ``B`` boxes ``(x, y, w, h, confidence)`` and one set of
    ``C`` class scores: the layout of the last dimension is ``[box 0 (5), ..., box B-1 (5),
    classes (C)]``. The features are pooled to ``S x S`` first, so any input size works.
    """

    def __init__(
        self, in_channels: int, grid_size: int = 7, boxes_per_cell: int = 2, num_classes: int = 20
    ):
        super().__init__()
        check_num_classes(num_classes, what=type(self).__name__)
        self.grid_size = grid_size
        self.boxes_per_cell = boxes_per_cell
        self.num_classes = num_classes
        out = boxes_per_cell * 5 + num_classes
        self.layers = nn.Sequential(
            nn.AdaptiveAvgPool2d(grid_size),
            nn.Conv2d(in_channels, in_channels, 3, padding=1),
            nn.LeakyReLU(0.1),  # YOLO's activation
            nn.Conv2d(in_channels, out, 1),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features).permute(0, 2, 3, 1)  # channels last: [N, S, S, B*5+C]


def yolo_v1_decode(
    outputs: torch.Tensor,
    image_size: tuple[int, int],
    boxes_per_cell: int = 2,
    score_threshold: float = 0.2,
    nms_threshold: float = 0.5,
    max_detections: int = 100,
) -> list[dict[str, torch.Tensor]]:
    """YOLOv1 outputs ``[N, S, S, B * 5 + C]`` -> detections per image (see
    :func:`select_detections`), every cell and box at once (no Python loop over the grid).

    This course's convention for the raw outputs: ``sigmoid(x), sigmoid(y)`` place the centre
    inside its cell, ``sigmoid(w), sigmoid(h)`` are the size as a fraction of the image, and the
    class-specific score is ``sigmoid(confidence) * softmax(classes)``, as in the paper.
    """
    n, s, s2, depth = outputs.shape
    num_classes = depth - 5 * boxes_per_cell
    if s != s2 or num_classes < 1:
        raise ValueError(
            f"expected outputs [N, S, S, {boxes_per_cell} * 5 + C], got {tuple(outputs.shape)}"
        )
    height, width = image_size
    box = outputs[..., : 5 * boxes_per_cell].reshape(n, s, s, boxes_per_cell, 5).sigmoid()
    class_p = outputs[..., 5 * boxes_per_cell :].softmax(-1)  # [N, S, S, C]
    # The column j and row i of every cell, broadcast against [N, S, S, B].
    cells = torch.arange(s, device=outputs.device)
    i, j = torch.meshgrid(cells, cells, indexing="ij")
    cx = (j[..., None] + box[..., 0]) / s * width
    cy = (i[..., None] + box[..., 1]) / s * height
    w, h = box[..., 2] * width, box[..., 3] * height
    boxes = torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), dim=-1)  # [N,S,S,B,4]
    scores = box[..., 4, None] * class_p[..., None, :]  # [N, S, S, B, C]
    return select_detections(
        boxes.reshape(n, -1, 4),
        scores.reshape(n, -1, num_classes),
        image_size,
        score_threshold,
        nms_threshold,
        max_detections,
    )


# --------------------------------------------------------------------------------------------
# Anchor-based: SSD and RetinaNet
# --------------------------------------------------------------------------------------------


class SSDHead(nn.Module):
    """One 3x3 convolution per level and per task: ``features`` (a list, fine to coarse) ->
    ``(class_logits [B, N, num_classes + 1], deltas [B, N, 4])``, ``N = sum(H * W * A_l)``.

    Column 0 of the logits is the background (SSD's softmax needs a "nothing here" option);
    object classes are ``1..num_classes``. Levels may differ in width and in their number of
    anchors ``num_anchors[l]`` (``len(scales[l]) * len(ratios)`` in :func:`multilevel_anchors`).
    """

    def __init__(self, in_channels: Sequence[int], num_anchors: Sequence[int], num_classes: int):
        super().__init__()
        check_num_classes(num_classes, what=type(self).__name__)
        if len(in_channels) != len(num_anchors):
            raise ValueError("expected one entry of num_anchors per level")
        self.num_classes = num_classes
        self.classify = nn.ModuleList(
            nn.Conv2d(c, a * (num_classes + 1), 3, padding=1)
            for c, a in zip(in_channels, num_anchors)
        )
        self.regress = nn.ModuleList(
            nn.Conv2d(c, a * 4, 3, padding=1) for c, a in zip(in_channels, num_anchors)
        )

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if len(features) != len(self.classify):
            raise ValueError(f"expected {len(self.classify)} feature maps, got {len(features)}")
        logits = flatten_levels(
            [f(x) for f, x in zip(self.classify, features)], self.num_classes + 1
        )
        deltas = flatten_levels([f(x) for f, x in zip(self.regress, features)], 4)
        return logits, deltas


def _tower(channels: int, num_convs: int) -> nn.Sequential:
    """``num_convs`` 3x3 convolutions + GroupNorm + ReLU, same width (GroupNorm: small batches)."""
    layers = []
    for _ in range(num_convs):
        layers += [
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.GroupNorm(8, channels),
            nn.ReLU(),
        ]
    return nn.Sequential(*layers)


def _prior_bias(p: float = 0.01) -> float:
    """The logit of ``p``: a classifier whose bias starts there predicts "object" with
    probability ``p`` everywhere, so that the thousands of easy background positions do not
    swamp the first steps of training (RetinaNet, section 4.1)."""
    return -math.log((1 - p) / p)


class RetinaNetHead(nn.Module):
    """Two towers shared by every level: ``features`` (list, all ``channels`` wide) ->
    ``(class_logits [B, N, num_classes], deltas [B, N, 4])`` with ``N = sum(H * W * A)``.

    One sigmoid per class (no background column): train with
    :func:`~.losses.sigmoid_focal_loss`. Sharing the weights over levels works because the FPN
    gives every level the same width and similar semantics; it also means a detector learns one
    notion of "cat" rather than one per scale.
    """

    def __init__(self, channels: int, num_anchors: int, num_classes: int, num_convs: int = 4):
        super().__init__()
        check_num_classes(num_classes, what=type(self).__name__)
        self.num_classes, self.num_anchors = num_classes, num_anchors
        self.class_tower, self.box_tower = _tower(channels, num_convs), _tower(channels, num_convs)
        self.classify = nn.Conv2d(channels, num_anchors * num_classes, 3, padding=1)
        self.regress = nn.Conv2d(channels, num_anchors * 4, 3, padding=1)
        nn.init.constant_(self.classify.bias, _prior_bias())

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = flatten_levels(
            [self.classify(self.class_tower(x)) for x in features], self.num_classes
        )
        deltas = flatten_levels([self.regress(self.box_tower(x)) for x in features], 4)
        return logits, deltas


def anchor_head_detections(
    class_logits: torch.Tensor,
    deltas: torch.Tensor,
    anchors: torch.Tensor,
    image_size: tuple[int, int],
    background: bool = False,
    **select_kwargs,
) -> list[dict[str, torch.Tensor]]:
    """:class:`SSDHead` (``background=True``) or :class:`RetinaNetHead` outputs and their
    ``anchors [N, 4]`` -> detections per image (see :func:`select_detections`).

    SSD's scores are a softmax whose column 0, the background, is dropped (labels then count
    object classes from 0); RetinaNet's are independent sigmoids.
    """
    if background:
        scores = class_logits.softmax(-1)[..., 1:]
    else:
        scores = class_logits.sigmoid()
    boxes = decode_boxes(anchors, deltas)  # anchors [N, 4] broadcast against [B, N, 4]
    return select_detections(boxes, scores, image_size, **select_kwargs)


# --------------------------------------------------------------------------------------------
# Anchor-free: FCOS
# --------------------------------------------------------------------------------------------


class FCOSHead(nn.Module):
    """FCOS: ``features`` (list, all ``channels`` wide, strides ``strides``) ->
    ``{"class_logits": [B, N, num_classes], "ltrb": [B, N, 4], "centerness": [B, N]}``,
    ``N = sum(H * W)``, rows in the order of :func:`fcos_points`.

    ``ltrb`` are the distances in pixels from the position to the left, top, right and bottom
    sides of its box: ``exp`` keeps them positive, and each level multiplies by its stride (plus
    a learned scale), so that every level predicts numbers of similar size.
    """

    def __init__(self, channels: int, num_classes: int, strides: Sequence[int], num_convs: int = 4):
        super().__init__()
        check_num_classes(num_classes, what=type(self).__name__)
        self.num_classes, self.strides = num_classes, list(strides)
        self.class_tower, self.box_tower = _tower(channels, num_convs), _tower(channels, num_convs)
        self.classify = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.regress = nn.Conv2d(channels, 4, 3, padding=1)
        self.centerness = nn.Conv2d(channels, 1, 3, padding=1)  # on the box tower, as in FCOS
        self.scales = nn.Parameter(torch.ones(len(strides)))
        nn.init.constant_(self.classify.bias, _prior_bias())

    def forward(self, features: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        if len(features) != len(self.strides):
            raise ValueError(f"expected {len(self.strides)} feature maps, got {len(features)}")
        logits, ltrb, centerness = [], [], []
        for level, x in enumerate(features):
            box_features = self.box_tower(x)
            logits.append(self.classify(self.class_tower(x)))
            distance = (self.scales[level] * self.regress(box_features)).exp() * self.strides[level]
            ltrb.append(distance)
            centerness.append(self.centerness(box_features))
        return {
            "class_logits": flatten_levels(logits, self.num_classes),
            "ltrb": flatten_levels(ltrb, 4),
            "centerness": flatten_levels(centerness, 1).squeeze(2),
        }


def fcos_points(
    feature_sizes: Sequence[tuple[int, int]],
    strides: Sequence[int],
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The image position ``(x, y)`` of every feature cell, levels concatenated: ``[N, 2]``.

    Cell ``(i, j)`` of a level with stride ``s`` sits at ``((j + 0.5) * s, (i + 0.5) * s)``, the
    centre of the image patch it covers (the same centres as :func:`~.boxes.generate_anchors`).
    """
    points = []
    for (height, width), s in zip(feature_sizes, strides):
        y = (torch.arange(height, dtype=torch.float32, device=device) + 0.5) * s
        x = (torch.arange(width, dtype=torch.float32, device=device) + 0.5) * s
        y, x = torch.meshgrid(y, x, indexing="ij")
        points.append(torch.stack((x, y), dim=-1).reshape(-1, 2))
    return torch.cat(points)


def fcos_decode(
    outputs: dict[str, torch.Tensor],
    points: torch.Tensor,
    image_size: tuple[int, int],
    score_threshold: float = 0.05,
    nms_threshold: float = 0.6,
    max_detections: int = 100,
) -> list[dict[str, torch.Tensor]]:
    """:class:`FCOSHead` outputs + ``points [N, 2]`` -> detections per image.

    Box = ``(x - l, y - t, x + r, y + b)``; score = ``sqrt(sigmoid(class) * sigmoid(centerness))``
    so that boxes predicted from near an object's border, usually poor, rank lower.
    """
    x, y = points[:, 0], points[:, 1]
    left, top, right, bottom = outputs["ltrb"].unbind(-1)  # [B, N] each
    boxes = torch.stack((x - left, y - top, x + right, y + bottom), dim=-1)
    centerness = outputs["centerness"].sigmoid()[..., None]
    scores = (outputs["class_logits"].sigmoid() * centerness).sqrt()
    return select_detections(
        boxes, scores, image_size, score_threshold, nms_threshold, max_detections
    )
