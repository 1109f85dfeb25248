"""Lessons 07-10: training a denoiser, the ε-prediction loss with conditioning dropout, an EMA
of the weights and the seeded training loop.

Training (:func:`diffusion_loss`) is plain regression: pick a random t and ε, form x_t with
q_sample and minimise ||ε̂(x_t, t, y) - ε||²; replacing y by the null label with probability
``p_uncond`` (:func:`drop_labels`) teaches the same network the unconditional prediction that
classifier-free guidance needs. :func:`train_denoiser` is the loop around any such loss, shared
with flow matching (:func:`~course_utils.diffusion.train_flow_matching`).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ..checks import check_finite, check_images, check_signed_images
from ..train import fit
from .schedule import NoiseSchedule, draw_noise, q_sample

__all__ = ["diffusion_loss", "drop_labels", "EMA", "train_diffusion"]


def diffusion_loss(
    model: nn.Module,
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    y: torch.Tensor | None = None,
    p_uncond: float = 0.1,
    generator: torch.Generator | None = None,
    null_class: int | None = None,
) -> torch.Tensor:
    """The ε-prediction training loss of one batch, with conditioning dropout.

    Draws t ~ U{0, ..., T-1} and ε ~ N(0, I) per image, forms x_t = q_sample(x0, t, ε) and returns
    the mean squared error between model(x_t, t, y) and ε (a scalar). With probability
    ``p_uncond`` each label is replaced by ``null_class`` (default ``model.null_class``), so that
    the model also learns the unconditional prediction classifier-free guidance needs.

    Args:
        x0: clean images [B, C, H, W] in [-1, 1].
        y: labels [B] (long) or None for an unconditional model.
        generator: makes t, ε and the dropout reproducible.
    """
    check_finite(x0, what="diffusion_loss")  # a tensor (NumPy arrays and lists get the fix)
    if schedule.sample_range is not None and x0.dim() == 4:  # images, not latents or points
        check_signed_images(x0, what="diffusion_loss")
    batch, device = x0.shape[0], x0.device
    rand_device = generator.device if generator is not None else device
    t = torch.randint(
        0, schedule.num_timesteps, (batch,), generator=generator, device=rand_device
    ).to(device)
    noise = draw_noise(x0.shape, generator, device, x0.dtype)
    y = drop_labels(model, y, p_uncond, null_class, generator)
    return F.mse_loss(model(q_sample(schedule, x0, t, noise), t, y=y), noise)


def drop_labels(
    model: nn.Module,
    y: torch.Tensor | None,
    p_uncond: float,
    null_class: int | None,
    generator: torch.Generator | None,
) -> torch.Tensor | None:
    """Conditioning dropout: each label [B] becomes ``null_class`` (default ``model.null_class``)
    with probability ``p_uncond``; ``y=None`` (an unconditional model) stays None."""
    if not 0.0 <= p_uncond <= 1.0:
        raise ValueError(f"p_uncond must lie in [0, 1], got {p_uncond}")
    if y is None or p_uncond == 0:
        return y
    if null_class is None:
        null_class = getattr(model, "null_class", None)
    if null_class is None:
        raise ValueError("conditioning dropout needs null_class (or a model.null_class)")
    rand_device = generator.device if generator is not None else y.device
    drop = torch.rand(len(y), generator=generator, device=rand_device).to(y.device) < p_uncond
    return torch.where(drop, torch.full_like(y, null_class), y)


class EMA:
    """An exponential moving average of a model's weights: after every optimizer step,
    ``ema = decay * ema + (1 - decay) * weights``.

    Diffusion training is noisy (every step sees random t and ε), and the averaged weights sample
    noticeably cleaner images than the last ones; with ``decay = 0.999`` the average spans roughly
    the last 1,000 steps. :attr:`model` is a frozen copy in ``eval()`` mode: sample with it.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for average, current in zip(self.model.parameters(), model.parameters()):
            average.lerp_(current, 1.0 - self.decay)
        for average, current in zip(self.model.buffers(), model.buffers()):
            average.copy_(current)  # buffers (e.g. norm statistics) are not averaged


