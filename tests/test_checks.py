"""course_utils.checks: each guard passes good input unchanged and names the mistake and its fix.

The mistakes below are the ones learners make; each used to return numbers without a word (a
segmenter given [0, 255] images scored an mIoU of 0.03, the detector found nothing). The same
guards at the door of every public function and model are exercised in test_bad_inputs.py."""

import numpy as np
import pytest
import torch

from course_utils.checks import (
    check_finite,
    check_flow_time,
    check_images,
    check_labels,
    check_lengths,
    check_num_classes,
    check_signed_images,
    check_timesteps,
    check_trained_input,
    first_batch,
)
from course_utils.image import IMAGENET_MEAN, IMAGENET_STD, normalize


def digits(n=4, size=16):
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(0))


def test_good_input_comes_back_unchanged():
    x, y = digits(), torch.tensor([0, 1, 2, 9])
    assert check_images(x, what="f", channels=1, size=16, value_range=(0, 1)) is x
    one = x[0]  # (each x[0] is a new view)
    assert check_images(one, what="f", layout="CHW", channels=(1, 3)) is one
    assert check_images((x * 255).byte(), what="f", dtype="uint8") is not None
    assert check_labels(y, what="f", num_classes=10, length=4) is y
    assert check_labels(y + 1, what="f", num_classes=10, first=1) is not None
    assert check_labels(torch.zeros(0, dtype=torch.long), what="f", first=1).numel() == 0
    t = torch.tensor([999, 0])
    assert check_timesteps(t, what="f", num_timesteps=1000, length=2) is t
    # diffusers' Euler and Heun schedulers interpolate: float steps in [0, T) are accepted
    check_timesteps(torch.tensor([999.0, 0.5]), what="f", num_timesteps=1000)
    assert check_flow_time(torch.tensor([0.0, 1.0]), what="f", length=2) is not None
    assert check_signed_images(x * 2 - 1, what="f") is not None
    assert check_finite(x, what="f") is x
    check_lengths("f", images=x, labels=y)
    assert check_num_classes(3, what="f") == 3


@pytest.mark.parametrize(
    "bad, kwargs, error, fragment",
    [
        (
            (digits() * 255).to(torch.uint8),
            {},
            TypeError,
            r"f takes float images, got torch.uint8: for 8-bit pixels use x.float\(\) / 255",
        ),
        (digits() * 255, {"value_range": (0, 1)}, ValueError, r"\[0, 255\]: use x / 255"),
        (digits() * 255, {"value_range": (-1, 1)}, ValueError, r"\[0, 255\]: use x / 127.5 - 1"),
        (
            digits() * 2 - 1,
            {"value_range": (0, 1)},
            ValueError,
            r"\[-1, 1\] \(use \(x \+ 1\) / 2\)",
        ),
        (
            normalize(torch.rand(2, 3, 8, 8), IMAGENET_MEAN, IMAGENET_STD),
            {"value_range": (0, 1)},
            ValueError,
            r"normalised .*image.denormalize",
        ),
        (digits(size=28), {"size": 16}, ValueError, r"f takes 16x16 images, got 28x28: resize"),
        (digits(), {"channels": 3}, ValueError, r"f takes 3-channel images, got 1 channels"),
        (
            torch.zeros(2, 8, 8, 3),
            {"channels": 3},
            ValueError,
            r"looks like HWC \(channels last\); use x.permute\(0, 3, 1, 2\)",
        ),
        (digits()[:0], {}, ValueError, r"empty tensor"),
        (digits()[0], {}, ValueError, r"add a batch dimension with x.unsqueeze\(0\)"),
        (digits().numpy(), {}, TypeError, r"got a NumPy array .*torch.from_numpy"),
        (list(digits()), {}, TypeError, r"got a Python list: use torch.stack\(x\)"),
        (
            digits().index_fill(0, torch.tensor([1]), float("nan")),
            {},
            ValueError,
            r"NaN or infinite",
        ),
        (digits(size=6), {"min_size": 8}, ValueError, r"at least 8x8 pixels, got 6x6"),
        (
            digits(size=12),
            {"multiple_of": 8},
            ValueError,
            r"divisible by 8 .*pad or resize to 16x16",
        ),
    ],
    ids=[
        "uint8",
        "0-255",
        "0-255 into -1-1",
        "minus1-1",
        "normalised",
        "28x28",
        "3 channels",
        "HWC",
        "empty",
        "no batch",
        "numpy",
        "list",
        "nan",
        "too small",
        "not a multiple",
    ],
)
def test_check_images_names_the_mistake_and_the_fix(bad, kwargs, error, fragment):
    with pytest.raises(error, match=fragment):
        check_images(bad, what="f", **kwargs)


def test_check_images_in_a_layout_without_batch():
    with pytest.raises(
        ValueError, match=r"looks like HWC \(channels last\); use x.permute\(2, 0, 1\)"
    ):
        check_images(torch.rand(8, 8, 3), what="f", layout="CHW", channels=(1, 3))
    with pytest.raises(ValueError, match=r"takes images \[C, H, W\], got shape \(8, 8\)"):
        check_images(torch.rand(8, 8), what="f", layout="CHW")
    with pytest.raises(TypeError, match=r"takes uint8 images, got torch.float32"):
        check_images(torch.rand(3, 8, 8), what="f", layout="*CHW", dtype="uint8")


