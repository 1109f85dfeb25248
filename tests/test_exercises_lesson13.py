import math

import pytest
import torch
from exercise_testing import assert_right_answers_pass, assert_stub_not_attempted, failed
from torch import nn

from course_utils.exercises import lesson13

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


CHECKS = {
    "13.1 shard indices": (lesson13.check_shard, shard),
    "13.2 learning-rate scaling": (lesson13.check_scale_lr, scale_lr),
    "13.3 averaging gradients": (lesson13.check_data_parallel_grads, data_parallel_grads),
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
