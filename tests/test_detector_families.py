"""The trainable RetinaNet and Faster R-CNN of lesson 03: anchors measured on the digit scenes,
every loss against torchvision's (same head outputs, same matches, same samples), edge cases (a
scene without objects, bad targets), the torchvision-style train / eval interface, determinism of
the sampling, and short trainings that must lower the losses."""

import pytest
import torch
import torch.nn.functional as F
import torchvision.ops as tvops
from torchvision.models.detection import _utils as tv_utils
from torchvision.models.detection.retinanet import (
    RetinaNetClassificationHead,
    RetinaNetRegressionHead,
)
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss
from torchvision.models.detection.rpn import RegionProposalNetwork as TorchvisionRPN

from course_utils.detection import (
    DIGIT_ANCHOR_RATIOS,
    DIGIT_ANCHOR_SCALES,
    FasterRCNN,
    RetinaNet,
    box_iou,
    digit_scenes,
    encode_boxes,
    match_boxes,
    multilevel_anchors,
    roi_align_fpn,
    sigmoid_focal_loss,
)
from course_utils.detection.faster_rcnn import (
    _box_head_loss,
    _rpn_loss,
    _sample_balanced,
    _sample_rois,
)
from course_utils.detection.recipes import DIGIT_SCENES
from course_utils.detection.retinanet import _retinanet_loss
from course_utils.detection.two_stage import BOX_HEAD_WEIGHTS
from course_utils.runtime import seed_everything

pytestmark = pytest.mark.usefixtures("one_cpu_thread")  # small models: see conftest.py


def assert_same_losses_and_gradients(ours: dict, reference: dict, inputs: tuple) -> None:
    """Our losses equal torchvision's, loss by loss, and so do their gradients w.r.t. ``inputs``."""
    assert ours.keys() == reference.keys()
    for key in ours:
        torch.testing.assert_close(ours[key], reference[key])
    ours_grad = torch.autograd.grad(sum(ours.values()), inputs)
    reference_grad = torch.autograd.grad(sum(reference.values()), inputs)
    for a, b in zip(ours_grad, reference_grad):
        torch.testing.assert_close(a, b)


TINY = {"channels": 16, "widths": (8, 8, 16, 16)}  # backbone sizes that keep the tests fast
IMAGE = (64, 64)
SIZES = [(16, 16), (8, 8)]  # the two levels (strides 4 and 8) of a 64x64 image
NUM_CLASSES = 4


def random_targets(seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Two images: a few tall boxes (one very thin, whose best anchor is a low-quality match),
    and one image without objects."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(4, 2, generator=g) * 30
    wh = torch.stack((torch.rand(4, generator=g) * 12 + 6, torch.rand(4, generator=g) * 16 + 14), 1)
    boxes = torch.cat((xy, xy + wh), dim=1)
    boxes[0] = torch.tensor([40.0, 10.0, 42.0, 40.0])  # 2 x 30: no anchor reaches IoU 0.5
    labels = torch.randint(1, NUM_CLASSES + 1, (4,), generator=g)
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    return [{"boxes": boxes, "labels": labels}, empty]


def anchors_64() -> torch.Tensor:
    return multilevel_anchors(SIZES, IMAGE, DIGIT_ANCHOR_SCALES, DIGIT_ANCHOR_RATIOS)


def torchvision_matches(anchors, targets, high, low, allow_low_quality):
    """torchvision's matching (its ``Matcher``; an image without boxes: all background, as its
    RetinaNet does)."""
    matcher = tv_utils.Matcher(high, low, allow_low_quality_matches=allow_low_quality)
    return [
        matcher(tvops.box_iou(t["boxes"], anchors))
        if len(t["boxes"])
        else torch.full((len(anchors),), -1, dtype=torch.int64)
        for t in targets
    ]


# ------------------------------------------------------------------ anchors, from the data


def test_anchors_fit_the_digits_every_digit_has_an_anchor_with_iou_half():
    scenes = digit_scenes(200, "train", **DIGIT_SCENES)
    boxes = torch.cat([t["boxes"] for _, t in scenes])
    height, width = boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]
    # The digits are tall: why both anchor shapes (height / width 1.25 and 2) are upright.
    assert (height / width).min() > 1.0
    assert (height / width).quantile(0.98) < 2.5
    # The anchors the model itself makes (strides 4 and 8 of a 96x96 scene).
    _, _, anchors = RetinaNet().eval().heads(scenes[0][0][None])
    assert len(anchors) == (24 * 24 + 12 * 12) * 6
    best = torch.cat([box_iou(t["boxes"], anchors).max(dim=1).values for _, t in scenes])
    assert len(best) > 400
    assert (best >= 0.5).all(), f"{(best < 0.5).sum()} of {len(best)} digits lack an anchor"
    assert best.median() > 0.7  # and most have a good one, not just a passable one
    model = FasterRCNN()
    assert model.scales == DIGIT_ANCHOR_SCALES and model.ratios == DIGIT_ANCHOR_RATIOS


