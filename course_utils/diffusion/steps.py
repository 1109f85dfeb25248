"""Lesson 07: one reverse step, from x_t and the predicted noise ε̂ to a less noisy sample.

The model ``model(x_t, t, y=None)`` is trained to predict the noise ε that was added (the
"epsilon" parameterisation). From it, the clean image can be estimated by inverting q_sample:

    x̂_0 = (x_t - sqrt(1 - ᾱ_t) ε̂) / sqrt(ᾱ_t)            (clipped to [-1, 1] when clip_sample)

**DDPM** (:func:`ddpm_step`) samples the posterior q(x_{t-1} | x_t, x̂_0), a Gaussian with

    mean     μ = sqrt(ᾱ_{t-1}) β_t / (1 - ᾱ_t) · x̂_0  +  sqrt(α_t) (1 - ᾱ_{t-1}) / (1 - ᾱ_t) · x_t
    variance σ² = β_t (1 - ᾱ_{t-1}) / (1 - ᾱ_t)            ("fixed_small"; ᾱ_{-1} = 1)

and needs all T steps. **DDIM** (:func:`ddim_step`) jumps from t straight to an earlier t_prev:

    x_{t_prev} = sqrt(ᾱ_prev) x̂_0 + sqrt(1 - ᾱ_prev - σ_t²) ε̂ + σ_t z,
    σ_t = η · sqrt((1 - ᾱ_prev) / (1 - ᾱ_t)) · sqrt(1 - ᾱ_t / ᾱ_prev),

deterministic for η = 0 and DDPM-like for η = 1, so 50 steps often look as good as 1000. The final
jump goes to "t_prev = -1", i.e. ᾱ_prev = 1: the clean image itself. :func:`ddim_timesteps` lists
the jumps of a whole DDIM run.
"""

from __future__ import annotations

import torch

from ..checks import check_timesteps
from .schedule import NoiseSchedule, draw_noise

__all__ = ["ddpm_step", "ddim_step", "ddim_timesteps"]


def _step_noise(
    like: torch.Tensor, noise: torch.Tensor | None, generator: torch.Generator | None
) -> torch.Tensor:
    """The fresh Gaussian noise z of a sampling step, shaped like ``like``: either given
    (``noise``) or drawn from ``generator`` with :func:`draw_noise`, as diffusers draws it."""
    if noise is not None and generator is not None:
        raise ValueError("pass either noise or generator, not both")
    if noise is not None:
        if noise.shape != like.shape:
            raise ValueError(f"noise must have shape {tuple(like.shape)}, got {tuple(noise.shape)}")
        return noise
    return draw_noise(like.shape, generator, like.device, like.dtype)


def _check_step_inputs(model_output: torch.Tensor, x_t: torch.Tensor) -> None:
    if model_output.shape != x_t.shape:
        raise ValueError(
            f"model_output (predicted noise) must have x_t's shape {tuple(x_t.shape)}, "
            f"got {tuple(model_output.shape)}"
        )


def _predict_x0(
    schedule: NoiseSchedule,
    model_output: torch.Tensor,
    x_t: torch.Tensor,
    alpha_bar_t: torch.Tensor,
    clip_sample: bool,
) -> torch.Tensor:
    """x̂_0 = (x_t - sqrt(1 - ᾱ_t) ε̂) / sqrt(ᾱ_t), clipped to the schedule's sample range (e.g.
    [-1, 1]) when ``clip_sample``.

    Clipping matters at large t, where dividing by a tiny sqrt(ᾱ_t) amplifies every error in ε̂.
    """
    x0 = (x_t - (1 - alpha_bar_t) ** 0.5 * model_output) / alpha_bar_t**0.5
    if not clip_sample:
        return x0
    if schedule.sample_range is None:
        raise ValueError("clip_sample=True needs a bounded sample_range; pass clip_sample=False")
    return x0.clamp(-schedule.sample_range, schedule.sample_range)


def ddpm_step(
    schedule: NoiseSchedule,
    model_output: torch.Tensor,
    t: int,
    x_t: torch.Tensor,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    clip_sample: bool = True,
) -> torch.Tensor:
    """One DDPM reverse step x_t -> x_{t-1}, sampled from the posterior q(x_{t-1} | x_t, x̂_0).

    Equal to diffusers' ``DDPMScheduler.step(model_output, t, x_t, generator=...).prev_sample``
    (``variance_type="fixed_small"``, ``prediction_type="epsilon"``).

    Args:
        model_output: the predicted noise ε̂ [B, ...], shaped like ``x_t``.
        t: the current timestep, one Python int for the whole batch, in [0, T).
        x_t: the current samples [B, ...].
        noise: the fresh noise z [B, ...] to use; by default drawn from ``generator``
            (``torch.randn(x_t.shape, generator=generator)``). At t = 0 no noise is added and
            none is drawn, so the generator is left untouched, as in diffusers.
        clip_sample: clip x̂_0 to [-1, 1] before forming the posterior mean.

    Returns:
        x_{t-1} [B, ...]; at t = 0 the (clipped) x̂_0 itself.
    """
    check_timesteps(torch.as_tensor(t), what="ddpm_step", num_timesteps=schedule.num_timesteps)
    t = int(t)
    _check_step_inputs(model_output, x_t)
    alpha_bar = schedule.alphas_cumprod.to(x_t.device)
    alpha_bar_t = alpha_bar[t]
    # ᾱ_{-1} = 1: before the first noising step there is no noise at all.
    alpha_bar_prev = alpha_bar[t - 1] if t > 0 else torch.ones((), device=x_t.device)
    # α_t and β_t written through ᾱ (ᾱ_t / ᾱ_{t-1} = α_t), exactly as diffusers computes them.
    alpha_t = alpha_bar_t / alpha_bar_prev
    beta_t = 1 - alpha_t

    x0 = _predict_x0(schedule, model_output, x_t, alpha_bar_t, clip_sample)
    # Posterior mean μ = c0 x̂_0 + ct x_t (DDPM paper, eq. 7).
    c0 = alpha_bar_prev**0.5 * beta_t / (1 - alpha_bar_t)
    ct = alpha_t**0.5 * (1 - alpha_bar_prev) / (1 - alpha_bar_t)
    mean = c0 * x0 + ct * x_t
    if t == 0:
        return mean
    # Posterior variance σ² = β_t (1 - ᾱ_{t-1}) / (1 - ᾱ_t), clamped like diffusers.
    variance = ((1 - alpha_bar_prev) / (1 - alpha_bar_t) * beta_t).clamp(min=1e-20)
    return mean + variance**0.5 * _step_noise(model_output, noise, generator)


