"""Lesson 03: What a detector gets wrong: every confident detection and every missed object, by
kind.

mAP says *how much* a detector is wrong, not *how*. Two detectors with the same mAP can fail in
opposite ways: one draws sloppy boxes around the right digits, the other draws tight boxes with the
wrong label. Sorting the errors into kinds (in the spirit of Hoiem et al., 2012, and TIDE, Bolya et
al., 2020) says what to fix. Each detection scoring at least ``score_threshold`` is, in this order:

- ``correct``: IoU ``>= iou_threshold`` with an object of its class not already found by a
  higher-scored detection;
- ``duplicate``: such an object exists, but a higher-scored detection found it first (NMS let two
  boxes through);
- ``wrong_class``: IoU ``>= iou_threshold`` with an object of another class (the box is right, the
  label is not);
- ``mislocated``: the right class, but the best overlap with an object of that class is only in
  ``[0.1, iou_threshold)`` (a sloppy or shifted box);
- ``background``: overlaps no object by 0.1 or more (a detection of nothing).

Each object that no ``correct`` detection found is ``missed``. The counts add up:
``correct + missed == number of objects``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .boxes import box_iou, check_iou_threshold

__all__ = ["ERROR_KINDS", "detection_errors"]

#: The kinds of detection :func:`detection_errors` counts, and ``missed`` for the objects.
ERROR_KINDS = ("correct", "duplicate", "wrong_class", "mislocated", "background", "missed")

#: Below this IoU a detection does not "touch" an object at all.
_TOUCH = 0.1


def _kinds_of_image(pred: dict, target: dict, iou_threshold: float) -> tuple[list[str], int]:
    """The kind of each detection of one image (best score first) and its number of missed
    objects."""
    boxes, labels = target["boxes"], target["labels"]
    iou = box_iou(pred["boxes"], boxes)  # [D, G]
    found = torch.zeros(len(boxes), dtype=torch.bool)
    kinds = []
    for d in pred["scores"].argsort(descending=True, stable=True).tolist():
        same = labels == pred["labels"][d]
        overlap = iou[d]
        free = same & ~found & (overlap >= iou_threshold)
        if free.any():
            found[torch.where(free, overlap, -1.0).argmax()] = True  # the best-overlapping one
            kinds.append("correct")
        elif (same & (overlap >= iou_threshold)).any():
            kinds.append("duplicate")
        elif (~same & (overlap >= iou_threshold)).any():
            kinds.append("wrong_class")
        elif (same & (overlap >= _TOUCH)).any():
            kinds.append("mislocated")
        else:
            kinds.append("background")
    return kinds, int((~found).sum())


def detection_errors(
    preds: Sequence[dict],
    targets: Sequence[dict],
    score_threshold: float = 0.5,
    iou_threshold: float = 0.5,
) -> dict[str, int]:
    """Count the detections of each kind, and the missed objects, over a dataset.

    ``preds[i]``: ``{"boxes" [D, 4] xyxy, "scores" [D], "labels" [D]}`` and ``targets[i]``:
    ``{"boxes" [G, 4], "labels" [G]}`` for image ``i`` (what
    :func:`~course_utils.detection.detect` returns). Only detections scoring ``>=
    score_threshold`` count: the confident ones a user of the detector would act on (mAP, which
    sweeps all thresholds, keeps the rest). Returns ``{kind: count}`` for :data:`ERROR_KINDS`.
    """
    if len(preds) != len(targets):
        raise ValueError(f"got {len(preds)} predictions for {len(targets)} targets: one per image")
    if not 0 <= score_threshold <= 1:
        raise ValueError(f"score_threshold must be a probability in [0, 1], got {score_threshold}")
    check_iou_threshold(iou_threshold)
    counts = dict.fromkeys(ERROR_KINDS, 0)
    for pred, target in zip(preds, targets):
        confident = pred["scores"] >= score_threshold
        kept = {k: pred[k][confident] for k in ("boxes", "scores", "labels")}
        kinds, missed = _kinds_of_image(kept, target, iou_threshold)
        for kind in kinds:
            counts[kind] += 1
        counts["missed"] += missed
    return counts
