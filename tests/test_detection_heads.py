"""course_utils.detection losses and heads: focal / GIoU losses against torchvision, and every head
(RPN, FPN RoI Align, two-stage box head, YOLOv1, SSD, RetinaNet, FCOS, DETR) end to end on small
tensors: shapes, anchor bookkeeping, decoding, gradients, bad input."""

import pytest
import torch
import torch.nn.functional as F
import torchvision.ops as tvops
from torchvision.ops.poolers import LevelMapper

from course_utils.detection import (
    DETRHead,
    FCOSHead,
    FocalLoss,
    RegionProposalNetwork,
    RetinaNetHead,
    SSDHead,
    TwoStageBoxHead,
    YOLOv1Head,
    anchor_head_detections,
    assign_fpn_levels,
    box_head_detections,
    box_iou,
    decode_boxes,
    detr_decode,
    detr_loss,
    fcos_decode,
    fcos_points,
    flatten_levels,
    generate_anchors,
    giou_loss,
    multilevel_anchors,
    roi_align_fpn,
    select_detections,
    select_proposals,
    sigmoid_focal_loss,
    yolo_v1_decode,
)
from course_utils.detection.detr import _positional_encoding_2d
from course_utils.detection.losses import _softmax_focal_loss

IMAGE = (64, 96)  # (height, width)
STRIDES = (4, 8, 16)
SIZES = [(IMAGE[0] // s, IMAGE[1] // s) for s in STRIDES]


def pyramid(channels: int = 8, batch: int = 2, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, channels, h, w, generator=g) for h, w in SIZES]


def boxes_in_image(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * torch.tensor([IMAGE[1] - 20.0, IMAGE[0] - 20.0])
    wh = torch.rand(n, 2, generator=g) * 40 + 4
    return torch.cat((xy, (xy + wh).minimum(torch.tensor([IMAGE[1], IMAGE[0]]))), dim=1)


# ---------------------------------------------------------------- losses


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("alpha, gamma", [(0.25, 2.0), (-1.0, 2.0), (0.5, 0.0), (0.75, 1.5)])
def test_sigmoid_focal_loss_equals_torchvision(reduction, alpha, gamma):
    g = torch.Generator().manual_seed(0)
    inputs = (torch.randn(4, 30, 5, generator=g) * 4).requires_grad_()
    targets = (torch.rand(4, 30, 5, generator=g) < 0.1).float()
    ours = sigmoid_focal_loss(inputs, targets, alpha, gamma, reduction)
    ref = tvops.sigmoid_focal_loss(inputs, targets, alpha, gamma, reduction)
    torch.testing.assert_close(ours, ref)
    (g_ours,) = torch.autograd.grad(ours.sum(), inputs)
    (g_ref,) = torch.autograd.grad(ref.sum(), inputs)
    torch.testing.assert_close(g_ours, g_ref)


def test_sigmoid_focal_loss_edge_cases():
    empty = torch.zeros(0, 3)
    assert sigmoid_focal_loss(empty, empty, reduction="sum") == 0
    # gamma = 0 and no alpha: binary cross-entropy
    x, t = torch.tensor([2.0, -1.0]), torch.tensor([1.0, 0.0])
    torch.testing.assert_close(
        sigmoid_focal_loss(x, t, alpha=-1, gamma=0),
        F.binary_cross_entropy_with_logits(x, t, reduction="none"),
    )
    # a confident right answer costs far less than with cross-entropy
    assert sigmoid_focal_loss(torch.tensor([5.0]), torch.tensor([1.0]), alpha=-1) < 1e-5


def test_focal_loss_gamma_0_is_cross_entropy():
    g = torch.Generator().manual_seed(1)
    logits, targets = torch.randn(10, 4, generator=g), torch.randint(0, 4, (10,), generator=g)
    torch.testing.assert_close(
        FocalLoss(gamma=0)(logits, targets), F.cross_entropy(logits, targets)
    )
    dense, dense_t = (
        torch.randn(2, 4, 3, 3, generator=g),
        torch.randint(0, 4, (2, 3, 3), generator=g),
    )
    torch.testing.assert_close(FocalLoss(gamma=0)(dense, dense_t), F.cross_entropy(dense, dense_t))


def test_focal_loss_one_sample_and_known_value():
    # The seed's .squeeze() broke a batch of one.
    logits, target = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([0])
    loss = FocalLoss(gamma=2.0, reduction="none")(logits, target)
    p = logits.softmax(1)[0, 0]
    assert loss.shape == (1,)
    torch.testing.assert_close(loss, (-((1 - p) ** 2) * p.log()).reshape(1))


def test_focal_loss_alpha_is_a_per_class_weight():
    logits = torch.randn(6, 3, generator=torch.Generator().manual_seed(2))
    targets = torch.tensor([0, 1, 2, 0, 1, 2])
    plain = FocalLoss(reduction="none")(logits, targets)
    weighted = FocalLoss(alpha=[0.25, 1.0, 2.0], reduction="none")(logits, targets)
    torch.testing.assert_close(weighted, plain * torch.tensor([0.25, 1.0, 2.0])[targets])
    # nothing assumes class 0 is the background: with no alpha every class weighs the same
    assert FocalLoss().alpha is None


def test_softmax_focal_loss_ignore_index_and_reductions():
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 3, 4, 5, generator=g, requires_grad=True)
    targets = torch.randint(0, 3, (2, 4, 5), generator=g)
    targets[0, 1:3, 2:] = 255
    ignored = targets == 255
    torch.testing.assert_close(
        _softmax_focal_loss(logits, targets, gamma=0, ignore_index=255),
        F.cross_entropy(logits, targets, ignore_index=255),
    )
    per_pixel = _softmax_focal_loss(logits, targets, ignore_index=255, reduction="none")
    assert per_pixel.shape == targets.shape
    assert (per_pixel[ignored] == 0).all() and (per_pixel[~ignored] > 0).all()
    total = _softmax_focal_loss(logits, targets, ignore_index=255, reduction="sum")
    torch.testing.assert_close(total, per_pixel.sum())
    total.backward()
    assert (logits.grad.movedim(1, -1)[ignored] == 0).all()  # ignored pixels get no gradient
    # nothing counts: a zero that keeps the graph, where cross_entropy would give NaN
    empty = _softmax_focal_loss(logits, torch.full_like(targets, 255), ignore_index=255)
    assert empty.item() == 0.0 and empty.requires_grad
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        _softmax_focal_loss(logits, targets)  # 255 without ignore_index is not a class


def test_giou_loss_equals_torchvision_and_has_gradients():
    pred, target = boxes_in_image(20, seed=3), boxes_in_image(20, seed=4)
    torch.testing.assert_close(
        giou_loss(pred, target), tvops.generalized_box_iou_loss(pred, target), atol=1e-5, rtol=1e-5
    )
    # disjoint boxes: IoU = 0, yet GIoU still pulls the prediction towards the target
    far = torch.tensor([[0.0, 0.0, 2.0, 2.0]], requires_grad=True)
    giou_loss(far, torch.tensor([[10.0, 10.0, 12.0, 12.0]]), reduction="sum").backward()
    assert (far.grad[0, 2:] < 0).all()  # moving right/down lowers the loss


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: sigmoid_focal_loss(torch.zeros(3, 2), torch.zeros(3)), "one-hot"),
        (lambda: sigmoid_focal_loss(torch.zeros(3), torch.zeros(3), reduction="avg"), "reduction"),
        (
            lambda: FocalLoss(alpha=[1.0, 1.0])(
                torch.zeros(2, 3), torch.zeros(2, dtype=torch.long)
            ),
            "alpha",
        ),
        (lambda: FocalLoss()(torch.zeros(2, 3), torch.tensor([0, 3])), "class indices"),
        (lambda: FocalLoss()(torch.zeros(2, 3), torch.zeros(2, 3)), "class indices"),
        (lambda: FocalLoss(gamma=-1), "gamma"),
        (lambda: giou_loss(torch.zeros(2, 4), torch.zeros(3, 4)), "must match"),
        (lambda: giou_loss(torch.tensor([[5.0, 5, 1, 1]]), torch.zeros(1, 4)), "xywh"),
    ],
)
def test_loss_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---------------------------------------------------------------- anchor bookkeeping


