import numpy as np
import pytest
import torch
from exercise_testing import assert_right_answers_pass, assert_stub_not_attempted, failed

from course_utils import image
from course_utils.exercises import lesson01

pytestmark = pytest.mark.usefixtures("private_cache")


# ------------------------------------------------------------------ right answers


def normalized_chw(img):
    x = torch.from_numpy(img).permute(2, 0, 1).float() / 255
    mean = torch.tensor(image.IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(image.IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


def horizontal_edge_kernel():
    return torch.tensor([[-1.0, -2, -1], [0, 0, 0], [1, 2, 1]])


def gray(img):
    return (img * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(dim=0, keepdim=True)


def cutmix_label(y1, y2, box, height, width):
    top, bottom, left, right = box
    lam = 1 - (bottom - top) * (right - left) / (height * width)
    return lam * y1 + (1 - lam) * y2


def brighten(batch):
    return batch * 0.8 + 0.2


CHECKS = {
    "01.1 HWC uint8 to a normalised CHW tensor": (lesson01.check_to_normalized_chw, normalized_chw),
    "01.2 a kernel for horizontal edges": (
        lesson01.check_horizontal_edge_kernel,
        horizontal_edge_kernel,
    ),
    "01.3 grayscale conversion": (lesson01.check_rgb_to_gray, gray),
    "01.4 the CutMix label": (lesson01.check_cutmix_label, cutmix_label),
    "01.5 fix the precedence bug": (lesson01.check_brighten, brighten),
}


def test_right_answers_pass_and_are_recorded():
    assert_right_answers_pass(CHECKS)


def test_other_right_answers_pass():
    """There is more than one right answer: the course's own functions, other edge kernels."""
    assert lesson01.check_to_normalized_chw(
        lambda img: image.normalize(image.to_tensor(img))
    ).passed
    assert lesson01.check_horizontal_edge_kernel(lambda: -horizontal_edge_kernel()).passed
    prewitt = torch.tensor([[1.0, 1, 1], [0, 0, 0], [-1, -1, -1]])
    assert lesson01.check_horizontal_edge_kernel(lambda: prewitt).passed
    assert lesson01.check_rgb_to_gray(image.rgb_to_gray).passed


@pytest.mark.parametrize("name", list(CHECKS))
def test_stubs_are_not_attempted(name):
    assert_stub_not_attempted(CHECKS, name)


# ------------------------------------------------------------------ wrong answers and their hints


def test_normalized_chw_hints():
    check = lesson01.check_to_normalized_chw
    failed(check(lambda img: torch.from_numpy(img).float() / 255), "HWC", "permute")
    failed(check(lambda img: torch.from_numpy(img).permute(2, 0, 1).double()), "float32")
    failed(check(lambda img: image.to_tensor(img)), "not normalised")
    failed(check(lambda img: normalized_chw(img) * 255 + 10), "divide by 255")
    failed(check(lambda img: normalized_chw(img) + 0.1), "IMAGENET_STD")
    failed(check(lambda img: np.zeros((3, 4, 4))), "torch.Tensor")

    def in_place(img):
        img[0, 0, 0] = 0
        img[0, 0, 1] = 255
        return normalized_chw(img)

    failed(check(in_place), "do not modify")


def test_edge_kernel_hints():
    check = lesson01.check_horizontal_edge_kernel
    failed(check(lambda: image.KERNELS["sobel_x"]), "vertical edges")
    failed(check(lambda: image.KERNELS["laplacian"]), "vertical edges")
    failed(check(lambda: image.KERNELS["gaussian"]), "sum to 0")
    failed(check(lambda: torch.ones(5, 5)), "(3, 3)")
    failed(check(lambda: torch.zeros(3, 3)), "no response")


def test_gray_hints():
    check = lesson01.check_rgb_to_gray
    failed(check(lambda img: gray(img)[0]), "keepdim")
    failed(check(lambda img: img.mean(dim=0, keepdim=True)), "0.299")
    failed(check(lambda img: gray(img.flip(0))), "B, G, R")
    failed(check(lambda img: gray(img) * 0.9), "Y = 0.299 R")

    def in_place(img):
        img.mul_(1.0).clamp_(0, 0.5)
        return gray(img)

    failed(check(in_place), "in place")


def test_cutmix_label_hints():
    check = lesson01.check_cutmix_label

    def swapped(y1, y2, box, height, width):
        return cutmix_label(y2, y1, box, height, width)

    def area_of_box_in_pixels(y1, y2, box, height, width):
        top, bottom, left, right = box
        return y1 * 0 + y2 * 0 + torch.tensor([0.0, 0, 1, 0, 0])

    def in_place(y1, y2, box, height, width):
        out = cutmix_label(y1, y2, box, height, width)
        y1.mul_(1.0).add_(0.0)
        y1[0] += 1e-3
        return out

    failed(check(swapped), "swapped")
    failed(check(area_of_box_in_pixels), "lam = 1 -")
    failed(check(lambda y1, y2, box, h, w: 0.5 * y1 + 0.7 * y2), "sums to")
    failed(check(in_place), "in place")


def test_brighten_hints():
    check = lesson01.check_brighten

    def seed_bug(batch):
        batch = batch.clone()
        batch *= 0.8 + 0.2  # the seed's line
        return batch

    def in_place(batch):
        batch.mul_(0.8).add_(0.2)
        return batch

    failed(check(seed_bug), "(0.8 + 0.2) = 1.0")
    failed(check(in_place), "in place")
    failed(check(lambda b: b * 0.8), "+ 0.2")
    failed(check(lambda b: b * 0.2 + 0.8), "0 should map to 0.2")
