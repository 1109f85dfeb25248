import copy
import math

import pytest
import torch
from exercise_testing import assert_right_answers_pass, assert_stub_not_attempted, failed, stub

from course_utils import data, zoo
from course_utils.exercises import lesson05
from course_utils.transfer import fine_tune, replace_head, resnet_blocks

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


# ------------------------------------------------------------------ the measurement (05.5)


def tuning_experiment(source_model, train, held_out, seed):
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
            epochs=5,
            lr=3e-3,
            decay=0.3,
            batch_size=32,
            progress=False,
            device="cpu",
        )["accuracy"]
    better = "tie" if out["partial"] == out["full"] else max(out, key=out.get)
    return out | {"better": better}


@pytest.fixture(scope="module")
def shipped():
    """The shipped Fashion-MNIST model and a tiny digit problem: 2 labels per class, 20 held out."""
    images, labels = data.mnist_5k("val")
    first = torch.cat([torch.nonzero(labels == c)[:4, 0] for c in range(10)])
    train = (images[first[0::2]], labels[first[0::2]])
    held_out = (images[first[1::2]], labels[first[1::2]])
    with zoo.cpu_threads():
        yield zoo.load("resnet_fashion", device="cpu"), train, held_out


def test_tuning_measurement_passes_when_repeated_and_leaves_the_source_model_alone(shipped):
    model, train, held_out = shipped
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with zoo.cpu_threads():
        assert lesson05.check_tuning_experiment(tuning_experiment, model, train, held_out).passed
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # copies were trained


def test_tuning_stub_is_not_attempted(shipped):
    assert lesson05.check_tuning_experiment(stub, *shipped).status == "not attempted"


def test_tuning_verdict_against_the_numbers_fails(shipped):
    def contrary(*args):
        out = tuning_experiment(*args)
        return {
            **out,
            "better": {"partial": "full", "full": "tie", "tie": "partial"}[out["better"]],
        }

    with zoo.cpu_threads():
        result = lesson05.check_tuning_experiment(contrary, *shipped)
    assert failed(result, '"better"', "your numbers")


@pytest.fixture
def measured(monkeypatch):
    """The checker's own measurement, fixed: partial 0.62, full 0.71 (100 held-out images)."""
    monkeypatch.setattr(
        lesson05, "reference_tuning_experiment", lambda *args: {"partial": 0.62, "full": 0.71}
    )
    held_out = (torch.zeros(100, 1, 28, 28), torch.zeros(100, dtype=torch.int64))
    return lambda answer: lesson05.check_tuning_experiment(answer, None, None, held_out)


def test_tuning_measurement_mistakes_get_hints(measured):
    def answer(partial, full, better):
        return lambda *args: {"partial": partial, "full": full, "better": better}

    assert measured(answer(0.62, 0.71, "full")).passed
    assert measured(answer(0.63, 0.71, "full")).passed  # one image of 100 may differ
    assert failed(measured(answer(0.71, 0.62, "partial")), "swapped")
    assert failed(measured(answer(0.62, 0.55, "partial")), "full", "0.710", "manual_seed")
    assert failed(measured(answer(62.0, 71.0, "full")), "fractions")
    assert failed(measured(answer(0.62, 0.71, "partial")), '"better"', "'full'")
    assert failed(measured(answer(0.62, 0.71, "full fine-tuning")), '"better"')
    assert failed(measured(lambda *args: (0.62, 0.71)), "return a dict")
