"""Checkers for the exercises of ``01_image_representation``.

Each checker takes the learner's function, calls it on a few inputs and compares the result with
the course's own implementation in :mod:`course_utils.image`; a wrong answer fails with a hint
about the most likely mistake.
"""

import numpy as np
import torch
import torch.nn.functional as F

from .. import data, image
from . import exercise


def _tensor(answer, what: str) -> torch.Tensor:
    assert isinstance(answer, torch.Tensor), (
        f"{what} should be a torch.Tensor, got {type(answer).__name__}"
    )
    return answer


@exercise("01.1 HWC uint8 to a normalised CHW tensor")
def check_to_normalized_chw(to_normalized_chw) -> None:
    """``to_normalized_chw(img [H, W, 3] uint8) -> [3, H, W] float32``, ImageNet-normalised."""
    img = data.photo("chelsea", size=48).copy()  # a writable copy, as np.array(PIL image) gives
    original = img.copy()
    out = _tensor(to_normalized_chw(img), "the result")
    assert np.array_equal(img, original), "do not modify the input array (work on a copy)"
    height, width, _ = img.shape
    assert tuple(out.shape) != (height, width, 3), (
        f"shape {tuple(out.shape)} is still HWC: move the channels first with .permute(2, 0, 1)"
    )
    assert tuple(out.shape) == (3, height, width), (
        f"shape {tuple(out.shape)}, expected (3, {height}, {width})"
    )
    assert out.dtype == torch.float32, f"dtype {out.dtype}: convert with .float() (float32)"
    expected = image.normalize(image.to_tensor(img))
    if torch.allclose(out, image.to_tensor(img), atol=1e-4):
        raise AssertionError(
            "values are in [0, 1] but not normalised: subtract the mean, divide by the std"
        )
    if out.max() > 10:
        raise AssertionError("values are far too large: divide by 255 before normalising")
    assert torch.allclose(out, expected, atol=1e-4), (
        "not quite: scale to [0, 1] (/ 255), then (x - IMAGENET_MEAN) / IMAGENET_STD per channel "
        "(reshape mean and std to [3, 1, 1] so that they broadcast over H and W)"
    )


def _edge_images() -> tuple[torch.Tensor, torch.Tensor]:
    """Two [1, 16, 16] images: a horizontal edge (dark top, bright bottom) and a vertical one."""
    horizontal = torch.zeros(1, 16, 16)
    horizontal[:, 8:, :] = 1
    return horizontal, horizontal.transpose(-1, -2)


@exercise("01.2 a kernel for horizontal edges")
def check_horizontal_edge_kernel(horizontal_edge_kernel) -> None:
    """``horizontal_edge_kernel() -> [3, 3]`` kernel that responds to horizontal edges only."""
    kernel = _tensor(horizontal_edge_kernel(), "the kernel").float()
    assert tuple(kernel.shape) == (3, 3), f"shape {tuple(kernel.shape)}, expected (3, 3)"
    horizontal, vertical = _edge_images()
    on_edge = image.convolve(horizontal, kernel, padding="valid").abs()
    across = image.convolve(vertical, kernel, padding="valid").abs()
    flat = image.convolve(torch.full((1, 5, 5), 0.7), kernel, padding="valid").abs()
    assert flat.max() < 1e-4, (
        f"a flat grey image gives {flat.max().item():.3g}, not 0: the weights must sum to 0"
    )
    if on_edge.max() <= 1e-3 and across.max() > 1e-3:
        raise AssertionError(
            "it finds vertical edges (left-right changes) but not horizontal ones: a horizontal "
            "edge changes from top to bottom, so compare the rows above and below the centre"
        )
    assert on_edge.max() > 1e-3, "no response to a horizontal edge (dark above, bright below)"
    assert across.max() < 0.1 * on_edge.max(), (
        "it also responds to vertical edges: make every row of the kernel constant "
        "(compare rows above and below the centre, like Sobel's y kernel)"
    )


