"""Denoising diffusion: noise schedules, the forward process, DDPM and DDIM sampling, guidance.

A diffusion model learns to undo a fixed, gradual noising of the data. Images live in [-1, 1]
(scale [0, 1] images with ``x * 2 - 1``). The *forward process* adds Gaussian noise in
``T`` small steps t = 0, 1, ..., T-1 (0-based, as in diffusers):

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
jump goes to "t_prev = -1", i.e. ᾱ_prev = 1: the clean image itself. Deterministic DDIM can also
be run backwards (:func:`ddim_invert`): an image -> the noise that regenerates it.

**Classifier-free guidance** (:func:`classifier_free_guidance`) trains one model both with class
labels and with a "null" label, then extrapolates away from the unconditional prediction:
ε̂ = ε̂_uncond + s (ε̂_cond - ε̂_uncond). s = 1 is plain conditional sampling, s > 1 trades variety
for images that look more like their class.

**Classifier guidance** (:class:`ClassifierGuidance`), the older alternative, steers an
unconditional model with the gradient of a separate classifier of noisy images
(:class:`NoisyClassifier`): ε̂ - s sqrt(1 - ᾱ_t) ∇ log p(y | x_t).

**Flow matching** (:func:`fm_path`, :func:`flow_matching_loss`, :func:`sample_euler`,
:func:`sample_heun`) keeps the network and the training loop but changes the question: along the
straight line x_t = (1 - t) ε + t x_1 from noise (t = 0) to data (t = 1) it learns the velocity
x_1 - ε, and samples by integrating that velocity field as an ODE in a handful of steps.

Training (:func:`diffusion_loss`) is plain regression: pick a random t and ε, form x_t with
q_sample and minimise ||ε̂(x_t, t, y) - ε||²; replacing y by the null label with probability
``p_uncond`` teaches the same network the unconditional prediction that guidance needs.
:class:`ConditionalUNet` is a small such network for 16x16 digits.

Sample quality is measured in :mod:`course_utils.quality`.

Every function here matches Hugging Face diffusers' ``DDPMScheduler`` / ``DDIMScheduler``
(default settings, "leading" timestep spacing) to float32 precision; the tests check it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm

from .train import fit

__all__ = [
    "SCHEDULES",
    "NoiseSchedule",
    "q_sample",
    "ddpm_step",
    "ddim_step",
    "ddim_timesteps",
    "classifier_free_guidance",
    "sample_ddpm",
    "sample_ddim",
    "ddim_invert",
    "timestep_embedding",
    "ConditionalUNet",
    "diffusion_loss",
    "EMA",
    "train_diffusion",
    "FLOW_TIME_SCALE",
    "fm_path",
    "fm_target",
    "flow_matching_loss",
    "train_flow_matching",
    "sample_euler",
    "sample_heun",
    "NoisyClassifier",
    "train_noisy_classifier",
    "ClassifierGuidance",
]

#: The noise schedules :class:`NoiseSchedule` knows.
SCHEDULES = ("linear", "cosine")


# --------------------------------------------------------------------------------------------
# Noise schedule and forward process
# --------------------------------------------------------------------------------------------


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

    ``schedule="linear"`` spaces β_t evenly from ``beta_start`` to ``beta_end`` (diffusers'
    ``beta_schedule="linear"``); ``"cosine"`` ignores both and uses the cosine ᾱ with β clipped at
    0.999 (diffusers' ``"squaredcos_cap_v2"``).

    ``sample_range`` is where the data live, [-sample_range, sample_range] (1 for images, like
    diffusers' ``clip_sample_range``): :func:`q_sample` refuses data outside it and ``clip_sample``
    clips x̂_0 to it. ``None`` is for unbounded data such as the VAE latents of latent diffusion:
    nothing is checked or clipped, and :func:`train_diffusion` takes the data as they are.
    """

    def __init__(
        self,
        num_timesteps: int = 1000,
        schedule: str = "linear",
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        sample_range: float | None = 1.0,
    ) -> None:
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        if num_timesteps < 1:
            raise ValueError(f"num_timesteps must be at least 1, got {num_timesteps}")
        self.num_timesteps = num_timesteps
        self.schedule = schedule
        self.sample_range = sample_range
        if schedule == "linear":
            self.betas = torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float32)
        else:
            self.betas = _cosine_betas(num_timesteps)
        self.alphas = 1.0 - self.betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)

    def __repr__(self) -> str:
        return f"NoiseSchedule(num_timesteps={self.num_timesteps}, schedule={self.schedule!r})"

    def snr(self, t: torch.Tensor) -> torch.Tensor:
        """Signal-to-noise ratio ᾱ_t / (1 - ᾱ_t) at integer timesteps ``t`` (any shape)."""
        _check_timesteps(self, t)
        a = self.alphas_cumprod.to(t.device)[t]
        return a / (1 - a)


