import math

import pytest
import torch
from exercise_testing import assert_right_answers_pass, assert_stub_not_attempted, failed

from course_utils.exercises import lesson05

pytestmark = pytest.mark.usefixtures("private_cache")


# ------------------------------------------------------------------ right answers


def freeze(model):
    for p in model.parameters():
        p.requires_grad_(False)
    for p in model.fc.parameters():
        p.requires_grad_(True)
    return model


def block_learning_rates(lr, num_blocks, decay):
    return [lr * decay ** (num_blocks - 1 - i) for i in range(num_blocks)]


def schedule(step, total, warmup):
    if step < warmup:
        return (step + 1) / warmup
    progress = min((step - warmup) / max(1, total - warmup), 1.0)
    return 0.5 * (1 + math.cos(math.pi * progress))


class Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


CHECKS = {
    "05.1 freezing for feature extraction": (lesson05.check_freeze, freeze),
    "05.2 discriminative learning rates": (
        lesson05.check_block_learning_rates,
        block_learning_rates,
    ),
    "05.3 warm-up + cosine": (lesson05.check_schedule, schedule),
    "05.4 gradient reversal": (lesson05.check_reverse_gradient, Reverse),
}


def test_right_answers_pass():
    assert_right_answers_pass(CHECKS)


@pytest.mark.parametrize(
    "name",
    [
        "05.1 freezing for feature extraction",
        "05.2 discriminative learning rates",
        "05.3 warm-up + cosine",
    ],
)
def test_stub_is_not_attempted(name):
    assert_stub_not_attempted(CHECKS, name)


def test_stub_function_class_is_not_attempted():
    class Stub(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, scale):
            raise NotImplementedError

        @staticmethod
        def backward(ctx, grad):
            raise NotImplementedError

    assert lesson05.check_reverse_gradient(Stub).status == "not attempted"


# ------------------------------------------------------------------ typical mistakes


def test_freeze_mistakes_get_hints():
    def head_frozen_too(model):
        for p in model.parameters():
            p.requires_grad_(False)
        return model

    def only_head_unfrozen(model):  # forgets that other parameters were trainable
        for p in model.fc.parameters():
            p.requires_grad_(True)
        return model

    def returns_nothing(model):
        freeze(model)

    assert failed(lesson05.check_freeze(head_frozen_too), "model.fc")
    assert failed(lesson05.check_freeze(only_head_unfrozen), "requires_grad = False")
    assert failed(lesson05.check_freeze(returns_nothing), "return it")


def test_rate_mistakes_get_hints():
    def reversed_order(lr, n, decay):
        return block_learning_rates(lr, n, decay)[::-1]

    def off_by_one(lr, n, decay):
        return [lr * decay ** (n - i) for i in range(n)]

    assert failed(lesson05.check_block_learning_rates(reversed_order), "reverse order")
    assert failed(lesson05.check_block_learning_rates(off_by_one), "decay ** (num_blocks - 1 - i)")


def test_schedule_mistakes_get_hints():
    def starts_at_zero(step, total, warmup):
        return step / warmup if step < warmup else schedule(step, total, warmup)

    def negative_after_total(step, total, warmup):
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup))) - 0.1 * (
            step > total
        )

    assert failed(lesson05.check_schedule(starts_at_zero), "(step + 1) / warmup")
    assert failed(lesson05.check_schedule(negative_after_total), "stay at 0")


def test_reversal_mistakes_get_hints():
    class Identity(Reverse):
        @staticmethod
        def backward(ctx, grad):
            return grad, None

    class SignOnly(Reverse):
        @staticmethod
        def backward(ctx, grad):
            return -grad, None

    assert failed(lesson05.check_reverse_gradient(Identity), "unchanged")
    assert failed(lesson05.check_reverse_gradient(SignOnly), "scale is missing")
