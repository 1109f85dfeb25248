"""Tests for the course's detector: backbone, CenterNet (heatmap, loss, decode), training helpers
and the shipped ``detector_digits`` checkpoint."""

import pytest
import torch

from course_utils import zoo
from course_utils.detection.backbone import FPN, PyramidBackbone, _SmallBackbone
from course_utils.detection.boxes import box_iou
from course_utils.detection.centernet import (
    CenterNet,
    CenterNetHead,
    _centernet_decode,
    _centernet_loss,
    centernet_heatmap,
)
from course_utils.detection.detector import (
    detect,
    digit_scenes,
    evaluate_detector,
    train_detector,
)
from course_utils.runtime import seed_everything

TINY = (8, 8, 16, 16)  # backbone widths that keep the tests fast


def scene_targets():
    """Two images' targets on a 64x64 canvas: 3 objects, 2 of class 1 in the first image."""
    return [
        {
            "boxes": torch.tensor([[4.0, 6, 20, 30], [30, 30, 58, 50]]),
            "labels": torch.tensor([1, 1]),
        },
        {"boxes": torch.tensor([[10.0, 12, 40, 36]]), "labels": torch.tensor([3])},
    ]


def ideal_outputs(targets, num_classes=3, size=(16, 16), stride=4):
    """The head outputs a perfect CenterNet would give: target heatmaps as logits, exact sizes
    and offsets at the centre cells."""
    batch = len(targets)
    heat = torch.stack(
        [centernet_heatmap(t["boxes"], t["labels"], num_classes, size, stride) for t in targets]
    )
    wh = torch.zeros(batch, 2, *size)
    offset = torch.zeros(batch, 2, *size)
    for i, t in enumerate(targets):
        centre = (t["boxes"][:, :2] + t["boxes"][:, 2:]) / (2 * stride)
        cell = centre.floor().long()
        wh[i, :, cell[:, 1], cell[:, 0]] = ((t["boxes"][:, 2:] - t["boxes"][:, :2]) / stride).T
        offset[i, :, cell[:, 1], cell[:, 0]] = (centre - cell).T
    return {"heatmap": torch.logit(heat.clamp(1e-4, 1 - 1e-4)), "size": wh, "offset": offset}


# ------------------------------------------------------------------ backbone


def test_small_backbone_shapes_and_strides():
    net = _SmallBackbone()
    features = net(torch.rand(2, 3, 64, 96))
    assert net.strides == [4, 8, 16]
    assert [tuple(f.shape) for f in features] == [
        (2, 48, 16, 24),
        (2, 96, 8, 12),
        (2, 160, 4, 6),
    ]
    assert net.out_channels == [48, 96, 160]


def test_backbone_rejects_hwc_images():
    with pytest.raises(ValueError, match=r"PyramidBackbone takes 3-channel images.*looks like HWC"):
        PyramidBackbone()(torch.rand(2, 64, 64, 3))


def test_fpn_gives_every_level_the_same_width():
    features = [torch.rand(1, 8, 16, 16), torch.rand(1, 12, 8, 8), torch.rand(1, 16, 4, 4)]
    outputs = FPN([8, 12, 16], channels=10)(features)
    assert [tuple(o.shape) for o in outputs] == [(1, 10, 16, 16), (1, 10, 8, 8), (1, 10, 4, 4)]
    with pytest.raises(ValueError, match="expected 3 feature maps"):
        FPN([8, 12, 16])(features[:2])


def test_fpn_sends_coarse_information_down_to_the_finest_level():
    fpn = FPN([4, 4], channels=4).eval()
    fine, coarse = torch.rand(1, 4, 8, 8), torch.rand(1, 4, 4, 4)
    before = fpn([fine, coarse])[0]
    after = fpn([fine, coarse + 1])[0]  # change only the coarse map
    assert not torch.allclose(before, after)


def test_pyramid_backbone_levels_match_strides():
    net = PyramidBackbone(channels=16, widths=TINY)
    outputs = net(torch.rand(1, 3, 64, 64))
    for level, stride in zip(outputs, net.strides):
        assert tuple(level.shape) == (1, 16, 64 // stride, 64 // stride)


# ------------------------------------------------------------------ CenterNet


def test_heatmap_peaks_at_centres_in_the_right_channel():
    target = scene_targets()[0]
    heat = centernet_heatmap(target["boxes"], target["labels"], 3, (16, 16), stride=4)
    assert tuple(heat.shape) == (3, 16, 16)
    assert heat[1:].max() == 0  # only class 1 (channel 0) has objects
    assert heat.min() >= 0 and heat.max() == 1
    # box (4, 6, 20, 30): centre (12, 18) px -> cell (x=3, y=4); box 2: (44, 40) -> (11, 10)
    assert heat[0, 4, 3] == 1 and heat[0, 10, 11] == 1
    assert (heat == 1).sum() == 2


def test_heatmap_of_an_empty_image_is_zero_and_bad_labels_raise():
    empty = centernet_heatmap(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), 3, (8, 8), 4)
    assert tuple(empty.shape) == (3, 8, 8) and empty.sum() == 0
    with pytest.raises(ValueError, match=r"labels in \[1, 3\].*1-based.*use y \+ 1"):
        centernet_heatmap(torch.tensor([[0.0, 0, 8, 8]]), torch.tensor([0]), 3, (8, 8), 4)


