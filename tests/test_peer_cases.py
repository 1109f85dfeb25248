"""torchvision's own test cases for its box operations (test/test_ops.py: TestBoxConvert,
TestBoxArea, TestBoxIou, TestGeneralizedBoxIou, TestGeneralizedBoxIouLoss, TestNMS), ported to
course_utils.detection: the same inputs, the same expected values and tolerances.

Where the course deliberately differs, the test says so next to torchvision's behaviour:
integer boxes (torchvision computes with them, the course asks for ``boxes.float()``) and
``batched_nms(empty, None, None, None)`` (torchvision returns an empty tensor, the course checks
its arguments even when there are no boxes)."""

import pytest
import torch
import torchvision.ops as tvops

from course_utils.detection import (
    batched_nms,
    box_area,
    box_convert,
    box_iou,
    generalized_box_iou,
    giou_loss,
    nms,
)

HALF = [torch.float16, torch.bfloat16]

# ---------------------------------------------------------------- TestBoxConvert

XYXY = [[0, 0, 100, 100], [0, 0, 0, 0], [10, 15, 30, 35], [23, 35, 93, 95]]
XYWH = [[0, 0, 100, 100], [0, 0, 0, 0], [10, 15, 20, 20], [23, 35, 70, 60]]
CXCYWH = [[50, 50, 100, 100], [0, 0, 0, 0], [20, 25, 20, 20], [58, 65, 70, 60]]
FORMATS = {"xyxy": XYXY, "xywh": XYWH, "cxcywh": CXCYWH}


@pytest.mark.parametrize("in_fmt", FORMATS)
@pytest.mark.parametrize("out_fmt", FORMATS)
def test_box_convert_known_values_both_ways(in_fmt, out_fmt):
    # includes the degenerate box [0, 0, 0, 0], which torchvision converts like any other
    boxes = torch.tensor(FORMATS[in_fmt], dtype=torch.float)
    expected = torch.tensor(FORMATS[out_fmt], dtype=torch.float)
    assert torch.equal(box_convert(boxes, in_fmt, out_fmt), expected)


@pytest.mark.parametrize("in_fmt, out_fmt", [("xwyh", "xwcx"), ("cxwyh", "xhwcy"), ("xyxy", "x")])
def test_box_convert_rejects_unknown_formats(in_fmt, out_fmt):
    with pytest.raises(ValueError, match="unknown box format"):
        box_convert(torch.tensor(XYWH, dtype=torch.float), in_fmt, out_fmt)


# ---------------------------------------------------------------- TestBoxArea

