import pytest
import torch
import torch.nn.functional as F
from exercise_testing import assert_right_answers_pass, assert_stub_not_attempted, failed

from course_utils.exercises import lesson04

pytestmark = pytest.mark.usefixtures("private_cache")


# ------------------------------------------------------------------ right answers


def circle_mask(size, cx, cy, r):
    centres = torch.arange(size) + 0.5
    return (centres[None, :] - cx) ** 2 + (centres[:, None] - cy) ** 2 < r**2


def iou_per_class(pred, target, num_classes):
    ious = []
    for c in range(num_classes):
        inter = ((pred == c) & (target == c)).sum()
        union = ((pred == c) | (target == c)).sum()
        ious.append(inter / union if union else float("nan"))
    return torch.tensor(ious)


def split_panoptic(panoptic, label_divisor):
    void = panoptic < 0
    classes = torch.where(void, -1, panoptic // label_divisor)
    return classes, torch.where(void, 0, panoptic % label_divisor)


class ColourOracle(torch.nn.Module):
    """Segments circles without learning: a pixel is foreground when its (3x3-averaged) colour is
    far from the image's corner colour, which is always background in circles()."""

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(()))  # segment() asks for the device

    def forward(self, x):
        smooth = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
        corner = smooth[:, :, :2, :2].mean((2, 3), keepdim=True)
        distance = (smooth - corner).norm(dim=1)
        return torch.stack((0.25 - distance, distance - 0.25), dim=1)


def train_oracle(images, masks, epochs):
    return ColourOracle()


CHECKS = {
    "04.1 drawing a circle mask": (lesson04.check_circle_mask, circle_mask),
    "04.2 IoU per class": (lesson04.check_iou_per_class, iou_per_class),
    "04.3 reading a panoptic map": (lesson04.check_split_panoptic, split_panoptic),
    "04.4 a U-Net on circles": (lesson04.check_circles_unet, train_oracle),
}


def test_right_answers_pass():
    assert_right_answers_pass(CHECKS)


@pytest.mark.parametrize("name", CHECKS)
def test_stub_is_not_attempted(name):
    assert_stub_not_attempted(CHECKS, name)


# ------------------------------------------------------------------ typical mistakes


def test_circle_mistakes_get_hints():
    def swapped(size, cx, cy, r):
        return circle_mask(size, cy, cx, r)

    def corners(size, cx, cy, r):
        grid = torch.arange(size)
        return (grid[None, :] - cx) ** 2 + (grid[:, None] - cy) ** 2 < r**2

    def inclusive(size, cx, cy, r):
        centres = torch.arange(size) + 0.5
        return (centres[None, :] - cx) ** 2 + (centres[:, None] - cy) ** 2 <= r**2

    assert failed(lesson04.check_circle_mask(swapped), "swapped")
    assert failed(lesson04.check_circle_mask(corners), "half a pixel")
    assert failed(lesson04.check_circle_mask(inclusive), "strictly")


def test_iou_mistakes_get_hints():
    def zero_for_absent(pred, target, num_classes):
        return torch.nan_to_num(iou_per_class(pred, target, num_classes), nan=0.0)

    def dice_instead(pred, target, num_classes):
        iou = iou_per_class(pred, target, num_classes)
        return 2 * iou / (1 + iou)

    assert failed(lesson04.check_iou_per_class(zero_for_absent), "nan")
    assert failed(lesson04.check_iou_per_class(dice_instead), "IoU =")


def test_panoptic_mistakes_get_hints():
    def naive(panoptic, label_divisor):
        return panoptic // label_divisor, panoptic % label_divisor

    def fixed_divisor(panoptic, label_divisor):
        return split_panoptic(panoptic, 1000)

    assert failed(lesson04.check_split_panoptic(naive), "void")
    assert failed(lesson04.check_split_panoptic(fixed_divisor), "label_divisor")


def test_circles_mistakes_get_hints():
    class Background(ColourOracle):
        def forward(self, x):
            logits = torch.zeros(len(x), 2, *x.shape[-2:])
            logits[:, 0] = 1
            return logits

    class Blurry(ColourOracle):  # right about where the circles are, sloppy at their edges
        def forward(self, x):
            return F.avg_pool2d(super().forward(x), 9, stride=1, padding=4)

    assert failed(lesson04.check_circles_unet(lambda *a: Background()), "background everywhere")
    assert failed(lesson04.check_circles_unet(lambda *a: Blurry(), min_accuracy=0.999), "epochs")
    assert failed(lesson04.check_circles_unet(lambda *a: "model"), "return the trained model")
