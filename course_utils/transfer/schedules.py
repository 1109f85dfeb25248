"""Lesson 05: learning-rate schedules that keep discriminative rates (warm-up + cosine, one-cycle).

A schedule here is a *multiplier* ``factor(step) -> float``; :class:`GroupScheduler` multiplies
each parameter group's own base rate by it, so the ratios between blocks survive every step.
torch's ``OneCycleLR`` given a single ``max_lr`` sets all groups to one rate instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = ["warmup_cosine", "one_cycle", "GroupScheduler"]


def _check_steps(what: str, step: int, total: int) -> None:
    if not isinstance(total, int) or total < 1:
        raise ValueError(f"{what}: total must be a positive number of steps, got {total!r}")
    if step < 0:
        raise ValueError(f"{what}: step counts from 0, got {step}")


def warmup_cosine(step: int, total: int, warmup: int = 0) -> float:
    """Multiplier at ``step``: linear warm-up from ~0 to 1 over ``warmup`` steps, then a cosine
    decay to 0 at ``total``. Warm-up keeps the first, large and noisy updates of a fresh head from
    wrecking the pretrained features; the cosine anneals gently to a fine minimum."""
    _check_steps("warmup_cosine", step, total)
    if not 0 <= warmup <= total:
        raise ValueError(
            f"warmup_cosine: a warm-up of {warmup} steps does not fit in a schedule of {total} "
            f"steps: use 0 <= warmup <= total (e.g. warmup=round(0.1 * total))"
        )
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def one_cycle(step: int, total: int, pct_start: float = 0.3, div: float = 25.0) -> float:
    """One-cycle multiplier (Smith, 2018): cosine from ``1/div`` up to 1 over the first
    ``pct_start`` of the steps, then cosine down to ~0. High rates mid-training explore, the long
    decay settles."""
    _check_steps("one_cycle", step, total)
    if not 0 < pct_start < 1 or div < 1:
        raise ValueError(
            f"one_cycle: the warm-up share pct_start must be in (0, 1) and div >= 1, got "
            f"pct_start={pct_start}, div={div}"
        )
    peak = max(1, round(pct_start * total))
    if step < peak:
        start = 1 / div
        return start + (1 - start) * 0.5 * (1 - math.cos(math.pi * step / peak))
    progress = (step - peak) / max(1, total - peak)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


class GroupScheduler:
    """Set every parameter group's rate to ``its own base_lr * factor(step)`` after each step.

    ``factor(step)`` is e.g. ``functools.partial(warmup_cosine, total=..., warmup=...)``. Groups
    keep their ratios (discriminative rates survive), and groups added later (gradual unfreezing)
    are scheduled too: a group without ``"base_lr"`` takes its current ``lr`` as base. torch's
    ``LambdaLR`` does the same for a fixed set of groups; ``OneCycleLR`` given a single ``max_lr``
    would set all groups to one rate.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, factor: Callable[[int], float]):
        self.optimizer, self.factor, self.step_count = optimizer, factor, 0
        self._apply()

    def _apply(self) -> None:
        scale = self.factor(self.step_count)
        for group in self.optimizer.param_groups:
            group.setdefault("base_lr", group["lr"])
            group["lr"] = group["base_lr"] * scale

    def step(self) -> None:
        self.step_count += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]
