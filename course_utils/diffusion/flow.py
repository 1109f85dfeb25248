"""Lesson 10: flow matching, straight paths from noise to data, sampled by solving an ODE.

Flow matching keeps the network and the training loop of diffusion but changes the question:
along the straight line x_t = (1 - t) ε + t x_1 from noise (t = 0) to data (t = 1,
:func:`fm_path`) it learns the velocity x_1 - ε (:func:`fm_target`, :func:`flow_matching_loss`),
and samples by integrating that velocity field as an ODE in a handful of steps
(:func:`sample_euler`, :func:`sample_heun`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..checks import check_finite, check_flow_time, check_signed_images
from ..train import evaluating
from .guidance import Condition
from .samplers import Callback, start_sampling
from .schedule import draw_noise, per_sample
from .training import drop_labels, train_denoiser

__all__ = [
    "FLOW_TIME_SCALE",
    "fm_path",
    "fm_target",
    "flow_matching_loss",
    "train_flow_matching",
    "sample_euler",
    "sample_heun",
]

#: Flow time t in [0, 1] reaches the network as t * FLOW_TIME_SCALE, so that the sinusoidal
#: timestep embedding of :class:`~course_utils.diffusion.ConditionalUNet` sees the same range as
#: diffusion's timesteps.
FLOW_TIME_SCALE = 1000.0


def fm_path(x1: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A point on the straight path from noise to data (rectified flow, or conditional flow
    matching with σ_min = 0): x_t = (1 - t) ε + t x_1.

    Time runs from t = 0 (pure noise ε) to t = 1 (the data x_1), as in Lipman et al. and Liu et
    al. Diffusers' ``FlowMatchEulerDiscreteScheduler`` runs the other way, σ = 1 - t from 1 (noise)
    to 0 (data), and its models predict ε - x_1, our velocity with the opposite sign.

    Args:
        x1: data [B, ...] in [-1, 1]. noise: ε [B, ...], shaped like x1. t: [B] floats in [0, 1].
    """
    check_finite(x1, what="fm_path")  # a tensor (NumPy arrays and lists get the fix)
    if x1.dim() == 4 and x1.numel() and x1.min() >= 0:  # images not mapped from [0, 1]?
        check_signed_images(x1, what="fm_path")
    if noise.shape != x1.shape:
        raise ValueError(f"noise must have x1's shape {tuple(x1.shape)}, got {tuple(noise.shape)}")
    check_flow_time(t, what="fm_path", length=len(x1))
    t = per_sample(t.to(x1.dtype), x1)
    return (1 - t) * noise + t * x1


def fm_target(x1: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The velocity along :func:`fm_path`, d x_t / dt = x_1 - ε: the same at every t, which is
    what makes the path straight. The network learns its average over all (x_1, ε) pairs that
    pass through a point, a velocity field whose ODE carries noise to data."""
    if noise.shape != x1.shape:
        raise ValueError(f"noise must have x1's shape {tuple(x1.shape)}, got {tuple(noise.shape)}")
    return x1 - noise


def flow_matching_loss(
    model: nn.Module,
    x1: torch.Tensor,
    y: torch.Tensor | None = None,
    p_uncond: float = 0.1,
    generator: torch.Generator | None = None,
    null_class: int | None = None,
) -> torch.Tensor:
    """The flow-matching loss of one batch: t ~ U[0, 1], ε ~ N(0, I), and the mean squared error
    between model(x_t, t * FLOW_TIME_SCALE, y) and the target velocity x_1 - ε.

    Same shape as :func:`~course_utils.diffusion.diffusion_loss`, with the same conditioning
    dropout, so one :class:`~course_utils.diffusion.ConditionalUNet` can be trained either way;
    only the target and time differ.
    """
    check_finite(x1, what="flow_matching_loss")  # a tensor (NumPy arrays and lists get the fix)
    if x1.dim() == 4:  # images (the toy points of lesson 10 have no fixed range)
        check_signed_images(x1, what="flow_matching_loss")
    rand_device = generator.device if generator is not None else x1.device
    t = torch.rand(x1.shape[0], generator=generator, device=rand_device).to(x1.device)
    noise = draw_noise(x1.shape, generator, x1.device, x1.dtype)
    y = drop_labels(model, y, p_uncond, null_class, generator)
    prediction = model(fm_path(x1, noise, t), t * FLOW_TIME_SCALE, y=y)
    return F.mse_loss(prediction, fm_target(x1, noise))


def train_flow_matching(
    model: nn.Module,
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
    """:func:`~course_utils.diffusion.train_diffusion` with :func:`flow_matching_loss`: a velocity
    model instead of an ε-model, same arguments (no schedule), same seeding, EMA, ``on_step`` and
    return value."""

    def loss(model, x1, y, generator):
        return flow_matching_loss(model, x1, y, p_uncond, generator=generator)

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
        on_step=on_step,
    )


def _flow_steps(num_steps: int) -> list[tuple[float, float]]:
    """``num_steps`` equal steps (t, t_next) from 0 (noise) to 1 (data), in network time
    (t * FLOW_TIME_SCALE)."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be at least 1, got {num_steps}")
    times = torch.linspace(0, FLOW_TIME_SCALE, num_steps + 1).tolist()
    return list(zip(times[:-1], times[1:]))


