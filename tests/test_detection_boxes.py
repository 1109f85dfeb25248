"""course_utils.detection.boxes: parity with torchvision.ops and torchvision's BoxCoder /
AnchorGenerator, edge cases (empty, one box, identical, zero-area, ties), properties with
hypothesis, and a clear error for each kind of bad input."""

import math

import numpy as np
import pytest
import torch
import torchvision.ops as tvops
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList

from course_utils.detection import (
    batched_nms,
    box_area,
    box_convert,
    box_iou,
    clip_boxes,
    decode_boxes,
    encode_boxes,
    generalized_box_iou,
    generate_anchors,
    giou_loss,
    match_boxes,
    mean_average_precision,
    nms,
    soft_nms,
)
from course_utils.detection.boxes import _BOX_FORMATS


def random_boxes(n: int, seed: int = 0, size: float = 100.0, clustered: bool = False):
    """``n`` valid xyxy boxes; ``clustered`` puts them around a few centres (realistic for NMS)."""
    g = torch.Generator().manual_seed(seed)
    if clustered:
        centres = torch.rand(max(1, n // 20), 2, generator=g) * size
        xy = centres[torch.randint(len(centres), (n,), generator=g)]
        xy = xy + torch.randn(n, 2, generator=g) * size / 50
    else:
        xy = torch.rand(n, 2, generator=g) * size
    wh = torch.rand(n, 2, generator=g) * size / 4 + 1
    return torch.cat((xy - wh / 2, xy + wh / 2), dim=1)


EDGE_BOXES = {
    "empty": torch.zeros(0, 4),
    "one": torch.tensor([[1.0, 2.0, 5.0, 7.0]]),
    "identical": torch.tensor([[1.0, 1.0, 4.0, 4.0]] * 3),
    "zero_area": torch.tensor([[1.0, 1.0, 1.0, 4.0], [0.0, 0.0, 3.0, 3.0], [2.0, 2.0, 2.0, 2.0]]),
    "nested": torch.tensor([[0.0, 0.0, 10.0, 10.0], [2.0, 2.0, 5.0, 5.0], [0.0, 0.0, 10.0, 9.0]]),
    "random": random_boxes(60, seed=1),
}


# ---------------------------------------------------------------- formats, areas, IoU


@pytest.mark.parametrize("in_fmt", ["xyxy", "xywh", "cxcywh"])
@pytest.mark.parametrize("out_fmt", ["xyxy", "xywh", "cxcywh"])
def test_box_convert_matches_torchvision(in_fmt, out_fmt):
    boxes = tvops.box_convert(random_boxes(20), "xyxy", in_fmt)
    expected = tvops.box_convert(boxes, in_fmt, out_fmt)
    torch.testing.assert_close(box_convert(boxes, in_fmt, out_fmt), expected)


def test_box_convert_known_values_and_batch_dims():
    xywh = torch.tensor([[[10.0, 20.0, 4.0, 6.0]]])  # [1, 1, 4]: any leading dims
    assert box_convert(xywh, "xywh", "xyxy").tolist() == [[[10.0, 20.0, 14.0, 26.0]]]
    assert box_convert(xywh, "xywh", "cxcywh").tolist() == [[[12.0, 23.0, 4.0, 6.0]]]


def test_box_area():
    assert box_area(torch.tensor([[0.0, 0.0, 3.0, 2.0], [1.0, 1.0, 1.0, 5.0]])).tolist() == [6, 0]


@pytest.mark.parametrize("case", EDGE_BOXES)
def test_box_iou_equals_torchvision(case):
    a, b = EDGE_BOXES[case], random_boxes(7, seed=2)
    torch.testing.assert_close(box_iou(a, b), tvops.box_iou(a, b), rtol=0, atol=0)
    torch.testing.assert_close(box_iou(a, a), tvops.box_iou(a, a), rtol=0, atol=0, equal_nan=True)


def test_box_iou_known_values():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 0.0, 3.0, 2.0], [0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 6.0]])
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[1 / 3, 1.0, 0.0]]))


@pytest.mark.parametrize("case", ["one", "identical", "nested", "random"])
def test_generalized_box_iou_equals_torchvision(case):
    a, b = EDGE_BOXES[case], random_boxes(9, seed=3)
    torch.testing.assert_close(generalized_box_iou(a, b), tvops.generalized_box_iou(a, b))