FLOAT_BOXES = [
    [285.3538, 185.5758, 1193.5110, 851.4551],
    [285.1472, 188.7374, 1192.4984, 851.0669],
    [279.2440, 197.9812, 1189.4746, 849.2019],
]
INT_BOXES = [[0, 0, 100, 100], [0, 0, 50, 50], [200, 200, 300, 300], [0, 0, 25, 25]]
INT_BOXES2 = [[0, 0, 100, 100], [0, 0, 50, 50], [200, 200, 300, 300]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_box_area_float_boxes(dtype):
    expected = torch.tensor([604723.0806, 600965.4666, 592761.0085], dtype=dtype)
    area = box_area(torch.tensor(FLOAT_BOXES, dtype=dtype))
    torch.testing.assert_close(area, expected, rtol=0.0, atol=1e-4)


@pytest.mark.parametrize("dtype", HALF)
def test_box_area_half_boxes_in_float32(dtype):
    small = [[2.825, 1.8625, 3.90, 4.85], [2.825, 4.875, 19.20, 5.10], [2.925, 1.80, 8.90, 4.90]]
    boxes = torch.tensor(small, dtype=dtype)
    area = box_area(boxes)
    assert area.dtype == tvops.box_area(boxes).dtype == torch.float32
    # the exact area of the boxes as rounded to `dtype`
    torch.testing.assert_close(area, box_area(boxes.double()).float())
    if dtype == torch.float16:  # torchvision's expected values (bfloat16 rounds 5.10 - 4.875)
        expected = torch.tensor([3.2170, 3.7108, 18.5071])
        torch.testing.assert_close(area, expected, rtol=0.0, atol=0.01)
    # Areas of ~600,000 are beyond float16 (max 65,504): finite only because of the upcast.
    big = box_area(torch.tensor(FLOAT_BOXES, dtype=dtype))
    assert torch.isfinite(big).all() and big.dtype == torch.float32


def test_integer_boxes_are_refused_where_torchvision_accepts_them():
    boxes = torch.tensor(INT_BOXES2)
    assert tvops.box_area(boxes).tolist() == [10000, 2500, 10000]  # torchvision: int areas
    with pytest.raises(ValueError, match=r"boxes.float\(\)"):  # the course: floats only
        box_area(boxes)
    assert box_area(boxes.float()).tolist() == [10000, 2500, 10000]


# ---------------------------------------------------------------- TestBoxIou, TestGeneralizedBoxIou

IOU_INT_EXPECTED = [[1.0, 0.25, 0.0], [0.25, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0625, 0.25, 0.0]]
GIOU_INT_EXPECTED = [
    [1.0, 0.25, -0.7778],
    [0.25, 1.0, -0.8611],
    [-0.7778, -0.8611, 1.0],
    [0.0625, 0.25, -0.8819],
]
FLOAT_EXPECTED = [[1.0, 0.9933, 0.9673], [0.9933, 1.0, 0.9737], [0.9673, 0.9737, 1.0]]
IOU_CASES = [
    (INT_BOXES, INT_BOXES2, [torch.float32, torch.float64], 1e-4),
    (FLOAT_BOXES, FLOAT_BOXES, [torch.float16], 0.002),
    (FLOAT_BOXES, FLOAT_BOXES, [torch.bfloat16], 0.02),  # not in torchvision: 8-bit mantissa
    (FLOAT_BOXES, FLOAT_BOXES, [torch.float32, torch.float64], 1e-3),
]


@pytest.mark.parametrize(
    "fn, int_expected", [(box_iou, IOU_INT_EXPECTED), (generalized_box_iou, GIOU_INT_EXPECTED)]
)
@pytest.mark.parametrize("box1, box2, dtypes, atol", IOU_CASES)
def test_iou_tables(fn, int_expected, box1, box2, dtypes, atol):
    expected = torch.tensor(int_expected if box1 is INT_BOXES else FLOAT_EXPECTED)
    for dtype in dtypes:
        out = fn(torch.tensor(box1, dtype=dtype), torch.tensor(box2, dtype=dtype))
        # half precision comes back in float32, as from torchvision (which gave NaN here before)
        assert out.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
        torch.testing.assert_close(out, expected, rtol=0.0, atol=atol, check_dtype=False)


@pytest.mark.parametrize("fn", [box_iou, generalized_box_iou])
def test_iou_cartesian(fn):
    # every entry of the [N, M] matrix is the IoU of that one pair
    torch.manual_seed(0)
    xy = torch.rand(12, 2)
    boxes = torch.cat((xy, xy + torch.rand(12, 2)), dim=1)
    a, b = boxes[:5], boxes[5:]
    pairs = torch.tensor(
        [[float(fn(a[i : i + 1], b[j : j + 1])) for j in range(7)] for i in range(5)]
    )
    torch.testing.assert_close(fn(a, b), pairs)


# ---------------------------------------------------------------- TestGeneralizedBoxIouLoss


def get_boxes(dtype):
    box1 = torch.tensor([-1, -1, 1, 1], dtype=dtype)
    box2 = torch.tensor([0, 0, 1, 1], dtype=dtype)
    box3 = torch.tensor([0, 1, 1, 2], dtype=dtype)
    box4 = torch.tensor([1, 1, 2, 2], dtype=dtype)
    return box1, box2, box3, box4, torch.stack([box2, box2]), torch.stack([box3, box4])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_giou_loss_known_values(dtype):
    box1, box2, box3, box4, box1s, box2s = get_boxes(dtype)
    for a, b, expected in [
        (box1, box1, 0.0),  # identical boxes
        (box1, box2, 0.75),  # a quarter-size box inside the other: IoU 0.25
        (box2, box3, 1.0),  # side by side: IoU 0, GIoU 0
        (box2, box4, 1.5),  # diagonally adjacent: IoU 0, GIoU -0.5
    ]:
        torch.testing.assert_close(giou_loss(a, b), torch.tensor(expected))  # float32 out
    torch.testing.assert_close(giou_loss(box1s, box2s, reduction="sum"), torch.tensor(2.5))
    torch.testing.assert_close(giou_loss(box1s, box2s, reduction="mean"), torch.tensor(1.25))
    with pytest.raises(ValueError, match="reduction"):
        giou_loss(box1s, box2s, reduction="xyz")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_giou_loss_empty_inputs(dtype, reduction):
    box1 = torch.randn([0, 4], dtype=dtype).requires_grad_()
    box2 = torch.randn([0, 4], dtype=dtype).requires_grad_()
    loss = giou_loss(box1, box2, reduction=reduction)
    loss.backward()
    torch.testing.assert_close(loss, torch.tensor(0.0))  # not mean()'s NaN
    assert box1.grad is not None and box2.grad is not None
    assert giou_loss(box1, box2, reduction="none").numel() == 0
    reference = tvops.generalized_box_iou_loss(box1, box2, reduction=reduction)
    assert reference.item() == loss.item() == 0.0


# ---------------------------------------------------------------- TestNMS


def reference_nms(boxes, scores, iou_threshold):
    """torchvision's reference: keep the best box, drop those above the threshold, repeat."""
    picked = []
    _, indexes = scores.sort(descending=True)
    while len(indexes) > 0:
        current = indexes[0]
        picked.append(current.item())
        indexes = indexes[1:]
        iou = tvops.box_iou(boxes[indexes], boxes[current][None]).squeeze(1)
        indexes = indexes[iou <= iou_threshold]
    return torch.as_tensor(picked)


def create_tensors_with_iou(n, iou_thresh):
    """``n`` random boxes whose last one overlaps the first with an IoU just above
    ``iou_thresh``, so that it must be suppressed."""
    boxes = torch.rand(n, 4) * 100
    boxes[:, 2:] += boxes[:, :2]
    boxes[-1, :] = boxes[0, :]
    x0, _, x1, _ = boxes[-1].tolist()
    iou_thresh += 1e-5
    boxes[-1, 2] += (x1 - x0) * (1 - iou_thresh) / iou_thresh
    return boxes, torch.rand(n)


@pytest.mark.parametrize("iou", (0.2, 0.5, 0.8))
@pytest.mark.parametrize("seed", range(10))
def test_nms_ref(iou, seed):
    torch.manual_seed(seed)
    boxes, scores = create_tensors_with_iou(1000, iou)
    assert torch.equal(nms(boxes, scores, iou), reference_nms(boxes, scores, iou))


@pytest.mark.parametrize(
    "boxes, scores, match",
    [
        (torch.tensor([0.0, 0, 1, 1]), torch.rand(3), "shape"),  # torchvision: torch.rand(4)
        (torch.rand(3, 5), torch.rand(3), "shape"),
        (torch.tensor([[0.0, 0, 1, 1]] * 3), torch.rand(3, 2), "1-D"),
        (torch.tensor([[0.0, 0, 1, 1]] * 3), torch.rand(4), "same length"),
    ],
)
def test_nms_input_errors(boxes, scores, match):
    # torchvision raises a RuntimeError from C++; the course a ValueError saying what is wrong
    with pytest.raises(ValueError, match=match):
        nms(boxes, scores, 0.5)


@pytest.mark.parametrize("dtype", HALF)
def test_nms_half_precision(dtype):
    # torchvision's test_nms_float16 (GPU only there: its CPU kernel refuses float16)
    boxes = torch.tensor(FLOAT_BOXES)
    scores = torch.tensor([0.6370, 0.7569, 0.3966])
    keep32 = nms(boxes, scores, 0.2)
    assert keep32.tolist() == tvops.nms(boxes, scores, 0.2).tolist() == [1]
    assert torch.equal(nms(boxes.to(dtype), scores.to(dtype), 0.2), keep32)


def batched_nms_vanilla(boxes, scores, idxs, iou_threshold):
    """torchvision's other implementation: one NMS per category, merged by score."""
    keep_mask = torch.zeros_like(scores, dtype=torch.bool)
    for class_id in torch.unique(idxs):
        curr = torch.where(idxs == class_id)[0]
        keep_mask[curr[tvops.nms(boxes[curr], scores[curr], iou_threshold)]] = True
    keep = torch.where(keep_mask)[0]
    return keep[scores[keep].sort(descending=True)[1]]


@pytest.mark.parametrize("seed", range(10))
def test_batched_nms_implementations(seed):
    torch.manual_seed(seed)
    boxes = torch.cat((torch.rand(1000, 2), torch.rand(1000, 2) + 10), dim=1)
    scores = torch.rand(1000)
    idxs = torch.randint(0, 4, size=(1000,))
    keep = batched_nms(boxes, scores, idxs, 0.9)
    assert torch.equal(keep, batched_nms_vanilla(boxes, scores, idxs, 0.9))
    assert torch.equal(keep, tvops.batched_nms(boxes, scores, idxs, 0.9))


def test_batched_nms_empty():
    empty = torch.empty((0,), dtype=torch.int64)
    assert torch.equal(tvops.batched_nms(empty, None, None, None), empty)  # torchvision
    # the course checks its arguments even without boxes: a [0, 4] tensor and real scores
    with pytest.raises(ValueError, match=r"\[\.\.\., 4\]"):
        batched_nms(empty, None, None, None)
    keep = batched_nms(torch.zeros(0, 4), torch.zeros(0), empty, 0.5)
    assert torch.equal(keep, empty)