def test_a_box_no_anchor_touches_gets_no_anchor_where_torchvision_matches_every_anchor():
    # Two anchors and two boxes: one box on the first anchor, one far from both (IoU 0 with all).
    anchors = torch.tensor([[0.0, 0, 10, 10], [20, 0, 30, 10]])
    gt = torch.tensor([[0.0, 0, 10, 10], [50, 50, 60, 60]])
    ours = match_boxes(anchors, gt, high=0.5, low=0.4, allow_low_quality=True)
    theirs = tv_utils.Matcher(0.5, 0.4, allow_low_quality_matches=True)(tvops.box_iou(gt, anchors))
    # The far box's best IoU is 0, a tie between all anchors: torchvision's low-quality rule then
    # makes every anchor a positive for its argmax box, so the background anchor becomes an
    # "object" at IoU 0 and is trained to regress a box it does not overlap. The course skips a
    # best IoU of 0: that anchor stays background.
    assert ours.tolist() == [0, -1]
    assert theirs.tolist() == [0, 0]
    # With any overlap, the two agree (the parity tests above cover the general case).
    near = torch.tensor([[0.0, 0, 10, 10], [25, 0, 35, 10]])  # IoU 1/3 with the second anchor
    ours = match_boxes(anchors, near, high=0.5, low=0.4, allow_low_quality=True)
    theirs = tv_utils.Matcher(0.5, 0.4, allow_low_quality_matches=True)(
        tvops.box_iou(near, anchors)
    )
    assert ours.tolist() == theirs.tolist() == [0, 1]


# ------------------------------------------------------------------ RetinaNet's loss


@pytest.mark.parametrize("seed", [0, 1])
def test_retinanet_loss_equals_torchvision(seed):
    targets = random_targets(seed)
    anchors = anchors_64()
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(2, len(anchors), NUM_CLASSES, generator=g) * 2).requires_grad_()
    deltas = (torch.randn(2, len(anchors), 4, generator=g) * 0.3).requires_grad_()
    ours = _retinanet_loss(logits, deltas, anchors, targets)

    matched = torchvision_matches(anchors, targets, 0.5, 0.4, allow_low_quality=True)
    # the inputs exercise every rule: ignored anchors and a below-0.5 (low-quality) match
    assert (matched[0] == -2).any() and (matched[0] == 0).any()
    assert box_iou(targets[0]["boxes"][:1], anchors).max() < 0.5
    # torchvision's head has a column per label; ours drops the background: column = label - 1
    tv_targets = [{"boxes": t["boxes"], "labels": t["labels"] - 1} for t in targets]
    outputs = {"cls_logits": logits, "bbox_regression": deltas}
    classification = RetinaNetClassificationHead(8, 6, NUM_CLASSES).compute_loss(
        tv_targets, outputs, matched
    )
    box = RetinaNetRegressionHead(8, 6).compute_loss(tv_targets, outputs, [anchors] * 2, matched)
    assert_same_losses_and_gradients(
        ours, {"classification": classification, "box_regression": box}, (logits, deltas)
    )


def test_retinanet_loss_of_scenes_without_objects_is_background_only():
    anchors = anchors_64()
    logits = torch.randn(2, len(anchors), NUM_CLASSES, requires_grad=True)
    deltas = torch.randn(2, len(anchors), 4, requires_grad=True)
    empty = random_targets()[1]
    losses = _retinanet_loss(logits, deltas, anchors, [empty, empty])
    # every anchor is background, the count of foreground anchors is clamped to 1
    expected = sigmoid_focal_loss(logits, torch.zeros_like(logits), reduction="sum") / 2
    torch.testing.assert_close(losses["classification"], expected)
    assert losses["box_regression"] == 0
    sum(losses.values()).backward()
    assert torch.isfinite(logits.grad).all() and (deltas.grad == 0).all()