def _check_timesteps(schedule: NoiseSchedule, t: torch.Tensor | int) -> None:
    """Timesteps must be integers in [0, T): t = 0 is the first noising step, T - 1 the last."""
    if isinstance(t, torch.Tensor):
        if t.is_floating_point() or t.is_complex():
            raise ValueError(f"timesteps must be integers (torch.long), got dtype {t.dtype}")
        bad = t.numel() > 0 and (t.min() < 0 or t.max() >= schedule.num_timesteps)
    else:
        bad = not 0 <= t < schedule.num_timesteps
    if bad:
        raise ValueError(f"timesteps must lie in [0, {schedule.num_timesteps}) (0-based), got {t}")


def _check_sample_range(schedule: NoiseSchedule, x: torch.Tensor, name: str = "x0") -> None:
    """Data must lie in the schedule's [-sample_range, sample_range] (unless it is None)."""
    bound = schedule.sample_range
    # A small tolerance: x * 2 - 1 can round a hair outside [-1, 1].
    if bound is None or x.numel() == 0 or x.abs().max() <= bound + 1e-4:
        return
    raise ValueError(
        f"{name} must lie in [-{bound:g}, {bound:g}], got values in [{x.min():.3g}, {x.max():.3g}]; "
        "scale images from [0, 1] with x * 2 - 1 (unbounded data such as latents need "
        "NoiseSchedule(sample_range=None))"
    )


