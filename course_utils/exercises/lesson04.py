"""Checkers for the exercises of ``04_image_segmentation``.

Each checker calls the learner's answer on a few inputs and compares the result with the course's
own implementation in :mod:`course_utils.segmentation` and :mod:`course_utils.data`; a wrong
answer fails with a hint about the most likely mistake.
"""

import math

import torch

from ..data import circle_mask, circles
from ..segmentation import mean_iou, panoptic_fusion, pixel_accuracy, segment
from . import exercise

#: (size, cx, cy, r) cases a circle mask must get right
CIRCLE_CASES = [
    (16, 8.0, 8.0, 5.0),
    (20, 6.5, 12.5, 3.7),
    (12, 1.0, 10.0, 4.0),  # cut by the image border
    (9, 4.5, 4.5, 2.0),  # four pixel centres exactly on the rim: outside
    (9, 4.5, 4.5, 0.4),  # smaller than a pixel: only the centre pixel
]


@exercise("04.1 drawing a circle mask")
def check_circle_mask(my_circle_mask) -> None:
    """``my_circle_mask(size, cx, cy, r) -> bool [size, size]``, pixel centres at ``i + 0.5``."""
    for size, cx, cy, r in CIRCLE_CASES:
        out = my_circle_mask(size, cx, cy, r)
        assert isinstance(out, torch.Tensor), f"return a tensor, got {type(out).__name__}"
        assert out.shape == (size, size), f"expected shape ({size}, {size}), got {tuple(out.shape)}"
        expected = circle_mask(size, cx, cy, r)
        out = out.bool()
        if torch.equal(out, expected.T) and not torch.equal(out, expected):
            raise AssertionError("x and y are swapped: rows are y (the first index), columns x")
        corner = (torch.arange(size)[None, :] - cx) ** 2 + (torch.arange(size)[:, None] - cy) ** 2
        if torch.equal(out, corner < r**2) and not torch.equal(out, expected):
            raise AssertionError(
                "the pixel centres are off by half a pixel: pixel (row, col) covers [col, col + 1) "
                "x [row, row + 1), so its centre is (col + 0.5, row + 0.5)"
            )
        assert torch.equal(out, expected), (
            f"my_circle_mask{(size, cx, cy, r)} differs from the expected mask in "
            f"{int((out != expected).sum())} pixels: a pixel is inside when "
            "(x - cx)**2 + (y - cy)**2 < r**2 (strictly)"
        )


def _iou_cases() -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    g = torch.Generator().manual_seed(4)
    noisy = torch.randint(0, 4, (2, 9, 9), generator=g)
    target = torch.randint(0, 4, (2, 9, 9), generator=g)
    partial = target.clone()
    partial[:, :3] = 0
    missing = target.clone()
    missing[missing == 3] = 1  # class 3 never predicted
    absent = torch.randint(0, 3, (1, 5, 5), generator=g)  # class 3 in neither: nan
    return [
        (noisy, target, 4),
        (partial, target, 4),
        (missing, target, 4),
        (absent, absent.flip(-1), 4),
    ]


@exercise("04.2 IoU per class")
def check_iou_per_class(iou_per_class) -> None:
    """``iou_per_class(pred [N, H, W], target [N, H, W], num_classes) -> float [K]``, ``nan`` for
    a class that is neither predicted nor present."""
    for pred, target, k in _iou_cases():
        out = iou_per_class(pred, target, k)
        assert isinstance(out, torch.Tensor) and out.shape == (k,), (
            f"return a tensor of {k} IoUs, one per class, got {getattr(out, 'shape', type(out))}"
        )
        expected = mean_iou(pred, target, k)["per_class"]
        absent = torch.isnan(expected)
        if absent.any() and not torch.isnan(out[absent]).all():
            raise AssertionError(
                f"class(es) {absent.nonzero().flatten().tolist()} are neither predicted nor present: "
                "their IoU is 0 / 0, undefined; return nan so that the mean can leave them out"
            )
        assert torch.allclose(out[~absent].double(), expected[~absent], atol=1e-6), (
            f"expected {[round(v, 3) for v in expected.tolist()]}, got "
            f"{[round(v, 3) for v in out.tolist()]}: IoU = |pred == c and target == c| / "
            "|pred == c or target == c|"
        )