@exercise("01.3 grayscale conversion")
def check_rgb_to_gray(rgb_to_gray) -> None:
    """``rgb_to_gray(img [3, H, W]) -> [1, H, W]`` with the BT.601 luma weights."""
    img = image.to_tensor(data.photo("rocket", size=40))
    original = img.clone()
    out = _tensor(rgb_to_gray(img), "the grey image")
    assert torch.equal(img, original), "do not modify the input image in place"
    expected = image.rgb_to_gray(img)
    if tuple(out.shape) == tuple(img.shape[1:]):
        raise AssertionError(
            f"shape {tuple(out.shape)} lost the channel dimension: keep it with keepdim=True "
            "or .unsqueeze(0) -> [1, H, W]"
        )
    assert tuple(out.shape) == tuple(expected.shape), (
        f"shape {tuple(out.shape)}, expected {tuple(expected.shape)}"
    )
    if torch.allclose(out, img.mean(dim=0, keepdim=True), atol=1e-4):
        raise AssertionError(
            "that is the plain average of R, G and B: the eye is more sensitive to green, use the "
            "weights 0.299, 0.587, 0.114"
        )
    if torch.allclose(out, image.rgb_to_gray(img.flip(0)), atol=1e-4):
        raise AssertionError("the weights are applied to B, G, R: channel 0 is red in RGB")
    assert torch.allclose(out, expected, atol=1e-3), (
        "not quite: Y = 0.299 R + 0.587 G + 0.114 B for every pixel"
    )


@exercise("01.4 the CutMix label")
def check_cutmix_label(cutmix_label) -> None:
    """``cutmix_label(y1, y2, box, height, width) -> y``; ``box = (top, bottom, left, right)`` is
    the rectangle of the second image pasted into the first."""
    y1 = F.one_hot(torch.tensor(2), 5).float()
    y2 = F.one_hot(torch.tensor(4), 5).float()
    x = torch.zeros(3, 20, 30)
    for box in [(0, 10, 0, 15), (5, 20, 10, 30), (3, 4, 7, 8), (0, 0, 0, 0), (0, 20, 0, 30)]:
        y1_before, y2_before = y1.clone(), y2.clone()
        out = _tensor(cutmix_label(y1, y2, box, 20, 30), "the label")
        assert torch.equal(y1, y1_before) and torch.equal(y2, y2_before), (
            "do not modify y1 or y2 in place: build a new tensor"
        )
        _, expected, lam = image.cutmix(x, y1, x, y2, box=box)
        assert tuple(out.shape) == (5,), f"shape {tuple(out.shape)}, expected (5,)"
        assert torch.isclose(out.sum(), torch.tensor(1.0), atol=1e-5), (
            f"the label sums to {out.sum().item():.3f}: the two weights must add up to 1"
        )
        swapped = (1 - lam) * y1 + lam * y2
        if not torch.allclose(out, expected, atol=1e-5) and torch.allclose(out, swapped, atol=1e-5):
            raise AssertionError(
                f"for box {box} the weights are swapped: y1 keeps the pixels OUTSIDE the box, "
                "so its weight is 1 - box area / image area"
            )
        assert torch.allclose(out, expected, atol=1e-5), (
            f"for box {box} expected {expected.tolist()}, got {out.tolist()}: "
            "lam = 1 - (bottom - top) * (right - left) / (height * width)"
        )


@exercise("01.5 fix the precedence bug")
def check_brighten(brighten) -> None:
    """``brighten(batch) -> new batch`` mapping [0, 1] linearly onto [0.2, 1.0]."""
    batch = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    original = batch.clone()
    out = _tensor(brighten(batch), "the result")
    if not torch.equal(batch, original):
        raise AssertionError("the input batch was modified in place: return a new tensor instead")
    assert tuple(out.shape) == tuple(batch.shape), (
        f"shape {tuple(out.shape)}, expected {tuple(batch.shape)}"
    )
    if torch.allclose(out, batch):
        raise AssertionError(
            "nothing changed: `x * 0.8 + 0.2` was written as `x *= 0.8 + 0.2`, which multiplies "
            "by (0.8 + 0.2) = 1.0; write out = x * 0.8 + 0.2"
        )
    if torch.allclose(out, batch * 0.8):
        raise AssertionError("you scaled by 0.8 but forgot to shift by + 0.2")
    assert torch.allclose(out, batch * 0.8 + 0.2, atol=1e-6), (
        "0 should map to 0.2 and 1 to 1.0: out = x * 0.8 + 0.2"
    )