box_strategy = st.tuples(
    st.floats(0, 100), st.floats(0, 100), st.floats(0.1, 50), st.floats(0.1, 50)
).map(lambda b: [b[0], b[1], b[0] + b[2], b[1] + b[3]])
boxes_strategy = st.lists(box_strategy, min_size=1, max_size=12).map(
    lambda bs: torch.tensor(bs, dtype=torch.float64)
)


@settings(max_examples=60, deadline=None)
@given(boxes_strategy, boxes_strategy)
def test_iou_properties(a, b):
    iou = box_iou(a, b)
    torch.testing.assert_close(iou, box_iou(b, a).T)  # symmetric
    assert ((iou >= 0) & (iou <= 1 + 1e-12)).all()
    torch.testing.assert_close(box_iou(a, a).diagonal(), torch.ones(len(a), dtype=a.dtype))
    giou = generalized_box_iou(a, b)
    assert ((giou >= -1 - 1e-12) & (giou <= iou + 1e-12)).all()  # GIoU <= IoU, in [-1, 1]


# Image-sized boxes, up to 600 pixels a side (areas beyond float16's 65,504), zero-area included.
image_box = st.tuples(
    st.floats(0, 1000), st.floats(0, 1000), st.floats(0, 600), st.floats(0, 600)
).map(lambda b: [b[0], b[1], b[0] + b[2], b[1] + b[3]])
image_boxes = st.lists(image_box, min_size=1, max_size=12).map(torch.tensor)


@settings(max_examples=60, deadline=None)
@given(
    image_boxes,
    image_boxes,
    st.sampled_from([torch.float16, torch.bfloat16, torch.float32]),
    st.floats(0, 1),
    st.integers(0, 2**16),
)
def test_any_dtype_gives_the_float32_answer(a, b, dtype, threshold, seed):
    # Rounded to `dtype`, the boxes are exactly representable in float32: the answer must be
    # the float32 one for those rounded boxes, bit for bit (NaN for two zero-area boxes).
    a, b = a.to(dtype), b.to(dtype)
    a32, b32 = a.float(), b.float()
    exact = {"rtol": 0, "atol": 0, "equal_nan": True}
    torch.testing.assert_close(box_area(a), box_area(a32), **exact)
    torch.testing.assert_close(box_iou(a, b), box_iou(a32, b32), **exact)
    torch.testing.assert_close(generalized_box_iou(a, b), generalized_box_iou(a32, b32), **exact)
    scores = torch.rand(len(a), generator=torch.Generator().manual_seed(seed)).to(dtype)
    assert torch.equal(nms(a, scores, threshold), nms(a32, scores.float(), threshold))
    idxs = torch.arange(len(a)) % 3
    kept = batched_nms(a, scores, idxs, threshold)
    assert torch.equal(kept, batched_nms(a32, scores.float(), idxs, threshold))
    keep, new_scores = soft_nms(a, scores)
    keep32, new_scores32 = soft_nms(a32, scores.float())
    assert torch.equal(keep, keep32) and new_scores.dtype == dtype
    torch.testing.assert_close(new_scores, new_scores32.to(dtype), **exact)


def test_half_precision_ious_come_back_in_float32():
    boxes = torch.tensor([[0.0, 0.0, 300.0, 300.0], [10.0, 10.0, 310.0, 310.0]])
    for dtype in (torch.float16, torch.bfloat16):
        # before the upcast: 300 * 300 = inf in float16, IoU inf / inf = NaN, NMS kept both
        iou = box_iou(boxes.to(dtype), boxes.to(dtype))
        assert iou.dtype == tvops.box_iou(boxes.to(dtype), boxes.to(dtype)).dtype == torch.float32
        torch.testing.assert_close(iou, box_iou(boxes, boxes))
        assert nms(boxes.to(dtype), torch.tensor([0.9, 0.8], dtype=dtype), 0.5).tolist() == [0]
    assert box_iou(boxes.double(), boxes.double()).dtype == torch.float64  # not downcast


def test_clip_boxes():
    boxes = torch.tensor([[-5.0, 2.0, 30.0, 50.0]])
    assert clip_boxes(boxes, (40, 20)).tolist() == [[0.0, 2.0, 20.0, 40.0]]
    assert torch.equal(clip_boxes(boxes, (40, 20)), tvops.clip_boxes_to_image(boxes, (40, 20)))


