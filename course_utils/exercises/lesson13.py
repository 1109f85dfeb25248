"""Checkers for the exercises of ``13_appendix_multi_gpu``.

Each checker compares the learner's answer with what PyTorch itself does (``DistributedSampler``,
the gradient of the whole batch), with the rule the lesson states (linear learning-rate scaling)
or with its own run of the learner's measurement (the scaling rule tried on Fashion-MNIST); a
wrong answer fails with a hint about the most likely mistake.
"""

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DistributedSampler

from .. import data
from ..models import LeNet5
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


# --------------------------------------------------------------------------------------------
# 13.4 Does the linear scaling rule hold? Measured
# --------------------------------------------------------------------------------------------

#: The measurement of exercise 13.4: one pass over the first SCALING_IMAGES training images with
#: plain SGD, at the small batch and rate, at 4x the batch (4 ranks of the small batch: the same
#: averaged gradient, exercise 13.3) with the same rate, and at 4x the batch with 4x the rate.
SCALING_IMAGES, SCALING_VAL_IMAGES = 2048, 1000
SMALL_BATCH, LARGE_BATCH, BASE_LR = 32, 128, 0.05


def _pad32(images: torch.Tensor) -> torch.Tensor:
    return F.pad(images, (2, 2, 2, 2))  # 28x28 -> LeNet-5's 32x32, black borders


def _one_pass(batch_size: int, lr: float, seed: int) -> float:
    """Validation accuracy of LeNet-5 after one SGD pass over the first SCALING_IMAGES images."""
    images, labels = data.fashion_mnist("train")
    x, y = _pad32(images[:SCALING_IMAGES]), labels[:SCALING_IMAGES]
    torch.manual_seed(seed)
    model = LeNet5()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for start in range(0, SCALING_IMAGES, batch_size):
        loss = F.cross_entropy(model(x[start : start + batch_size]), y[start : start + batch_size])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    val_images, val_labels = data.fashion_mnist("val")
    with torch.no_grad():
        predicted = model(_pad32(val_images[:SCALING_VAL_IMAGES])).argmax(1)
    return (predicted == val_labels[:SCALING_VAL_IMAGES]).float().mean().item()


def reference_scaling_experiment(seed: int) -> dict:
    """The checker's own run of exercise 13.4: ``{"small", "large", "large_scaled"}``
    validation accuracies."""
    ratio = LARGE_BATCH / SMALL_BATCH
    return {
        "small": _one_pass(SMALL_BATCH, BASE_LR, seed),
        "large": _one_pass(LARGE_BATCH, BASE_LR, seed),
        "large_scaled": _one_pass(LARGE_BATCH, BASE_LR * ratio, seed),
    }


def _closer(small: float, large: float, large_scaled: float) -> str:
    gap, gap_scaled = abs(large - small), abs(large_scaled - small)
    if math.isclose(gap, gap_scaled, abs_tol=1e-9):
        return "tie"
    return "large_scaled" if gap_scaled < gap else "large"


@exercise("13.4 the linear scaling rule, measured")
def check_scaling_experiment(my_scaling_experiment, seed=0) -> None:
    """``my_scaling_experiment(seed) -> {"small": acc, "large": acc, "large_scaled": acc,
    "closer": "large" | "large_scaled" | "tie"}``. The checker repeats the three runs with the
    same seed: the accuracies must agree within 1 % (10 of the 1,000 validation images: other
    thread counts round differently), and "closer" must name the large-batch run whose accuracy is
    nearer the small-batch one, by the learner's own numbers."""
    out = my_scaling_experiment(seed)
    keys = ("small", "large", "large_scaled")
    assert isinstance(out, dict) and {*keys, "closer"} <= set(out), (
        'return a dict {"small": accuracy, "large": accuracy, "large_scaled": accuracy, '
        f'"closer": "large", "large_scaled" or "tie"}}, got {str(out)[:80]}'
    )
    mine = {k: float(out[k]) for k in keys}
    assert all(0 <= v <= 1 for v in mine.values()), (
        f"accuracies are fractions in [0, 1], got {mine}"
    )
    ref = reference_scaling_experiment(seed)

    def agree(a: float, b: float) -> bool:
        return abs(a - b) <= 0.01

    if not agree(mine["large_scaled"], ref["large_scaled"]) and agree(
        mine["large_scaled"], ref["large"]
    ):
        raise AssertionError(
            f"large_scaled: {mine['large_scaled']:.3f} is the checker's run at the unscaled rate: "
            f"the batch grew {LARGE_BATCH // SMALL_BATCH} times, so the rate must too "
            f"(lr={BASE_LR} * {LARGE_BATCH} / {SMALL_BATCH})"
        )
    for name in keys:
        assert agree(mine[name], ref[name]), (
            f"{name}: you measured {mine[name]:.3f}, the checker {ref[name]:.3f} with seed {seed}. "
            f"Each run: torch.manual_seed(seed), then LeNet5() and torch.optim.SGD (no momentum); "
            f"ONE pass, in order, over the first {SCALING_IMAGES} training images padded to "
            f"32x32 (so the large batch takes {LARGE_BATCH // SMALL_BATCH} times fewer steps); "
            f"then the accuracy on the first {SCALING_VAL_IMAGES} validation images"
        )
    expected = _closer(*mine.values())
    assert out["closer"] == expected, (
        f'"closer" is {out["closer"]!r}, but your numbers (small {mine["small"]:.3f}, large '
        f"{mine['large']:.3f}, large_scaled {mine['large_scaled']:.3f}) say {expected!r}: compute "
        "the verdict from the numbers"
    )
