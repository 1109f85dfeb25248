"""Lesson 07: whole samplers, from noise to images with DDPM or DDIM steps, and DDIM backwards.

Every sampler is the same short loop, the one diffusers' pipelines run: start from noise x, then at
each timestep ask the model for ε̂ (:meth:`~course_utils.diffusion.Condition.predict`, with
classifier-free guidance when the :class:`~course_utils.diffusion.Condition` asks for it) and take
one step (:func:`~course_utils.diffusion.ddpm_step` or :func:`~course_utils.diffusion.ddim_step`).
Deterministic DDIM can also be run backwards (:func:`ddim_invert`): an image -> the noise that
regenerates it. Samples are drawn on the device of the model's parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from ..checks import check_finite, check_sample_range
from ..train import evaluating
from .guidance import Condition
from .schedule import NoiseSchedule, check_trained_schedule, draw_noise
from .steps import ddim_step, ddim_timesteps, ddpm_step

__all__ = ["sample_ddpm", "sample_ddim", "ddim_invert"]

#: What a sampler's ``callback(t, x)`` is: called after every step with the new sample.
Callback = Callable[[int, torch.Tensor], None]


def start_sampling(
    model: nn.Module,
    shape: Sequence[int],
    condition: Condition,
    generator: torch.Generator | None,
    x_T: torch.Tensor | None,
    what: str,
) -> torch.Tensor:
    """Check the arguments of the sampler ``what`` and return its starting point x [B, ...] on the model's
    device: ``x_T`` if given, else pure noise of ``shape`` drawn from ``generator``."""
    condition._check(model, what=what, batch=shape[0])
    if x_T is not None:
        check_finite(x_T, what=f"{what} (x_T)")  # a tensor (NumPy arrays and lists get the fix)
    if x_T is not None and tuple(x_T.shape) != tuple(shape):
        raise ValueError(f"x_T must have shape {tuple(shape)}, got {tuple(x_T.shape)}")
    device = next(model.parameters(), torch.empty(0)).device
    return draw_noise(shape, generator, device) if x_T is None else x_T.to(device)


def sample_ddpm(
    model: nn.Module,
    schedule: NoiseSchedule,
    shape: Sequence[int],
    *,
    condition: Condition | None = None,
    generator: torch.Generator | None = None,
    x_T: torch.Tensor | None = None,
    clip_sample: bool = True,
    progress: bool = True,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Generate images with all T DDPM steps, from x_{T-1} ~ N(0, I) down to x_0.

    Args:
        model: ``model(x, t, y=None)`` -> ε̂, with x [B, ...], t [B] long, y [B] long or None.
        shape: the output shape [B, C, H, W].
        condition: what to draw, e.g. ``Condition(y)`` or ``Condition(y, guidance_scale=3.0)``;
            None: no labels (an unconditional model).
        generator: seeds the initial noise and every step's noise (reproducible samples).
        x_T: the starting noise [B, C, H, W] instead of a draw from ``generator``, e.g. to
            compare samplers or guidance scales on the same noise.
        clip_sample: clip x̂_0 to [-1, 1] at every step; then the result lies in [-1, 1].
        callback: called as ``callback(t, x)`` after each step with the new sample x_{t-1}, e.g.
            to keep a filmstrip of every 100th step.

    Returns:
        x_0 [B, C, H, W] on the model's device. The model is evaluated in eval mode under
        ``torch.no_grad()`` and given back in the train/eval mode it came in.
    """
    condition = condition or Condition()
    check_trained_schedule(model, schedule)  # a shipped model knows its own
    x = start_sampling(model, shape, condition, generator, x_T, "sample_ddpm")
    with evaluating(model), torch.no_grad():
        for t in tqdm(range(schedule.num_timesteps - 1, -1, -1), desc="DDPM", disable=not progress):
            eps = condition.predict(model, x, t)  # the noise in x_t ...
            x = ddpm_step(schedule, eps, t, x, generator=generator, clip_sample=clip_sample)
            if callback is not None:  # ... and x_{t-1}, sampled from the posterior
                callback(t, x)
    return x


