"""Lesson 04: Panoptic segmentation: one map in which every pixel has a class and, for objects, an
instance.

*Things* (countable objects: people, cars, digits) come from instance masks, *stuff* (amorphous
regions: sky, road, background) from a semantic map; ``panoptic_fusion`` merges the two.
"""

from __future__ import annotations

import torch

__all__ = ["panoptic_fusion"]


def panoptic_fusion(
    semantic: torch.Tensor,
    instance_masks: torch.Tensor,
    instance_scores: torch.Tensor,
    instance_labels: torch.Tensor,
    thing_classes,
    score_threshold: float = 0.5,
    overlap_threshold: float = 0.5,
    label_divisor: int = 1000,
    void_id: int = -1,
) -> torch.Tensor:
    """Merge a semantic map and instance masks into one panoptic map (Panoptic FPN's heuristic).

    *Things* (countable objects: people, cars) come from the instance masks, *stuff* (amorphous
    regions: sky, road) from the semantic map. Every pixel gets one segment id:

    - ``class * label_divisor + k`` for the ``k``-th kept instance of a thing class (k = 1, 2, ...);
    - ``class * label_divisor`` for a stuff pixel (instance number 0);
    - ``void_id`` for a pixel that the semantic map calls a thing but no kept instance covers.

    Decode with ``class = id // label_divisor`` and ``instance = id % label_divisor`` (the
    convention of Cityscapes and Panoptic-DeepLab; COCO's PNG files store arbitrary segment ids
    plus a ``segments_info`` table instead). Stuff and thing ids never collide: they differ in
    ``id % label_divisor`` (0 against >= 1). Writing raw class ids for stuff and instance numbers
    for things would collide as soon as a class id equals an instance number.

    Instances are pasted in decreasing score order; one scoring below ``score_threshold`` is
    dropped, and so is one whose pixels not yet taken by better instances are fewer than
    ``overlap_threshold`` times its mask area (mostly hidden by them).

    Args:
        semantic: [H, W] class labels (argmax of a semantic head).
        instance_masks: [N, H, W] boolean masks.
        instance_scores: [N] confidences.
        instance_labels: [N] classes, each in ``thing_classes``.
        thing_classes: the class ids that are things; all other classes are stuff.

    Returns:
        [H, W] int64 panoptic map.
    """
    if semantic.dim() != 2 or semantic.is_floating_point():
        raise ValueError(
            f"semantic must be integer labels [H, W], got {semantic.dtype} {tuple(semantic.shape)}"
        )
    n = len(instance_masks)
    if instance_masks.shape[1:] != semantic.shape or instance_masks.dim() != 3:
        raise ValueError(
            f"instance_masks must be [N, H, W] with [H, W] = {tuple(semantic.shape)}, "
            f"got {tuple(instance_masks.shape)}"
        )
    if instance_scores.shape != (n,) or instance_labels.shape != (n,):
        raise ValueError(
            f"expected {n} instance_scores and instance_labels, got shapes "
            f"{tuple(instance_scores.shape)} and {tuple(instance_labels.shape)}"
        )
    things = torch.as_tensor(list(thing_classes), dtype=torch.long, device=semantic.device)
    if not torch.isin(instance_labels.long(), things).all():
        raise ValueError(
            f"instance_labels {instance_labels.tolist()} must all be thing classes {things.tolist()}"
        )
    if semantic.numel() and (semantic.min() < 0 or semantic.max() >= label_divisor):
        raise ValueError(f"semantic labels must lie in [0, label_divisor={label_divisor})")

    panoptic = torch.full_like(semantic, void_id, dtype=torch.long)
    taken = torch.zeros_like(semantic, dtype=torch.bool)
    count = {}  # kept instances so far, per class
    for i in instance_scores.argsort(descending=True).tolist():
        if instance_scores[i] < score_threshold:
            break
        mask = instance_masks[i].bool()
        free = mask & ~taken
        area = int(mask.sum())
        if area == 0 or int(free.sum()) < overlap_threshold * area:
            continue
        label = int(instance_labels[i])
        count[label] = count.get(label, 0) + 1
        if count[label] >= label_divisor:
            raise ValueError(
                f"more than {label_divisor - 1} instances of class {label}: raise label_divisor"
            )
        panoptic[free] = label * label_divisor + count[label]
        taken |= free
    stuff = ~taken & ~torch.isin(semantic, things)
    panoptic[stuff] = semantic[stuff].long() * label_divisor
    return panoptic
