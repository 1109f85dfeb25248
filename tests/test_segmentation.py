"""course_utils.segmentation: metrics against torchmetrics, scikit-learn and hand-computed
cases, losses (known values, gradients, ignore_index), model output shapes and panoptic id
spaces."""

import math

import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import jaccard_score
from torchmetrics.classification import MulticlassConfusionMatrix, MulticlassJaccardIndex

from course_utils.segmentation import (
    ASPP,
    BoundaryLoss,
    CombinedSegmentationLoss,
    DeepLabV3Plus,
    DiceLoss,
    FCN8s,
    FocalLossSegmentation,
    InstanceSegmenter,
    MaskHead,
    MiniUNet,
    TinyBackbone,
    UNet,
    confusion_matrix,
    evaluate_segmenter,
    mask_loss,
    mask_targets,
    mean_iou,
    panoptic_fusion,
    pixel_accuracy,
    scene_masks,
    segment,
    train_segmenter,
)
from course_utils.segmentation.instance import _paste_masks

IGNORE = 255


def random_case(seed: int, num_classes: int = 4, shape=(2, 6, 7), ignore_fraction: float = 0.0):
    """Random logits [B, K, H, W] and targets [B, H, W], some pixels set to IGNORE."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape[0], num_classes, *shape[1:], generator=g)
    target = torch.randint(0, num_classes, shape, generator=g)
    ignored = torch.rand(shape, generator=g) < ignore_fraction
    return logits, target.masked_fill(ignored, IGNORE)


# ------------------------------------------------------------------------------------ metrics


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("ignore_index", [None, IGNORE])
def test_metrics_match_torchmetrics(seed, ignore_index):
    k = 5
    logits, target = random_case(seed, k, ignore_fraction=0.2 if ignore_index else 0.0)
    if seed % 2:  # make some classes absent from target and prediction
        target = torch.where(target == IGNORE, target, target.clamp(max=2))
        logits[:, 3:] -= 100
    pred = logits.argmax(1)
    cm = confusion_matrix(logits, target, k, ignore_index)
    tm_cm = MulticlassConfusionMatrix(k, ignore_index=ignore_index)(pred, target)
    assert cm.dtype == torch.int64 and torch.equal(cm, tm_cm)

    result = mean_iou(pred, target, k, ignore_index)
    tm_macro = MulticlassJaccardIndex(k, average="macro", ignore_index=ignore_index)(pred, target)
    tm_per_class = MulticlassJaccardIndex(k, average=None, ignore_index=ignore_index)(pred, target)
    assert result["miou"] == pytest.approx(tm_macro.item(), abs=1e-6)
    present = ~result["per_class"].isnan()
    # torchmetrics reports 0 for classes with an empty union; we report nan there.
    assert torch.allclose(result["per_class"][present].float(), tm_per_class[present], atol=1e-6)
    assert (tm_per_class[~present] == 0).all()


def test_hand_computed_case():
    target = torch.tensor([[[0, 0, 1], [1, 2, 2]]])
    pred = torch.tensor([[[0, 1, 1], [1, 2, 0]]])
    # class 0: inter 1, union 3; class 1: inter 2, union 3; class 2: inter 1, union 2; 3 absent.
    result = mean_iou(pred, target, num_classes=4)
    expected = torch.tensor([1 / 3, 2 / 3, 1 / 2], dtype=torch.float64)
    assert torch.allclose(result["per_class"][:3], expected)
    assert math.isnan(result["per_class"][3])
    assert result["miou"] == pytest.approx(float(expected.mean()))
    assert pixel_accuracy(pred, target) == pytest.approx(4 / 6)
    assert confusion_matrix(pred, target, 4).tolist() == [
        [1, 1, 0, 0],
        [0, 2, 0, 0],
        [1, 0, 1, 0],
        [0, 0, 0, 0],
    ]


def test_ignore_index_is_honoured():
    target = torch.tensor([[[0, 1, IGNORE, IGNORE]]])
    pred = torch.tensor([[[0, 1, 1, 0]]])  # wrong at ignored pixels only
    assert pixel_accuracy(pred, target, ignore_index=IGNORE) == 1.0
    assert mean_iou(pred, target, 2, ignore_index=IGNORE)["miou"] == 1.0
    assert confusion_matrix(pred, target, 2, ignore_index=IGNORE).sum() == 2
    assert math.isnan(pixel_accuracy(pred, torch.full_like(target, IGNORE), ignore_index=IGNORE))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ignore_index", [0, 2])
def test_ignore_index_as_a_real_class_matches_torchmetrics_and_sklearn(seed, ignore_index):
    # e.g. ignore_index=0 scores the objects, not the background: class 0 leaves the mean and
    # its target pixels are not counted; a pixel predicted as 0 is still a miss for its class.
    k = 5
    logits, target = random_case(seed, k)
    if seed % 2:  # class 4 absent from target and prediction
        target = target.clamp(max=3)
        logits[:, 4] -= 100
    pred = logits.argmax(1)
    result = mean_iou(pred, target, k, ignore_index)
    assert math.isnan(result["per_class"][ignore_index])
    tm = MulticlassJaccardIndex(k, average="macro", ignore_index=ignore_index)(pred, target)
    assert result["miou"] == pytest.approx(tm.item(), abs=1e-6)
    # scikit-learn on the counted pixels, scoring the other classes that occur there
    valid = target != ignore_index
    t, p = target[valid].numpy(), pred[valid].numpy()
    scored = sorted((set(t.tolist()) | set(p.tolist())) - {ignore_index})
    assert result["miou"] == pytest.approx(jaccard_score(t, p, labels=scored, average="macro"))
    per_class = jaccard_score(t, p, labels=scored, average=None)
    assert torch.allclose(result["per_class"][scored], torch.from_numpy(per_class))


def test_classes_not_scored_are_nan_here_and_0_or_counted_in_the_peers():
    # The course's convention, on purpose: a class that is not scored -- ignore_index, or absent
    # from both prediction and target -- is nan and leaves the mean. The peers differ.
    target = torch.tensor([[0, 0, 1, 1, 2, 2, 1, 0]])
    pred = torch.tensor([[0, 1, 1, 0, 2, 1, 1, 2]])  # class 3 nowhere
    ours = mean_iou(pred, target, num_classes=4, ignore_index=0)
    assert ours["per_class"][1:3].tolist() == [0.5, 0.5] and ours["miou"] == 0.5
    assert ours["per_class"][[0, 3]].isnan().all()
    # torchmetrics: 0 for both in average=None (its zero_division), skipped by its macro mean
    tm_none = MulticlassJaccardIndex(4, average=None, ignore_index=0)(pred, target)
    assert tm_none.tolist() == [0.0, 0.5, 0.5, 0.0]
    assert MulticlassJaccardIndex(4, ignore_index=0)(pred, target).item() == ours["miou"]
    # scikit-learn, told to score class 3 too: zero_division fills it in and it stays in the
    # mean, pulling it down (0) or up (1); the course leaves it out
    valid = target != 0
    t, p = target[valid].numpy(), pred[valid].numpy()
    low = jaccard_score(t, p, labels=[1, 2, 3], average="macro", zero_division=0)
    high = jaccard_score(t, p, labels=[1, 2, 3], average="macro", zero_division=1)
    assert (low, high) == pytest.approx((1 / 3, 2 / 3))
    assert low < ours["miou"] < high
    assert jaccard_score(t, p, labels=[1, 2], average="macro") == ours["miou"]


@pytest.mark.parametrize(
    "pred, target, match",
    [
        (
            torch.zeros(1, 2, 3, dtype=torch.long),
            torch.zeros(1, 3, 2, dtype=torch.long),
            "same shape",
        ),
        (torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, dtype=torch.long), "logits"),
        (torch.zeros(1, 2, 2, dtype=torch.long), torch.zeros(1, 2, 2), "integer class labels"),
        (torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), 3), r"\[0, 3\)"),
        (torch.full((1, 2, 2), 7), torch.zeros(1, 2, 2, dtype=torch.long), "pred labels must lie"),
        (torch.zeros(1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), "integer labels shaped"),
    ],
)
def test_metric_bad_input(pred, target, match):
    with pytest.raises(ValueError, match=match):
        mean_iou(pred, target, num_classes=3)


def test_unignored_255_is_an_error():
    target = torch.tensor([[[0, IGNORE]]])
    with pytest.raises(ValueError, match="ignore_index=None"):
        confusion_matrix(torch.zeros_like(target), target, 2)


# ------------------------------------------------------------------------------------- losses

LOSSES = {
    "dice": lambda ii: DiceLoss(ignore_index=ii),
    "focal": lambda ii: FocalLossSegmentation(alpha=torch.tensor([0.2, 0.3, 0.5]), ignore_index=ii),
    "combined": lambda ii: CombinedSegmentationLoss(ignore_index=ii),
    "boundary": lambda ii: BoundaryLoss(ignore_index=ii),
}


def blocky_target(batch: int = 2) -> torch.Tensor:
    """Targets [B, 8, 8] with 3 rectangular regions, so boundaries exist."""
    t = torch.zeros(batch, 8, 8, dtype=torch.long)
    t[:, 2:6, 1:5] = 1
    t[:, 5:, 5:] = 2
    return t


def test_perfect_prediction_has_near_zero_dice_and_boundary_loss():
    target = blocky_target()
    logits = F.one_hot(target, 3).permute(0, 3, 1, 2).float() * 50
    assert DiceLoss()(logits, target).item() == pytest.approx(0.0, abs=1e-6)
    assert BoundaryLoss()(logits, target).item() == pytest.approx(0.0, abs=1e-6)
    assert DiceLoss()(-logits, target).item() > 0.9  # every pixel wrong


@pytest.mark.parametrize("ignore_index", [None, IGNORE])
def test_focal_with_gamma_zero_is_cross_entropy(ignore_index):
    logits, target = random_case(0, 3, ignore_fraction=0.3 if ignore_index else 0.0)
    focal = FocalLossSegmentation(gamma=0.0, ignore_index=ignore_index)(logits, target)
    ce = F.cross_entropy(logits, target, ignore_index=ignore_index if ignore_index else -100)
    assert focal.item() == pytest.approx(ce.item(), rel=1e-5)
    # gamma > 0 only ever shrinks each pixel's term
    assert FocalLossSegmentation(gamma=2.0, ignore_index=ignore_index)(logits, target) < focal


def test_focal_segmentation_is_the_detection_focal_loss_per_pixel():
    from course_utils.detection import FocalLoss

    logits, target = random_case(4, 3, ignore_fraction=0.3)
    alpha = torch.tensor([0.2, 0.3, 0.5])
    seg = FocalLossSegmentation(alpha=alpha, gamma=1.5, ignore_index=IGNORE)
    assert isinstance(seg, FocalLoss) and seg.reduction == "mean"
    det = FocalLoss(alpha=alpha, gamma=1.5, ignore_index=IGNORE)
    torch.testing.assert_close(seg(logits, target), det(logits, target))
    # the segmentation name keeps its stricter check: logits must be [B, K, H, W]
    with pytest.raises(ValueError, match=r"\[B, K, H, W\]"):
        seg(logits[:, :, 0], target[:, 0])


def test_combined_is_weighted_sum():
    logits, target = random_case(1, 3, ignore_fraction=0.3)
    combined = CombinedSegmentationLoss(0.5, 2.0, ignore_index=IGNORE)(logits, target)
    ce = F.cross_entropy(logits, target, ignore_index=IGNORE)
    dice = DiceLoss(ignore_index=IGNORE)(logits, target)
    assert combined.item() == pytest.approx((0.5 * ce + 2.0 * dice).item(), rel=1e-6)


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("batch", [1, 2])
def test_gradients_are_nonzero_and_finite(name, batch):
    target = blocky_target(batch)
    logits = torch.randn(
        batch, 3, 8, 8, generator=torch.Generator().manual_seed(2), requires_grad=True
    )
    loss = LOSSES[name](None)(logits, target)
    loss.backward()
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("name", LOSSES)
def test_ignored_pixels_change_neither_loss_nor_gradient(name):
    target = blocky_target()
    target[:, 0, :3] = IGNORE
    target[1, 4:6, 6] = IGNORE
    ignored = target == IGNORE
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 3, 8, 8, generator=g)
    perturbed = logits + 10 * torch.randn(logits.shape, generator=g) * ignored[:, None]
    results = []
    for x in (logits, perturbed):
        x = x.clone().requires_grad_(True)
        loss = LOSSES[name](IGNORE)(x, target)
        loss.backward()
        results.append((loss.detach(), x.grad))
    (loss_a, grad_a), (loss_b, grad_b) = results
    assert torch.allclose(loss_a, loss_b, atol=1e-6)
    assert torch.allclose(grad_a, grad_b, atol=1e-6)
    assert (grad_a * ignored[:, None]).abs().sum() == 0


@pytest.mark.parametrize("name", LOSSES)
def test_losses_reject_bad_targets(name):
    loss = LOSSES[name](None)
    logits = torch.randn(1, 3, 4, 4)
    with pytest.raises(ValueError, match=r"labels in \[0, 2\], got values in \[255, 255\]"):
        loss(logits, torch.full((1, 4, 4), IGNORE))
    with pytest.raises(ValueError, match=r"target \[B, H, W\]"):
        loss(logits, torch.zeros(1, 4, 5, dtype=torch.long))


@pytest.mark.parametrize("name", LOSSES)
def test_all_ignored_batch_gives_zero_loss(name):
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    loss = LOSSES[name](IGNORE)(logits, torch.full((1, 4, 4), IGNORE))
    loss.backward()
    assert loss.item() == 0.0 and (logits.grad == 0).all()


# ------------------------------------------------------------------------------------- models


def assert_gradient_reaches(model: torch.nn.Module, out: torch.Tensor) -> None:
    out.square().mean().backward()
    first = next(p for p in model.parameters() if p.dim() == 4)
    assert first.grad is not None and first.grad.abs().sum() > 0


@pytest.mark.parametrize("size", [(16, 16), (13, 19)])
def test_mini_unet_shapes_and_gradient(size):
    model = MiniUNet(in_channels=1, num_classes=3, base=4)
    out = model(torch.randn(2, 1, *size))
    assert out.shape == (2, 3, *size)
    assert_gradient_reaches(model, out)


@pytest.mark.parametrize("bilinear", [True, False])
@pytest.mark.parametrize("size", [(16, 16), (17, 23)])
def test_unet_shapes_and_gradient(bilinear, size):
    model = UNet(in_channels=2, num_classes=4, base=4, depth=3, bilinear=bilinear)
    out = model(torch.randn(1, 2, *size))
    assert out.shape == (1, 4, *size)
    assert_gradient_reaches(model, out)


def test_unet_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 4"):
        MiniUNet(base=4)(torch.randn(1, 3, 3, 8))
    model = UNet(in_channels=3, base=4, depth=3)
    with pytest.raises(ValueError, match="at least 8"):
        model(torch.randn(1, 3, 7, 16))
    with pytest.raises(ValueError, match="UNet takes 3-channel images, got 1 channels"):
        model(torch.randn(1, 1, 16, 16))


def test_aspp_keeps_size_and_uses_image_context():
    model = ASPP(8, 6, rates=(1, 2))
    x = torch.randn(1, 8, 5, 7)
    out = model(x)
    assert out.shape == (1, 6, 5, 7)
    assert_gradient_reaches(model, out)
    model.eval()  # with batch norm frozen, a far-away pixel still changes the output via pooling
    far = x.clone()
    far[..., 0, 0] += 5
    assert not torch.allclose(model(x)[..., -1, -1], model(far)[..., -1, -1])


def test_tiny_backbone_strides():
    x = torch.randn(1, 3, 64, 64)
    assert [f.shape[-1] for f in TinyBackbone()(x)] == [16, 8, 4, 2]
    assert [f.shape[-1] for f in TinyBackbone(dilate_last=True)(x)] == [16, 8, 4, 4]


@pytest.mark.parametrize("make", [lambda: FCN8s(5), lambda: DeepLabV3Plus(5, aspp_channels=16)])
@pytest.mark.parametrize("size", [(32, 32), (37, 29)])
def test_fcn_and_deeplab_shapes_and_gradient(make, size):
    model = make()
    out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 5, *size)
    assert_gradient_reaches(model, out)


def test_mask_head():
    model = MaskHead(in_channels=8, num_classes=3, hidden=8)
    out = model(torch.randn(4, 8, 14, 14))
    assert out.shape == (4, 3, 28, 28)
    assert_gradient_reaches(model, out)
    with pytest.raises(ValueError, match=r"MaskHead takes images \[B, C, H, W\].*unsqueeze"):
        model(torch.randn(8, 14, 14))


# ---------------------------------------------------------------------------- instance masks


def test_mask_targets_cut_the_mask_by_its_box():
    masks = torch.zeros(2, 20, 20, dtype=torch.uint8)
    masks[0, 4:12, 2:10] = 1  # fills its box
    masks[1, 0:10, 10:14] = 1  # left half of the box x 10..18, y 0..10
    boxes = torch.tensor([[2.0, 4.0, 10.0, 12.0], [10.0, 0.0, 18.0, 10.0]])
    cut = mask_targets(masks, boxes, size=8)
    assert cut.shape == (2, 8, 8)
    assert torch.equal(cut[0], torch.ones(8, 8))
    expected = torch.zeros(8, 8)
    expected[:, :4] = 1
    assert torch.equal(cut[1], expected)
    with pytest.raises(ValueError, match=r"boxes \[K, 4\]"):
        mask_targets(masks, boxes[:1])


def test_paste_masks_fills_exactly_the_box():
    boxes = torch.tensor([[3.0, 5.0, 11.0, 9.0], [0.0, 0.0, 20.0, 16.0]])
    pasted = _paste_masks(torch.ones(2, 28, 28), boxes, (16, 20))
    assert pasted.shape == (2, 16, 20)
    expected = torch.zeros(16, 20, dtype=torch.bool)
    expected[5:9, 3:11] = True
    assert torch.equal(pasted[0] > 0.5, expected)
    assert (pasted[1] > 0.5).all()  # the whole image
    assert _paste_masks(torch.ones(0, 28, 28), torch.zeros(0, 4), (16, 20)).shape == (0, 16, 20)


def test_paste_masks_agrees_with_torchvision_and_inverts_mask_targets():
    from torchvision.models.detection.roi_heads import paste_masks_in_image

    from course_utils.data import DigitScenes

    _, target = DigitScenes(8, image_size=96, digit_size=(16, 32), split="test")[0]
    masks, boxes = target["masks"], target["boxes"]
    cut = mask_targets(masks, boxes, size=28)
    ours = _paste_masks(cut, boxes, (96, 96)) > 0.5
    theirs = paste_masks_in_image(cut[:, None], boxes, (96, 96))[:, 0] > 0.5
    for o, t, g in zip(ours, theirs, masks.bool()):
        assert iou(o, t) > 0.9  # the same picture up to rounding at the box edges
        assert iou(o, g) > 0.85  # 28 x 28 keeps the digit's shape


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_mask_loss_uses_only_the_labelled_class():
    logits = torch.randn(3, 4, 6, 6, requires_grad=True)
    labels = torch.tensor([1, 4, 2])
    targets = (torch.rand(3, 6, 6) > 0.5).float()
    loss = mask_loss(logits, labels, targets)
    own = torch.stack([logits[0, 0], logits[1, 3], logits[2, 1]])
    assert torch.allclose(loss, F.binary_cross_entropy_with_logits(own, targets))
    loss.backward()
    touched = logits.grad.abs().sum((2, 3)) > 0
    assert touched.tolist() == [
        [True, False, False, False], [False, False, False, True], [False, True, False, False]
    ]  # fmt: skip
    empty = mask_loss(
        torch.zeros(0, 4, 6, 6, requires_grad=True), torch.zeros(0), torch.zeros(0, 6, 6)
    )
    assert empty.item() == 0 and empty.requires_grad


def test_instance_segmenter_trains_only_its_mask_head():
    from course_utils.data import DigitScenes
    from course_utils.detection import CenterNet

    torch.manual_seed(0)
    scenes = DigitScenes(2, image_size=64, digit_size=(16, 24))
    images = [scenes[i][0] for i in range(2)]
    targets = [scenes[i][1] for i in range(2)]
    model = InstanceSegmenter(
        CenterNet(num_classes=10, channels=16, widths=(8, 8, 16, 16)), hidden=8
    )
    detector_before = {k: v.clone() for k, v in model.detector.state_dict().items()}
    model.train()
    assert not model.detector.training  # frozen batch norms
    losses = model(images, targets)
    assert set(losses) == {"mask"} and losses["mask"].item() > 0
    losses["mask"].backward()
    assert all(p.grad is None for p in model.detector.parameters())
    assert all(p.grad is not None for p in model.mask_head.parameters())
    for k, v in model.detector.state_dict().items():  # running statistics did not move either
        assert torch.equal(v, detector_before[k]), k
    model.eval()
    model.detector.score_threshold = 0.0  # untrained: keep the top 100 guesses anyway
    outputs = model(images)
    for out in outputs:
        n = len(out["boxes"])
        assert n == 100
        assert out["masks"].shape == (n, 1, 64, 64)
        assert 0 <= out["masks"].min() and out["masks"].max() <= 1
        outside = _paste_masks(torch.ones(n, 28, 28), out["boxes"], (64, 64))[:, None] < 0.5
        assert (out["masks"][outside] == 0).all()  # nothing leaks out of its box
    with pytest.raises(ValueError, match="one target per image"):
        model.train()(images)


# ------------------------------------------------------------------ training on digit scenes


class Constant(torch.nn.Module):
    """A 'model' that always predicts class ``label``."""

    def __init__(self, label: int, num_classes: int):
        super().__init__()
        self.label, self.num_classes = label, num_classes
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        logits = torch.zeros(len(x), self.num_classes, *x.shape[-2:])
        logits[:, self.label] = 1
        return logits


def test_evaluate_segmenter_scores_a_known_prediction():
    pairs = scene_masks(3, "test", image_size=32, digit_size=(10, 14))
    target = torch.stack([m for _, m in pairs])
    scores = evaluate_segmenter(Constant(0, 11), pairs, num_classes=11)
    background = float((target == 0).float().mean())
    assert scores["pixel_accuracy"] == pytest.approx(background)
    assert scores["foreground_iou"] == 0
    present = len(target.unique())  # every present class has a union; only background has IoU > 0
    assert scores["miou"] == pytest.approx(background / present)
    assert segment(Constant(3, 11), torch.stack([p[0] for p in pairs])).eq(3).all()


@pytest.mark.parametrize("training", [True, False])
def test_segment_and_evaluate_give_the_model_back_in_its_mode(training):
    pairs = scene_masks(2, "test", image_size=32, digit_size=(10, 14))
    model = MiniUNet(3, 11, base=4).train(training)
    segment(model, torch.stack([p[0] for p in pairs]))
    assert model.training is training and model.enc1[1].training is training
    evaluate_segmenter(model, pairs, num_classes=11)
    assert model.training is training and model.enc1[1].training is training


def test_train_segmenter_learns_and_is_deterministic():
    pairs = scene_masks(16, "train", image_size=32, digit_size=(10, 14))

    def run():
        torch.manual_seed(0)
        model = MiniUNet(3, 11, base=4)
        history = train_segmenter(
            model, pairs, epochs=3, lr=1e-2, batch_size=8, device="cpu", progress=False
        )
        return model, history

    (a, history), (b, _) = run(), run()
    assert history.train_loss[-1] < history.train_loss[0]
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


# ----------------------------------------------------------------------------------- panoptic


def test_panoptic_fusion_known_case():
    # classes: 0 sky (stuff), 1 person (thing), 2 road (stuff)
    semantic = torch.tensor([[0, 0, 1, 1], [2, 2, 1, 1], [2, 2, 1, 1]])
    masks = torch.zeros(3, 3, 4, dtype=torch.bool)
    masks[0, :, 2] = True  # person A, column 2
    masks[1, :2, 2:] = True  # person B, mostly hidden by A: 2 of its 4 pixels are free
    masks[2, 2, :] = True  # low score: dropped
    scores = torch.tensor([0.9, 0.8, 0.3])
    labels = torch.tensor([1, 1, 1])
    pan = panoptic_fusion(semantic, masks, scores, labels, thing_classes=[1])
    assert pan.tolist() == [[0, 0, 1001, 1002], [2000, 2000, 1001, 1002], [2000, 2000, 1001, -1]]
    strict = panoptic_fusion(semantic, masks, scores, labels, [1], overlap_threshold=0.6)
    assert strict[0, 3] == -1  # person B now counts as hidden


@pytest.mark.parametrize("seed", range(5))
def test_panoptic_ids_never_collide(seed):
    g = torch.Generator().manual_seed(seed)
    num_classes, things, div = 6, [1, 2, 4], 1000
    semantic = torch.randint(0, num_classes, (12, 12), generator=g)
    masks = torch.rand(8, 12, 12, generator=g) < 0.3
    labels = torch.tensor(things)[torch.randint(0, 3, (8,), generator=g)]
    scores = torch.rand(8, generator=g)
    pan = panoptic_fusion(semantic, masks, scores, labels, things, overlap_threshold=0.1)
    seg = pan[pan >= 0]
    classes, instances = seg // div, seg % div
    is_thing = torch.isin(classes, torch.tensor(things))
    assert (instances[is_thing] > 0).all() and (instances[~is_thing] == 0).all()
    stuff_pixels = pan % div == 0
    assert torch.equal(pan[stuff_pixels] // div, semantic[stuff_pixels])  # stuff keeps its class
    assert instances.max() > 0  # some instance was kept


def test_panoptic_fusion_bad_input():
    semantic = torch.zeros(4, 4, dtype=torch.long)
    masks = torch.ones(1, 4, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="thing classes"):
        panoptic_fusion(semantic, masks, torch.tensor([0.9]), torch.tensor([3]), [1])
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        panoptic_fusion(semantic, masks[:, :3], torch.tensor([0.9]), torch.tensor([1]), [1])
    with pytest.raises(ValueError, match="instance_scores"):
        panoptic_fusion(semantic, masks, torch.tensor([0.9, 0.1]), torch.tensor([1]), [1])