# ------------------------------------------------------------------ Faster R-CNN's losses


def torchvision_labels(matches: torch.Tensor) -> torch.Tensor:
    """Our matches (>= 0 object, -1 background, -2 ignored) as the sampler's labels (1, 0, -1)."""
    return torch.where(matches >= 0, 1, torch.where(matches == -1, 0, -1))


@pytest.mark.parametrize("num_samples, fraction", [(256, 0.5), (16, 0.5), (64, 0.25)])
def test_sample_balanced_draws_what_torchvision_draws(num_samples, fraction):
    g = torch.Generator().manual_seed(3)
    # ~170 objects among 500 anchors, more than any cap below; then an image without objects
    matches = [torch.randint(-2, 1, (500,), generator=g), torch.full((300,), -1)]
    ours = [
        _sample_balanced(m, num_samples, fraction, torch.Generator().manual_seed(7))
        for m in matches
    ]
    with torch.random.fork_rng():  # leave the global random state as it was
        torch.manual_seed(7)
        sampler = tv_utils.BalancedPositiveNegativeSampler(num_samples, fraction)
        (pos0,), (neg0,) = sampler([torchvision_labels(matches[0])])
        torch.manual_seed(7)
        (pos1,), (neg1,) = sampler([torchvision_labels(matches[1])])
    for (positive, negative), pos, neg, m in zip(ours, (pos0, pos1), (neg0, neg1), matches):
        assert torch.equal(positive, pos.bool()) and torch.equal(negative, neg.bool())
        assert positive.sum() == min((m >= 0).sum(), int(num_samples * fraction))
        assert (m[positive] >= 0).all() and (m[negative] == -1).all()
    assert ours[1][0].sum() == 0 and ours[1][1].sum() == num_samples  # no objects: background only


# 256: every object anchor (6 here) is sampled; 8: 4 of them, so the draws must be the same
@pytest.mark.parametrize("num_samples", [256, 8])
def test_rpn_loss_equals_torchvision(num_samples):
    targets = random_targets(2)
    anchors = anchors_64()
    g = torch.Generator().manual_seed(4)
    objectness = torch.randn(2, len(anchors), generator=g).requires_grad_()
    deltas = (torch.randn(2, len(anchors), 4, generator=g) * 0.3).requires_grad_()
    ours = _rpn_loss(
        objectness,
        deltas,
        anchors,
        targets,
        num_samples,
        generator=torch.Generator().manual_seed(5),
    )
    rpn = TorchvisionRPN(None, None, 0.7, 0.3, num_samples, 0.5, {}, {}, 0.7)
    labels, matched_gt = rpn.assign_targets_to_anchors([anchors, anchors], targets)
    regression_targets = rpn.box_coder.encode(matched_gt, [anchors, anchors])
    with torch.random.fork_rng():
        torch.manual_seed(5)  # the same draws: _sample_balanced is torchvision's sampler
        objectness_ref, box_ref = rpn.compute_loss(
            objectness.reshape(-1, 1), deltas.reshape(-1, 4), labels, regression_targets
        )
    assert (labels[0] == 1).any()  # some anchors are objects
    assert_same_losses_and_gradients(
        ours, {"objectness": objectness_ref, "rpn_box": box_ref}, (objectness, deltas)
    )