@pytest.mark.parametrize("case", EDGE_BOXES)
def test_clip_boxes_equals_torchvision(case):
    boxes = EDGE_BOXES[case] * 3 - 20  # partly outside a 60 x 90 image
    for image_size in [(60, 90), torch.Size([60, 90])]:  # a model passes images.shape[-2:]
        expected = tvops.clip_boxes_to_image(boxes, (60, 90))
        assert torch.equal(clip_boxes(boxes, image_size), expected)
    # any leading dimensions, as torchvision: [B, N, K, 4] from a per-class box head
    batch = boxes.reshape(1, -1, 1, 4).expand(2, -1, 3, -1)
    assert torch.equal(clip_boxes(batch, (60, 90)), tvops.clip_boxes_to_image(batch, (60, 90)))


def test_clip_boxes_accepts_inverted_boxes_as_torchvision_does():
    # The one box function that does not reject x2 < x1: detectors clip the raw boxes they
    # decode, and an untrained CenterNet predicts negative sizes (the checks come later).
    inverted = torch.tensor([[30.0, 50.0, -5.0, 2.0]])
    assert clip_boxes(inverted, (40, 20)).tolist() == [[20.0, 40.0, 0.0, 2.0]]
    assert torch.equal(
        clip_boxes(inverted, (40, 20)), tvops.clip_boxes_to_image(inverted, (40, 20))
    )


# ---------------------------------------------------------------- NMS


@pytest.mark.parametrize("case", EDGE_BOXES)
@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7, 1.0])
def test_nms_equals_torchvision(case, threshold):
    boxes = EDGE_BOXES[case]
    scores = torch.rand(len(boxes), generator=torch.Generator().manual_seed(4))
    keep = nms(boxes, scores, threshold)
    assert keep.dtype == torch.int64 and keep.ndim == 1
    assert torch.equal(keep, tvops.nms(boxes, scores, threshold))