def test_flatten_levels_follows_anchor_order():
    a, k = 3, 2
    maps = [torch.randn(1, a * k, h, w) for h, w in SIZES]
    flat = flatten_levels(maps, k)[0]  # [sum(H*W*A), K]
    row = 0
    for m in maps:  # the slow, obvious order: level, row, column, anchor
        for i in range(m.shape[2]):
            for j in range(m.shape[3]):
                for anchor in range(a):
                    assert torch.equal(flat[row], m[0, anchor * k : (anchor + 1) * k, i, j])
                    row += 1
    assert row == len(flat)


@pytest.mark.parametrize("head_kind", ["ssd", "retinanet"])
def test_anchor_heads_rows_match_anchors(head_kind):
    scales, ratios, num_classes = ((8.0, 12.0), (16.0, 24.0), (32.0, 48.0)), (0.5, 1.0, 2.0), 3
    num_anchors = len(scales[0]) * len(ratios)
    anchors = multilevel_anchors(SIZES, IMAGE, scales, ratios)
    features = pyramid()
    if head_kind == "ssd":
        head = SSDHead([8, 8, 8], [num_anchors] * 3, num_classes)
        level_logits = [conv(x) for conv, x in zip(head.classify, features)]
        k = num_classes + 1
    else:
        head = RetinaNetHead(8, num_anchors, num_classes, num_convs=1)
        level_logits = [head.classify(head.class_tower(x)) for x in features]
        k = num_classes
    logits, deltas = head(features)
    assert logits.shape == (2, len(anchors), k) and deltas.shape == (2, len(anchors), 4)
    # Row n of the output is anchor n: same level, same cell, same (ratio, scale).
    n = 0
    for level, ((h, w), x) in enumerate(zip(SIZES, level_logits)):
        level_anchors = generate_anchors((h, w), IMAGE, scales[level], ratios)
        for i, j, a in [(0, 0, 0), (h - 1, 1, 2), (1, w - 1, num_anchors - 1)]:
            row = n + (i * w + j) * num_anchors + a
            torch.testing.assert_close(logits[:, row], x[:, a * k : (a + 1) * k, i, j])
            assert torch.equal(anchors[row], level_anchors[(i * w + j) * num_anchors + a])
        n += h * w * num_anchors
    # zero deltas decode to the anchors themselves
    torch.testing.assert_close(decode_boxes(anchors, torch.zeros_like(deltas[0])), anchors)


