"""Checkers for the exercises of ``03_object_detection``.

Each checker calls the learner's function on a few inputs and compares the result with the
course's own implementation in :mod:`course_utils.detection`; a wrong answer fails with a hint
about the most likely mistake.
"""

import torch

from .. import zoo
from ..detection.boxes import batched_nms, box_iou, nms
from ..detection.detector import digit_scenes
from . import exercise

#: (box a, box b) pairs in xyxy pixels that cover the cases an IoU must get right
IOU_CASES = [
    ([0.0, 0, 10, 10], [5, 5, 15, 15]),  # partial overlap: 25 / 175
    ([0.0, 0, 10, 10], [0, 0, 10, 10]),  # identical: 1
    ([0.0, 0, 10, 10], [2, 2, 6, 6]),  # one inside the other: 16 / 100
    ([0.0, 0, 10, 10], [10, 0, 20, 10]),  # touching edges: 0
    ([0.0, 0, 10, 10], [20, 30, 25, 40]),  # far apart (both overlaps negative): 0
    ([3.0, 1, 9, 12], [5, 4, 11, 7]),  # a wide and a tall box
]


def _float(value, what: str) -> float:
    if isinstance(value, torch.Tensor):
        assert value.numel() == 1, f"{what} should be one number, got shape {tuple(value.shape)}"
        return float(value)
    assert isinstance(value, (int, float)), f"{what} should be a number, got {type(value).__name__}"
    return float(value)


@exercise("03.1 intersection over union")
def check_iou(iou) -> None:
    """``iou(a [4], b [4]) -> float``: IoU of two xyxy boxes."""
    for a, b in IOU_CASES:
        a_t, b_t = torch.tensor(a, dtype=torch.float32), torch.tensor(b, dtype=torch.float32)
        out = _float(iou(a_t, b_t), f"iou({a}, {b})")
        expected = float(box_iou(a_t[None], b_t[None])[0, 0])
        width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        area_sum = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])
        if expected == 0 and abs(out) > 1e-6:
            raise AssertionError(
                f"iou({a}, {b}) = {out:.3f}, but the boxes do not overlap: clamp the width and "
                "the height of the intersection at 0 *before* multiplying them (two negative "
                "sides multiply into a positive area)"
            )
        if expected > 0 and abs(out - width * height / area_sum) < 1e-6:
            raise AssertionError(
                "the union counts the intersection twice: union = area(a) + area(b) - intersection"
            )
        assert abs(out - expected) < 1e-5, (
            f"iou({a}, {b}) = {out:.4f}, expected {expected:.4f}: intersection corners are "
            "max(x1), max(y1), min(x2), min(y2); width = x2 - x1 (no + 1 for float boxes)"
        )


def _nms_cases() -> list[tuple[torch.Tensor, torch.Tensor, float]]:
    """(boxes, scores, threshold) cases: a crowd, a single box, an empty input."""
    g = torch.Generator().manual_seed(3)
    centres = torch.rand(40, 2, generator=g) * 60
    sizes = 8 + torch.rand(40, 2, generator=g) * 20
    crowd = torch.cat([centres - sizes / 2, centres + sizes / 2], dim=1)
    scores = torch.rand(40, generator=g)
    return [
        (crowd, scores, 0.5),
        (crowd, scores, 0.3),
        (crowd[:1], scores[:1], 0.5),  # one box: the answer is tensor([0]), not a 0-d tensor
        (torch.zeros(0, 4), torch.zeros(0), 0.5),
    ]


@exercise("03.2 non-maximum suppression")
def check_nms(my_nms) -> None:
    """``my_nms(boxes [N, 4], scores [N], iou_threshold) -> int64 [K]`` kept indices, best first."""
    for boxes, scores, threshold in _nms_cases():
        boxes_before, scores_before = boxes.clone(), scores.clone()
        keep = my_nms(boxes, scores, threshold)
        assert torch.equal(boxes, boxes_before) and torch.equal(scores, scores_before), (
            "the inputs were modified in place: sort or mask copies, never boxes/scores themselves"
        )
        assert isinstance(keep, torch.Tensor), (
            f"return a tensor of indices, got {type(keep).__name__} (torch.tensor(keep_list))"
        )
        assert keep.ndim == 1, (
            f"for {len(boxes)} box(es) the result has shape {tuple(keep.shape)}: return a 1-d "
            "tensor; `.squeeze()` on a single remaining box makes a 0-d tensor, use `.view(-1)`"
        )
        expected = nms(boxes, scores, threshold)
        assert keep.dtype == torch.int64, f"dtype {keep.dtype}: indices are int64 (torch.long)"
        if set(keep.tolist()) == set(expected.tolist()) and not torch.equal(keep, expected):
            raise AssertionError("the right boxes, but return them by decreasing score")
        if len(keep) == len(boxes) > 1:
            raise AssertionError("every box was kept: remove the boxes that overlap a kept one")
        assert torch.equal(keep, expected), (
            f"with iou_threshold={threshold} expected {len(expected)} boxes, kept {len(keep)}: "
            "sort by score, keep the best, drop the others whose IoU with it is > the threshold, "
            "repeat on what is left"
        )


