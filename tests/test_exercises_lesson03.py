import pytest
import torch
from exercise_testing import assert_right_answers_pass, assert_stub_not_attempted

from course_utils.detection.boxes import batched_nms, box_iou, nms
from course_utils.exercises import lesson03

pytestmark = pytest.mark.usefixtures("private_cache")


# ------------------------------------------------------------------ right answers


def iou(a, b):
    width = (torch.min(a[2], b[2]) - torch.max(a[0], b[0])).clamp(min=0)
    height = (torch.min(a[3], b[3]) - torch.max(a[1], b[1])).clamp(min=0)
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def greedy_nms(boxes, scores, iou_threshold):
    order = scores.argsort(descending=True, stable=True)
    keep = []
    while len(order):
        best = order[0]
        keep.append(int(best))
        overlap = box_iou(boxes[best].view(1, 4), boxes[order[1:]]).view(-1)
        order = order[1:][overlap <= iou_threshold]
    return torch.tensor(keep, dtype=torch.int64)


def count_anchors(image_size, strides, num_scales, num_ratios):
    return sum((image_size // s) ** 2 for s in strides) * num_scales * num_ratios


def detect_and_filter(model, image, confidence_threshold=0.5, iou_threshold=0.5):
    model.eval()
    with torch.no_grad():
        det = model([image])[0]
    keep = det["scores"] > confidence_threshold
    boxes, scores, labels = det["boxes"][keep], det["scores"][keep], det["labels"][keep]
    kept = batched_nms(boxes, scores, labels, iou_threshold)
    return boxes[kept], scores[kept], labels[kept]


def detect_and_filter_class_agnostic(model, image, confidence_threshold=0.5, iou_threshold=0.5):
    model.eval()
    with torch.no_grad():
        det = model([image])[0]
    keep = det["scores"] > confidence_threshold
    kept = nms(det["boxes"][keep], det["scores"][keep], iou_threshold)
    return det["boxes"][keep][kept], det["scores"][keep][kept], det["labels"][keep][kept]


CHECKS = {
    "03.1 intersection over union": (lesson03.check_iou, iou),
    "03.2 non-maximum suppression": (lesson03.check_nms, greedy_nms),
    "03.3 counting anchors": (lesson03.check_count_anchors, count_anchors),
    "03.4 detect_and_filter": (lesson03.check_detect_and_filter, detect_and_filter),
}


def test_right_answers_pass_and_are_recorded():
    assert_right_answers_pass(CHECKS)
    assert lesson03.check_detect_and_filter(detect_and_filter_class_agnostic).passed


@pytest.mark.parametrize("name", list(CHECKS))
def test_stubs_are_not_attempted(name):
    assert_stub_not_attempted(CHECKS, name)


def failure(check, answer) -> str:
    result = check(answer)
    assert result.status == "failed", result
    return result.message


# ------------------------------------------------------------------ typical mistakes


def test_iou_mistakes():
    def unclamped(a, b):
        inter = (torch.min(a[2], b[2]) - torch.max(a[0], b[0])) * (
            torch.min(a[3], b[3]) - torch.max(a[1], b[1])
        )
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union

    def double_counted(a, b):
        width = (torch.min(a[2], b[2]) - torch.max(a[0], b[0])).clamp(min=0)
        height = (torch.min(a[3], b[3]) - torch.max(a[1], b[1])).clamp(min=0)
        inter = width * height
        return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]))

    def plus_one(a, b):
        width = (torch.min(a[2], b[2]) - torch.max(a[0], b[0]) + 1).clamp(min=0)
        height = (torch.min(a[3], b[3]) - torch.max(a[1], b[1]) + 1).clamp(min=0)
        inter = width * height
        area = lambda x: (x[2] - x[0] + 1) * (x[3] - x[1] + 1)  # noqa: E731
        return inter / (area(a) + area(b) - inter)

    assert "clamp" in failure(lesson03.check_iou, unclamped)
    assert "twice" in failure(lesson03.check_iou, double_counted)
    assert "expected" in failure(lesson03.check_iou, plus_one)