@pytest.mark.parametrize("seed", range(5))
def test_nms_equals_torchvision_on_clustered_boxes(seed):
    boxes = random_boxes(500, seed=seed, clustered=True)
    scores = torch.rand(500, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(nms(boxes, scores, 0.5), tvops.nms(boxes, scores, 0.5))


def test_nms_ties_in_score_follow_torchvision():
    # Quantised scores: many exact ties, which torchvision breaks by a stable descending sort.
    boxes = random_boxes(300, seed=5, clustered=True)
    scores = torch.randint(0, 4, (300,), generator=torch.Generator().manual_seed(5)).float()
    keep = nms(boxes, scores, 0.4)
    assert torch.equal(keep, tvops.nms(boxes, scores, 0.4))
    same = torch.tensor([[0.0, 0.0, 2.0, 2.0]] * 3)
    assert nms(same, torch.ones(3), 0.5).tolist() == [0]  # lowest index wins a tie


def test_nms_iou_equal_to_threshold_is_kept():
    # IoU exactly 0.5 is not "> 0.5": both boxes stay, as in torchvision.
    boxes = torch.tensor([[0.0, 0.0, 2.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    assert nms(boxes, torch.tensor([0.9, 0.8]), 0.5).tolist() == [0, 1]
    assert tvops.nms(boxes, torch.tensor([0.9, 0.8]), 0.5).tolist() == [0, 1]


def test_nms_one_box_keeps_a_1d_index():
    # The seed's listing squeezed a single remaining box into a 0-d tensor.
    keep = nms(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([0.3]), 0.5)
    assert keep.shape == (1,) and keep.tolist() == [0]
    keep = nms(torch.tensor([[0.0, 0.0, 1.0, 1.0], [5.0, 5.0, 6.0, 6.0]]), torch.ones(2), 0.5)
    assert keep.tolist() == [0, 1]


@settings(max_examples=50, deadline=None)
@given(boxes_strategy, st.floats(0.05, 0.95), st.integers(0, 2**16))
def test_nms_properties(boxes, threshold, seed):
    scores = torch.rand(
        len(boxes), generator=torch.Generator().manual_seed(seed), dtype=boxes.dtype
    )
    keep = nms(boxes, scores, threshold)
    assert len(set(keep.tolist())) == len(keep)  # a subset, no repeats
    assert (scores[keep].diff() <= 0).all()  # by decreasing score
    iou = box_iou(boxes[keep], boxes[keep]).fill_diagonal_(0)
    assert (iou <= threshold).all()  # no two kept boxes overlap too much
    # every removed box is overlapped by a kept box with a higher score
    removed = torch.ones(len(boxes), dtype=torch.bool)
    removed[keep] = False
    if removed.any():
        assert (box_iou(boxes[removed], boxes[keep]) > threshold).any(dim=1).all()


@pytest.mark.parametrize("seed", range(3))
def test_batched_nms_equals_torchvision(seed):
    g = torch.Generator().manual_seed(seed)
    boxes = random_boxes(400, seed=seed, clustered=True)
    scores = torch.rand(400, generator=g)
    idxs = torch.randint(0, 5, (400,), generator=g)
    keep = batched_nms(boxes, scores, idxs, 0.5)
    assert torch.equal(keep, tvops.batched_nms(boxes, scores, idxs, 0.5))
    empty = torch.zeros(0, 4)
    assert batched_nms(empty, torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5).shape == (0,)


def test_batched_nms_categories_do_not_suppress_each_other():
    boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0]] * 2)
    scores = torch.tensor([0.9, 0.8])
    assert batched_nms(boxes, scores, torch.tensor([0, 1]), 0.5).tolist() == [0, 1]
    assert batched_nms(boxes, scores, torch.tensor([1, 1]), 0.5).tolist() == [0]


# ---------------------------------------------------------------- soft-NMS


def test_soft_nms_does_not_modify_its_inputs():
    boxes = random_boxes(50, seed=6, clustered=True)
    scores = torch.rand(50, generator=torch.Generator().manual_seed(6))
    boxes0, scores0 = boxes.clone(), scores.clone()
    for method in ("gaussian", "linear", "hard"):
        soft_nms(boxes, scores, method=method)
    assert torch.equal(boxes, boxes0) and torch.equal(scores, scores0)


def test_soft_nms_known_values():
    boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 0.0, 3.0, 2.0], [10.0, 10.0, 11.0, 11.0]])
    scores = torch.tensor([0.9, 0.8, 0.5])
    # box 1 overlaps box 0 with IoU 1/3: its score decays, it is not removed
    keep, new = soft_nms(boxes, scores, sigma=0.5, method="gaussian")
    assert keep.tolist() == [0, 1, 2]
    torch.testing.assert_close(new, torch.tensor([0.9, 0.8 * math.exp(-(1 / 9) / 0.5), 0.5]))
    # linear: 0.8 * (1 - 1/3) = 0.533 falls below the third box's 0.6, which now comes first
    keep, new = soft_nms(boxes, torch.tensor([0.9, 0.8, 0.6]), method="linear", iou_threshold=0.3)
    assert keep.tolist() == [0, 2, 1]
    torch.testing.assert_close(new, torch.tensor([0.9, 0.6, 0.8 * 2 / 3]))
    keep, new = soft_nms(boxes, scores, method="linear", iou_threshold=0.5)
    assert keep.tolist() == [0, 1, 2] and torch.equal(new, scores)  # below threshold: no decay


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_soft_nms_hard_is_nms(threshold):
    boxes = random_boxes(200, seed=7, clustered=True)
    scores = torch.rand(200, generator=torch.Generator().manual_seed(7))
    keep, new = soft_nms(boxes, scores, method="hard", iou_threshold=threshold)
    assert torch.equal(keep, tvops.nms(boxes, scores, threshold))
    assert torch.equal(new, scores[keep])


@settings(max_examples=40, deadline=None)
@given(boxes_strategy, st.sampled_from(["gaussian", "linear", "hard"]), st.integers(0, 2**16))
def test_soft_nms_properties(boxes, method, seed):
    scores = torch.rand(len(boxes), generator=torch.Generator().manual_seed(seed))
    boxes0, scores0 = boxes.clone(), scores.clone()
    keep, new = soft_nms(boxes, scores, method=method, iou_threshold=0.5)
    assert torch.equal(boxes, boxes0) and torch.equal(scores, scores0)  # inputs untouched
    assert len(set(keep.tolist())) == len(keep) and keep.shape == new.shape
    assert (new <= scores[keep]).all()  # scores only ever decay
    assert (new.diff() <= 0).all()  # selected by decreasing (decayed) score
    assert (new > 0.001).all()