@pytest.mark.parametrize("background", [True, False])
def test_anchor_head_detections_decode_the_right_anchor(background):
    anchors = multilevel_anchors(SIZES, IMAGE, ((8.0,), (16.0,), (32.0,)))
    n, k = len(anchors), 3 + background
    logits = torch.full((2, n, k), -10.0)
    if background:
        logits[..., 0] = 10.0  # SSD: everything is background ...
    row = len(anchors) - 5  # ... except one anchor of the coarsest level, class 2
    logits[1, row] = -10.0
    logits[1, row, 2 + background] = 10.0
    deltas = torch.zeros(2, n, 4)
    deltas[1, row] = torch.tensor([0.5, 0.0, 0.0, 0.0])  # half an anchor width to the right
    empty, det = anchor_head_detections(
        logits, deltas, anchors, IMAGE, background, score_threshold=0.5
    )
    assert empty["boxes"].shape == (0, 4)
    assert det["labels"].tolist() == [2]
    expected = anchors[row] + torch.tensor([0.5, 0, 0.5, 0]) * (anchors[row, 2] - anchors[row, 0])
    torch.testing.assert_close(
        det["boxes"][0], expected.clamp(min=0).minimum(torch.tensor([96.0, 64, 96, 64]))
    )


def test_retinanet_head_starts_with_a_low_object_prior_and_learns():
    head = RetinaNetHead(8, 9, 4, num_convs=1)
    logits, deltas = head(pyramid())
    assert torch.allclose(logits.sigmoid().mean(), torch.tensor(0.01), atol=0.01)
    targets = torch.zeros_like(logits)
    loss = sigmoid_focal_loss(logits, targets, reduction="sum") + deltas.abs().mean()
    loss.backward()
    assert all(p.grad is not None for p in head.parameters())