@exercise("04.3 reading a panoptic map")
def check_split_panoptic(split_panoptic) -> None:
    """``split_panoptic(panoptic [H, W], label_divisor) -> (classes [H, W], instances [H, W])``;
    void pixels (-1) give class -1 and instance 0."""
    g = torch.Generator().manual_seed(5)
    semantic = torch.randint(0, 3, (12, 12), generator=g)  # 0 and 2 stuff, 1 a thing
    masks = torch.zeros(3, 12, 12, dtype=torch.bool)
    masks[0, :4, :4] = masks[1, 6:, 6:] = masks[2, :3, 8:] = True
    for divisor in (1000, 256):
        ids = panoptic_fusion(
            semantic,
            masks,
            torch.tensor([0.9, 0.8, 0.7]),
            torch.tensor([1, 1, 1]),
            thing_classes=[1],
            label_divisor=divisor,
        )
        out = split_panoptic(ids, divisor)
        assert isinstance(out, tuple) and len(out) == 2, "return a tuple (classes, instances)"
        classes, instances = out
        void = ids == -1
        expected_classes = torch.where(void, -1, ids // divisor)
        expected_instances = torch.where(void, 0, ids % divisor)
        if void.any() and (instances[void] == divisor - 1).all():
            raise AssertionError(
                f"void pixels (-1) came out as instance {divisor - 1}: Python's -1 % {divisor} is "
                f"{divisor - 1} and -1 // {divisor} is -1; handle void before decoding"
            )
        assert torch.equal(classes, expected_classes), (
            f"wrong classes: class = id // label_divisor ({divisor} here, not always 1000), -1 on void"
        )
        assert torch.equal(instances, expected_instances), (
            "wrong instances: instance = id % label_divisor (0 for stuff), 0 on void"
        )


@exercise("04.4 a U-Net on circles")
def check_circles_unet(train_circles, epochs: int = 30, min_accuracy: float = 0.98) -> None:
    """``train_circles(images [200, 3, 64, 64], masks [200, 64, 64], epochs) -> trained model``,
    scored on the 50 held-out images 200-249 of ``circles(250)``: pixel accuracy at least
    ``min_accuracy`` and a circle IoU well above what an all-background guess gets."""
    images, masks = circles(250)
    model = train_circles(images[:200], masks[:200], epochs)
    assert isinstance(model, torch.nn.Module), (
        f"train_circles should return the trained model, got {type(model).__name__}"
    )
    images, masks = images[200:], masks[200:]
    try:
        pred = segment(model, images)
    except Exception as err:  # noqa: BLE001 -- any crash becomes a hint
        raise AssertionError(f"the model failed on images [50, 3, 64, 64]: {err}") from None
    assert pred.shape == masks.shape, (
        f"the model should give 2-class logits [50, 2, 64, 64]; their argmax has shape "
        f"{tuple(pred.shape)}"
    )
    accuracy = pixel_accuracy(pred, masks)
    circle_iou = mean_iou(pred, masks, 2)["per_class"][1].item()
    background_share = float((masks == 0).float().mean())
    assert not math.isnan(circle_iou) and circle_iou > 0.5, (
        f"pixel accuracy {accuracy:.3f} but circle IoU {circle_iou:.3f}: predicting background "
        f"everywhere already scores {background_share:.3f}; train longer or check the labels"
    )
    assert accuracy >= min_accuracy, (
        f"pixel accuracy {accuracy:.4f} < {min_accuracy}: train for more epochs (30 in the "
        "exercise) or with a larger learning rate"
    )
