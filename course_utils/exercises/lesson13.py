"""Checkers for the exercises of ``13_appendix_multi_gpu``.

Each checker compares the learner's answer with what PyTorch itself does (``DistributedSampler``,
the gradient of the whole batch) or with the rule the lesson states (linear learning-rate
scaling); a wrong answer fails with a hint about the most likely mistake.
"""

import copy
import math

import torch
from torch import nn
from torch.utils.data import DistributedSampler

from . import exercise

# --------------------------------------------------------------------------------------------
# 13.1 Which indices does a rank get?
# --------------------------------------------------------------------------------------------


def reference_shard(n: int, world_size: int, rank: int) -> list[int]:
    """What ``DistributedSampler(shuffle=False)`` gives rank ``rank`` of a data set of ``n``."""
    return list(DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=False))


@exercise("13.1 shard indices")
def check_shard(my_shard) -> None:
    """``my_shard(n, world_size, rank) -> list of indices`` equal to ``DistributedSampler``'s
    (without shuffling), for data sets that split evenly and ones that do not."""
    for n, world_size in [(8, 2), (10, 3), (5, 4), (7, 1), (9, 2)]:
        for rank in range(world_size):
            out = my_shard(n, world_size, rank)
            assert isinstance(out, (list, tuple, range, torch.Tensor)), (
                f"return a list of indices, got {type(out).__name__}"
            )
            out = [int(i) for i in out]
            expected = reference_shard(n, world_size, rank)
            if out == expected:
                continue
            where = f"n={n}, world_size={world_size}, rank={rank}"
            per_rank = math.ceil(n / world_size)
            if out == list(range(rank, n, world_size)):
                raise AssertionError(
                    f"{where}: {out} has {len(out)} indices but every rank needs {per_rank} = "
                    "ceil(n / world_size), so pad by repeating indices from the start. With "
                    "unequal shards one rank runs one step more and waits forever for the others "
                    "in the gradient all-reduce"
                )
            if out == list(range(rank, n - n % world_size, world_size)):
                raise AssertionError(
                    f"{where}: dropping the last n % world_size samples is what drop_last=True "
                    "does; by default DistributedSampler pads with repeats instead"
                )
            padded = (list(range(n)) * world_size)[: per_rank * world_size]
            if out == padded[rank * per_rank : (rank + 1) * per_rank]:
                raise AssertionError(
                    f"{where}: contiguous blocks also split the data, but DistributedSampler deals "
                    "indices like cards: rank r takes r, r + world_size, r + 2 world_size, ..."
                )
            raise AssertionError(f"{where}: expected {expected}, got {out}")


# --------------------------------------------------------------------------------------------
# 13.2 Effective batch size and learning rate
# --------------------------------------------------------------------------------------------


@exercise("13.2 learning-rate scaling")
def check_scale_lr(my_scale_lr) -> None:
    """``my_scale_lr(base_lr, base_batch, batch_per_rank, world_size) -> lr`` by the linear
    scaling rule: the learning rate grows in proportion to the effective batch size."""
    cases = [(0.1, 256, 64, 8), (3e-3, 64, 32, 2), (0.05, 128, 128, 1), (1e-3, 32, 16, 4)]
    for base_lr, base_batch, batch_per_rank, world_size in cases:
        out = my_scale_lr(base_lr, base_batch, batch_per_rank, world_size)
        assert isinstance(out, (int, float)) or (
            isinstance(out, torch.Tensor) and out.numel() == 1
        ), f"return one number (a learning rate), got {type(out).__name__}"
        out = float(out)
        ratio = batch_per_rank * world_size / base_batch
        where = (
            f"base_lr={base_lr}, base_batch={base_batch}, batch_per_rank={batch_per_rank}, "
            f"world_size={world_size}"
        )
        if math.isclose(out, base_lr * ratio, rel_tol=1e-6):
            continue
        if math.isclose(out, base_lr * batch_per_rank / base_batch, rel_tol=1e-6):
            raise AssertionError(
                f"{where}: each optimizer step averages the gradients of every rank's batch, so "
                "the effective batch is batch_per_rank * world_size, not batch_per_rank"
            )
        if math.isclose(out, base_lr * math.sqrt(ratio), rel_tol=1e-6):
            raise AssertionError(
                f"{where}: that is square-root scaling (sometimes used with Adam); the linear "
                "rule asked for here multiplies by the ratio of the batch sizes itself"
            )
        if math.isclose(out, base_lr / ratio, rel_tol=1e-6):
            raise AssertionError(
                f"{where}: the ratio is upside down: a larger batch gets a larger learning rate"
            )
        raise AssertionError(f"{where}: expected {base_lr * ratio:.6g}, got {out:.6g}")


# --------------------------------------------------------------------------------------------
# 13.3 Averaging gradients by hand
# --------------------------------------------------------------------------------------------


def _problem(seed: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3))
    g = torch.Generator().manual_seed(seed)
    return model, torch.randn(12, 5, generator=g), torch.randint(0, 3, (12,), generator=g)


def _grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor, reduction: str = "mean"):
    loss = nn.functional.cross_entropy(model(x), y, reduction=reduction)
    return torch.autograd.grad(loss, list(model.parameters()))


def _same(a, b) -> bool:
    return all(
        p.shape == q.shape and torch.allclose(p, q, rtol=1e-4, atol=1e-6) for p, q in zip(a, b)
    )


@exercise("13.3 averaging gradients")
def check_data_parallel_grads(my_data_parallel_grads) -> None:
    """``my_data_parallel_grads(model, x, y, world_size) -> [grad per parameter]``: the batch
    split into ``world_size`` shards, one copy's cross-entropy gradient per shard, averaged. It
    must equal the gradient of the whole batch (12 samples, so every split is even)."""
    for seed, world_size in [(0, 2), (1, 3), (2, 4), (3, 1)]:
        model, x, y = _problem(seed)
        out = my_data_parallel_grads(copy.deepcopy(model), x.clone(), y.clone(), world_size)
        params = list(model.parameters())
        assert isinstance(out, (list, tuple)) and len(out) == len(params), (
            f"return one gradient per parameter, in model.parameters() order ({len(params)})"
        )
        out = [torch.as_tensor(g).detach() for g in out]
        for g, p in zip(out, params):
            assert g.shape == p.shape, (
                f"a gradient has shape {list(g.shape)}, its parameter {list(p.shape)}"
            )
        whole = _grads(model, x, y)
        if _same(out, whole):
            continue
        where = f"world_size={world_size}"
        if _same(out, [world_size * g for g in whole]):
            raise AssertionError(
                f"{where}: the gradients are world_size times too large: DDP averages them (the "
                "all-reduce sums, then every rank divides by world_size)"
            )
        if _same(out, _grads(model, x.chunk(world_size)[0], y.chunk(world_size)[0])):
            raise AssertionError(f"{where}: that is the first shard's gradient alone; average all")
        if _same(out, [g * len(x) / world_size for g in whole]):
            raise AssertionError(
                f"{where}: each copy must use the *mean* loss over its own shard, as training does"
            )
        raise AssertionError(f"{where}: the averaged gradients differ from the whole batch's")