def test_decode_of_ideal_outputs_gives_back_the_targets():
    targets = scene_targets()
    detections = _centernet_decode(
        ideal_outputs(targets), stride=4, image_size=(64, 64), score_threshold=0.5
    )
    assert len(detections) == 2
    for det, target in zip(detections, targets):
        assert len(det["boxes"]) == len(target["boxes"])
        iou = box_iou(det["boxes"], target["boxes"])
        best = iou.argmax(dim=1)
        assert torch.allclose(iou.max(dim=1).values, torch.ones(len(best)), atol=1e-5)
        assert torch.equal(det["labels"], target["labels"][best])
        assert det["scores"].min() > 0.99


def test_decode_peak_kernel_one_keeps_the_neighbours():
    outputs = ideal_outputs(scene_targets())
    peaks = _centernet_decode(outputs, stride=4, score_threshold=0.01)
    every_cell = _centernet_decode(outputs, stride=4, score_threshold=0.01, peak_kernel=1)
    assert len(every_cell[0]["boxes"]) > len(peaks[0]["boxes"]) == 2


def test_loss_is_small_for_ideal_outputs_and_large_for_a_blank_head():
    targets = scene_targets()
    ideal = _centernet_loss(ideal_outputs(targets), targets, stride=4)
    assert set(ideal) == {"heatmap", "size", "offset"}
    assert ideal["size"] < 1e-5 and ideal["offset"] < 1e-5
    blank = {k: torch.zeros_like(v) for k, v in ideal_outputs(targets).items()}
    wrong = _centernet_loss(blank, targets, stride=4)
    assert all(wrong[k] > 10 * ideal[k] for k in wrong)


def test_loss_handles_images_without_objects():
    outputs = ideal_outputs(scene_targets())
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}] * 2
    losses = _centernet_loss(outputs, empty, stride=4)
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["size"] == 0 and losses["offset"] == 0


def test_head_shapes_and_the_initial_background_prior():
    head = CenterNetHead(16, num_classes=5)
    out = head(torch.rand(2, 16, 8, 8))
    assert tuple(out["heatmap"].shape) == (2, 5, 8, 8)
    assert tuple(out["size"].shape) == tuple(out["offset"].shape) == (2, 2, 8, 8)
    assert 0.001 < out["heatmap"].sigmoid().mean() < 0.05  # starts out saying "background"


def test_centernet_has_torchvision_style_train_and_eval_modes():
    seed_everything(0)
    model = CenterNet(num_classes=3, channels=16, widths=TINY)
    images = torch.rand(2, 3, 64, 64)
    losses = model(images, scene_targets())
    assert set(losses) == {"heatmap", "size", "offset"}
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(ValueError, match="needs targets"):
        model(images)
    model.eval()
    detections = model(list(images))  # a list of [3, H, W], like torchvision
    assert len(detections) == 2
    assert set(detections[0]) == {"boxes", "scores", "labels"}
    assert detections[0]["boxes"].shape[1] == 4
    assert (detections[0]["boxes"] >= 0).all() and (detections[0]["boxes"] <= 64).all()


def test_centernet_rejects_sizes_that_are_not_multiples_of_16():
    with pytest.raises(ValueError, match="divisible by 16"):
        CenterNet(channels=16, widths=TINY).eval()(torch.rand(1, 3, 60, 60))


def test_training_lowers_the_loss():
    seed_everything(0)
    model = CenterNet(num_classes=10, channels=16, widths=TINY)
    scenes = digit_scenes(16, image_size=64, digit_size=(16, 28))
    images, targets = torch.stack([s[0] for s in scenes]), [s[1] for s in scenes]
    model.train()
    first = sum(model(images, targets).values()).item()
    history = train_detector(model, scenes, epochs=12, lr=1e-2, batch_size=8, progress=False)
    model.train()
    last = sum(model(images, targets).values()).item()
    assert len(history.train_loss) == 12
    assert last < 0.6 * first


def test_evaluate_detector_returns_coco_metrics():
    scenes = digit_scenes(4, split="test", image_size=64, digit_size=(16, 28))
    model = CenterNet(channels=16, widths=TINY)
    preds, targets = detect(model, scenes, batch_size=3)
    assert len(preds) == len(targets) == 4
    scores = evaluate_detector(model, scenes)
    assert {"map", "map_50", "map_75"} <= set(scores)
    assert 0 <= scores["map"] <= scores["map_50"] <= 1


@pytest.mark.parametrize("training", [True, False])
def test_detect_gives_the_model_back_in_its_mode(training):
    scenes = digit_scenes(2, split="test", image_size=64, digit_size=(16, 28))
    model = CenterNet(channels=16, widths=TINY).train(training)
    preds, _ = detect(model, scenes)
    assert len(preds) == 2 and {"boxes", "scores", "labels"} <= set(preds[0])  # eval() outputs
    assert all(m.training is training for m in model.modules())
    evaluate_detector(model, scenes)
    assert all(m.training is training for m in model.modules())


# ------------------------------------------------------------------ the shipped checkpoint


def test_shipped_detector_reaches_its_targets():
    model = zoo.load("detector_digits", device="cpu")
    recipe = zoo.info("detector_digits")["recipe"]
    scenes = digit_scenes(100, split="test", **recipe["scenes"])
    scores = evaluate_detector(model, scenes)
    assert scores["map_50"] >= 0.90, scores
    assert scores["map"] >= 0.60, scores
