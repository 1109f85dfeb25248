"""Lesson 05: the checkers of the exercises of ``05_transfer_learning``.

Each checker calls the learner's answer on a few inputs and compares the result with the course's
own implementation in :mod:`course_utils.transfer`; a wrong answer fails with a hint about the most
likely mistake.
"""

import math

import torch

from ..models import resnet_small
from ..transfer import discriminative_groups, resnet_blocks, warmup_cosine
from . import exercise


@exercise("05.1 freezing for feature extraction")
def check_freeze(freeze_for_feature_extraction) -> None:
    """``freeze_for_feature_extraction(model) -> model`` with only ``model.fc`` trainable."""
    model = resnet_small(num_classes=10, in_channels=3)
    for p in model.layer2.parameters():  # a learner's model may arrive partly frozen
        p.requires_grad_(False)
    out = freeze_for_feature_extraction(model)
    assert out is model, "modify the model in place and return it"
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    expected = {name for name, _ in model.named_parameters() if name.startswith("fc.")}
    assert trainable, "nothing is trainable: the new head (model.fc) must still learn"
    missing = expected - trainable
    assert not missing, f"the head must stay trainable, but {sorted(missing)} are frozen"
    extra = trainable - expected
    assert not extra, (
        f"{len(extra)} backbone parameters still train (e.g. {sorted(extra)[0]}): set "
        "requires_grad = False on every parameter first, then True on model.fc's"
    )


@exercise("05.2 discriminative learning rates")
def check_block_learning_rates(block_learning_rates) -> None:
    """``block_learning_rates(lr, num_blocks, decay) -> [num_blocks]`` rates, input block first."""
    model = resnet_small(num_classes=10, in_channels=3)
    blocks = resnet_blocks(model)
    for lr, decay in [(1e-2, 0.3), (3e-3, 0.5), (1e-3, 1.0)]:
        out = block_learning_rates(lr, len(blocks), decay)
        expected = [g["lr"] for g in discriminative_groups(model, blocks, lr, decay)]
        assert len(out) == len(expected), f"expected {len(expected)} rates, got {len(out)}"
        out = [float(v) for v in out]
        if decay != 1.0 and all(math.isclose(a, b) for a, b in zip(out, expected[::-1])):
            raise AssertionError(
                "the rates are in reverse order: the input block (first) gets the smallest rate, "
                "the head (last) gets lr"
            )
        assert all(math.isclose(a, b, rel_tol=1e-9) for a, b in zip(out, expected)), (
            f"block_learning_rates({lr}, {len(blocks)}, {decay}) = {out}, expected {expected}: "
            "block i (0 = input) gets lr * decay ** (num_blocks - 1 - i)"
        )


@exercise("05.3 warm-up + cosine")
def check_schedule(schedule) -> None:
    """``schedule(step, total, warmup) -> float`` multiplier, as :func:`course_utils.transfer.warmup_cosine`."""
    for total, warmup in [(100, 10), (50, 0), (20, 5)]:
        for step in [0, 1, warmup - 1, warmup, warmup + 1, total // 2, total - 1, total, total + 5]:
            if step < 0:  # warmup - 1 when there is no warm-up
                continue
            out = float(schedule(step, total, warmup))
            expected = warmup_cosine(step, total, warmup)
            if step < warmup and math.isclose(out, step / warmup):
                raise AssertionError(
                    "warm-up starts at 0 and the first step would not train: use (step + 1) / warmup"
                )
            if step >= total and out < -1e-9:
                raise AssertionError("after `total` steps the multiplier must stay at 0")
            assert math.isclose(out, expected, abs_tol=1e-9), (
                f"schedule({step}, {total}, {warmup}) = {out:.4f}, expected {expected:.4f}"
            )


@exercise("05.4 gradient reversal")
def check_reverse_gradient(reverse_gradient) -> None:
    """``reverse_gradient.apply(x, scale)``: identity forward, ``-scale * grad`` backward."""
    g = torch.Generator().manual_seed(0)
    for scale in (1.0, 0.3):
        x = torch.randn(4, 5, generator=g, requires_grad=True)
        y = reverse_gradient.apply(x, scale)
        assert isinstance(y, torch.Tensor) and torch.equal(y, x), (
            "forward must return x unchanged (x.view_as(x), or x.clone())"
        )
        weights = torch.randn(4, 5, generator=g)
        (y * weights).sum().backward()
        if torch.allclose(x.grad, weights):
            raise AssertionError("the gradient passes unchanged: multiply it by -scale")
        if torch.allclose(x.grad, -weights) and scale != 1.0:
            raise AssertionError("the sign is reversed but the scale is missing: -scale * grad")
        assert torch.allclose(x.grad, -scale * weights), (
            f"backward should return -scale * grad; got a gradient off by "
            f"{(x.grad + scale * weights).abs().max():.3g}"
        )
    conv = torch.nn.Conv2d(3, 4, 3)
    reverse_gradient.apply(conv(torch.randn(1, 3, 8, 8)), 1.0).sum().backward()
    assert conv.weight.grad is not None, "the gradient must flow back to the layer before"
