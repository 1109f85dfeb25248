"""course_utils.detection.metrics: COCO mAP against torchmetrics' MeanAveragePrecision
(pycocotools backend) on random datasets and edge cases, precision-recall curves, Hungarian
matching against a brute force, and bad input; mask mAP against pycocotools' segm evaluation."""

import contextlib
import io
import itertools

import matplotlib
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchmetrics.detection import MeanAveragePrecision

from course_utils.detection import (
    hungarian_match,
    mask_iou,
    mean_average_precision,
    plot_precision_recall,
    precision_recall_curve,
)

matplotlib.use("Agg")

TOL = 1e-3  # DESIGN.md §5


def rand_boxes(g: torch.Generator, n: int, size: float = 100.0) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=g) * size
    wh = torch.rand(n, 2, generator=g) * size / 3 + 1
    return torch.cat((xy, xy + wh), dim=1)


def random_dataset(seed: int, num_images: int = 6, num_classes: int = 4, max_dets: int = 10):
    """Ground truth, and detections that are partly noisy copies of it, partly random boxes."""
    g = torch.Generator().manual_seed(seed)
    preds, targets = [], []
    for _ in range(num_images):
        n_gt = int(torch.randint(0, 6, (1,), generator=g))
        gt = rand_boxes(g, n_gt)
        gt_labels = torch.randint(0, num_classes, (n_gt,), generator=g)
        n_det = int(torch.randint(0, max_dets + 1, (1,), generator=g))
        copies = gt.repeat(3, 1)[:n_det]
        noisy = copies + torch.randn(copies.shape, generator=g) * 4
        noisy = torch.cat(
            (noisy[:, :2].minimum(noisy[:, 2:]), noisy[:, :2].maximum(noisy[:, 2:])), 1
        )
        extra = rand_boxes(g, n_det - len(copies))
        labels = torch.cat(
            (
                gt_labels.repeat(3)[: len(copies)],
                torch.randint(0, num_classes, (len(extra),), generator=g),
            )
        )
        scores = torch.rand(n_det, generator=g)
        preds.append({"boxes": torch.cat((noisy, extra)), "scores": scores, "labels": labels})
        targets.append({"boxes": gt, "labels": gt_labels})
    return preds, targets


def reference(preds, targets) -> dict:
    metric = MeanAveragePrecision(backend="pycocotools", iou_type="bbox", class_metrics=True)
    metric.update(preds, targets)
    return metric.compute()


def assert_matches_torchmetrics(preds, targets) -> float:
    ours, ref = mean_average_precision(preds, targets), reference(preds, targets)
    diffs = [abs(ours[k] - float(ref[k])) for k in ("map", "map_50", "map_75")]
    # torchmetrics gives per-class values for its `classes` (those seen anywhere)
    assert ours["classes"].tolist() == ref["classes"].reshape(-1).tolist()
    per_class = ref["map_per_class"].reshape(-1).double()
    diffs.append(float((ours["map_per_class"] - per_class).abs().max()) if len(per_class) else 0.0)
    assert max(diffs) <= TOL, (ours, ref)
    return max(diffs)


@pytest.mark.parametrize("seed", range(12))
def test_map_matches_torchmetrics_on_random_datasets(seed):
    assert_matches_torchmetrics(*random_dataset(seed))


@pytest.mark.filterwarnings("ignore:Encountered more than 100 detections")
def test_map_matches_torchmetrics_with_many_classes_and_detections():
    # More than 100 detections of one class in an image: only the 100 best count.
    preds, targets = random_dataset(100, num_images=3, num_classes=12, max_dets=40)
    g = torch.Generator().manual_seed(0)
    crowd = targets[0]["boxes"][:1].repeat(150, 1) + torch.rand(150, 4, generator=g)
    preds[0] = {
        "boxes": torch.cat((preds[0]["boxes"], crowd)),
        "scores": torch.cat((preds[0]["scores"], torch.rand(150, generator=g))),
        "labels": torch.cat((preds[0]["labels"], targets[0]["labels"][:1].repeat(150))),
    }
    assert_matches_torchmetrics(preds, targets)


def _image(boxes, labels, scores=None):
    d = {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)}
    d["labels"] = torch.tensor(labels, dtype=torch.int64)
    if scores is not None:
        d["scores"] = torch.tensor(scores, dtype=torch.float32)
    return d