@exercise("03.3 counting anchors")
def check_count_anchors(count_anchors) -> None:
    """``count_anchors(image_size, strides, num_scales, num_ratios) -> int``: anchors of a square
    image over a feature pyramid with these strides."""
    cases = [(512, [8, 16, 32, 64, 128], 3, 3), (800, [16], 3, 3), (96, [4, 8, 16], 2, 3)]
    for image_size, strides, scales, ratios in cases:
        out = count_anchors(image_size, list(strides), scales, ratios)
        cells = [(image_size // s) ** 2 for s in strides]
        expected = sum(cells) * scales * ratios
        assert isinstance(out, int) or (isinstance(out, torch.Tensor) and out.numel() == 1), (
            f"return a number, got {type(out).__name__}"
        )
        out = int(out)
        if out == sum(cells) * (scales + ratios):
            raise AssertionError("every (scale, ratio) pair is one anchor: multiply, do not add")
        if out in (sum(cells) * scales, sum(cells) * ratios):
            raise AssertionError("each cell has num_scales * num_ratios anchors, not one of them")
        if len(strides) > 1 and out == cells[0] * scales * ratios:
            raise AssertionError("count the anchors of every pyramid level, not only the first")
        assert out == expected, (
            f"count_anchors({image_size}, {strides}, {scales}, {ratios}) = {out}, expected "
            f"{expected}: a level with stride s is a (image_size / s)² grid of cells"
        )


def _reference_answers(model, image, confidence, iou_threshold) -> list[tuple]:
    """The two right answers: ``(boxes, scores, labels)`` after class-aware and class-agnostic NMS."""
    with torch.no_grad():
        det = model.eval()([image])[0]
    keep = det["scores"] > confidence
    boxes, scores, labels = det["boxes"][keep], det["scores"][keep], det["labels"][keep]
    answers = []
    for kept in (
        batched_nms(boxes, scores, labels, iou_threshold),
        nms(boxes, scores, iou_threshold),
    ):
        answers.append((boxes[kept], scores[kept], labels[kept]))
    return answers


@exercise("03.4 detect_and_filter")
def check_detect_and_filter(detect_and_filter) -> None:
    """``detect_and_filter(model, image [3, H, W], confidence_threshold, iou_threshold) ->
    (boxes [K, 4], scores [K], labels [K])`` on three held-out scenes with the course detector."""
    model = zoo.load("detector_digits", device="cpu")
    scenes = digit_scenes(3, split="test", **zoo.info("detector_digits")["recipe"]["scenes"])
    for confidence, iou_threshold in [(0.5, 0.5), (0.2, 0.3)]:
        for image, _ in scenes:
            model.train()  # a learner's model may well be left in training mode
            original = image.clone()
            try:
                out = detect_and_filter(model, image, confidence, iou_threshold)
            except ValueError as err:
                if "needs targets" in str(err):
                    raise AssertionError(
                        "the model is in training mode: call model.eval() before detecting"
                    ) from None
                raise
            assert torch.equal(image, original), "the image was modified in place"
            assert isinstance(out, tuple) and len(out) == 3, (
                "return a tuple (boxes, scores, labels)"
            )
            boxes, scores, labels = out
            assert not scores.requires_grad, (
                "the scores carry a gradient graph: run the model under torch.no_grad()"
            )
            answers = _reference_answers(model, image, confidence, iou_threshold)
            assert (scores > confidence).all(), (
                f"a detection scored {scores.min():.2f} <= confidence_threshold={confidence}: "
                "filter with scores > confidence_threshold"
            )
            if not any(
                len(boxes) == len(b)
                and torch.allclose(boxes, b)
                and torch.equal(labels, lab)
                and torch.allclose(scores, s)
                for b, s, lab in answers
            ):
                raise AssertionError(
                    f"kept {len(boxes)} detections, expected {len(answers[0][0])} (class-aware "
                    f"NMS) or {len(answers[1][0])} (NMS over all classes): keep scores > "
                    "confidence_threshold first, then nms(boxes, scores, iou_threshold) (or "
                    "batched_nms with the labels), and index boxes, scores and labels with the "
                    "same kept indices"
                )