def test_soft_nms_edge_cases():
    keep, new = soft_nms(torch.zeros(0, 4), torch.zeros(0))
    assert keep.shape == (0,) and new.shape == (0,)
    keep, new = soft_nms(torch.tensor([[0.0, 0.0, 1.0, 1.0]]), torch.tensor([0.7]))
    assert keep.tolist() == [0] and new.tolist() == pytest.approx([0.7])
    # identical boxes: gaussian decay exp(-1/sigma) each time, nothing is deleted outright
    keep, new = soft_nms(EDGE_BOXES["identical"], torch.tensor([0.9, 0.8, 0.7]), sigma=0.5)
    assert keep.tolist() == [0, 1, 2]
    assert (new.diff() < 0).all()
    # scores below score_threshold are dropped
    keep, _ = soft_nms(EDGE_BOXES["identical"], torch.tensor([0.9, 0.8, 0.0001]))
    assert 2 not in keep.tolist()


# ---------------------------------------------------------------- anchors and box coder


def test_generate_anchors_shape_order_and_values():
    anchors = generate_anchors((2, 3), (20, 30), scales=(4.0, 8.0), ratios=(0.25, 1.0, 4.0))
    assert anchors.shape == (2 * 3 * 6, 4)
    a = anchors.reshape(2, 3, 6, 4)  # row, column, anchor
    centres = (a[..., :2] + a[..., 2:]) / 2
    torch.testing.assert_close(centres[1, 2, 0], torch.tensor([25.0, 15.0]))  # ((2 + .5) * 10, ...)
    w, h = (a[0, 0, :, 2] - a[0, 0, :, 0]), (a[0, 0, :, 3] - a[0, 0, :, 1])
    # ratio-major: (ratio 0.25: scales 4, 8), (ratio 1: 4, 8), (ratio 4: 4, 8); ratio = h / w
    torch.testing.assert_close(h / w, torch.tensor([0.25, 0.25, 1, 1, 4, 4]))
    torch.testing.assert_close((w * h).sqrt(), torch.tensor([4.0, 8, 4, 8, 4, 8]))


def test_generate_anchors_match_torchvision_anchor_generator():
    # Sizes whose halves are integers, so that torchvision's rounding changes nothing; its
    # anchors are centred on j * stride, ours on (j + 0.5) * stride.
    scales, ratios = (32.0, 64.0), (0.25, 1.0, 4.0)
    generator = AnchorGenerator(sizes=(scales,), aspect_ratios=(ratios,))
    images = ImageList(torch.zeros(1, 3, 64, 96), [(64, 96)])
    (expected,) = generator(images, [torch.zeros(1, 8, 4, 6)])
    ours = generate_anchors((4, 6), (64, 96), scales, ratios)
    assert generator.num_anchors_per_location() == [len(scales) * len(ratios)]
    torch.testing.assert_close(ours, expected + 16 / 2)


WEIGHTS = [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)]


@pytest.mark.parametrize("weights", WEIGHTS)
def test_encode_decode_match_torchvision_box_coder(weights):
    anchors, gt = random_boxes(100, seed=8), random_boxes(100, seed=9)
    coder = BoxCoder(weights)
    deltas = encode_boxes(anchors, gt, weights)
    torch.testing.assert_close(deltas, coder.encode_single(gt, anchors))
    big = deltas * 3  # includes log-scales beyond the clamp
    expected = coder.decode_single(big, anchors)
    torch.testing.assert_close(decode_boxes(anchors, big, weights), expected, rtol=0, atol=0)


@settings(max_examples=50, deadline=None)
@given(boxes_strategy, st.sampled_from(WEIGHTS))
def test_encode_decode_roundtrip(gt, weights):
    # anchors of another size and place (within the clamp of decode: at most 62.5x apart)
    anchors = gt * 1.5 + 3.0
    decoded = decode_boxes(anchors, encode_boxes(anchors, gt, weights), weights)
    torch.testing.assert_close(decoded, gt, atol=1e-6, rtol=1e-9)


def test_decode_boxes_does_not_overflow():
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    boxes = decode_boxes(anchors, torch.tensor([[0.0, 0.0, 1e4, 1e4]]))
    assert torch.isfinite(boxes).all()