def seeded_loader(
    images: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int, rescale: bool = True
) -> tuple[DataLoader, torch.Generator]:
    """Batches of (images scaled to [-1, 1], labels) in a seeded order, plus a second seeded
    generator for the timesteps and noise: the same call trains the same weights on the CPU.
    ``rescale=False`` batches the data as they are (latents)."""
    if rescale:  # the training functions take images in [0, 1], like every data set of the course
        images = check_images(images, what="training", value_range=(0, 1)) * 2 - 1
    loader = DataLoader(
        TensorDataset(images, labels),
        batch_size,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(seed),
    )
    return loader, torch.Generator().manual_seed(seed + 1)


def train_diffusion(
    model: nn.Module,
    schedule: NoiseSchedule,
    images: torch.Tensor,
    labels: torch.Tensor | None,
    *,
    epochs: int,
    lr: float = 2e-4,
    batch_size: int = 128,
    p_uncond: float = 0.1,
    ema_decay: float = 0.999,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
    on_step: Callable[[int, nn.Module], None] | None = None,
) -> tuple[nn.Module, list[float]]:
    """Train an ε-prediction model on ``images [N, C, H, W]`` in [0, 1] (scaled to [-1, 1] here)
    with :func:`diffusion_loss`, AdamW and an :class:`EMA` of the weights. With a schedule whose
    ``sample_range`` is None, ``images`` are unbounded data (latents) and are used as they are.

    ``labels [N]`` (or None for an unconditional model) are dropped to the null class with
    probability ``p_uncond``. Batches, timesteps and noise come from generators seeded with
    ``seed``: on the CPU the same call gives the same weights. Returns ``(ema_model, training loss
    per epoch)``; ``model`` itself holds the last, un-averaged weights. ``on_step(step, ema_model)``
    is called after every optimizer step (1, 2, ...): to keep snapshots for a learning curve.
    """

    def loss(model, x0, y, generator):
        return diffusion_loss(model, schedule, x0, y, p_uncond, generator=generator)

    return train_denoiser(
        model,
        loss,
        images,
        labels,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        ema_decay=ema_decay,
        seed=seed,
        device=device,
        progress=progress,
        rescale=schedule.sample_range is not None,
        on_step=on_step,
    )


def train_denoiser(
    model: nn.Module,
    loss: Callable[[nn.Module, torch.Tensor, torch.Tensor | None, torch.Generator], torch.Tensor],
    images: torch.Tensor,
    labels: torch.Tensor | None,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    ema_decay: float,
    seed: int,
    device: torch.device | str | None,
    progress: bool,
    rescale: bool = True,
    on_step: Callable[[int, nn.Module], None] | None = None,
) -> tuple[nn.Module, list[float]]:
    """The loop :func:`train_diffusion` and :func:`~course_utils.diffusion.train_flow_matching`
    share: seeded batches (images scaled from [0, 1] to [-1, 1] when ``rescale``),
    ``loss(model, x0, y, generator)`` per batch, AdamW, EMA after every step. Returns
    ``(ema_model, training loss per epoch)``; ``on_step(step, ema_model)`` after every step."""
    # An unconditional model still needs a label column for the TensorDataset: zeros, never used.
    targets = labels if labels is not None else torch.zeros(len(images), dtype=torch.long)
    loader, generator = seeded_loader(images, targets, batch_size, seed, rescale)

    def step(model: nn.Module, batch, device) -> torch.Tensor:
        x0, y = (v.to(device) for v in batch)
        return loss(model, x0, y if labels is not None else None, generator)

    ema = EMA(model, ema_decay)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    steps = itertools.count(1)

    def after_step(*_) -> None:
        ema.update(model)
        if on_step is not None:
            on_step(next(steps), ema.model)

    optimizer.register_step_post_hook(after_step)
    history = fit(
        model,
        loader,
        epochs=epochs,
        optimizer=optimizer,
        train_step=step,
        device=device,
        progress=progress,
    )
    return ema.model, history.train_loss
