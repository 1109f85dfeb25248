"""Lesson 03: Evaluating a detector: COCO mean average precision, precision-recall curves, Hungarian
matching.

A detection is a *true positive* at IoU threshold ``t`` if it overlaps a ground-truth box of its
class with IoU ``>= t`` and that box was not already claimed by a higher-scored detection.
Ranking all detections of a class by score and walking down the list traces a precision-recall
curve; its area is the average precision (AP). COCO averages AP over 10 thresholds
(0.50, 0.55, ..., 0.95) and over classes: that is ``map``. ``map_50`` is the single-threshold AP
of PASCAL VOC, ``map_75`` a strict one that rewards tight boxes.

Inputs follow torchvision's detection models: one dict per image,
``preds[i] = {"boxes": [D, 4] xyxy, "scores": [D], "labels": [D]}`` and
``targets[i] = {"boxes": [G, 4] xyxy, "labels": [G]}``, optionally with COCO's
``"iscrowd": [G]`` (bool or 0/1): a *crowd* region is one annotation for a group of objects too
dense to box one by one (a stadium audience). It is not an object to find -- it does not count
in the recall -- and a detection inside it is neither right nor wrong: it is ignored.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from ..checks import check_labels
from .boxes import check_boxes, check_iou_threshold, inter_union

__all__ = [
    "mean_average_precision",
    "precision_recall_curve",
    "plot_precision_recall",
    "hungarian_match",
]

# COCO's IoU thresholds 0.50, 0.55, ..., 0.95 and the 101 recall levels 0, 0.01, ..., 1 at which
# it reads each precision-recall curve. Both are float32 torch.linspace grids, as in torchmetrics,
# so that the results agree exactly: a recall of 4/5 = 0.8 then does not reach the level
# 0.8000000119 (pycocotools' own float64 grid counts it: at most 1/101 more in one AP).
_COCO_IOU_THRESHOLDS = tuple(torch.linspace(0.5, 0.95, 10).tolist())
RECALL_LEVELS = torch.linspace(0.0, 1.0, 101).double().numpy()


_GEOMETRY = {"bbox": "boxes", "segm": "masks"}  # COCO's iou_type -> the key it compares


def _areas(a: torch.Tensor, b: torch.Tensor, geometry: str) -> tuple[torch.Tensor, ...]:
    """``(intersection [N, M], union [N, M], area of a [N])`` of every pair of boxes (xyxy
    ``[N, 4]``, ``[M, 4]``) or masks (bool ``[N, H, W]``, ``[M, H, W]``), in float64. With masks
    flattened to rows of 0s and 1s, all the intersections are one matrix product."""
    if geometry == "boxes":
        a, b = a.double(), b.double()  # checked by _prepare: no box_area() and its checks
        return (*inter_union(a[:, None], b[None, :]), (a[:, 2:] - a[:, :2]).prod(dim=1))
    a, b = a.flatten(1).double(), b.flatten(1).double()
    inter = a @ b.T
    return inter, a.sum(1)[:, None] + b.sum(1)[None, :] - inter, a.sum(1)


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den``, and 0 where ``den`` is 0 (two empty masks or zero-area boxes), as COCO."""
    return torch.where(den > 0, num / den.clamp(min=torch.finfo(den.dtype).tiny), 0.0)


def _overlaps(dets: torch.Tensor, gt: torch.Tensor, crowd: torch.Tensor, geometry: str):
    """COCO's overlap of every detection with every ground truth, ``[D, G]`` float64: the IoU,
    except for a crowd region, where it is the fraction of the detection inside the region
    (``area(d ∩ g) / area(d)``): a box around one person of the crowd is fully inside it, though
    its IoU with the whole crowd is tiny."""
    inter, union, det_area = _areas(dets, gt, geometry)
    return _ratio(inter, torch.where(crowd[None, :], det_area[:, None], union))


def _as_masks(masks: torch.Tensor, where: str) -> torch.Tensor:
    """``[N, H, W]`` or torchvision's ``[N, 1, H, W]``, bool or probabilities -> bool ``[N, H, W]``."""
    if masks.dim() == 4 and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.dim() != 3:
        raise ValueError(
            f"{where} must be masks [N, H, W] or [N, 1, H, W], got {tuple(masks.shape)}"
        )
    return masks > 0.5 if masks.is_floating_point() else masks.bool()


