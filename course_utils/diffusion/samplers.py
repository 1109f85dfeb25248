"""Whole samplers: from pure noise to images with DDPM or DDIM steps, and DDIM run backwards.

Every sampler is the same short loop: start from noise x (:func:`start_sampling`), then at each
timestep ask the model for ε̂ (:func:`~course_utils.diffusion.guided_prediction`, with
classifier-free guidance when asked) and take one step (:func:`~course_utils.diffusion.ddpm_step`
or :func:`~course_utils.diffusion.ddim_step`). Deterministic DDIM can also be run backwards
(:func:`ddim_invert`): an image -> the noise that regenerates it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn
from tqdm.auto import tqdm

from .guidance import guided_prediction
from .schedule import NoiseSchedule, check_sample_range, check_trained_schedule, draw_noise
from .steps import ddim_step, ddim_timesteps, ddpm_step

__all__ = ["start_sampling", "sampling_mode", "sample_ddpm", "sample_ddim", "ddim_invert"]


def start_sampling(
    model: nn.Module,
    shape: Sequence[int],
    *,
    y: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    guidance_scale: float = 1.0,
    null_class: int | None = None,
    device: torch.device | str | None = None,
    x_T: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Check a sampler's arguments and return its starting point: ``(x, y)`` on the sampling
    device (by default the model's), x [B, ...] = ``x_T`` if given, else pure noise of ``shape``
    drawn from ``generator``."""
    if y is not None and tuple(y.shape) != (shape[0],):
        raise ValueError(
            f"y must hold one label per sample, shape [{shape[0]}], got {tuple(y.shape)}"
        )
    if guidance_scale != 1.0 and (y is None or null_class is None):
        raise ValueError("guidance_scale != 1 needs labels y and the null_class index")
    if x_T is not None and tuple(x_T.shape) != tuple(shape):
        raise ValueError(f"x_T must have shape {tuple(shape)}, got {tuple(x_T.shape)}")
    if device is None:
        device = next(model.parameters(), torch.empty(0)).device
    x = draw_noise(shape, generator, device) if x_T is None else x_T.to(device)
    return x, None if y is None else y.to(device)