def test_sample_rois_equals_torchvision_select_training_samples():
    targets = random_targets(5)
    g = torch.Generator().manual_seed(6)
    gt = targets[0]["boxes"]
    near = gt.repeat(6, 1) + torch.randn(24, 4, generator=g) * 2  # jittered: positives
    near[:, 2:] = torch.maximum(near[:, 2:], near[:, :2] + 1)
    far = torch.rand(150, 2, generator=g) * 50
    far = torch.cat((far, far + torch.rand(150, 2, generator=g) * 20 + 2), dim=1)
    proposals = [torch.cat((near, far)), far[:90]]
    rois, labels, matched = _sample_rois(
        proposals, targets, 64, 0.25, generator=torch.Generator().manual_seed(8)
    )
    heads = RoIHeads(None, None, None, 0.5, 0.5, 64, 0.25, None, 0.05, 0.5, 100)
    with torch.random.fork_rng():
        torch.manual_seed(8)
        tv_rois, _, tv_labels, tv_regression = heads.select_training_samples(
            [p.clone() for p in proposals], targets
        )
    for image in range(2):
        assert torch.equal(rois[image], tv_rois[image])
        assert torch.equal(labels[image], tv_labels[image])
        positive = labels[image] > 0
        torch.testing.assert_close(
            encode_boxes(rois[image][positive], matched[image][positive], BOX_HEAD_WEIGHTS),
            tv_regression[image][positive],
        )
    assert 0 < (labels[0] > 0).sum() <= 16  # at most a quarter of the 64 RoIs are objects
    assert len(rois[0]) == 64 and (labels[1] == 0).all()  # no objects: only background


def test_box_head_loss_equals_torchvision_fastrcnn_loss():
    g = torch.Generator().manual_seed(9)
    num_rois, k = 40, NUM_CLASSES
    logits = torch.randn(num_rois, k + 1, generator=g, requires_grad=True)
    deltas = torch.randn(num_rois, k, 4, generator=g, requires_grad=True)
    labels = torch.randint(0, k + 1, (num_rois,), generator=g)
    xy = torch.rand(num_rois, 2, 2, generator=g) * 40
    rois = torch.cat((xy[:, 0], xy[:, 0] + torch.rand(num_rois, 2, generator=g) * 20 + 2), 1)
    matched = torch.cat((xy[:, 1], xy[:, 1] + torch.rand(num_rois, 2, generator=g) * 20 + 2), 1)
    ours = _box_head_loss(logits, deltas, rois, labels, matched)
    # torchvision's predictor has a box for the background too (column 0, never used)
    tv_deltas = torch.cat((torch.zeros(num_rois, 1, 4), deltas), dim=1).reshape(num_rois, -1)
    targets = tv_utils.BoxCoder(BOX_HEAD_WEIGHTS).encode_single(matched, rois)
    classification, box = fastrcnn_loss(
        logits, tv_deltas, list(labels.split([25, 15])), list(targets.split([25, 15]))
    )
    assert_same_losses_and_gradients(
        ours, {"classification": classification, "box_regression": box}, (logits, deltas)
    )
    none = _box_head_loss(logits[:0], deltas[:0], rois[:0], labels[:0], matched[:0])
    assert none["classification"] == 0 and none["box_regression"] == 0  # not NaN


# ------------------------------------------------------------------ the models


def scene_batch(n: int = 2):
    scenes = digit_scenes(n, image_size=64, digit_size=(16, 28))
    return torch.stack([s[0] for s in scenes]), [s[1] for s in scenes]


MODELS = {"retinanet": RetinaNet, "faster_rcnn": FasterRCNN}
LOSSES = {
    "retinanet": {"classification", "box_regression"},
    "faster_rcnn": {"objectness", "rpn_box", "classification", "box_regression"},
}