def test_select_detections():
    boxes = torch.tensor([[[0.0, 0, 10, 10], [1.0, 0, 11, 10], [50.0, 50, 60, 60]]])
    scores = torch.tensor([[[0.9, 0.0], [0.8, 0.7], [0.01, 0.6]]])
    (det,) = select_detections(boxes, scores, (100, 100), score_threshold=0.05, nms_threshold=0.5)
    # box 1 is suppressed for class 0 by box 0, but kept for class 1
    assert det["scores"].tolist() == pytest.approx([0.9, 0.7, 0.6])
    assert det["labels"].tolist() == [0, 1, 1]
    assert torch.equal(det["boxes"], boxes[0, [0, 1, 2]])
    (none,) = select_detections(boxes, scores * 0, (100, 100))
    assert none["boxes"].shape == (0, 4) and none["labels"].shape == (0,)


# ---------------------------------------------------------------- YOLOv1


def test_yolo_v1_head_shape():
    head = YOLOv1Head(8, grid_size=5, boxes_per_cell=2, num_classes=3)
    out = head(torch.randn(2, 8, 13, 17))
    assert out.shape == (2, 5, 5, 2 * 5 + 3)
    out.sum().backward()


def test_yolo_v1_decode_known_box():
    s, b, c = 4, 2, 3
    out = torch.full((1, s, s, b * 5 + c), -10.0)  # every confidence ~0
    out[0, 2, 1, 5:10] = torch.tensor([0.0, 0.0, 0.0, 0.0, 10.0])  # cell (row 2, col 1), box 1
    out[0, 2, 1, 10:] = torch.tensor([0.0, 5.0, 0.0])  # class 1
    (det,) = yolo_v1_decode(out, (80, 120), boxes_per_cell=b, score_threshold=0.5)
    # centre (1.5 / 4 * 120, 2.5 / 4 * 80) = (45, 50); size half the image: 60 x 40
    torch.testing.assert_close(det["boxes"], torch.tensor([[15.0, 30.0, 75.0, 70.0]]))
    assert det["labels"].tolist() == [1] and det["scores"].item() > 0.9


def test_yolo_v1_decode_matches_a_loop_over_cells():
    s, b, c = 3, 2, 2
    out = torch.randn(2, s, s, b * 5 + c, generator=torch.Generator().manual_seed(5)) * 3
    dets = yolo_v1_decode(
        out, (60, 60), b, score_threshold=0.0, nms_threshold=1.0, max_detections=1000
    )
    for n, det in enumerate(dets):  # the slow, obvious version for comparison
        expected = []
        for i in range(s):
            for j in range(s):
                for k in range(b):
                    x, y, w, h, conf = out[n, i, j, 5 * k : 5 * k + 5].sigmoid()
                    cx, cy = (j + x) / s * 60, (i + y) / s * 60
                    for cls, p in enumerate(out[n, i, j, 5 * b :].softmax(0)):
                        box = [cx - w * 30, cy - h * 30, cx + w * 30, cy + h * 30]
                        expected.append(([min(max(v, 0), 60) for v in box], conf * p, cls))
        expected.sort(key=lambda e: -e[1])
        torch.testing.assert_close(det["boxes"], torch.tensor([e[0] for e in expected]))
        torch.testing.assert_close(det["scores"], torch.tensor([e[1] for e in expected]))


