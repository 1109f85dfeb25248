"""Lesson 03's box toolkit against torchvision.ops, on what a detector produces before NMS:
2,000 boxes clustered around a few dozen objects (many overlapping candidates per object)."""

import torch
import torchvision.ops as tvops
from run import Case

from course_utils import detection


def clustered_boxes(n: int = 2000, objects: int = 50, size: float = 512.0, seed: int = 0):
    """``n`` xyxy boxes jittered around ``objects`` random boxes, with random scores."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(objects, 2, generator=g) * size
    sizes = torch.rand(objects, 2, generator=g) * size / 8 + 16
    which = torch.randint(objects, (n,), generator=g)
    xy = centres[which] + torch.randn(n, 2, generator=g) * sizes[which] / 8
    wh = sizes[which] * (1 + torch.randn(n, 2, generator=g) * 0.1).clamp(min=0.5)
    boxes = torch.cat((xy - wh / 2, xy + wh / 2), dim=1)
    return boxes, torch.rand(n, generator=g), torch.randint(0, 5, (n,), generator=g)


def benchmarks() -> list[Case]:
    boxes, scores, labels = clustered_boxes()
    return [
        Case(
            "nms 2000 clustered boxes, IoU 0.5",
            lambda: detection.nms(boxes, scores, 0.5),
            lambda: tvops.nms(boxes, scores, 0.5),
            "torchvision.ops.nms",
        ),
        Case(
            "batched_nms 2000 boxes, 5 classes, IoU 0.5",
            lambda: detection.batched_nms(boxes, scores, labels, 0.5),
            lambda: tvops.batched_nms(boxes, scores, labels, 0.5),
            "torchvision.ops.batched_nms",
        ),
        Case(
            "box_iou 2000 x 2000",
            lambda: detection.box_iou(boxes, boxes),
            lambda: tvops.box_iou(boxes, boxes),
            "torchvision.ops.box_iou",
        ),
    ]
