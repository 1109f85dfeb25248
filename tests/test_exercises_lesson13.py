import math

import pytest
import torch
from exercise_testing import assert_right_answers_pass, assert_stub_not_attempted, failed
from torch import nn

from course_utils import data
from course_utils.exercises import lesson13
from course_utils.models import LeNet5

pytestmark = pytest.mark.usefixtures("private_cache")


# ------------------------------------------------------------------ right answers


def shard(n, world_size, rank):
    per_rank = math.ceil(n / world_size)
    indices = list(range(n))
    indices += indices[: per_rank * world_size - n]  # pad with repeats from the start
    return indices[rank::world_size]


def scale_lr(base_lr, base_batch, batch_per_rank, world_size):
    return base_lr * batch_per_rank * world_size / base_batch


def data_parallel_grads(model, x, y, world_size):
    per_copy = []
    for xs, ys in zip(x.chunk(world_size), y.chunk(world_size)):
        loss = nn.functional.cross_entropy(model(xs), ys)
        per_copy.append(torch.autograd.grad(loss, list(model.parameters())))
    return [torch.stack(gs).mean(0) for gs in zip(*per_copy)]


def scaling_experiment(seed):
    images, labels = data.fashion_mnist("train")
    x, y = nn.functional.pad(images[:2048], (2, 2, 2, 2)), labels[:2048]
    val_images, val_labels = data.fashion_mnist("val")
    x_val, y_val = nn.functional.pad(val_images[:1000], (2, 2, 2, 2)), val_labels[:1000]

    def one_pass(batch_size, lr):
        torch.manual_seed(seed)
        model = LeNet5()
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(xb), yb).backward()
            optimizer.step()
        with torch.no_grad():
            return (model(x_val).argmax(1) == y_val).float().mean().item()

    out = {"small": one_pass(32, 0.05), "large": one_pass(128, 0.05)}
    out["large_scaled"] = one_pass(128, 0.05 * 128 / 32)
    gap, gap_scaled = abs(out["large"] - out["small"]), abs(out["large_scaled"] - out["small"])
    closer = "large_scaled" if gap_scaled < gap else "large"
    out["closer"] = "tie" if gap == gap_scaled else closer
    return out


CHECKS = {
    "13.1 shard indices": (lesson13.check_shard, shard),
    "13.2 learning-rate scaling": (lesson13.check_scale_lr, scale_lr),
    "13.3 averaging gradients": (lesson13.check_data_parallel_grads, data_parallel_grads),
    "13.4 the linear scaling rule, measured": (
        lesson13.check_scaling_experiment,
        scaling_experiment,
    ),
}


def test_right_answers_pass():
    assert_right_answers_pass(CHECKS)