# ---------------------------------------------------------------- FCOS


def test_fcos_points_and_head():
    points = fcos_points(SIZES, STRIDES)
    assert points.shape == (sum(h * w for h, w in SIZES), 2)
    assert points[0].tolist() == [2.0, 2.0] and points[1].tolist() == [6.0, 2.0]  # row-major
    head = FCOSHead(8, num_classes=3, strides=STRIDES, num_convs=1)
    out = head(pyramid())
    assert out["class_logits"].shape == (2, len(points), 3)
    assert out["ltrb"].shape == (2, len(points), 4) and (out["ltrb"] > 0).all()
    assert out["centerness"].shape == (2, len(points))
    sum(v.sum() for v in out.values()).backward()
    assert head.scales.grad is not None


def test_fcos_decode_known_box():
    points = fcos_points(SIZES, STRIDES)
    n = len(points)
    outputs = {
        "class_logits": torch.full((1, n, 2), -10.0),
        "ltrb": torch.ones(1, n, 4),
        "centerness": torch.zeros(1, n),
    }
    row = 5  # point (22, 2) of the first level
    outputs["class_logits"][0, row, 1] = 10.0
    outputs["ltrb"][0, row] = torch.tensor([2.0, 1.0, 6.0, 8.0])
    (det,) = fcos_decode(outputs, points, IMAGE, score_threshold=0.5)
    assert det["labels"].tolist() == [1]
    torch.testing.assert_close(det["boxes"], torch.tensor([[20.0, 1.0, 28.0, 10.0]]))
    torch.testing.assert_close(det["scores"], (torch.tensor([10.0]).sigmoid() * 0.5).sqrt())


# ---------------------------------------------------------------- two-stage


def test_region_proposal_network_end_to_end():
    rpn = RegionProposalNetwork(
        8,
        scales=((8.0,), (16.0,), (32.0,)),
        pre_nms_top_k=200,
        post_nms_top_k=20,
        nms_threshold=0.6,
    )
    features = [f.requires_grad_() for f in pyramid()]
    out = rpn(features, IMAGE)
    n = len(out["anchors"])
    assert n == sum(h * w * 3 for h, w in SIZES)
    assert out["objectness"].shape == (2, n) and out["deltas"].shape == (2, n, 4)
    assert len(out["proposals"]) == 2
    for proposals in out["proposals"]:
        assert 0 < len(proposals) <= 20
        assert (
            (proposals >= 0).all()
            and (proposals[:, 2] <= IMAGE[1]).all()
            and (proposals[:, 3] <= IMAGE[0]).all()
        )
        assert (box_iou(proposals, proposals).fill_diagonal_(0) <= 0.6).all()  # NMS'd
        assert not proposals.requires_grad  # stage 2 sees fixed boxes
    (out["objectness"].sum() + out["deltas"].sum()).backward()
    assert features[0].grad is not None


def test_select_proposals_are_the_best_anchors_decoded():
    anchors = torch.tensor(
        [[0.0, 0, 10, 10], [1.0, 0, 11, 10], [30.0, 30, 40, 40], [50.0, 0, 60, 5]]
    )
    objectness = torch.tensor([[0.1, 0.9, 0.5, -3.0]])
    deltas = torch.zeros(1, 4, 4)
    deltas[0, 2] = torch.tensor([0.1, 0.0, 0.0, 0.0])  # shift anchor 2 right by 1 pixel
    (proposals,) = select_proposals(
        anchors, objectness, deltas, (45, 45), pre_nms_top_k=3, nms_threshold=0.5
    )
    # anchor 3 is not in the top 3; anchor 0 overlaps anchor 1 (IoU 0.82) and loses
    assert proposals.tolist() == [[1.0, 0.0, 11.0, 10.0], [31.0, 30.0, 41.0, 40.0]]