def _check_flow_model(model: nn.Module) -> None:
    """Refuse a shipped diffusion model (``model.config["noise_schedule"]``): it predicts the
    noise ε at integer steps, not a velocity at flow times, and Euler steps on it give noise."""
    config = getattr(model, "config", None)
    if isinstance(config, Mapping) and "noise_schedule" in config:
        raise ValueError(
            "this is a diffusion model (trained to predict noise under a noise schedule): sample "
            "it with sample_ddpm or sample_ddim and diffusion.trained_schedule(model)"
        )


def sample_euler(
    model: nn.Module,
    shape: Sequence[int],
    *,
    num_steps: int = 20,
    condition: Condition | None = None,
    generator: torch.Generator | None = None,
    x_T: torch.Tensor | None = None,
    progress: bool = True,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Generate with a flow-matching velocity model ``model(x, t * FLOW_TIME_SCALE, y)`` by
    Euler's method: x_{t+h} = x_t + h v(x_t, t), ``num_steps`` equal steps from t = 0 (noise
    drawn from ``generator``, or ``x_T``) to t = 1. One model call per step; the error shrinks
    like 1 / num_steps (first order). Other arguments as in
    :func:`~course_utils.diffusion.sample_ddim`; the callback gets ``(t * FLOW_TIME_SCALE, x)``.

    Returns:
        x_1 [B, C, H, W], the generated images (not clipped), on the model's device.
    """
    condition = condition or Condition()
    steps = _flow_steps(num_steps)
    _check_flow_model(model)
    x = start_sampling(model, shape, condition, generator, x_T, "sample_euler")
    with evaluating(model), torch.no_grad():
        for t, t_next in tqdm(steps, desc="Euler", disable=not progress):
            v = condition.predict(model, x, t)
            x = x + (t_next - t) / FLOW_TIME_SCALE * v  # follow the velocity at the start
            if callback is not None:
                callback(t, x)
    return x


def sample_heun(
    model: nn.Module,
    shape: Sequence[int],
    *,
    num_steps: int = 10,
    condition: Condition | None = None,
    generator: torch.Generator | None = None,
    x_T: torch.Tensor | None = None,
    progress: bool = True,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Like :func:`sample_euler` with Heun's method (the explicit trapezoidal rule): an Euler
    step predicts x_{t+h}, the velocity there is averaged with the one at x_t. Two model calls per
    step, error like 1 / num_steps² (second order): compare at equal calls, i.e. Heun with N
    steps against Euler with 2N."""
    condition = condition or Condition()
    steps = _flow_steps(num_steps)
    _check_flow_model(model)
    x = start_sampling(model, shape, condition, generator, x_T, "sample_heun")
    with evaluating(model), torch.no_grad():
        for t, t_next in tqdm(steps, desc="Heun", disable=not progress):
            h = (t_next - t) / FLOW_TIME_SCALE
            v = condition.predict(model, x, t)
            v_next = condition.predict(model, x + h * v, t_next)  # where Euler would land
            x = x + h / 2 * (v + v_next)  # one step along the average of the two velocities
            if callback is not None:
                callback(t, x)
    return x