def test_other_right_answers_pass():
    def shard_with_tensor(n, world_size, rank):
        per_rank = -(-n // world_size)  # ceil(n / world_size)
        return (torch.arange(per_rank * world_size) % n)[rank::world_size]  # % n: the padding

    def grads_by_backward(model, x, y, world_size):  # accumulate .grad, then divide
        for xs, ys in zip(x.chunk(world_size), y.chunk(world_size)):
            nn.functional.cross_entropy(model(xs), ys).backward()
        return [p.grad / world_size for p in model.parameters()]

    assert lesson13.check_shard(shard_with_tensor).passed
    assert lesson13.check_data_parallel_grads(grads_by_backward).passed


@pytest.mark.parametrize("name", CHECKS)
def test_stub_is_not_attempted(name):
    assert_stub_not_attempted(CHECKS, name)


def test_reference_shard_covers_every_index_once_or_pads():
    for n, world_size in [(10, 3), (8, 2)]:
        shards = [lesson13.reference_shard(n, world_size, r) for r in range(world_size)]
        assert len({len(s) for s in shards}) == 1  # equal lengths: equal numbers of steps
        assert set().union(*shards) == set(range(n))
        assert sum(map(len, shards)) - n == -n % world_size  # the padding, and nothing more


# ------------------------------------------------------------------ wrong answers get hints


def test_shard_hints():
    def no_padding(n, world_size, rank):
        return list(range(rank, n, world_size))

    def dropped(n, world_size, rank):
        return list(range(rank, n - n % world_size, world_size))

    def blocks(n, world_size, rank):
        per_rank = math.ceil(n / world_size)
        return ((list(range(n)) * 2)[: per_rank * world_size])[rank * per_rank :][:per_rank]

    assert failed(lesson13.check_shard(no_padding), "pad", "forever")
    assert failed(lesson13.check_shard(dropped), "drop_last")
    assert failed(lesson13.check_shard(blocks), "like cards")


def test_scale_lr_hints():
    assert failed(lesson13.check_scale_lr(lambda lr, b0, b, w: lr * b / b0), "effective batch")
    assert failed(lesson13.check_scale_lr(lambda lr, b0, b, w: lr * (b * w / b0) ** 0.5), "square")
    assert failed(lesson13.check_scale_lr(lambda lr, b0, b, w: lr * b0 / (b * w)), "upside down")
    assert failed(lesson13.check_scale_lr(lambda lr, b0, b, w: "0.1"), "one number")


def test_gradient_hints():
    def summed(model, x, y, world_size):
        return [g * world_size for g in data_parallel_grads(model, x, y, world_size)]

    def first_shard(model, x, y, world_size):
        xs, ys = x.chunk(world_size)[0], y.chunk(world_size)[0]
        return torch.autograd.grad(nn.functional.cross_entropy(model(xs), ys), model.parameters())

    def sum_loss(model, x, y, world_size):
        per_copy = []
        for xs, ys in zip(x.chunk(world_size), y.chunk(world_size)):
            loss = nn.functional.cross_entropy(model(xs), ys, reduction="sum")
            per_copy.append(torch.autograd.grad(loss, list(model.parameters())))
        return [torch.stack(gs).mean(0) for gs in zip(*per_copy)]

    assert failed(lesson13.check_data_parallel_grads(summed), "averages")
    assert failed(lesson13.check_data_parallel_grads(first_shard), "first shard")
    assert failed(lesson13.check_data_parallel_grads(sum_loss), "mean")
    assert failed(lesson13.check_data_parallel_grads(lambda m, x, y, w: []), "one gradient")


@pytest.fixture
def measured(monkeypatch):
    """The checker's own measurement, fixed: small 0.41, large 0.20, large_scaled 0.41."""
    ref = {"small": 0.41, "large": 0.20, "large_scaled": 0.41}
    monkeypatch.setattr(lesson13, "reference_scaling_experiment", lambda seed: dict(ref))
    right = {**ref, "closer": "large_scaled"}
    return lambda **answer: lesson13.check_scaling_experiment(lambda seed: {**right, **answer})


def test_scaling_measurement_mistakes_get_hints(measured):
    assert measured().passed
    assert measured(small=0.415).passed  # within 10 of the 1,000 validation images
    assert failed(measured(large_scaled=0.20), "unscaled rate", "lr=0.05 * 128 / 32")
    assert failed(measured(large=0.35), "large: you measured 0.350", "ONE pass", "fewer steps")
    assert failed(measured(closer="large"), '"closer"', "your numbers", "'large_scaled'")
    assert failed(measured(small=41), "fractions in [0, 1]")
    assert failed(lesson13.check_scaling_experiment(lambda seed: [0.4, 0.2]), "return a dict")


def test_scaling_verdict_follows_the_learners_numbers(measured):
    # the verdict is judged on the learner's numbers (within tolerance of the checker's)
    assert measured(small=0.40, large=0.195, large_scaled=0.405, closer="large_scaled").passed
    equal = measured(small=0.40, large=0.20, large_scaled=0.40, closer="tie")
    assert failed(equal, "'large_scaled'")
    assert lesson13._closer(0.4, 0.3, 0.5) == "tie"
    assert lesson13._closer(0.4, 0.35, 0.5) == "large"
