"""Lesson 07: the noise schedule and the forward process, how training data are noised.

Images live in [-1, 1] (scale [0, 1] images with ``x * 2 - 1``). The *forward process* adds
Gaussian noise in ``T`` small steps t = 0, 1, ..., T-1 (0-based, as in diffusers):

    q(x_{t} | x_{t-1}) = N( sqrt(1 - β_t) x_{t-1}, β_t I ),     α_t = 1 - β_t.

A :class:`NoiseSchedule` fixes the variances β_t. Because Gaussians compose, any step can be
reached from the clean image x_0 in one jump, with ᾱ_t = α_0 α_1 ... α_t (``alphas_cumprod``):

    x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε,     ε ~ N(0, I)              (:func:`q_sample`)

Note the off-by-one trap: t = 0 is already the *first noising step*, so ᾱ_0 = 1 - β_0, not 1.
ᾱ_t falls from almost 1 to almost 0; the signal-to-noise ratio ᾱ_t / (1 - ᾱ_t) tells how much of
the image survives. The "linear" schedule spaces β_t evenly from 1e-4 to 0.02 (DDPM); the
"cosine" schedule (Nichol & Dhariwal) instead defines ᾱ(s) = cos²((s + 0.008) / 1.008 · π/2)
for s = t/T, which destroys information more evenly, and derives β_t = 1 - ᾱ((t+1)/T) / ᾱ(t/T),
clipped at 0.999 because the last β would otherwise be 1 (all signal gone in one step).

Also here: :func:`draw_noise`, the one way the package draws ε so that a seeded generator gives
diffusers' numbers. The data-range check (``checks.check_sample_range``) lives with the others.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ..checks import check_sample_range, check_timesteps

__all__ = ["NoiseSchedule", "trained_schedule", "q_sample"]

#: The kinds of β schedule :class:`NoiseSchedule` knows (its ``beta_schedule`` argument).
BETA_SCHEDULES = ("linear", "cosine")


def _cosine_betas(num_timesteps: int, max_beta: float = 0.999) -> torch.Tensor:
    """β_t of the cosine schedule [T], float32, computed in float64 Python maths like diffusers'
    ``betas_for_alpha_bar`` so that both agree bit for bit."""

    def alpha_bar(s: float) -> float:
        return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [
        min(1 - alpha_bar((i + 1) / num_timesteps) / alpha_bar(i / num_timesteps), max_beta)
        for i in range(num_timesteps)
    ]
    return torch.tensor(betas, dtype=torch.float32)


class NoiseSchedule:
    """The variances of the forward process and the products derived from them.

    Attributes (all float32 tensors [T] on the CPU, indexed by the 0-based timestep t):
        betas: β_t, the variance added at step t.
        alphas: α_t = 1 - β_t.
        alphas_cumprod: ᾱ_t = α_0 ... α_t, the share of x_0's variance left in x_t.

    ``beta_schedule="linear"`` spaces β_t evenly from ``beta_start`` to ``beta_end`` (diffusers'
    ``beta_schedule="linear"``); ``"cosine"`` ignores both and uses the cosine ᾱ with β clipped at
    0.999 (diffusers' ``"squaredcos_cap_v2"``).

    ``sample_range`` is where the data live, [-sample_range, sample_range] (1 for images, like
    diffusers' ``clip_sample_range``): :func:`q_sample` refuses data outside it and ``clip_sample``
    clips x̂_0 to it. ``None`` is for unbounded data such as the VAE latents of latent diffusion:
    nothing is checked or clipped, and :func:`~course_utils.diffusion.train_diffusion` takes the
    data as they are.
    """

    def __init__(
        self,
        num_timesteps: int = 1000,
        beta_schedule: str = "linear",
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        sample_range: float | None = 1.0,
    ) -> None:
        if beta_schedule not in BETA_SCHEDULES:
            raise ValueError(
                f"beta_schedule must be one of {BETA_SCHEDULES}, got {beta_schedule!r}"
            )
        if num_timesteps < 1:
            raise ValueError(f"num_timesteps must be at least 1, got {num_timesteps}")
        self.num_timesteps = num_timesteps
        self.beta_schedule = beta_schedule
        self.sample_range = sample_range
        if beta_schedule == "linear":
            self.betas = torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float32)
        else:
            self.betas = _cosine_betas(num_timesteps)
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)

    def __repr__(self) -> str:
        return (
            f"NoiseSchedule(num_timesteps={self.num_timesteps}, "
            f"beta_schedule={self.beta_schedule!r})"
        )

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio ᾱ_t / (1 - ᾱ_t) at integer timesteps ``t`` (any shape)."""
        check_timesteps(t, what="NoiseSchedule.snr", num_timesteps=self.num_timesteps)
        a = self.alphas_cumprod.to(t.device)[t.long()]
        return a / (1 - a)


def trained_schedule(model: nn.Module) -> NoiseSchedule:
    """The noise schedule ``model`` was trained with, from the configuration that
    ``zoo.load`` gives every shipped model (``model.config["noise_schedule"]``)."""
    trained = _trained_config(model)
    if trained is None:
        raise ValueError(
            f"{type(model).__name__} carries no noise schedule (model.config['noise_schedule']); "
            "models from zoo.load have one, for others pass the NoiseSchedule you trained with"
        )
    return NoiseSchedule(**trained)


def check_trained_schedule(model: nn.Module, schedule: NoiseSchedule) -> None:
    """Refuse to sample ``model`` with a schedule other than the one it was trained with.

    The network learned ε̂ for the noise levels ᾱ_t of *its* schedule; under another schedule
    the same t means another noise level, and the samples are mostly noise -- without any error.
    Models that record no schedule (your own, diffusers') are not checked.
    """
    config = getattr(model, "config", None)
    if isinstance(config, Mapping) and config.get("objective") == "flow matching":
        raise ValueError(
            "this is a flow-matching model (it predicts velocities, not noise): sample it with "
            "sample_euler or sample_heun"
        )
    trained = _trained_config(model)
    if trained is None:
        return
    expected = NoiseSchedule(**trained)
    if (
        expected.num_timesteps != schedule.num_timesteps
        or expected.sample_range != schedule.sample_range
        or not torch.allclose(expected.betas, schedule.betas)
    ):
        raise ValueError(
            f"this model was trained with NoiseSchedule(**{trained}), not {schedule!r} "
            f"(sample_range={schedule.sample_range}); sample it with "
            "trained_schedule(model) = NoiseSchedule(**model.config['noise_schedule'])"
        )


def _trained_config(model: nn.Module) -> dict | None:
    config = getattr(model, "config", None)  # diffusers' models have a config of their own
    return config.get("noise_schedule") if isinstance(config, Mapping) else None


def per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-sample values [B] -> [B, 1, 1, ...] so that they scale every element of ``like``."""
    return values.reshape(-1, *([1] * (like.dim() - 1)))


def draw_noise(
    shape: Sequence[int],
    generator: torch.Generator | None,
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal noise ε of ``shape``, drawn on the generator's device (if any) and then
    moved to ``device``, exactly as diffusers' ``randn_tensor`` draws it: the same seeded CPU
    generator gives the same numbers here and there, whatever device the model runs on."""
    rand_device = generator.device if generator is not None else device
    return torch.randn(tuple(shape), generator=generator, device=rand_device, dtype=dtype).to(
        device
    )


def q_sample(
    schedule: NoiseSchedule, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """Jump from clean images to step t of the forward process in one go.

    x_t = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) ε, the same as diffusers' ``add_noise(x0, noise, t)``.

    Args:
        x0: clean images [B, ...] in [-1, 1].
        t: timesteps [B], integers in [0, T), one per image.
        noise: ε [B, ...], shaped like ``x0`` (usually ``torch.randn_like(x0)``).

    Returns:
        x_t [B, ...].
    """
    if noise.shape != x0.shape:
        raise ValueError(f"noise must have x0's shape {tuple(x0.shape)}, got {tuple(noise.shape)}")
    check_timesteps(t, what="q_sample", num_timesteps=schedule.num_timesteps, length=len(x0))
    check_sample_range(x0, what="q_sample", sample_range=schedule.sample_range)
    alpha_bar = schedule.alphas_cumprod.to(device=x0.device, dtype=x0.dtype)
    alpha_bar = alpha_bar[t.to(x0.device).long()]  # whole-number float steps (diffusers') too
    alpha_bar = per_sample(alpha_bar, x0)
    return alpha_bar**0.5 * x0 + (1 - alpha_bar) ** 0.5 * noise