def _crowd_flags(target: dict, n: int, where: str) -> torch.Tensor:
    """The target's ``"iscrowd"`` as bool ``[G]`` (all False when absent), checked."""
    if "iscrowd" not in target:
        return torch.zeros(n, dtype=torch.bool)
    crowd = torch.as_tensor(target["iscrowd"]).detach().cpu()
    if crowd.shape != (n,) or crowd.is_floating_point() or not ((crowd == 0) | (crowd == 1)).all():
        raise ValueError(
            f"{where}['iscrowd'] must be one 0/1 (or bool) flag per object, [{n}], got "
            f"{crowd.dtype} {tuple(crowd.shape)}"
        )
    return crowd.bool()


def _prepare(
    preds: Sequence[dict], targets: Sequence[dict], geometry: str = "boxes"
) -> tuple[list[dict], list[dict]]:
    """Check the inputs and bring them to the CPU (the matching runs in NumPy)."""
    if len(preds) != len(targets):
        raise ValueError(f"got {len(preds)} predictions for {len(targets)} images")
    prepared = {}
    for kind, images in (("preds", preds), ("targets", targets)):
        keys = (geometry, "scores", "labels") if kind == "preds" else (geometry, "labels")
        for i, d in enumerate(images):
            missing = [k for k in keys if k not in d]
            if missing:
                raise ValueError(f"{kind}[{i}] lacks {missing}: expected keys {keys}")
            where = f"{kind}[{i}]['{geometry}']"
            if geometry == "boxes":
                check_boxes(d["boxes"], where)
            if any(len(d[k]) != len(d[geometry]) for k in keys):
                raise ValueError(f"{kind}[{i}]: {keys} must all have one entry per object")
            # COCO / torchvision labels: class + 1, 0 is the background (never an object)
            check_labels(d["labels"], what=f"mean_average_precision: {kind}[{i}]", first=1)
        prepared[kind] = [{k: d[k].detach().cpu() for k in keys} for d in images]
        if kind == "targets":
            for i, (d, original) in enumerate(zip(prepared[kind], images)):
                d["iscrowd"] = _crowd_flags(original, len(d["labels"]), f"targets[{i}]")
        if geometry == "masks":
            for i, d in enumerate(prepared[kind]):
                d["masks"] = _as_masks(d["masks"], f"{kind}[{i}]['masks']")
    return prepared["preds"], prepared["targets"]


def _claim(iou: np.ndarray, needed: np.ndarray) -> np.ndarray:
    """Greedy COCO matching of detections to objects: ``iou [D, G]`` with detections sorted by
    decreasing score, ``needed [T, 1]`` the IoU thresholds -> ``matched [T, D]`` bool, for every
    threshold at once.

    The loop over detections cannot be vectorised: whether detection ``d`` is a true positive
    depends on which ground-truth boxes the better-scored detections already claimed.
    """
    num_dets, num_gt = iou.shape
    matched = np.zeros((len(needed), num_dets), dtype=bool)
    if num_gt == 0:
        return matched
    taken = np.zeros((len(needed), num_gt), dtype=bool)  # gt claimed, per threshold
    t_index = np.arange(len(needed))
    for d in range(num_dets):
        # Unclaimed gt boxes overlapping enough: [T, G]; -1 marks "not a candidate".
        ok = ~taken & (iou[d] >= needed)
        candidates = np.where(ok, iou[d], -1.0)
        # The best candidate; on a tie COCO's loop keeps the *last* gt, so search reversed.
        best = num_gt - 1 - candidates[:, ::-1].argmax(axis=1)
        hit = ok.any(axis=1)
        matched[hit, d] = True
        taken[t_index[hit], best[hit]] = True
    return matched