BOX = [10.0, 10.0, 50.0, 40.0]
EDGE_CASES = {
    "perfect": ([_image([BOX], [1], [0.9])], [_image([BOX], [1])]),
    "no predictions": ([_image([], [], [])], [_image([BOX], [1])]),
    "no targets": ([_image([BOX], [1], [0.9])], [_image([], [])]),
    "class without ground truth": (
        [_image([BOX, BOX], [1, 2], [0.9, 0.8])],
        [_image([BOX], [1])],
    ),
    "class without detections": (
        [_image([BOX], [1], [0.9])],
        [_image([BOX, [60.0, 60, 90, 90]], [1, 3])],
    ),
    "duplicate detection": ([_image([BOX, BOX], [1, 1], [0.9, 0.8])], [_image([BOX], [1])]),
    "false positive first": (
        [_image([[0.0, 0, 5, 5], BOX], [1, 1], [0.9, 0.8])],
        [_image([BOX], [1])],
    ),
    "tied scores": (
        [_image([[0.0, 0, 5, 5], BOX, BOX], [1, 1, 1], [0.5, 0.5, 0.5])],
        [_image([BOX, [11.0, 10, 50, 40]], [1, 1])],
    ),
    "loose box (IoU 0.625)": (
        [_image([[10.0, 10.0, 50.0, 58.0]], [1], [0.9])],
        [_image([BOX], [1])],
    ),
    # exactly on a threshold: 0.6 < float32(0.6), a miss there in torchmetrics and here
    "IoU exactly 0.6": ([_image([[10.0, 10.0, 50.0, 60.0]], [1], [0.9])], [_image([BOX], [1])]),
    "empty image among others": (
        [_image([BOX], [1], [0.9]), _image([], [], []), _image([BOX], [2], [0.4])],
        [_image([BOX], [1]), _image([], []), _image([[0.0, 0, 9, 9]], [2])],
    ),
}


@pytest.mark.parametrize("case", EDGE_CASES)
def test_map_matches_torchmetrics_on_edge_cases(case):
    assert_matches_torchmetrics(*EDGE_CASES[case])


def test_map_known_values():
    ours = mean_average_precision(*EDGE_CASES["perfect"])
    # approx: COCO divides by tp + fp + 2.2e-16
    assert [ours[k] for k in ("map", "map_50", "map_75")] == pytest.approx([1.0, 1.0, 1.0])
    # IoU 0.625: a hit at thresholds 0.50, 0.55, 0.60 only -> 3 of 10
    ours = mean_average_precision(*EDGE_CASES["loose box (IoU 0.625)"])
    assert [ours[k] for k in ("map", "map_50", "map_75")] == pytest.approx([0.3, 1.0, 0.0])
    ours = mean_average_precision(*EDGE_CASES["no targets"])
    assert ours["map"] == -1.0 and ours["map_per_class"].tolist() == [-1.0]
    ours = mean_average_precision(*EDGE_CASES["class without ground truth"])
    assert ours["map_per_class"].tolist() == pytest.approx([1.0, -1.0])


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000))
def test_map_properties(seed):
    preds, targets = random_dataset(seed, num_images=3)
    result = mean_average_precision(preds, targets)
    per_class = result["map_per_class"]
    if result["map"] >= 0:
        assert all(0 <= result[k] <= 1 for k in ("map", "map_50", "map_75"))
        assert result["map"] == pytest.approx(float(per_class[per_class >= 0].mean()))
    # Ground truth given as predictions (score 1) is perfect.
    perfect = [{**t, "scores": torch.ones(len(t["labels"]))} for t in targets]
    expected = 1.0 if sum(len(t["labels"]) for t in targets) else -1.0
    assert mean_average_precision(perfect, targets)["map"] == pytest.approx(expected)


def test_map_custom_thresholds():
    preds, targets = random_dataset(3)
    only_half = mean_average_precision(preds, targets, iou_thresholds=[0.5])
    assert only_half["map"] == pytest.approx(only_half["map_50"])
    assert only_half["map_75"] == -1.0
    assert only_half["map"] == pytest.approx(mean_average_precision(preds, targets)["map_50"])


def test_precision_recall_curve():
    preds, targets = EDGE_CASES["false positive first"]
    precision, recall = precision_recall_curve(preds, targets, label=1)
    np.testing.assert_allclose(precision, [0.0, 0.5])
    np.testing.assert_allclose(recall, [0.0, 1.0])
    precision, recall = precision_recall_curve(*EDGE_CASES["no predictions"], label=1)
    assert precision.shape == recall.shape == (0,)


def test_plot_precision_recall_returns_axes():
    precision, recall = precision_recall_curve(*random_dataset(1), label=0)
    ax = plot_precision_recall(precision, recall, label="class 0")
    assert ax.get_xlabel() == "recall" and ax.get_ylabel() == "precision" and ax.get_title()
    assert len(ax.lines) == 2