def test_assign_fpn_levels_equals_torchvision_level_mapper():
    boxes = torch.tensor(
        [
            [0.0, 0, 224, 224],
            [0.0, 0, 112, 112],
            [0.0, 0, 111, 111],
            [0, 0, 1000, 900],
            [0, 0, 3, 3],
        ]
    )
    ours = assign_fpn_levels(boxes, 2, 5)
    assert ours.tolist() == [4, 3, 2, 5, 2]
    assert torch.equal(ours - 2, LevelMapper(2, 5)([boxes]))


def test_roi_align_fpn_keeps_roi_order_and_equals_multiscale_roi_align():
    features = pyramid(channels=4)
    # RoIs of mixed sizes, interleaved so that consecutive RoIs fall on different levels
    rois = [boxes_in_image(7, seed=6), boxes_in_image(5, seed=7)]
    rois[0][::2, 2:] = rois[0][::2, :2] + 4  # small ones
    kwargs = dict(output_size=3, sampling_ratio=2, canonical_size=16, canonical_level=3)
    pooled = roi_align_fpn(features, STRIDES, rois, **kwargs)
    assert pooled.shape == (12, 4, 3, 3)
    levels = assign_fpn_levels(torch.cat(rois), 2, 4, 16, 3)
    assert len(set(levels.tolist())) > 1
    # row r == roi_align of RoI r alone, on its own level
    image_index = [0] * 7 + [1] * 5
    for r, (box, level) in enumerate(zip(torch.cat(rois), levels.tolist())):
        x = features[level - 2][image_index[r] : image_index[r] + 1]
        expected = tvops.roi_align(x, [box[None]], 3, 1 / 2**level, 2)
        torch.testing.assert_close(pooled[r : r + 1], expected)
    reference = tvops.MultiScaleRoIAlign(
        ["p2", "p3", "p4"], 3, 2, canonical_scale=16, canonical_level=3
    )
    expected = reference(dict(zip(["p2", "p3", "p4"], features)), rois, [IMAGE, IMAGE])
    torch.testing.assert_close(pooled, expected)


def test_two_stage_box_head_end_to_end():
    features = pyramid(channels=4)
    proposals = [boxes_in_image(6, seed=8), boxes_in_image(3, seed=9)]
    pooled = roi_align_fpn(features, STRIDES, proposals, output_size=5)
    head = TwoStageBoxHead(4, 5, num_classes=3, hidden=32)
    logits, deltas = head(pooled)
    assert logits.shape == (9, 4) and deltas.shape == (9, 3, 4)
    dets = box_head_detections(logits, deltas, proposals, IMAGE, score_threshold=0.0)
    assert len(dets) == 2
    for det in dets:
        assert set(det["labels"].tolist()) <= {1, 2, 3}  # 0 is the background
        assert (det["boxes"][:, 2] <= IMAGE[1]).all()
    F.cross_entropy(logits, torch.zeros(9, dtype=torch.long)).backward()
    assert head.classify.weight.grad is not None


# ---------------------------------------------------------------- DETR


def test_positional_encoding_2d():
    pe = _positional_encoding_2d(3, 4, 8)
    assert pe.shape == (12, 8)
    assert len(torch.unique(pe, dim=0)) == 12  # every position has its own code


def detr_targets():
    return [
        {
            "boxes": torch.tensor([[10.0, 5, 40, 30], [50, 20, 90, 60]]),
            "labels": torch.tensor([0, 2]),
        },
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
    ]


def test_detr_head_loss_and_gradients():
    torch.manual_seed(0)
    head = DETRHead(8, num_classes=3, dim=32, num_queries=6, num_layers=1)
    out = head(pyramid(channels=8)[2])
    assert out["class_logits"].shape == (2, 6, 4) and out["boxes"].shape == (2, 6, 4)
    assert ((out["boxes"] >= 0) & (out["boxes"] <= 1)).all()
    loss = detr_loss(out, detr_targets(), IMAGE)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert head.queries.grad.abs().sum() > 0 and head.project.weight.grad.abs().sum() > 0