def test_match_boxes():
    anchors = torch.tensor(
        [[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 7.0], [0.0, 0.0, 10.0, 4.5], [50.0, 50, 60, 60]]
    )
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [100.0, 100, 104, 104]])
    # IoUs with gt 0: 1, 0.7, 0.45, 0 -> object, object, ignored, background; gt 1 overlaps nothing
    assert match_boxes(anchors, gt, high=0.5, low=0.4).tolist() == [0, 0, -2, -1]
    # a gt whose best anchor is below `high` still gets that anchor
    small = torch.tensor([[0.0, 0.0, 10.0, 3.0]])  # best IoU 3 / 4.5 = 0.67 with anchor 2
    assert match_boxes(anchors, small, high=0.7, low=0.35).tolist() == [-1, -2, 0, -1]
    strict = match_boxes(anchors, small, 0.7, 0.35, allow_low_quality=False)
    assert strict.tolist() == [-1, -2, -2, -1]
    assert match_boxes(anchors, torch.zeros(0, 4)).tolist() == [-1] * 4


@settings(max_examples=50, deadline=None)
@given(boxes_strategy, st.floats(-30, 30), st.floats(-30, 30))
def test_decoded_boxes_are_never_inverted(anchors, dw, dh):
    # Every head decodes through decode_boxes (or, like FCOS, exp of its distances): whatever
    # the deltas, even those of an untrained head, x2 >= x1 and y2 >= y1.
    deltas = torch.tensor([1.0, -1.0, dw, dh], dtype=anchors.dtype).expand_as(anchors)
    boxes = decode_boxes(anchors, deltas)
    assert ((boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])).all()


# ---------------------------------------------------------------- bad input


def test_zero_area_boxes_work_where_torchvision_accepts_them():
    # x2 == x1 or y2 == y1 is a legitimate box (a point, a line, a box clipped to the border)
    flat = EDGE_BOXES["zero_area"]
    other = random_boxes(5, seed=11)
    torch.testing.assert_close(box_area(flat), tvops.box_area(flat))
    for ours, theirs in [
        (box_iou, tvops.box_iou),
        (generalized_box_iou, tvops.generalized_box_iou),
    ]:
        for a, b in [(flat, flat), (flat, other)]:
            torch.testing.assert_close(ours(a, b), theirs(a, b), equal_nan=True)
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert torch.equal(nms(flat, scores, 0.5), tvops.nms(flat, scores, 0.5))
    idxs = torch.tensor([0, 1, 0])
    assert torch.equal(
        batched_nms(flat, scores, idxs, 0.5), tvops.batched_nms(flat, scores, idxs, 0.5)
    )
    assert torch.equal(clip_boxes(flat, (2, 2)), tvops.clip_boxes_to_image(flat, (2, 2)))
    for fmt in _BOX_FORMATS:
        assert torch.equal(box_convert(flat, "xyxy", fmt), tvops.box_convert(flat, "xyxy", fmt))
    # the loss adds torchvision's epsilon: two identical points give 1 - 0 = 1, not NaN
    torch.testing.assert_close(giou_loss(flat, flat), tvops.generalized_box_iou_loss(flat, flat))
    assert torch.isfinite(giou_loss(flat, flat)).all()


XYWH = torch.tensor([[10.0, 10.0, 5.0, 5.0]])  # 5 x 5 at (10, 10): x2 < x1 read as xyxy
TARGET = [{"boxes": torch.tensor([[0.0, 0.0, 4.0, 4.0]]), "labels": torch.tensor([1])}]
XYWH_CALLS = {
    "box_area": lambda: box_area(XYWH),
    "box_iou": lambda: box_iou(XYWH, XYWH),
    "generalized_box_iou": lambda: generalized_box_iou(XYWH[:0], XYWH),
    "box_convert": lambda: box_convert(XYWH, "xyxy", "cxcywh"),
    "nms": lambda: nms(XYWH, torch.ones(1), 0.5),
    "batched_nms": lambda: batched_nms(XYWH, torch.ones(1), torch.zeros(1), 0.5),
    "soft_nms": lambda: soft_nms(XYWH, torch.ones(1)),
    "encode_boxes": lambda: encode_boxes(TARGET[0]["boxes"], XYWH),
    "decode_boxes": lambda: decode_boxes(XYWH, torch.zeros(1, 4)),
    "match_boxes": lambda: match_boxes(XYWH, TARGET[0]["boxes"]),
    "giou_loss": lambda: giou_loss(XYWH, XYWH),
    "mean_average_precision": lambda: mean_average_precision(
        [{"boxes": XYWH, "scores": torch.ones(1), "labels": torch.tensor([1])}], TARGET
    ),
}