def ddim_step(
    schedule: NoiseSchedule,
    model_output: torch.Tensor,
    t: int,
    t_prev: int,
    x_t: torch.Tensor,
    eta: float = 0.0,
    clip_sample: bool = True,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    use_clipped_model_output: bool = False,
) -> torch.Tensor:
    """One DDIM step x_t -> x_{t_prev}, possibly skipping many timesteps.

    Equal to diffusers' ``DDIMScheduler.step(model_output, t, x_t, eta=eta).prev_sample`` with
    ``set_alpha_to_one=True`` when ``t_prev = t - T // num_inference_steps``.

    Args:
        model_output: the predicted noise ε̂ [B, ...], shaped like ``x_t``.
        t: the current timestep (one int for the whole batch) in [0, T).
        t_prev: the timestep to jump to, smaller than ``t``; a negative value marks the final step,
            which lands on the clean image (ᾱ_prev = 1).
        x_t: the current samples [B, ...].
        eta: 0 for deterministic DDIM, 1 for DDPM-like noise; must lie in [0, 1].
        noise / generator: the fresh noise z when eta > 0, as in :func:`ddpm_step`. Like diffusers,
            noise is drawn at *every* step when eta > 0, even the final one where σ_t = 0.
        use_clipped_model_output: re-derive ε̂ from the *clipped* x̂_0 before re-noising (diffusers'
            option of the same name, off by default there too). Clipping x̂_0 but re-noising with
            the raw ε̂ makes the two parts disagree; with strong classifier-free guidance, when ε̂
            often pushes x̂_0 out of [-1, 1], deterministic DDIM then drifts away from the data.

    Returns:
        x_{t_prev} [B, ...].
    """
    check_timesteps(torch.as_tensor(t), what="ddim_step", num_timesteps=schedule.num_timesteps)
    t, t_prev = int(t), int(t_prev)
    if t_prev >= t:
        raise ValueError(f"t_prev must be smaller than t = {t}, got {t_prev}")
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in [0, 1], got {eta}")
    _check_step_inputs(model_output, x_t)
    alpha_bar = schedule.alphas_cumprod.to(x_t.device)
    alpha_bar_t = alpha_bar[t]
    alpha_bar_prev = alpha_bar[t_prev] if t_prev >= 0 else torch.ones((), device=x_t.device)

    x0 = _predict_x0(schedule, model_output, x_t, alpha_bar_t, clip_sample)
    if use_clipped_model_output:  # the ε̂ that the clipped x̂_0 implies, by inverting q_sample
        model_output = (x_t - alpha_bar_t**0.5 * x0) / (1 - alpha_bar_t) ** 0.5
    variance = (1 - alpha_bar_prev) / (1 - alpha_bar_t) * (1 - alpha_bar_t / alpha_bar_prev)
    sigma = eta * variance**0.5
    # Re-noise x̂_0 to level t_prev: the deterministic part points along the predicted noise.
    x_prev = alpha_bar_prev**0.5 * x0 + (1 - alpha_bar_prev - sigma**2) ** 0.5 * model_output
    if eta > 0:
        x_prev = x_prev + sigma * _step_noise(model_output, noise, generator)
    return x_prev


def ddim_timesteps(num_timesteps: int, num_steps: int) -> list[tuple[int, int]]:
    """The (t, t_prev) pairs of a DDIM run, diffusers' "leading" spacing, last step first.

    With k = T // num_steps the timesteps are (num_steps - 1) k, ..., 2k, k, 0 and each step
    jumps by k, so the last one goes to t_prev = -k < 0 (the clean image). E.g. T = 1000 and
    50 steps: (980, 960), (960, 940), ..., (0, -20). num_steps need not divide T (diffusers
    does not require it), but must lie in [1, T].
    """
    if not 1 <= num_steps <= num_timesteps:
        raise ValueError(f"num_steps must lie in [1, {num_timesteps}] (T), got {num_steps}")
    k = num_timesteps // num_steps
    return [(i * k, (i - 1) * k) for i in reversed(range(num_steps))]