def sample_ddim(
    model: nn.Module,
    schedule: NoiseSchedule,
    shape: Sequence[int],
    *,
    num_steps: int = 50,
    eta: float = 0.0,
    condition: Condition | None = None,
    generator: torch.Generator | None = None,
    x_T: torch.Tensor | None = None,
    clip_sample: bool = True,
    use_clipped_model_output: bool = False,
    progress: bool = True,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Generate images with ``num_steps`` DDIM steps on the timesteps of :func:`ddim_timesteps`.

    Arguments as in :func:`sample_ddpm`, plus ``num_steps`` (in [1, T]), ``eta`` (0:
    deterministic, the same noise always gives the same image; 1: as noisy as DDPM) and
    ``use_clipped_model_output`` (see :func:`ddim_step`; worth turning on with strong guidance):
    the step options of diffusers' ``DDIMScheduler``. The callback receives ``(t, x_{t_prev})``.

    Returns:
        x_0 [B, C, H, W] on the model's device.
    """
    condition = condition or Condition()
    steps = ddim_timesteps(schedule.num_timesteps, num_steps)
    check_trained_schedule(model, schedule)  # a shipped model knows its own
    x = start_sampling(model, shape, condition, generator, x_T, "sample_ddim")
    with evaluating(model), torch.no_grad():
        # num_steps jumps t -> t_prev, each skipping T // num_steps timesteps.
        for t, t_prev in tqdm(steps, desc="DDIM", disable=not progress):
            eps = condition.predict(model, x, t)
            x = ddim_step(
                schedule,
                eps,
                t,
                t_prev,
                x,
                eta=eta,
                clip_sample=clip_sample,
                generator=generator,
                use_clipped_model_output=use_clipped_model_output,
            )
            if callback is not None:
                callback(t, x)
    return x


def ddim_invert(
    model: nn.Module,
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    *,
    num_steps: int = 50,
    condition: Condition | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """Run deterministic DDIM backwards: clean images ``x0 [B, C, H, W]`` in [-1, 1] -> the noise
    x_T from which :func:`sample_ddim` (η = 0, no clipping, the same steps, labels and guidance)
    approximately returns to ``x0``.

    An η = 0 DDIM step is x_prev = sqrt(ᾱ_prev) x̂_0 + sqrt(1 - ᾱ_prev) ε̂ with
    x̂_0 = (x_t - sqrt(1 - ᾱ_t) ε̂) / sqrt(ᾱ_t): it moves along ε̂ from one noise level to
    another. Read with the levels swapped, the same formula climbs from level t_prev to level t.
    The only thing it lacks is ε̂ at the level it climbs *to*; like diffusers'
    ``DDIMInverseScheduler`` we use ε̂(x_{t_prev}, t) instead, an approximation that improves
    with more steps (smaller jumps). The images must be in model space [-1, 1]; the noise comes
    back on the model's device.
    """
    condition = condition or Condition()
    check_sample_range(x0, what="ddim_invert", sample_range=schedule.sample_range)
    # sample_ddim's jumps in reverse order: (0, -k) first, i.e. from the clean image to level 0.
    steps = ddim_timesteps(schedule.num_timesteps, num_steps)[::-1]
    check_trained_schedule(model, schedule)  # a shipped model knows its own
    x = start_sampling(model, x0.shape, condition, None, x0, "ddim_invert")
    alpha_bar = schedule.alphas_cumprod.to(x.device)
    one = torch.ones((), device=x.device)  # ᾱ of the clean image, "level -1"
    with evaluating(model), torch.no_grad():
        for t, t_prev in tqdm(steps, desc="DDIM inversion", disable=not progress):
            # ε̂ at the level we climb to, t, but from the sample we have, at level t_prev.
            eps = condition.predict(model, x, t)
            a_from, a_to = (alpha_bar[t_prev] if t_prev >= 0 else one), alpha_bar[t]
            x0_hat = (x - (1 - a_from) ** 0.5 * eps) / a_from**0.5
            x = a_to**0.5 * x0_hat + (1 - a_to) ** 0.5 * eps
    return x
