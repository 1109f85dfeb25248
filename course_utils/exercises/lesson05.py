"""Lesson 05: the checkers of the exercises of ``05_transfer_learning``.

Each checker calls the learner's answer on a few inputs and compares the result with the course's
own implementation in :mod:`course_utils.transfer`; a wrong answer fails with a hint about the most
likely mistake. Exercise 05.5 is a measurement: its checker repeats the learner's experiment with
the same seed and judges the numbers and the verdict drawn from them.
"""

import copy
import math

import torch

from ..models import resnet_small
from ..transfer import (
    discriminative_groups,
    fine_tune,
    replace_head,
    resnet_blocks,
    warmup_cosine,
)
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


# --------------------------------------------------------------------------------------------
# 05.5 Partial or full fine-tuning with 10 labels per class, measured
# --------------------------------------------------------------------------------------------

#: The settings of the measurement of exercise 05.5 (the learner's run must use the same).
TUNING_SETTINGS = {"epochs": 5, "lr": 3e-3, "decay": 0.3, "batch_size": 32}


def reference_tuning_experiment(source_model, train, held_out, seed: int) -> dict:
    """The measurement of exercise 05.5: for ``"partial"`` and ``"full"``, seed torch with
    ``seed``, copy ``source_model`` with a fresh 10-class head (``replace_head``), and train it
    with ``fine_tune`` (:data:`TUNING_SETTINGS`, no augmentation) on ``train``; the result is the
    accuracy on ``held_out`` after the last epoch. Returns ``{"partial": float, "full": float}``."""
    device = next(source_model.parameters()).device
    out = {}
    for strategy in ("partial", "full"):
        torch.manual_seed(seed)
        model = replace_head(copy.deepcopy(source_model), num_classes=10)
        out[strategy] = fine_tune(
            model,
            resnet_blocks(model),
            train,
            held_out,
            strategy=strategy,
            device=device,
            progress=False,
            **TUNING_SETTINGS,
        )["accuracy"]
    return out


def _better(partial: float, full: float) -> str:
    return "tie" if partial == full else ("full" if full > partial else "partial")


@exercise("05.5 partial or full fine-tuning, measured")
def check_tuning_experiment(my_tuning_experiment, source_model, train, held_out, seed=0) -> None:
    """``my_tuning_experiment(source_model, train, held_out, seed) -> {"partial": float, "full":
    float, "better": "partial" | "full" | "tie"}``: the held-out accuracy after partial and after
    full fine-tuning of a copy of ``source_model`` on ``train``. The checker repeats the
    measurement with the same seed: the numbers must agree up to one image, and "better" must say
    which one is higher."""
    out = my_tuning_experiment(source_model, train, held_out, seed)
    assert isinstance(out, dict) and {"partial", "full", "better"} <= set(out), (
        'return a dict {"partial": accuracy, "full": accuracy, "better": "partial", "full" or '
        f'"tie"}}, got {str(out)[:80]}'
    )
    mine = {k: float(out[k]) for k in ("partial", "full")}
    assert all(0 <= v <= 1 for v in mine.values()), (
        f"accuracies are fractions in [0, 1], got {mine}: fine_tune's 'accuracy' is one"
    )
    ref = reference_tuning_experiment(source_model, train, held_out, seed)
    n = len(held_out[1])
    tol = 1.5 / n  # one image's decision may flip with another order of the same sums

    def agree(a: float, b: float) -> bool:
        return abs(a - b) <= tol

    right = all(agree(mine[k], ref[k]) for k in ("partial", "full"))
    if not right and agree(mine["partial"], ref["full"]) and agree(mine["full"], ref["partial"]):
        raise AssertionError(
            f"your numbers are swapped: partial {ref['partial']:.3f}, full {ref['full']:.3f} in "
            "the checker's run"
        )
    for name in ("partial", "full"):
        assert agree(mine[name], ref[name]), (
            f"{name}: you measured {mine[name]:.3f}, the checker {ref[name]:.3f} with seed {seed} "
            f"({n} held-out images). For each strategy: torch.manual_seed(seed), then model = "
            "replace_head(copy.deepcopy(source_model), num_classes=10), then fine_tune(model, "
            f"resnet_blocks(model), train, held_out, strategy={name!r}, "
            + ", ".join(f"{k}={v}" for k, v in TUNING_SETTINGS.items())
            + ") without a transform, and its 'accuracy'"
        )
    expected = _better(mine["partial"], mine["full"])
    assert out["better"] == expected, (
        f'"better" is {out["better"]!r}, but your numbers (partial {mine["partial"]:.3f}, full '
        f"{mine['full']:.3f}) say {expected!r}: compute the verdict from the numbers"
    )