@pytest.mark.parametrize(
    "bad, kwargs, error, fragment",
    [
        (
            torch.tensor([0.0, 1.0]),
            {},
            TypeError,
            r"integer class labels, got torch.float32: use y.long\(\)",
        ),
        (np.array([0, 1]), {}, TypeError, r"NumPy array .*torch.from_numpy"),
        ([0, 1], {}, TypeError, r"Python list: use torch.tensor\(y\)"),
        (torch.tensor([0, 1]), {"length": 3}, ValueError, r"got 2 labels, expected 3"),
        (
            torch.tensor([1, 3]),
            {"num_classes": 3},
            ValueError,
            r"labels here are 0-based .*use y - 1",
        ),
        (
            torch.tensor([0, 2]),
            {"num_classes": 3, "first": 1},
            ValueError,
            r"labels here are 1-based \(label = class \+ 1, 0 = background\): use y \+ 1",
        ),
        (torch.tensor([0, 7]), {"num_classes": 3}, ValueError, r"in \[0, 2\], got .*num_classes=3"),
        (torch.tensor([-1, 0]), {"num_classes": 3}, ValueError, r"must name one of the classes"),
        (
            torch.eye(3, dtype=torch.long),
            {"num_classes": 3},
            ValueError,
            r"one-hot\? use y.argmax\(1\)",
        ),
    ],
    ids=[
        "float",
        "numpy",
        "list",
        "length",
        "1-based",
        "0-based",
        "too big",
        "negative",
        "one-hot",
    ],
)
def test_check_labels_names_the_mistake_and_the_fix(bad, kwargs, error, fragment):
    with pytest.raises(error, match=fragment):
        check_labels(bad, what="f", **kwargs)


def test_check_timesteps_and_flow_time():
    with pytest.raises(ValueError, match=r"trained on steps t in \[0, 1000\) \(0-based\)"):
        check_timesteps(torch.tensor([1000, 3]), what="f", num_timesteps=1000)
    with pytest.raises(ValueError, match=r"0-based, use t - 1"):
        check_timesteps(torch.tensor([1000, 1]), what="f", num_timesteps=1000)
    with pytest.raises(ValueError, match=r"takes integer steps .*float times in \[0.3, 0.5\]"):
        check_timesteps(torch.tensor([0.3, 0.5]), what="f", num_timesteps=1000)
    fix = r"shape \[B\] = \[2\], got .*torch.full\(\(2,\), t\)"
    for one in (5, torch.tensor(5)):
        with pytest.raises(ValueError, match=fix):
            check_timesteps(one, what="f", num_timesteps=1000, length=2)
        with pytest.raises(ValueError, match=fix):
            check_flow_time(one, what="f", length=2)
    with pytest.raises(TypeError, match=r"float time t in \[0, 1\], got torch.int64"):
        check_flow_time(torch.tensor([5, 7]), what="f")
    with pytest.raises(ValueError, match=r"time t in \[0, 1\], got values in \[5, 7\]"):
        check_flow_time(torch.tensor([5.0, 7.0]), what="f")


def test_check_signed_finite_lengths_and_num_classes():
    with pytest.raises(ValueError, match=r"no negative value: .*\[0, 1\]; use x \* 2 - 1"):
        check_signed_images(digits(), what="f")
    check_signed_images(digits(n=1), what="f")  # one image may be all light: no verdict
    with pytest.raises(ValueError, match=r"NaN or infinite values \(1 of 2\)"):
        check_finite(torch.tensor([1.0, float("inf")]), what="loss")
    with pytest.raises(ValueError, match=r"mismatched lengths: 2 images, 1 labels"):
        check_lengths("f", images=[1, 2], labels=[1])
    with pytest.raises(ValueError, match=r"empty inputs \(images, labels hold 0 items\)"):
        check_lengths("f", images=[], labels=[])
    for bad in (0, 2.0, True):
        with pytest.raises(ValueError, match=r"f needs num_classes >= 1"):
            check_num_classes(bad, what="f")


def test_first_batch_leaves_the_random_state_alone():
    data = torch.arange(10)
    loader = torch.utils.data.DataLoader(data, shuffle=True, batch_size=3)
    torch.manual_seed(0)
    expected = [b.tolist() for b in loader]
    torch.manual_seed(0)
    assert len(first_batch(loader)) == 3
    assert [b.tolist() for b in loader] == expected
    seeded = torch.utils.data.DataLoader(
        data, shuffle=True, batch_size=3, generator=torch.Generator().manual_seed(1)
    )
    state = seeded.generator.get_state()
    first_batch(seeded)
    assert torch.equal(seeded.generator.get_state(), state)
    with pytest.raises(ValueError, match="got an empty loader"):
        first_batch([])
    with pytest.raises(TypeError, match="one-shot iterator"):
        first_batch(iter([1, 2]))


def test_check_trained_input_reads_what_a_shipped_model_records():
    from course_utils.models import resnet_small

    judge = resnet_small(num_classes=10, in_channels=1)  # global pooling: takes any size
    judge.config = {"in_channels": 1, "image_size": 16, "input_range": [0, 1]}
    good = torch.rand(2, 1, 16, 16)
    assert check_trained_input(judge, good, what="judge") is good
    with pytest.raises(ValueError, match=r"judge takes 16x16 images, got 28x28"):
        check_trained_input(judge, torch.rand(2, 1, 28, 28), what="judge")
    with pytest.raises(ValueError, match=r"\[0, 255\]: use x / 255"):
        check_trained_input(judge, good * 255, what="judge")
    # a model the learner built, with no record: only the checks every batch gets
    del judge.config
    assert check_trained_input(judge, torch.rand(2, 1, 28, 28), what="judge").shape[-1] == 28