def _match_image(
    overlaps: np.ndarray, crowd: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """COCO matching in one image for one class: ``overlaps [D, G]`` (see :func:`_overlaps`)
    with detections sorted by decreasing score, ``crowd [G]`` bool -> ``(matched [T, D],
    ignored [T, D])`` bool.

    Detections first claim objects (:func:`_claim`); one that claims none but overlaps a crowd
    region enough is *ignored*. A crowd region is never claimed: it absorbs any number of
    detections, so a detector is not punished for finding several people in a crowd.
    """
    needed = np.minimum(thresholds, 1 - 1e-10)[:, None]  # COCO's cap: IoU 1 matches at t = 1
    matched = _claim(overlaps[:, ~crowd], needed)
    in_crowd = overlaps[:, crowd]  # [D, C]
    ignored = ~matched & (in_crowd[None, :, :] >= needed[:, :, None]).any(axis=2)  # [T, D]
    return matched, ignored


def _evaluate_class(
    preds: Sequence[dict],
    targets: Sequence[dict],
    label: int,
    thresholds: np.ndarray,
    max_dets: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """All detections of one class over the dataset: ``(scores [D], matched [T, D], ignored
    [T, D], num_gt)``, ``num_gt`` counting the objects (not the crowd regions)."""
    none = np.zeros((len(thresholds), 0), dtype=bool)
    scores, matched, ignored, num_gt = [np.zeros(0)], [none], [none], 0
    for p, t in zip(preds, targets):
        mine, theirs = p["labels"] == label, t["labels"] == label
        if not (mine.any() or theirs.any()):
            continue  # nothing to match: most images hold a few of the classes
        geometry = "masks" if "masks" in t else "boxes"
        gt, crowd = t[geometry][theirs], t["iscrowd"][theirs]
        s = p["scores"][mine].double()
        # stable sort: equal scores keep their input order, as in COCO (mergesort)
        order = torch.sort(s, descending=True, stable=True).indices[:max_dets]
        dets = p[geometry][mine][order]
        num_gt += int((~crowd).sum())
        scores.append(s[order].numpy())
        overlaps = _overlaps(dets, gt, crowd, geometry).numpy()
        image_matched, image_ignored = _match_image(overlaps, crowd.numpy(), thresholds)
        matched.append(image_matched)
        ignored.append(image_ignored)
    return (
        np.concatenate(scores),
        np.concatenate(matched, axis=1),
        np.concatenate(ignored, axis=1),
        num_gt,
    )


def _average_precision(
    scores: np.ndarray, matched: np.ndarray, ignored: np.ndarray, num_gt: int
) -> np.ndarray:
    """COCO's 101-point interpolated AP of one class at every threshold: ``[T]``. Ignored
    detections (in a crowd region) count as neither true nor false positives."""
    order = np.argsort(-scores, kind="mergesort")
    tp = np.cumsum(matched[:, order], axis=1, dtype=np.float64)  # [T, D]
    fp = np.cumsum(~matched[:, order] & ~ignored[:, order], axis=1, dtype=np.float64)
    recall = tp / num_gt
    precision = tp / (tp + fp + np.spacing(1))
    # The interpolated precision at recall r is the best precision at any recall >= r: a running
    # maximum from the right makes the curve non-increasing.
    precision = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    ap = np.zeros(len(matched))
    for t in range(len(matched)):
        # first rank reaching each recall level; levels never reached count as precision 0
        idx = np.searchsorted(recall[t], RECALL_LEVELS, side="left")
        reached = idx < recall.shape[1]
        ap[t] = precision[t, idx[reached]].sum() / len(RECALL_LEVELS)
    return ap


def mean_average_precision(
    preds: Sequence[dict],
    targets: Sequence[dict],
    iou_thresholds: Sequence[float] = _COCO_IOU_THRESHOLDS,
    max_detections: int = 100,
    iou_type: str = "bbox",
) -> dict:
    """COCO-style mAP over a dataset (lists of dicts, one per image, see the module docstring).

    ``iou_type="segm"`` scores instance segmentation instead: detections and ground truth are
    matched by the IoU of their ``"masks"`` (``[N, H, W]`` bool, or torchvision's ``[N, 1, H, W]``
    probabilities, thresholded at 0.5) instead of their boxes; the rest is the same.

    Returns ``{"map", "map_50", "map_75"}`` (floats; ``map_50``/``map_75`` are -1 when their
    threshold is not in ``iou_thresholds``), ``"map_per_class"`` (float64 ``[K]``, AP averaged
    over the thresholds) and ``"classes"`` (the ``K`` labels seen in preds or targets, sorted).

    As in COCO (``pycocotools``, and ``torchmetrics``' ``MeanAveragePrecision``, which this
    equals): at most ``max_detections`` best-scored detections per image and class; AP is read at
    101 recall levels; crowd regions (``"iscrowd"``) are matched as COCO does (see the module
    docstring); a class without any ground-truth object is left out of the mean (its AP is -1)
    and so is the whole mean when there is no ground truth at all.
    """
    if iou_type not in _GEOMETRY:
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    if not len(iou_thresholds):
        raise ValueError("iou_thresholds is empty: give at least one, e.g. [0.5]")
    for t in iou_thresholds:
        check_iou_threshold(t, "each of iou_thresholds")
    preds, targets = _prepare(preds, targets, _GEOMETRY[iou_type])
    thresholds = np.asarray(iou_thresholds, dtype=np.float64)
    labels = [d["labels"].long() for d in (*preds, *targets)]
    classes = torch.cat(labels).unique() if labels else torch.zeros(0, dtype=torch.int64)
    ap = np.full((len(classes), len(thresholds)), -1.0)  # -1: class without ground truth
    for k, label in enumerate(classes.tolist()):
        scores, matched, ignored, num_gt = _evaluate_class(
            preds, targets, label, thresholds, max_detections
        )
        if num_gt:
            ap[k] = _average_precision(scores, matched, ignored, num_gt)
    has_gt = ap[:, 0] >= 0

    def mean(values: np.ndarray) -> float:
        return float(values[has_gt].mean()) if has_gt.any() else -1.0

    def at(t: float) -> float:
        hits = np.flatnonzero(np.isclose(thresholds, t))
        return mean(ap[:, hits[0]]) if len(hits) else -1.0

    return {
        "map": mean(ap.mean(axis=1)),
        "map_50": at(0.5),
        "map_75": at(0.75),
        "map_per_class": torch.from_numpy(np.where(has_gt, ap.mean(axis=1), -1.0)),
        "classes": classes,
    }


def precision_recall_curve(
    preds: Sequence[dict],
    targets: Sequence[dict],
    label: int,
    iou_threshold: float = 0.5,
    max_detections: int = 100,
) -> tuple[np.ndarray, np.ndarray]:
    """The raw precision-recall curve of class ``label`` at one IoU threshold.

    Returns ``(precision [D], recall [D])``: after the ``k`` best-scored detections of the class
    (over the whole dataset), the fraction of them that are right and the fraction of the
    ground-truth objects found. Detections ignored in a crowd region are left out. Empty arrays
    if the class has no detections; recall is ``nan`` if it has no ground truth.
    """
    preds, targets = _prepare(preds, targets)
    thresholds = np.array([check_iou_threshold(iou_threshold)], dtype=np.float64)
    scores, matched, ignored, num_gt = _evaluate_class(
        preds, targets, label, thresholds, max_detections
    )
    order = np.argsort(-scores, kind="mergesort")
    hits = matched[0, order][~ignored[0, order]]
    tp = np.cumsum(hits, dtype=np.float64)
    precision = tp / np.arange(1, len(hits) + 1)
    recall = tp / num_gt if num_gt else np.full(len(hits), np.nan)
    return precision, recall


def plot_precision_recall(
    precision: np.ndarray, recall: np.ndarray, ax=None, label: str | None = None
):
    """Plot a precision-recall curve and its interpolated envelope (what AP integrates).

    Returns the matplotlib ``Axes``.
    """
    import matplotlib.pyplot as plt  # lazy: the metrics do not need matplotlib

    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4))
    envelope = np.maximum.accumulate(np.asarray(precision)[::-1])[::-1]
    (line,) = ax.plot(recall, precision, alpha=0.4, label=f"{label} (raw)" if label else "raw")
    ax.step(recall, envelope, where="post", color=line.get_color(), label="interpolated")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02))
    ax.set_title("Precision-recall curve")
    ax.legend(loc="lower left")
    return ax


def hungarian_match(cost: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The one-to-one assignment of minimal total cost: ``cost [N, M]`` -> ``(rows, cols)``,
    int64 ``[min(N, M)]`` each, row ``rows[k]`` matched with column ``cols[k]``, rows increasing.

    DETR uses it to pair its N predictions with the M ground-truth objects (the rest predict
    "no object"). Solved exactly by ``scipy.optimize.linear_sum_assignment`` (the Hungarian
    algorithm's modern variant); no gradient flows through the matching, only through the loss
    computed on the matched pairs.
    """
    if not isinstance(cost, torch.Tensor) or cost.ndim != 2:
        raise ValueError(f"expected a cost matrix [N, M], got {getattr(cost, 'shape', cost)}")
    if cost.numel() and not torch.isfinite(cost).all():
        raise ValueError("cost contains NaN or infinite values")
    rows, cols = linear_sum_assignment(cost.detach().cpu().numpy())
    return (
        torch.as_tensor(rows, dtype=torch.int64, device=cost.device),
        torch.as_tensor(cols, dtype=torch.int64, device=cost.device),
    )
