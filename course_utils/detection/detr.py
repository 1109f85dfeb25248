"""Lesson 03: DETR (Carion et al., 2020): detection as set prediction, without anchors and without
NMS.

A transformer decoder turns ``Q`` learned *object queries* into ``Q`` predictions (a class, or
"no object", and a box) by attending to the image features. Training pairs each ground-truth
object with exactly one prediction by minimising a matching cost (the Hungarian algorithm,
:func:`~.metrics.hungarian_match`); every other prediction must say "no object". Since a
duplicate prediction is penalised by the loss, the model learns not to make any, and no NMS is
needed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_num_classes
from .boxes import box_convert, generalized_box_iou
from .losses import giou_loss
from .metrics import hungarian_match

__all__ = ["DETRHead", "detr_loss", "detr_decode"]


def _positional_encoding_2d(height: int, width: int, dim: int, device=None) -> torch.Tensor:
    """Sine/cosine encoding of every cell's ``(y, x)``: ``[height * width, dim]``, rows in
    row-major order. Attention is blind to order, so this is how it knows *where* a feature is:
    half the channels encode ``y``, half ``x``, at geometrically spaced frequencies.
    """
    if dim % 4:
        raise ValueError(f"dim must be a multiple of 4, got {dim}")
    freqs = 10000 ** (-torch.arange(dim // 4, device=device, dtype=torch.float32) / (dim // 4))
    y = torch.arange(height, device=device, dtype=torch.float32)[:, None, None] * freqs  # [H,1,F]
    x = torch.arange(width, device=device, dtype=torch.float32)[None, :, None] * freqs  # [1,W,F]
    y, x = y.expand(height, width, -1), x.expand(height, width, -1)
    return torch.cat((y.sin(), y.cos(), x.sin(), x.cos()), dim=-1).reshape(height * width, dim)


class DETRHead(nn.Module):
    """``features [B, C, H, W]`` -> ``{"class_logits": [B, Q, num_classes + 1],
    "boxes": [B, Q, 4]}``, ``Q`` = ``num_queries``.

    The **last** class column is "no object". Boxes are ``(cx, cy, w, h)`` as fractions of the
    image (a sigmoid keeps them in [0, 1]). A small version of DETR's decoder: the features,
    projected to ``dim`` and tagged with their position, are the memory the queries attend to.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        dim: int = 64,
        num_queries: int = 20,
        num_layers: int = 2,
        num_heads: int = 4,
    ):
        super().__init__()
        check_num_classes(num_classes, what=type(self).__name__)
        self.num_classes = num_classes
        self.project = nn.Conv2d(in_channels, dim, 1)
        self.queries = nn.Parameter(torch.randn(num_queries, dim) * 0.1)
        layer = nn.TransformerDecoderLayer(
            dim, num_heads, dim_feedforward=2 * dim, batch_first=True
        )
        self.decoder = nn.TransformerDecoder(layer, num_layers)
        self.classify = nn.Linear(dim, num_classes + 1)
        self.box = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, 4))

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        b, _, h, w = features.shape
        memory = self.project(features).flatten(2).transpose(1, 2)  # [B, H*W, dim]
        memory = memory + _positional_encoding_2d(h, w, memory.shape[-1], features.device)
        queries = self.queries.expand(b, -1, -1)  # the same learned queries for every image
        hidden = self.decoder(queries, memory)  # [B, Q, dim]
        return {"class_logits": self.classify(hidden), "boxes": self.box(hidden).sigmoid()}


def _normalised_xyxy(boxes: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    height, width = image_size
    return boxes / boxes.new_tensor([width, height, width, height])


def detr_loss(
    outputs: dict[str, torch.Tensor],
    targets: list[dict[str, torch.Tensor]],
    image_size: tuple[int, int],
    class_weight: float = 1.0,
    l1_weight: float = 5.0,
    giou_weight: float = 2.0,
    no_object_weight: float = 0.1,
) -> torch.Tensor:
    """DETR's set loss for :class:`DETRHead` outputs and torchvision-style ``targets`` (boxes xyxy
    in pixels, labels in ``0..num_classes - 1``).

    Per image: the cost of pairing prediction ``q`` with object ``g`` is
    ``-class_weight * p_q(label_g) + l1_weight * |box_q - box_g|_1 - giou_weight * GIoU``; the
    Hungarian algorithm picks the pairing of least total cost. Then cross-entropy for all
    queries (unpaired ones must predict "no object", down-weighted by ``no_object_weight``
    because they are the majority), and L1 + GIoU losses for the paired boxes, averaged over the
    objects of the batch.
    """
    logits, pred_boxes = outputs["class_logits"], outputs["boxes"]  # [B, Q, K+1], [B, Q, 4]
    if len(targets) != len(logits):
        raise ValueError(f"got {len(targets)} targets for a batch of {len(logits)}")
    no_object = logits.shape[-1] - 1
    class_targets = torch.full(logits.shape[:2], no_object, dtype=torch.int64, device=logits.device)
    pred_xyxy = box_convert(pred_boxes, "cxcywh", "xyxy")  # normalised
    matched_pred, matched_gt = [], []
    for i, t in enumerate(targets):
        gt = _normalised_xyxy(t["boxes"], image_size)
        gt_cxcywh = box_convert(gt, "xyxy", "cxcywh")
        with torch.no_grad():  # the matching is a discrete choice: no gradient through it
            cost = (
                -class_weight * logits[i].softmax(-1)[:, t["labels"]]
                + l1_weight * torch.cdist(pred_boxes[i], gt_cxcywh, p=1)
                - giou_weight * generalized_box_iou(pred_xyxy[i], gt)
            )  # [Q, G]
        rows, cols = hungarian_match(cost)
        class_targets[i, rows] = t["labels"][cols]
        matched_pred.append(pred_boxes[i, rows])
        matched_gt.append(gt_cxcywh[cols])
    weight = torch.ones(no_object + 1, device=logits.device)
    weight[no_object] = no_object_weight
    loss = class_weight * F.cross_entropy(logits.transpose(1, 2), class_targets, weight=weight)
    # Box losses on the paired boxes only: L1 on (cx, cy, w, h) as in the paper, and GIoU.
    pred, gt = torch.cat(matched_pred), torch.cat(matched_gt)
    num_objects = max(len(gt), 1)
    loss = loss + l1_weight * F.l1_loss(pred, gt, reduction="sum") / num_objects
    pred_xyxy, gt_xyxy = box_convert(pred, "cxcywh", "xyxy"), box_convert(gt, "cxcywh", "xyxy")
    return loss + giou_weight * giou_loss(pred_xyxy, gt_xyxy, reduction="sum") / num_objects


def detr_decode(
    outputs: dict[str, torch.Tensor], image_size: tuple[int, int], score_threshold: float = 0.5
) -> list[dict[str, torch.Tensor]]:
    """:class:`DETRHead` outputs -> detections per image in pixels (torchvision's format).

    Each query's label is its most likely *object* class and its score that probability; queries
    scoring ``<= score_threshold`` are dropped. No NMS: the set loss already discourages
    duplicates.
    """
    height, width = image_size
    probs = outputs["class_logits"].softmax(-1)[..., :-1]  # drop "no object"
    scores, labels = probs.max(-1)
    boxes = box_convert(outputs["boxes"], "cxcywh", "xyxy") * outputs["boxes"].new_tensor(
        [width, height, width, height]
    )
    keep = scores > score_threshold
    return [
        {"boxes": b[k], "scores": s[k], "labels": lab[k]}
        for b, s, lab, k in zip(boxes, scores, labels, keep)
    ]