def test_nms_mistakes():
    def squeezing(boxes, scores, iou_threshold):
        keep = greedy_nms(boxes, scores, iou_threshold)
        return keep.squeeze()

    def by_index(boxes, scores, iou_threshold):
        return greedy_nms(boxes, scores, iou_threshold).sort().values

    def keeps_all(boxes, scores, iou_threshold):
        return torch.arange(len(boxes))

    def suppresses_below(boxes, scores, iou_threshold):  # drops boxes with LOW overlap instead
        order = scores.argsort(descending=True)
        keep = []
        while len(order):
            keep.append(int(order[0]))
            overlap = box_iou(boxes[order[0]].view(1, 4), boxes[order[1:]]).view(-1)
            order = order[1:][overlap > iou_threshold]
        return torch.tensor(keep, dtype=torch.int64)

    def in_place(boxes, scores, iou_threshold):
        keep = greedy_nms(boxes, scores, iou_threshold)
        scores.zero_()
        return keep

    assert "0-d" in failure(lesson03.check_nms, squeezing)
    assert "decreasing score" in failure(lesson03.check_nms, by_index)
    assert "every box was kept" in failure(lesson03.check_nms, keeps_all)
    assert "expected" in failure(lesson03.check_nms, suppresses_below)
    assert "in place" in failure(lesson03.check_nms, in_place)


def test_count_anchors_mistakes():
    def added(image_size, strides, num_scales, num_ratios):
        return sum((image_size // s) ** 2 for s in strides) * (num_scales + num_ratios)

    def scales_only(image_size, strides, num_scales, num_ratios):
        return sum((image_size // s) ** 2 for s in strides) * num_scales

    def first_level(image_size, strides, num_scales, num_ratios):
        return (image_size // strides[0]) ** 2 * num_scales * num_ratios

    def stride_as_size(image_size, strides, num_scales, num_ratios):
        return sum(s**2 for s in strides) * num_scales * num_ratios

    assert "multiply" in failure(lesson03.check_count_anchors, added)
    assert "num_scales * num_ratios" in failure(lesson03.check_count_anchors, scales_only)
    assert "every pyramid level" in failure(lesson03.check_count_anchors, first_level)
    assert "grid of cells" in failure(lesson03.check_count_anchors, stride_as_size)


def test_detect_and_filter_mistakes():
    def no_eval(model, image, confidence_threshold=0.5, iou_threshold=0.5):
        with torch.no_grad():
            det = model([image])[0]
        return det["boxes"], det["scores"], det["labels"]

    def no_grad_missing(model, image, confidence_threshold=0.5, iou_threshold=0.5):
        model.eval()
        det = model.head(model.backbone(image[None])[0])  # raw maps keep their graph
        scores = det["heatmap"].sigmoid().flatten()[:1]
        return torch.zeros(1, 4), scores, torch.ones(1, dtype=torch.long)

    def no_threshold(model, image, confidence_threshold=0.5, iou_threshold=0.5):
        model.eval()
        with torch.no_grad():
            det = model([image])[0]
        kept = nms(det["boxes"], det["scores"], iou_threshold)
        return det["boxes"][kept], det["scores"][kept], det["labels"][kept]

    def labels_not_indexed(model, image, confidence_threshold=0.5, iou_threshold=0.5):
        boxes, scores, labels = detect_and_filter(model, image, confidence_threshold, iou_threshold)
        return boxes, scores, labels.flip(0) + 1

    assert "model.eval()" in failure(lesson03.check_detect_and_filter, no_eval)
    assert "no_grad" in failure(lesson03.check_detect_and_filter, no_grad_missing)
    assert "confidence_threshold" in failure(lesson03.check_detect_and_filter, no_threshold)
    assert "same kept indices" in failure(lesson03.check_detect_and_filter, labels_not_indexed)