def _broadcast(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-sample values [B] -> [B, 1, 1, ...] so that they scale every element of ``like``."""
    return values.reshape(-1, *([1] * (like.dim() - 1)))


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
    if t.shape != (x0.shape[0],):
        raise ValueError(f"t must have shape [B] = [{x0.shape[0]}], got {tuple(t.shape)}")
    _check_timesteps(schedule, t)
    _check_sample_range(schedule, x0)
    alpha_bar = schedule.alphas_cumprod.to(device=x0.device, dtype=x0.dtype)[t.to(x0.device)]
    alpha_bar = _broadcast(alpha_bar, x0)
    return alpha_bar**0.5 * x0 + (1 - alpha_bar) ** 0.5 * noise


# --------------------------------------------------------------------------------------------
# One reverse step: DDPM and DDIM
# --------------------------------------------------------------------------------------------


def _step_noise(
    like: torch.Tensor, noise: torch.Tensor | None, generator: torch.Generator | None
) -> torch.Tensor:
    """The fresh Gaussian noise z of a sampling step, shaped like ``like``.

    Either given (``noise``) or drawn from ``generator`` exactly as diffusers' ``randn_tensor``
    draws it: on the generator's device, then moved, so that the same seeded generator gives the
    same numbers here and in diffusers.
    """
    if noise is not None and generator is not None:
        raise ValueError("pass either noise or generator, not both")
    if noise is not None:
        if noise.shape != like.shape:
            raise ValueError(f"noise must have shape {tuple(like.shape)}, got {tuple(noise.shape)}")
        return noise
    return _randn(like.shape, generator, like.device, like.dtype)


def _randn(
    shape: Sequence[int],
    generator: torch.Generator | None,
    device: torch.device | str,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Standard normal noise drawn on the generator's device (if any), then moved to ``device``."""
    rand_device = generator.device if generator is not None else device
    return torch.randn(tuple(shape), generator=generator, device=rand_device, dtype=dtype).to(
        device
    )


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
    t = int(t)
    _check_timesteps(schedule, t)
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
    t, t_prev = int(t), int(t_prev)
    _check_timesteps(schedule, t)
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


# --------------------------------------------------------------------------------------------
# Guidance and samplers
# --------------------------------------------------------------------------------------------


def classifier_free_guidance(
    eps_uncond: torch.Tensor, eps_cond: torch.Tensor, scale: float
) -> torch.Tensor:
    """ε̂ = ε̂_uncond + scale (ε̂_cond - ε̂_uncond): 0 -> unconditional, 1 -> conditional, > 1
    pushes further in the direction the label pulls."""
    return eps_uncond + scale * (eps_cond - eps_uncond)


def _predict(
    model: Callable[..., torch.Tensor],
    x: torch.Tensor,
    t: int | float,
    y: torch.Tensor | None,
    guidance_scale: float,
    null_class: int | None,
) -> torch.Tensor:
    """The model's output (ε̂, or a velocity for flow matching) for the whole batch at time ``t``
    (an integer timestep, or a float flow time), with classifier-free guidance when asked."""
    dtype = torch.long if isinstance(t, int) else torch.float
    t_batch = torch.full((x.shape[0],), t, dtype=dtype, device=x.device)
    if guidance_scale == 1.0:
        return model(x, t_batch, y=y)
    # One forward pass on a doubled batch: the first half with the labels, the second with null.
    y_null = torch.full_like(y, null_class)
    eps = model(torch.cat([x, x]), torch.cat([t_batch, t_batch]), y=torch.cat([y, y_null]))
    eps_cond, eps_uncond = eps.chunk(2)
    return classifier_free_guidance(eps_uncond, eps_cond, guidance_scale)


def _sample(
    model: nn.Module,
    shape: Sequence[int],
    steps: Sequence[tuple[int, int]] | Sequence[tuple[float, float]],
    step: Callable[[torch.Tensor, int, int, torch.Tensor], torch.Tensor],
    y: torch.Tensor | None,
    generator: torch.Generator | None,
    guidance_scale: float,
    null_class: int | None,
    device: torch.device | str | None,
    progress: bool,
    callback: Callable[[int, torch.Tensor], None] | None,
    desc: str,
    x_T: torch.Tensor | None = None,
) -> torch.Tensor:
    """The loop every sampler shares: start from pure noise (or ``x_T``), predict ε̂, step,
    repeat."""
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
    y = None if y is None else y.to(device)

    was_training = model.training
    model.eval()  # dropout off, batch-norm statistics frozen while sampling
    try:
        with torch.no_grad():
            x = _randn(shape, generator, device) if x_T is None else x_T.to(device)
            for t, t_prev in tqdm(steps, desc=desc, disable=not progress):
                eps = _predict(model, x, t, y, guidance_scale, null_class)
                x = step(eps, t, t_prev, x)
                if callback is not None:
                    callback(t, x)
    finally:
        model.train(was_training)
    return x


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

    def step(eps: torch.Tensor, t: int, t_prev: int, x: torch.Tensor) -> torch.Tensor:
        return ddpm_step(schedule, eps, t, x, generator=generator, clip_sample=clip_sample)

    steps = [(t, t - 1) for t in reversed(range(schedule.num_timesteps))]
    return _sample(
        model, shape, steps, step, y, generator, guidance_scale, null_class, device, progress,
        callback, "DDPM", x_T,
    )  # fmt: skip


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

    Arguments as in :func:`sample_ddpm` (including ``x_T``), plus ``num_steps`` (in [1, T]), ``eta`` (0:
    deterministic, the same noise always gives the same image; 1: as noisy as DDPM) and
    ``use_clipped_model_output`` (see :func:`ddim_step`; worth turning on with strong guidance).
    The callback receives ``(t, x_{t_prev})``.

    Returns:
        x_0 [B, C, H, W].
    """

    def step(eps: torch.Tensor, t: int, t_prev: int, x: torch.Tensor) -> torch.Tensor:
        return ddim_step(
            schedule, eps, t, t_prev, x, eta=eta, clip_sample=clip_sample, generator=generator,
            use_clipped_model_output=use_clipped_model_output,
        )  # fmt: skip

    steps = ddim_timesteps(schedule.num_timesteps, num_steps)
    return _sample(
        model, shape, steps, step, y, generator, guidance_scale, null_class, device, progress,
        callback, "DDIM", x_T,
    )  # fmt: skip


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
    _check_sample_range(schedule, x0)
    alpha_bar = schedule.alphas_cumprod

    def step(eps: torch.Tensor, t: int, t_prev: int, x: torch.Tensor) -> torch.Tensor:
        a_from = alpha_bar[t_prev].to(x.device) if t_prev >= 0 else torch.ones((), device=x.device)
        a_to = alpha_bar[t].to(x.device)
        x0_hat = (x - (1 - a_from) ** 0.5 * eps) / a_from**0.5
        return a_to**0.5 * x0_hat + (1 - a_to) ** 0.5 * eps

    steps = list(reversed(ddim_timesteps(schedule.num_timesteps, num_steps)))
    return _sample(
        model, x0.shape, steps, step, y, None, guidance_scale, null_class, device, progress, None,
        "DDIM inversion", x0,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# A small conditional noise-prediction network and its training loss
# --------------------------------------------------------------------------------------------


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps, as for positions in a transformer.

    t [B] -> [B, dim]: sin(t ω_i) and cos(t ω_i) for frequencies ω_i = max_period^(-i / (dim/2)),
    i = 0 ... dim/2 - 1. Nearby timesteps get similar vectors, and the network can read both
    coarse (slow frequencies) and fine (fast ones) differences in t.
    """
    if dim % 2:
        raise ValueError(f"dim must be even, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class _ResBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection; the (time + class) embedding is added
    between them as a per-channel shift, so that every block knows the noise level and the label."""

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(8, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_channels)
        self.norm2 = nn.GroupNorm(8, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Conv2d(in_channels, out_channels, 1)
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class ConditionalUNet(nn.Module):
    """A small U-Net ε̂(x_t, t, y) for 16x16 images, conditioned on timestep and class.

    Two resolutions below the input (16 -> 8 -> 4 and back) with skip connections. The timestep
    goes through :func:`timestep_embedding` and an MLP; the label through a learned embedding with
    ``num_classes + 1`` rows: index ``num_classes`` (:attr:`null_class`) is the "no label" used for
    classifier-free guidance, and ``y=None`` means exactly that.

    Shapes: x [B, in_channels, H, W] with H, W divisible by 4, t [B] long, y [B] long or None
    -> ε̂ [B, in_channels, H, W].
    """

    def __init__(self, in_channels: int = 1, base: int = 32, num_classes: int = 10) -> None:
        super().__init__()
        if base % 8:
            raise ValueError(f"base must be a multiple of 8 (GroupNorm with 8 groups), got {base}")
        self.num_classes = num_classes
        self.null_class = num_classes
        self.base = base
        emb = 4 * base
        self.time_mlp = nn.Sequential(nn.Linear(base, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.label_emb = nn.Embedding(num_classes + 1, emb)
        self.conv_in = nn.Conv2d(in_channels, base, 3, padding=1)
        self.down1 = _ResBlock(base, base, emb)  # 16x16
        self.pool1 = nn.Conv2d(base, base, 3, stride=2, padding=1)
        self.down2 = _ResBlock(base, 2 * base, emb)  # 8x8
        self.pool2 = nn.Conv2d(2 * base, 2 * base, 3, stride=2, padding=1)
        self.mid = _ResBlock(2 * base, 2 * base, emb)  # 4x4
        self.up2 = _ResBlock(4 * base, 2 * base, emb)  # 8x8, after concatenating the skip
        self.up1 = _ResBlock(3 * base, base, emb)  # 16x16
        self.norm_out = nn.GroupNorm(8, base)
        self.conv_out = nn.Conv2d(base, in_channels, 3, padding=1)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        if x.shape[-2] % 4 or x.shape[-1] % 4:
            raise ValueError(f"height and width must be divisible by 4, got {tuple(x.shape[-2:])}")
        if y is None:
            y = torch.full((x.shape[0],), self.null_class, dtype=torch.long, device=x.device)
        elif y.numel() and (y.min() < 0 or y.max() > self.null_class):
            unknown = sorted({v for v in y.tolist() if not 0 <= v <= self.null_class})
            raise ValueError(
                f"class labels must lie in [0, {self.num_classes}) (or {self.null_class}, the null "
                f"class); this model does not know {unknown}"
            )
        emb = self.time_mlp(timestep_embedding(t, self.base)) + self.label_emb(y)
        h1 = self.down1(self.conv_in(x), emb)
        h2 = self.down2(self.pool1(h1), emb)
        h = self.mid(self.pool2(h2), emb)
        h = self.up2(torch.cat([F.interpolate(h, scale_factor=2.0), h2], dim=1), emb)
        h = self.up1(torch.cat([F.interpolate(h, scale_factor=2.0), h1], dim=1), emb)
        return self.conv_out(F.silu(self.norm_out(h)))


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
    batch, device = x0.shape[0], x0.device
    rand_device = generator.device if generator is not None else device
    t = torch.randint(
        0, schedule.num_timesteps, (batch,), generator=generator, device=rand_device
    ).to(device)
    noise = _randn(x0.shape, generator, device, x0.dtype)
    y = _drop_labels(model, y, p_uncond, null_class, generator)
    return F.mse_loss(model(q_sample(schedule, x0, t, noise), t, y=y), noise)


def _drop_labels(
    model: nn.Module,
    y: torch.Tensor | None,
    p_uncond: float,
    null_class: int | None,
    generator: torch.Generator | None,
) -> torch.Tensor | None:
    """Conditioning dropout: each label becomes ``null_class`` (default ``model.null_class``)
    with probability ``p_uncond``."""
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


# --------------------------------------------------------------------------------------------
# Training with an exponential moving average
# --------------------------------------------------------------------------------------------


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


def _seeded_loader(
    images: torch.Tensor, labels: torch.Tensor, batch_size: int, seed: int, rescale: bool = True
) -> tuple[DataLoader, torch.Generator]:
    """Batches of (images scaled to [-1, 1], labels) in a seeded order, plus a second seeded
    generator for the timesteps and noise: the same call trains the same weights on the CPU.
    ``rescale=False`` batches the data as they are (latents)."""
    if rescale:
        if images.min() < 0 or images.max() > 1:
            raise ValueError("images must be in [0, 1]; they are scaled to [-1, 1] here")
        images = images * 2 - 1
    loader = DataLoader(
        TensorDataset(images, labels), batch_size, shuffle=True, drop_last=True,
        generator=torch.Generator().manual_seed(seed),
    )  # fmt: skip
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
) -> tuple[nn.Module, list[float]]:
    """Train an ε-prediction model on ``images [N, C, H, W]`` in [0, 1] (scaled to [-1, 1] here)
    with :func:`diffusion_loss`, AdamW and an :class:`EMA` of the weights. With a schedule whose
    ``sample_range`` is None, ``images`` are unbounded data (latents) and are used as they are.

    ``labels [N]`` (or None for an unconditional model) are dropped to the null class with
    probability ``p_uncond``. Batches, timesteps and noise come from generators seeded with
    ``seed``: on the CPU the same call gives the same weights. Returns ``(ema_model, training loss
    per epoch)``; ``model`` itself holds the last, un-averaged weights.
    """

    def loss(model, x0, y, generator):
        return diffusion_loss(model, schedule, x0, y, p_uncond, generator=generator)

    rescale = schedule.sample_range is not None
    return _train_denoiser(
        model, loss, images, labels, epochs, lr, batch_size, ema_decay, seed, device, progress,
        rescale,
    )  # fmt: skip


def _train_denoiser(
    model: nn.Module,
    loss: Callable[[nn.Module, torch.Tensor, torch.Tensor | None, torch.Generator], torch.Tensor],
    images: torch.Tensor,
    labels: torch.Tensor | None,
    epochs: int,
    lr: float,
    batch_size: int,
    ema_decay: float,
    seed: int,
    device: torch.device | str | None,
    progress: bool,
    rescale: bool = True,
) -> tuple[nn.Module, list[float]]:
    """The loop :func:`train_diffusion` and :func:`train_flow_matching` share: seeded batches
    (images scaled from [0, 1] to [-1, 1] when ``rescale``), ``loss(model, x0, y, generator)`` per
    batch, AdamW, EMA after every step."""
    targets = labels if labels is not None else torch.zeros(len(images), dtype=torch.long)
    loader, noise = _seeded_loader(images, targets, batch_size, seed, rescale)

    def step(model: nn.Module, batch, device) -> torch.Tensor:
        x0, y = (v.to(device) for v in batch)
        return loss(model, x0, y if labels is not None else None, noise)

    ema = EMA(model, ema_decay)
    history = fit(
        model, loader, epochs=epochs, optimizer=torch.optim.AdamW(model.parameters(), lr=lr),
        train_step=step, after_step=lambda: ema.update(model), device=device, progress=progress,
    )  # fmt: skip
    return ema.model, history.train_loss


# --------------------------------------------------------------------------------------------
# Flow matching: straight paths from noise to data, sampled by solving an ODE
# --------------------------------------------------------------------------------------------

#: Flow time t in [0, 1] reaches the network as t * FLOW_TIME_SCALE, so that the sinusoidal
#: timestep embedding of :class:`ConditionalUNet` sees the same range as diffusion's timesteps.
FLOW_TIME_SCALE = 1000.0


def _check_flow_time(t: torch.Tensor, batch: int) -> None:
    if t.shape != (batch,):
        raise ValueError(f"t must have shape [B] = [{batch}], got {tuple(t.shape)}")
    if not t.is_floating_point() or t.min() < 0 or t.max() > 1:
        raise ValueError("flow times t must be floats in [0, 1] (0 = noise, 1 = data)")


def fm_path(x1: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A point on the straight path from noise to data (rectified flow, or conditional flow
    matching with σ_min = 0): x_t = (1 - t) ε + t x_1.

    Time runs from t = 0 (pure noise ε) to t = 1 (the data x_1), as in Lipman et al. and Liu et
    al. Diffusers' ``FlowMatchEulerDiscreteScheduler`` runs the other way, σ = 1 - t from 1 (noise)
    to 0 (data), and its models predict ε - x_1, our velocity with the opposite sign.

    Args:
        x1: data [B, ...] in [-1, 1]. noise: ε [B, ...], shaped like x1. t: [B] floats in [0, 1].
    """
    if noise.shape != x1.shape:
        raise ValueError(f"noise must have x1's shape {tuple(x1.shape)}, got {tuple(noise.shape)}")
    _check_flow_time(t, x1.shape[0])
    t = _broadcast(t.to(x1.dtype), x1)
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

    Same shape as :func:`diffusion_loss`, with the same conditioning dropout, so one
    :class:`ConditionalUNet` can be trained either way; only the target and time differ.
    """
    rand_device = generator.device if generator is not None else x1.device
    t = torch.rand(x1.shape[0], generator=generator, device=rand_device).to(x1.device)
    noise = _randn(x1.shape, generator, x1.device, x1.dtype)
    y = _drop_labels(model, y, p_uncond, null_class, generator)
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
) -> tuple[nn.Module, list[float]]:
    """:func:`train_diffusion` with :func:`flow_matching_loss`: a velocity model instead of an
    ε-model, same arguments (no schedule), same seeding, EMA and return value."""

    def loss(model, x1, y, generator):
        return flow_matching_loss(model, x1, y, p_uncond, generator=generator)

    return _train_denoiser(
        model, loss, images, labels, epochs, lr, batch_size, ema_decay, seed, device, progress
    )


def _sample_flow(
    model: nn.Module,
    shape: Sequence[int],
    num_steps: int,
    heun: bool,
    y: torch.Tensor | None,
    generator: torch.Generator | None,
    guidance_scale: float,
    null_class: int | None,
    device: torch.device | str | None,
    progress: bool,
    callback: Callable[[int, torch.Tensor], None] | None,
    x_T: torch.Tensor | None,
) -> torch.Tensor:
    """Integrate dx/dt = v(x, t) from t = 0 (noise) to t = 1 on ``num_steps`` equal steps."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be at least 1, got {num_steps}")
    times = torch.linspace(0, FLOW_TIME_SCALE, num_steps + 1).tolist()

    def step(v: torch.Tensor, t: float, t_next: float, x: torch.Tensor) -> torch.Tensor:
        h = (t_next - t) / FLOW_TIME_SCALE
        x_euler = x + h * v  # Euler: follow the velocity at the start of the step
        if not heun:
            return x_euler
        # Heun: also evaluate the velocity where Euler lands and follow the average of the two.
        v_next = _predict(model, x_euler, t_next, y, guidance_scale, null_class)
        return x + h / 2 * (v + v_next)

    return _sample(
        model, shape, list(zip(times[:-1], times[1:])), step, y, generator, guidance_scale,
        null_class, device, progress, callback, "Heun" if heun else "Euler", x_T,
    )  # fmt: skip


def sample_euler(
    model: nn.Module,
    shape: Sequence[int],
    num_steps: int = 20,
    y: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
    guidance_scale: float = 1.0,
    null_class: int | None = None,
    device: torch.device | str | None = None,
    callback: Callable[[int, torch.Tensor], None] | None = None,
    x_T: torch.Tensor | None = None,
) -> torch.Tensor:
    """Generate with a flow-matching velocity model ``model(x, t * FLOW_TIME_SCALE, y)`` by
    Euler's method: x_{t+h} = x_t + h v(x_t, t), ``num_steps`` equal steps from t = 0 (noise
    drawn from ``generator``, or ``x_T``) to t = 1. One model call per step; the error shrinks
    like 1 / num_steps (first order). Other arguments as in :func:`sample_ddim`; the callback gets
    ``(t * FLOW_TIME_SCALE, x)``.

    Returns:
        x_1 [B, C, H, W], the generated images (not clipped).
    """
    return _sample_flow(
        model, shape, num_steps, False, y, generator, guidance_scale, null_class, device,
        progress, callback, x_T,
    )  # fmt: skip


def sample_heun(
    model: nn.Module,
    shape: Sequence[int],
    num_steps: int = 10,
    y: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
    guidance_scale: float = 1.0,
    null_class: int | None = None,
    device: torch.device | str | None = None,
    callback: Callable[[int, torch.Tensor], None] | None = None,
    x_T: torch.Tensor | None = None,
) -> torch.Tensor:
    """Like :func:`sample_euler` with Heun's method (the explicit trapezoidal rule): an Euler
    step predicts x_{t+h}, the velocity there is averaged with the one at x_t. Two model calls per
    step, error like 1 / num_steps² (second order): compare at equal calls, i.e. Heun with N
    steps against Euler with 2N."""
    return _sample_flow(
        model, shape, num_steps, True, y, generator, guidance_scale, null_class, device, progress,
        callback, x_T,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# Classifier guidance: steering with the gradient of a noise-aware classifier
# --------------------------------------------------------------------------------------------


class NoisyClassifier(nn.Module):
    """A classifier of *noisy* images, p(y | x_t, t): the encoder half of :class:`ConditionalUNet`
    followed by global average pooling and a linear layer.

    Classifier guidance needs ∇ log p(y | x_t) at every sampling step, that is on images at every
    noise level. An ordinary classifier has only seen clean digits, and its gradient on a noisy x_t
    points nowhere useful; this one is trained on q_sample(x_0, t) (:func:`train_noisy_classifier`)
    and, like the denoiser, is told t.

    Shapes: x [B, in_channels, H, W] (H, W divisible by 4), t [B] long -> logits [B, num_classes].
    """

    def __init__(self, in_channels: int = 1, base: int = 32, num_classes: int = 10) -> None:
        super().__init__()
        if base % 8:
            raise ValueError(f"base must be a multiple of 8 (GroupNorm with 8 groups), got {base}")
        self.num_classes = num_classes
        self.base = base
        emb = 4 * base
        self.time_mlp = nn.Sequential(nn.Linear(base, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.conv_in = nn.Conv2d(in_channels, base, 3, padding=1)
        self.block1 = _ResBlock(base, base, emb)  # 16x16
        self.pool1 = nn.Conv2d(base, base, 3, stride=2, padding=1)
        self.block2 = _ResBlock(base, 2 * base, emb)  # 8x8
        self.pool2 = nn.Conv2d(2 * base, 2 * base, 3, stride=2, padding=1)
        self.block3 = _ResBlock(2 * base, 2 * base, emb)  # 4x4
        self.norm = nn.GroupNorm(8, 2 * base)
        self.fc = nn.Linear(2 * base, num_classes)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] % 4 or x.shape[-1] % 4:
            raise ValueError(f"height and width must be divisible by 4, got {tuple(x.shape[-2:])}")
        emb = self.time_mlp(timestep_embedding(t, self.base))
        h = self.block1(self.conv_in(x), emb)
        h = self.block2(self.pool1(h), emb)
        h = self.block3(self.pool2(h), emb)
        return self.fc(F.silu(self.norm(h)).mean(dim=(2, 3)))


def train_noisy_classifier(
    classifier: nn.Module,
    schedule: NoiseSchedule,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    lr: float = 1e-3,
    batch_size: int = 128,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> list[float]:
    """Train ``classifier(x_t, t)`` with cross-entropy on ``images [N, C, H, W]`` in [0, 1],
    each batch noised to a random timestep t ~ U{0, ..., T-1} with :func:`q_sample`.

    At large t the label is unrecoverable and the best the classifier can do is a flat
    distribution, so the loss never reaches 0. Seeded like :func:`train_diffusion`. Returns the
    training loss per epoch.
    """
    loader, noise = _seeded_loader(images, labels, batch_size, seed)

    def step(classifier: nn.Module, batch, device) -> torch.Tensor:
        x0, y = (v.to(device) for v in batch)
        t = torch.randint(0, schedule.num_timesteps, (len(x0),), generator=noise).to(device)
        x_t = q_sample(schedule, x0, t, _randn(x0.shape, noise, device))
        return F.cross_entropy(classifier(x_t, t), y)

    history = fit(
        classifier, loader, epochs=epochs,
        optimizer=torch.optim.AdamW(classifier.parameters(), lr=lr), train_step=step,
        device=device, progress=progress,
    )  # fmt: skip
    return history.train_loss


class ClassifierGuidance(nn.Module):
    """An unconditional denoiser steered towards class y by a noise-aware classifier
    (Dhariwal & Nichol, 2021): a drop-in ``model(x, t, y)`` for :func:`sample_ddim` /
    :func:`sample_ddpm`.

    Bayes' rule for scores: ∇ log p(x_t | y) = ∇ log p(x_t) + ∇ log p(y | x_t). A trained ε̂ is a
    scaled score, ∇ log p(x_t) ≈ -ε̂ / sqrt(1 - ᾱ_t), so adding the classifier's gradient gives

        ε̂_guided = ε̂(x_t, t) - s · sqrt(1 - ᾱ_t) · ∇_{x_t} log p_φ(y | x_t, t),

    where the scale ``s`` (> 1 sharpens p(y | x_t)) trades diversity for fidelity as in
    classifier-free guidance. The denoiser runs with ``y=None`` (its null class): everything it
    knows about y comes from the classifier. Each step costs one denoiser call plus a classifier
    forward *and backward* pass.
    """

    def __init__(
        self, model: nn.Module, classifier: nn.Module, schedule: NoiseSchedule, scale: float
    ) -> None:
        super().__init__()
        self.model, self.classifier, self.schedule, self.scale = model, classifier, schedule, scale

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        if y is None:
            raise ValueError("classifier guidance needs the labels y to steer towards")
        num_classes = self.classifier.num_classes
        if y.min() < 0 or y.max() >= num_classes:
            raise ValueError(
                f"labels must lie in [0, {num_classes}), got {sorted(set(y.tolist()))}"
            )
        eps = self.model(x, t)
        with torch.enable_grad():  # samplers run under no_grad; this gradient is part of the step
            x_in = x.detach().requires_grad_(True)
            log_probs = F.log_softmax(self.classifier(x_in, t), dim=1)
            (grad,) = torch.autograd.grad(log_probs[torch.arange(len(y)), y].sum(), x_in)
        alpha_bar = self.schedule.alphas_cumprod.to(device=x.device, dtype=x.dtype)[t]
        return eps - self.scale * _broadcast((1 - alpha_bar) ** 0.5, x) * grad