@pytest.mark.parametrize("kind", MODELS)
def test_model_train_and_eval_modes(kind):
    seed_everything(0)
    model = MODELS[kind](num_classes=NUM_CLASSES, **TINY)
    images, _ = scene_batch()
    targets = random_targets()  # one image with objects, one without
    losses = model(images, targets)
    assert set(losses) == LOSSES[kind]
    assert all(v.ndim == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(ValueError, match="needs targets"):
        model(images)
    model.eval()
    model.score_threshold, model.max_detections = 0.0, 7  # an untrained model scores low
    detections = model(list(images))  # a list of [3, H, W], like torchvision
    assert len(detections) == 2
    for det in detections:
        assert set(det) == {"boxes", "scores", "labels"}
        n = len(det["boxes"])
        assert 0 < n <= 7 and det["boxes"].shape == (n, 4) and det["scores"].shape == (n,)
        assert det["labels"].dtype == torch.int64
        assert det["labels"].min() >= 1 and det["labels"].max() <= NUM_CLASSES
        assert (det["boxes"] >= 0).all() and (det["boxes"] <= 64).all()
        assert (det["scores"].diff() <= 0).all()  # best first
    for det, again in zip(detections, model(images)):  # a batch tensor gives the same
        torch.testing.assert_close(det, again)


@pytest.mark.parametrize("kind", MODELS)
def test_model_on_scenes_without_objects(kind):
    seed_everything(0)
    model = MODELS[kind](num_classes=NUM_CLASSES, **TINY)
    images, _ = scene_batch()
    empty = random_targets()[1]
    losses = model(images, [empty, empty])
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["box_regression"] == 0 and losses["classification"] > 0
    if kind == "faster_rcnn":
        assert losses["rpn_box"] == 0 and losses["objectness"] > 0
    sum(losses.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def bad_targets():
    good = random_targets()[0]
    boxes, labels = good["boxes"], good["labels"]
    xywh = boxes.clone()
    xywh[:, 2:] = 3.0  # x2 < x1: width and height passed as corners
    nan = boxes.clone()
    nan[1, 0] = float("nan")
    thin = boxes.clone()
    thin[1, 2] = thin[1, 0]
    return {
        "a dict": ({"boxes": boxes, "labels": labels}, "one .* dict per image"),
        "missing labels": ([{"boxes": boxes}] * 2, "'boxes' and 'labels'"),
        "xywh boxes": ([{"boxes": xywh, "labels": labels}] * 2, "xywh"),
        "NaN box": ([{"boxes": nan, "labels": labels}] * 2, "NaN"),
        "zero-width box": ([{"boxes": thin, "labels": labels}] * 2, "zero width"),
        "one box, 1-D": ([{"boxes": boxes[0], "labels": labels}] * 2, r"\[G, 4\]"),
        "int boxes": ([{"boxes": boxes.long(), "labels": labels}] * 2, "float"),
        "float labels": ([{"boxes": boxes, "labels": labels.float()}] * 2, r"use y\.long\(\)"),
        "background label": (
            [{"boxes": boxes, "labels": labels * 0}] * 2,
            r"0 = background\): use y \+ 1",
        ),
        "label too large": ([{"boxes": boxes, "labels": labels + NUM_CLASSES}] * 2, "1..4"),
        "too few labels": (
            [{"boxes": boxes, "labels": labels[:2]}] * 2,
            "got 2 labels, expected 4",
        ),
        "three targets": ([good] * 3, "mismatched lengths: 3 targets, 2 images"),
    }


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("case", bad_targets())
def test_model_rejects_bad_targets(kind, case):
    model = MODELS[kind](num_classes=NUM_CLASSES, **TINY)
    targets, match = bad_targets()[case]
    error = TypeError if case == "float labels" else ValueError  # a wrong dtype is a TypeError
    with pytest.raises(error, match=match):
        model(scene_batch()[0], targets)


@pytest.mark.parametrize("kind", MODELS)
def test_model_rejects_bad_images_and_anchor_settings(kind):
    with pytest.raises(ValueError, match="divisible by 16"):
        MODELS[kind](**TINY).eval()(torch.rand(1, 3, 60, 60))
    with pytest.raises(ValueError, match="same number of anchors"):
        MODELS[kind](scales=((10.0, 14.0), (20.0,)), **TINY)


def test_loss_functions_reject_mismatched_shapes():
    anchors = anchors_64()
    n = len(anchors)
    with pytest.raises(ValueError, match=r"deltas \[B, N, 4\]"):
        _retinanet_loss(torch.zeros(2, n, 4), torch.zeros(2, n - 1, 4), anchors, random_targets())
    with pytest.raises(ValueError, match="anchors"):
        _retinanet_loss(torch.zeros(2, n, 4), torch.zeros(2, n, 4), anchors[1:], random_targets())
    with pytest.raises(ValueError, match=r"objectness \[B, N\]"):
        _rpn_loss(torch.zeros(2, n, 1), torch.zeros(2, n, 4), anchors, random_targets())
    with pytest.raises(ValueError, match=r"deltas \[R, K, 4\]"):
        labels = torch.zeros(3, dtype=torch.int64)
        _box_head_loss(
            torch.zeros(3, 5), torch.zeros(3, 5, 4), torch.zeros(3, 4), labels, torch.zeros(3, 4)
        )
    with pytest.raises(ValueError, match="integer matches"):
        _sample_balanced(torch.zeros(5), 4, 0.5)
    with pytest.raises(ValueError, match="positive_fraction in"):
        _sample_balanced(torch.zeros(5, dtype=torch.int64), 4, 50)  # a fraction, not a percentage


def test_faster_rcnn_sampling_is_deterministic_and_leaves_the_global_rng_alone():
    images, targets = scene_batch()
    results = []
    for _ in range(2):
        seed_everything(0)
        model = FasterRCNN(num_classes=10, **TINY)
        optimiser = torch.optim.SGD(model.parameters(), lr=0.01)
        state = torch.get_rng_state()
        for _ in range(2):
            loss = sum(model(images, targets).values())
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        assert torch.equal(torch.get_rng_state(), state)  # nothing drawn from the global RNG
        results.append((loss.item(), [p.detach().clone() for p in model.parameters()]))
    assert results[0][0] == results[1][0]
    assert all(torch.equal(a, b) for a, b in zip(results[0][1], results[1][1]))
    # another seed samples other anchors and RoIs
    seed_everything(0)
    other = FasterRCNN(num_classes=10, seed=1, **TINY)
    first = FasterRCNN(num_classes=10, **TINY)
    first.load_state_dict(other.state_dict())
    assert sum(other(images, targets).values()) != sum(first(images, targets).values())


# ------------------------------------------------------------------ they learn


def train(model, images, targets, steps: int, lr: float = 3e-3) -> list[dict[str, float]]:
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    for _ in range(steps):
        losses = model(images, targets)
        optimiser.zero_grad()
        sum(losses.values()).backward()
        optimiser.step()
        history.append({k: v.item() for k, v in losses.items()})
    return history


def test_retinanet_learns_a_few_scenes():
    seed_everything(0)
    model = RetinaNet(num_classes=10, **TINY)
    history = train(model, *scene_batch(8), steps=40)
    first, last = sum(history[0].values()), sum(history[-1].values())
    assert last < 0.2 * first, (first, last)


def test_faster_rcnn_learns_a_few_scenes():
    seed_everything(0)
    model = FasterRCNN(num_classes=10, **TINY)
    images, targets = scene_batch(8)

    def box_head_on_gt() -> float:
        """The box head's cross-entropy on the gt boxes themselves: RoIs that do not change as
        the RPN learns (the sampled RoIs do: the better the RPN, the more of them are digits)."""
        with torch.no_grad():
            features = model.backbone(images)
            gt = [t["boxes"] for t in targets]
            pooled = roi_align_fpn(
                features, model.backbone.strides, gt, model.roi_size, model.sampling_ratio
            )
            logits, _ = model.box_head(pooled)
        return F.cross_entropy(logits, torch.cat([t["labels"] for t in targets])).item()

    before = box_head_on_gt()
    history = train(model, images, targets, steps=60, lr=1e-2)
    assert history[-1]["objectness"] < 0.25 * history[0]["objectness"], history
    assert history[-1]["rpn_box"] < 0.5 * history[0]["rpn_box"], history
    assert box_head_on_gt() < 0.5 * before


# ------------------------------------------------------------------ the shipped checkpoints


@pytest.mark.parametrize("name", ["retinanet_digits", "faster_rcnn_digits"])
def test_shipped_families_reach_their_targets_and_their_errors_add_up(name):
    from course_utils import zoo
    from course_utils.detection import ERROR_KINDS, detect, detection_errors, mean_average_precision

    model = zoo.load(name, device="cpu")
    assert zoo.info(name)["recipe"]["scenes"] == DIGIT_SCENES  # the scenes of the comparison
    scenes = digit_scenes(100, split="test", **DIGIT_SCENES)
    preds, targets = detect(model, scenes)
    scores = mean_average_precision(preds, targets)
    assert scores["map_50"] >= 0.95 and scores["map"] >= 0.75, scores  # recorded: 0.985+, 0.866+
    errors = detection_errors(preds, targets)
    assert set(errors) == set(ERROR_KINDS)
    objects = sum(len(t["labels"]) for t in targets)
    assert errors["correct"] + errors["missed"] == objects
    assert errors["correct"] >= 0.9 * objects