def test_detr_loss_is_invariant_to_the_order_of_objects_and_zero_when_perfect():
    targets = detr_targets()
    out = DETRHead(8, 3, dim=32, num_queries=5, num_layers=1)(pyramid(channels=8)[2])
    shuffled = [{k: v.flip(0) for k, v in t.items()} for t in targets]
    torch.testing.assert_close(detr_loss(out, targets, IMAGE), detr_loss(out, shuffled, IMAGE))
    # queries 3 and 1 of image 0 predict the two objects exactly; everything else "no object"
    logits = torch.full((2, 5, 4), -20.0)
    logits[:, :, 3] = 20.0
    boxes = torch.full((2, 5, 4), 0.5)
    height, width = IMAGE
    for q, box, label in zip([3, 1], targets[0]["boxes"], targets[0]["labels"]):
        logits[0, q] = -20.0
        logits[0, q, label] = 20.0
        x1, y1, x2, y2 = box / torch.tensor([width, height, width, height])
        boxes[0, q] = torch.tensor([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])
    perfect = {"class_logits": logits, "boxes": boxes}
    assert detr_loss(perfect, targets, IMAGE) < 1e-5
    (det, empty) = detr_decode(perfect, IMAGE)
    assert det["labels"].tolist() == [2, 0] and empty["boxes"].shape == (0, 4)
    torch.testing.assert_close(det["boxes"], targets[0]["boxes"].flip(0))


def test_detr_learns_one_image():
    # The set loss is a sound training signal: a few steps on one image lower it a lot.
    torch.manual_seed(0)
    head = DETRHead(8, 3, dim=32, num_queries=5, num_layers=1)
    features, targets = pyramid(channels=8, batch=1)[2], detr_targets()[:1]
    optimiser = torch.optim.Adam(head.parameters(), lr=1e-2)
    losses = []
    for _ in range(10):
        loss = detr_loss(head(features), targets, IMAGE)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: flatten_levels([torch.zeros(1, 5, 2, 2)], 4), r"\[B, A \* 4, H, W\]"),
        (lambda: multilevel_anchors([(2, 2)], (8, 8), [(4.0,), (8.0,)]), "scale sets"),
        (lambda: SSDHead([8, 8], [3], 2), "num_anchors"),
        (lambda: RegionProposalNetwork(8, scales=((8.0,), (16.0, 32.0))), "same number of anchors"),
        (lambda: roi_align_fpn(pyramid(), (4, 8, 12), [boxes_in_image(2)]), "powers of two"),
        (lambda: select_detections(torch.zeros(1, 3, 4), torch.zeros(1, 2, 2), (8, 8)), "scores"),
        (lambda: yolo_v1_decode(torch.zeros(1, 3, 4, 12), (8, 8)), "outputs"),
        (lambda: _positional_encoding_2d(2, 2, 6), "multiple of 4"),
        (
            lambda: detr_loss(DETRHead(8, 3, 32, 4, 1)(pyramid()[2]), detr_targets()[:1], IMAGE),
            "targets",
        ),
    ],
)
def test_head_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_centernet_decode_never_inverts_a_box():
    from course_utils.detection.centernet import _centernet_decode

    g = torch.Generator().manual_seed(0)
    outputs = {  # an untrained head: sizes of both signs
        "heatmap": torch.randn(2, 3, 8, 8, generator=g),
        "size": torch.randn(2, 2, 8, 8, generator=g) * 4,
        "offset": torch.rand(2, 2, 8, 8, generator=g),
    }
    assert (outputs["size"] < 0).any()
    for det in _centernet_decode(outputs, stride=4, image_size=(32, 32), score_threshold=0.0):
        boxes = det["boxes"]
        assert (
            len(boxes) and (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
        )