@pytest.mark.parametrize("call", XYWH_CALLS)
def test_xywh_boxes_are_rejected_with_the_fix(call):
    with pytest.raises(ValueError, match=r"x2 < x1.*box_convert\(boxes, 'xywh', 'xyxy'\)"):
        XYWH_CALLS[call]()


def bad_threshold_calls(t):
    boxes, scores = torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 2), torch.ones(2)
    return [
        lambda: nms(boxes, scores, t),
        lambda: batched_nms(boxes, scores, torch.zeros(2), t),
        lambda: batched_nms(boxes[:0], scores[:0], torch.zeros(0), t),  # checked without boxes
        lambda: soft_nms(boxes, scores, method="hard", iou_threshold=t),
    ]


@pytest.mark.parametrize("threshold", [-0.1, 1.5, 50, float("nan"), "0.5"])
def test_iou_thresholds_outside_0_1_are_rejected(threshold):
    for call in bad_threshold_calls(threshold):
        with pytest.raises(ValueError, match=r"iou_threshold must be an IoU in \[0, 1\]"):
            call()


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: nms(torch.zeros(3, 4), torch.ones(2), 0.5), "same length"),
        (lambda: nms(torch.zeros(2, 4), torch.tensor([0.5, float("nan")]), 0.5), "NaN"),
        (lambda: nms(torch.zeros(2, 4), torch.ones(2, 1), 0.5), "1-D"),
        (lambda: box_iou(torch.zeros(2, 5), torch.zeros(2, 4)), r"\[\.\.\., 4\]"),
        (lambda: box_iou(torch.zeros(2, 4, dtype=torch.int64), torch.zeros(1, 4)), "float"),
        (lambda: box_iou([[0, 0, 1, 1]], torch.zeros(1, 4)), "torch.Tensor"),
        (lambda: box_iou(torch.full((1, 4), float("nan")), torch.zeros(1, 4)), "NaN"),
        (lambda: box_convert(torch.zeros(1, 4), "xyxy", "yxyx"), "unknown box format"),
        (lambda: box_convert(torch.tensor([[0.0, 0, -1, 1]]), "xywh", "xyxy"), "width"),
        (lambda: batched_nms(torch.zeros(2, 4), torch.ones(2), torch.zeros(3), 0.5), "idxs"),
        (lambda: soft_nms(torch.zeros(2, 4), torch.ones(2), method="fast"), "method"),
        (lambda: soft_nms(torch.zeros(2, 4), torch.ones(2), sigma=0), "sigma"),
        (lambda: generate_anchors((0, 4), (32, 32)), "positive"),
        (lambda: generate_anchors((4, 4), (32, 32), scales=(-1.0,)), "positive"),
        (lambda: decode_boxes(torch.zeros(2, 4), torch.zeros(2, 3)), "deltas"),
        (lambda: match_boxes(torch.zeros(2, 4), torch.zeros(1, 4), high=0.3, low=0.5), "low"),
        (lambda: clip_boxes([[0, 0, 1, 1]], (4, 4)), "torch.Tensor"),
        (lambda: clip_boxes(torch.zeros(2, 5), (4, 4)), r"\[\.\.\., 4\]"),
        (lambda: clip_boxes(torch.zeros(2, 4, dtype=torch.int64), (4, 4)), "float"),
        (lambda: clip_boxes(torch.tensor([[0.0, 0, float("inf"), 1]]), (4, 4)), "infinite"),
        (lambda: clip_boxes(torch.zeros(2, 4), (0, 4)), "image_size"),
        (lambda: clip_boxes(torch.zeros(2, 4), (4,)), "image_size"),
        (lambda: clip_boxes(torch.zeros(2, 4), "64x64"), "image_size"),
        (lambda: clip_boxes(torch.zeros(2, 4), torch.zeros(1, 3, 4, 4).shape), "image_size"),
    ],
)
def test_bad_input_raises_a_clear_error(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_nms_accepts_float64_and_keeps_device():
    boxes = random_boxes(50, seed=10, clustered=True).double()
    scores = torch.rand(50, dtype=torch.float64, generator=torch.Generator().manual_seed(10))
    keep = nms(boxes, scores, 0.5)
    assert torch.equal(keep, tvops.nms(boxes, scores, 0.5))
    assert np.isin(keep.numpy(), np.arange(50)).all()