@contextmanager
def sampling_mode(model: nn.Module) -> Iterator[None]:
    """Run the block with ``model`` in eval mode (dropout off, batch-norm statistics frozen) and
    without gradients, then give the model back in the train/eval mode it came in."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def sample_ddpm(
    model: nn.Module,
    schedule: NoiseSchedule,
    shape: Sequence[int],
    y: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
    guidance_scale: float = 1.0,
    null_class: int | None = None,
    clip_sample: bool = True,
    device: torch.device | str | None = None,
    callback: Callable[[int, torch.Tensor], None] | None = None,
    x_T: torch.Tensor | None = None,
) -> torch.Tensor:
    """Generate images with all T DDPM steps, from x_{T-1} ~ N(0, I) down to x_0.

    Args:
        model: ``model(x, t, y=None)`` -> ε̂, with x [B, ...], t [B] long, y [B] long or None.
        shape: the output shape [B, C, H, W].
        y: class labels [B] for a conditional model, or None.
        generator: seeds the initial noise and every step's noise (reproducible samples).
        guidance_scale: classifier-free guidance scale; 1 runs the model once on y, other values
            run it on y and on ``null_class`` (the label the model saw when the class was dropped).
            Any other label works as ``null_class`` too: guidance then also pushes away from that
            class, a "negative prompt" (lesson 08).
        clip_sample: clip x̂_0 to [-1, 1] at every step; then the result lies in [-1, 1].
        device: where to sample; by default the device of the model's parameters.
        callback: called as ``callback(t, x)`` after each step with the new sample x_{t-1}, e.g.
            to keep a filmstrip of every 100th step.
        x_T: the starting noise [B, C, H, W] instead of a draw from ``generator``, e.g. to
            compare samplers or guidance scales on the same noise.

    Returns:
        x_0 [B, C, H, W]. The model is evaluated in eval mode under ``torch.no_grad()`` and given
        back in the train/eval mode it came in.
    """
    check_trained_schedule(model, schedule)  # a shipped model knows its own
    x, y = start_sampling(
        model,
        shape,
        y=y,
        generator=generator,
        guidance_scale=guidance_scale,
        null_class=null_class,
        device=device,
        x_T=x_T,
    )
    timesteps = range(schedule.num_timesteps - 1, -1, -1)  # every one: T-1, ..., 1, 0
    with sampling_mode(model):
        for t in tqdm(timesteps, desc="DDPM", disable=not progress):
            # Predict the noise in x_t, then sample x_{t-1} from the posterior.
            eps = guided_prediction(
                model, x, t, y=y, guidance_scale=guidance_scale, null_class=null_class
            )
            x = ddpm_step(schedule, eps, t, x, generator=generator, clip_sample=clip_sample)
            if callback is not None:
                callback(t, x)
    return x


def sample_ddim(
    model: nn.Module,
    schedule: NoiseSchedule,
    shape: Sequence[int],
    num_steps: int = 50,
    eta: float = 0.0,
    y: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
    guidance_scale: float = 1.0,
    null_class: int | None = None,
    clip_sample: bool = True,
    device: torch.device | str | None = None,
    callback: Callable[[int, torch.Tensor], None] | None = None,
    use_clipped_model_output: bool = False,
    x_T: torch.Tensor | None = None,
) -> torch.Tensor:
    """Generate images with ``num_steps`` DDIM steps on the timesteps of :func:`ddim_timesteps`.

    Arguments as in :func:`sample_ddpm` (including ``x_T``), plus ``num_steps`` (in [1, T]),
    ``eta`` (0: deterministic, the same noise always gives the same image; 1: as noisy as DDPM)
    and ``use_clipped_model_output`` (see :func:`ddim_step`; worth turning on with strong
    guidance). The callback receives ``(t, x_{t_prev})``.

    Returns:
        x_0 [B, C, H, W].
    """
    steps = ddim_timesteps(schedule.num_timesteps, num_steps)
    check_trained_schedule(model, schedule)  # a shipped model knows its own
    x, y = start_sampling(
        model,
        shape,
        y=y,
        generator=generator,
        guidance_scale=guidance_scale,
        null_class=null_class,
        device=device,
        x_T=x_T,
    )
    with sampling_mode(model):
        # num_steps jumps t -> t_prev, each skipping T // num_steps timesteps.
        for t, t_prev in tqdm(steps, desc="DDIM", disable=not progress):
            eps = guided_prediction(
                model, x, t, y=y, guidance_scale=guidance_scale, null_class=null_class
            )
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
    num_steps: int = 50,
    y: torch.Tensor | None = None,
    guidance_scale: float = 1.0,
    null_class: int | None = None,
    device: torch.device | str | None = None,
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
    with more steps (smaller jumps). The images must be in model space [-1, 1].
    """
    check_sample_range(schedule, x0)
    # sample_ddim's jumps in reverse order: (0, -k) first, i.e. from the clean image to level 0.
    steps = ddim_timesteps(schedule.num_timesteps, num_steps)[::-1]
    check_trained_schedule(model, schedule)  # a shipped model knows its own
    x, y = start_sampling(
        model,
        x0.shape,
        y=y,
        guidance_scale=guidance_scale,
        null_class=null_class,
        device=device,
        x_T=x0,
    )
    alpha_bar = schedule.alphas_cumprod.to(x.device)
    one = torch.ones((), device=x.device)  # ᾱ of the clean image, "level -1"
    with sampling_mode(model):
        for t, t_prev in tqdm(steps, desc="DDIM inversion", disable=not progress):
            # ε̂ at the level we climb to, t, but from the sample we have, at level t_prev.
            eps = guided_prediction(
                model, x, t, y=y, guidance_scale=guidance_scale, null_class=null_class
            )
            a_from, a_to = (alpha_bar[t_prev] if t_prev >= 0 else one), alpha_bar[t]
            x0_hat = (x - (1 - a_from) ** 0.5 * eps) / a_from**0.5
            x = a_to**0.5 * x0_hat + (1 - a_to) ** 0.5 * eps
    return x