@pytest.mark.parametrize("shape", [(4, 4), (3, 5), (5, 2), (1, 1), (0, 3)])
def test_hungarian_match_is_optimal(shape):
    cost = torch.rand(shape, generator=torch.Generator().manual_seed(sum(shape)))
    rows, cols = hungarian_match(cost)
    n, m = shape
    assert rows.dtype == cols.dtype == torch.int64 and len(rows) == len(cols) == min(n, m)
    assert len(set(rows.tolist())) == len(rows) and len(set(cols.tolist())) == len(cols)
    if n <= m:  # brute force over every assignment of the rows
        best = min(
            (sum(cost[i, j] for i, j in enumerate(p)) for p in itertools.permutations(range(m), n)),
            default=0.0,
        )
        assert float(cost[rows, cols].sum()) == pytest.approx(float(best))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: mean_average_precision([_image([], [], [])], []), "1 predictions for 0 images"),
        (lambda: mean_average_precision([_image([BOX], [1])], [_image([BOX], [1])]), "scores"),
        (
            lambda: mean_average_precision([_image([BOX], [1, 2], [0.5])], [_image([BOX], [1])]),
            "one entry per object",
        ),
        (
            lambda: mean_average_precision(
                [_image([[10.0, 10, 5, 5]], [1], [0.5])], [_image([BOX], [1])]
            ),
            "xywh",
        ),
        (lambda: hungarian_match(torch.rand(3)), "cost matrix"),
        (lambda: hungarian_match(torch.tensor([[float("nan")]])), "NaN"),
    ],
)
def test_bad_input_raises_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def random_mask_dataset(seed: int, num_images: int = 4, size: int = 24, num_classes: int = 3):
    """Instance masks: ground-truth rectangles and blobs, predictions that are noisy copies of
    them (shifted by a pixel or two) plus false positives."""
    g = torch.Generator().manual_seed(seed)
    preds, targets = [], []
    for _ in range(num_images):
        n_gt = int(torch.randint(0, 5, (1,), generator=g))
        gt = torch.rand(n_gt, size, size, generator=g) < 0.1  # scattered pixels...
        for k in range(n_gt):  # ...plus a solid rectangle, so that IoUs spread over [0, 1]
            x, y = torch.randint(0, size - 8, (2,), generator=g).tolist()
            w, h = torch.randint(3, 9, (2,), generator=g).tolist()
            gt[k, y : y + h, x : x + w] = True
        labels = torch.randint(0, num_classes, (n_gt,), generator=g)
        shifted = gt.roll(shifts=int(torch.randint(-2, 3, (1,), generator=g)), dims=2)
        extra = torch.rand(2, size, size, generator=g) < 0.2
        masks = torch.cat((shifted, extra))
        pred_labels = torch.cat((labels, torch.randint(0, num_classes, (2,), generator=g)))
        scores = torch.rand(len(masks), generator=g)
        preds.append({"masks": masks, "scores": scores, "labels": pred_labels})
        targets.append({"masks": gt, "labels": labels})
    return preds, targets


def pycocotools_segm_map(preds, targets) -> float:
    """COCO's own ``segm`` evaluation (pycocotools) of masks given as tensors.

    (torchmetrics 1.9's ``iou_type="segm"`` wraps the same code but disagreed with it on two of
    these six random sets, by up to 0.0055 mAP, so the reference here is pycocotools itself.)
    """

    def rle(mask):
        return mask_utils.encode(np.asfortranarray(mask.numpy().astype(np.uint8)))

    size = targets[0]["masks"].shape[-2:]
    gt = {"images": [], "annotations": [], "categories": [{"id": c} for c in range(10)]}
    dets = []
    for i, (p, t) in enumerate(zip(preds, targets)):
        gt["images"].append({"id": i, "height": size[0], "width": size[1]})
        for mask, label in zip(t["masks"], t["labels"].tolist()):
            r = rle(mask)
            gt["annotations"].append(
                {
                    "id": len(gt["annotations"]) + 1,
                    "image_id": i,
                    "category_id": label,
                    "segmentation": r,
                    "area": float(mask_utils.area(r)),
                    "iscrowd": 0,
                    "bbox": mask_utils.toBbox(r).tolist(),
                }
            )
        for mask, label, score in zip(p["masks"], p["labels"].tolist(), p["scores"].tolist()):
            dets.append(
                {"image_id": i, "category_id": label, "segmentation": rle(mask), "score": score}
            )
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        evaluation = COCOeval(coco, coco.loadRes(dets), "segm")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation.stats[0]


@pytest.mark.parametrize("seed", range(6))
def test_mask_map_matches_pycocotools_segm(seed):
    preds, targets = random_mask_dataset(seed)
    ours = mean_average_precision(preds, targets, iou_type="segm")["map"]
    assert abs(ours - pycocotools_segm_map(preds, targets)) <= TOL


def test_mask_map_accepts_torchvision_probability_masks():
    preds, targets = random_mask_dataset(0)
    as_probs = [p | {"masks": p["masks"][:, None].float() * 0.9} for p in preds]
    a = mean_average_precision(preds, targets, iou_type="segm")
    b = mean_average_precision(as_probs, targets, iou_type="segm")
    assert a["map"] == b["map"]
    with pytest.raises(ValueError, match="iou_type"):
        mean_average_precision(preds, targets, iou_type="keypoints")


def test_mask_iou_known_values():
    a = torch.zeros(2, 4, 4, dtype=torch.bool)
    a[0, :2] = True  # 8 pixels
    b = torch.zeros(3, 4, 4, dtype=torch.bool)
    b[0, :1] = True  # 4 pixels, inside a[0]
    b[1] = True  # everything
    iou = mask_iou(a, b)
    expected = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    assert torch.equal(iou, expected)  # empty against empty: 0, not nan
