"""Lesson 07: checkers for the exercises of ``07_diffusion_ddpm``.

Each checker calls the learner's answer on random inputs and edge cases and compares the result
with the course's own implementation in :mod:`course_utils.diffusion` (``q_sample``,
``NoiseSchedule``, ``ddpm_step``, ``ddim_step``), or with diffusers' trailing timesteps; a wrong answer fails with a
hint about the most likely mistake. Exercise 07.6 is a measurement: its checker repeats it with the
same seed on the shipped model and the judge, and compares the numbers and the verdict.
"""

import math

import torch

from ..diffusion import (
    NoiseSchedule,
    ddim_step,
    ddim_timesteps,
    ddpm_step,
    q_sample,
    recognition_accuracy,
    to01,
)
from ..train import evaluating
from . import as_tensor, close, exercise


def _schedules() -> list[NoiseSchedule]:
    return [NoiseSchedule(1000, "linear"), NoiseSchedule(1000, "cosine"), NoiseSchedule(50)]


# --------------------------------------------------------------------------------------------
# 07.1 The forward process in one jump
# --------------------------------------------------------------------------------------------


@exercise("07.1 the forward process q(x_t | x_0)")
def check_q_sample(my_q_sample) -> None:
    """``my_q_sample(schedule, x0 [B, C, H, W], t [B] long, noise [B, C, H, W]) -> x_t``."""
    g = torch.Generator().manual_seed(7)
    for schedule in _schedules():
        T = schedule.num_timesteps
        x0 = torch.rand(5, 1, 4, 4, generator=g) * 2 - 1
        noise = torch.randn(x0.shape, generator=g)
        t = torch.tensor([0, 1, T // 2, T - 2, T - 1])
        what = f"my_q_sample on {schedule} with t = {t.tolist()}"
        try:
            out = my_q_sample(schedule, x0.clone(), t.clone(), noise.clone())
        except RuntimeError as err:
            if "size of tensor" not in str(err):
                raise
            raise AssertionError(
                f"{what} failed with '{err}': alphas_cumprod[t] has shape [B]; reshape it to "
                "[B, 1, 1, 1] (e.g. .view(-1, 1, 1, 1)) so that each value scales its own image"
            ) from err
        out = as_tensor(out, what)
        expected = q_sample(schedule, x0, t, noise)
        assert out.shape == expected.shape, (
            f"{what}: expected shape {list(expected.shape)}, got {list(out.shape)}; index "
            "alphas_cumprod with t and reshape the [B] values to [B, 1, 1, 1] so that they scale "
            "each image"
        )
        if close(out, expected):
            continue
        a_bar = schedule.alphas_cumprod[t].view(-1, 1, 1, 1)
        alpha = schedule.alphas[t].view(-1, 1, 1, 1)
        if close(out, alpha.sqrt() * x0 + (1 - alpha).sqrt() * noise):
            raise AssertionError(
                "you used alphas (one step's α_t) instead of alphas_cumprod (ᾱ_t = α_0 ... α_t): "
                "jumping from x_0 straight to x_t needs the product of all the steps"
            )
        if close(out, a_bar * x0 + (1 - a_bar) * noise):
            raise AssertionError(
                "forgot the square roots: ᾱ_t and 1 - ᾱ_t are *variances*; the image is scaled by "
                "sqrt(ᾱ_t) and the noise by sqrt(1 - ᾱ_t)"
            )
        if close(out, (1 - a_bar).sqrt() * x0 + a_bar.sqrt() * noise):
            raise AssertionError(
                "the two factors are swapped: the image gets sqrt(ᾱ_t) (almost 1 at t = 0) and the "
                "noise sqrt(1 - ᾱ_t)"
            )
        if close(out, a_bar.sqrt() * x0 + (1 - a_bar.sqrt()) * noise):
            raise AssertionError(
                "the noise factor must be sqrt(1 - ᾱ_t), not 1 - sqrt(ᾱ_t): the variances, not "
                "the scales, add up to 1"
            )
        raise AssertionError(
            f"{what}: values differ from q_sample (largest gap "
            f"{(out.double() - expected.double()).abs().max():.3g}); "
            "x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε with ᾱ_t = schedule.alphas_cumprod[t]"
        )


# --------------------------------------------------------------------------------------------
# 07.2 The cosine schedule
# --------------------------------------------------------------------------------------------


def _cosine_variants(T: int) -> dict[str, torch.Tensor]:
    """Typical wrong versions of the cosine β_t, to recognise them in an answer."""

    def f(s: float, offset: float = 0.008) -> float:
        return math.cos((s + offset) / (1 + offset) * math.pi / 2) ** 2

    def betas(fn) -> torch.Tensor:
        return torch.tensor([fn(i) for i in range(T)], dtype=torch.float64)

    a_bar_from_one = torch.tensor([f(i / T) / f(0) for i in range(T)], dtype=torch.float64)
    shifted = torch.cat([torch.ones(1, dtype=torch.float64), a_bar_from_one[:-1]])
    return {
        "no offset": betas(lambda i: min(1 - f((i + 1) / T, 0) / f(i / T, 0), 0.999)),
        "no clip": betas(lambda i: 1 - f((i + 1) / T) / f(i / T)),
        "one behind": (1 - a_bar_from_one / shifted).clamp(max=0.999),
        "T - 1": betas(lambda i: min(1 - f((i + 1) / (T - 1)) / f(i / (T - 1)), 0.999)),
    }


@exercise("07.2 the cosine noise schedule")
def check_cosine_betas(my_cosine_betas) -> None:
    """``my_cosine_betas(T) -> betas [T]``: the cosine schedule of Nichol & Dhariwal, equal to
    ``NoiseSchedule(T, "cosine").betas``."""
    for T in (1000, 50, 10):
        out = my_cosine_betas(T)
        out = torch.as_tensor(out).double().flatten()
        expected = NoiseSchedule(T, "cosine").betas.double()
        assert len(out) == T, (
            f"my_cosine_betas({T}) should give {T} values (t = 0 ... T-1), got {len(out)}"
        )
        if close(out, expected, 1e-5):
            continue
        variants = _cosine_variants(T)
        if not torch.isfinite(out).all() or out.max() > 0.9995:
            raise AssertionError(
                f"my_cosine_betas({T}) has β = {out.max():.6g}: the formula gives β_{{T-1}} = 1 "
                "(ᾱ(1) = 0, all signal gone in one step, and 1/sqrt(ᾱ) blows up); clip β at 0.999"
            )
        if close(out, variants["no clip"], 1e-5):
            raise AssertionError("clip β at 0.999 (min(β, 0.999))")
        if close(out, variants["no offset"], 1e-5):
            raise AssertionError(
                "the offset s = 0.008 is missing: ᾱ(s) = cos²((s + 0.008) / 1.008 · π/2). Without "
                "it β_0 is tiny (~2e-6 for T = 1000) and the first steps add almost no noise"
            )
        if abs(out[0]) < 1e-12 or close(out, variants["one behind"], 1e-5):
            raise AssertionError(
                "off by one: β_0 comes out as 0 because you set ᾱ_0 = 1. Timestep t = 0 is already "
                "the first noising step: β_t = 1 - ᾱ((t+1)/T) / ᾱ(t/T) for t = 0 ... T-1"
            )
        if close(out, variants["T - 1"], 1e-5):
            raise AssertionError(
                "divide by T, not T - 1: the schedule runs over s = t / T in [0, 1]"
            )
        raise AssertionError(
            f"my_cosine_betas({T}) differs from NoiseSchedule({T}, 'cosine').betas (largest gap "
            f"{(out - expected).abs().max():.3g}, first values {out[:3].tolist()} vs "
            f"{expected[:3].tolist()}); β_t = min(1 - ᾱ((t+1)/T) / ᾱ(t/T), 0.999) with "
            "ᾱ(s) = cos²((s + 0.008) / 1.008 · π/2)"
        )


# --------------------------------------------------------------------------------------------
# 07.3 The DDPM posterior q(x_{t-1} | x_t, x_0)
# --------------------------------------------------------------------------------------------


def reference_posterior(
    schedule: NoiseSchedule, x0: torch.Tensor, x_t: torch.Tensor, t: int
) -> tuple[torch.Tensor, float]:
    """Mean and variance of q(x_{t-1} | x_t, x_0), read off :func:`ddpm_step`: the noise that
    makes x̂_0 equal x0 exactly, zero fresh noise for the mean, unit noise for the variance."""
    a_bar = schedule.alphas_cumprod[t]
    eps = (x_t - a_bar.sqrt() * x0) / (1 - a_bar).sqrt()
    mean = ddpm_step(schedule, eps, t, x_t, noise=torch.zeros_like(x_t), clip_sample=False)
    with_noise = ddpm_step(schedule, eps, t, x_t, noise=torch.ones_like(x_t), clip_sample=False)
    return mean, float(((with_noise - mean).mean()) ** 2)


@exercise("07.3 the DDPM posterior mean and variance")
def check_posterior(my_posterior) -> None:
    """``my_posterior(schedule, x0, x_t, t) -> (mean, variance)`` of q(x_{t-1} | x_t, x_0) for one
    integer t in [0, T); ``variance`` a float or 0-d tensor, the same for every pixel."""
    g = torch.Generator().manual_seed(3)
    for schedule in _schedules():
        T = schedule.num_timesteps
        for t in (1, T // 2, T - 1, 0):
            x0 = torch.rand(3, 1, 4, 4, generator=g) * 2 - 1
            x_t = q_sample(schedule, x0, torch.full((3,), t), torch.randn(x0.shape, generator=g))
            what = f"my_posterior on {schedule} at t = {t}"
            out = my_posterior(schedule, x0.clone(), x_t.clone(), t)
            assert isinstance(out, tuple) and len(out) == 2, "return a tuple (mean, variance)"
            mean = as_tensor(out[0], "mean")
            variance = float(torch.as_tensor(out[1]).double().mean())
            exp_mean, exp_var = reference_posterior(schedule, x0, x_t, t)
            a_bar = schedule.alphas_cumprod[t].double()
            beta = schedule.betas[t].double()
            if t == 0 and abs(variance) > 1e-6:
                raise AssertionError(
                    f"at t = 0 the variance must be 0 (got {variance:.3g}): ᾱ_{{t-1}} = ᾱ_{{-1}} "
                    "is 1 (no noise before the first step). Beware: alphas_cumprod[t - 1] at t = 0 "
                    "is alphas_cumprod[-1], Python's *last* entry, ᾱ_{T-1}"
                )
            if (
                t > 0
                and math.isclose(variance, float(beta), rel_tol=1e-4)
                and not math.isclose(exp_var, float(beta), rel_tol=1e-3)
            ):
                raise AssertionError(
                    "variance = β_t is the upper bound (DDPM's 'fixed_large'); the posterior's is "
                    "β̃_t = β_t (1 - ᾱ_{t-1}) / (1 - ᾱ_t)"
                )
            if t > 0 and math.isclose(variance, exp_var**0.5, rel_tol=1e-4):
                raise AssertionError("that is the standard deviation: return the variance σ²")
            assert mean.shape == x_t.shape, (
                f"{what}: the mean should have x_t's shape {list(x_t.shape)}, got "
                f"{list(mean.shape)}"
            )
            if not close(mean, exp_mean):
                alpha = schedule.alphas[t].double()
                a_prev = schedule.alphas_cumprod[t - 1].double() if t > 0 else torch.tensor(1.0)
                swapped = (a_bar.sqrt() * beta * x0 + alpha.sqrt() * (1 - a_prev) * x_t) / (
                    1 - a_bar
                )
                if t > 0 and close(mean, swapped):
                    raise AssertionError(
                        "the x_0 coefficient needs sqrt(ᾱ_{t-1}), not sqrt(ᾱ_t): "
                        "μ = sqrt(ᾱ_{t-1}) β_t / (1 - ᾱ_t) · x_0 + sqrt(α_t) (1 - ᾱ_{t-1}) / "
                        "(1 - ᾱ_t) · x_t"
                    )
                raise AssertionError(
                    f"{what}: the mean differs (largest gap "
                    f"{(mean.double() - exp_mean.double()).abs().max():.3g}); μ = sqrt(ᾱ_{{t-1}}) "
                    "β_t / (1 - ᾱ_t) · x_0 + sqrt(α_t) (1 - ᾱ_{t-1}) / (1 - ᾱ_t) · x_t, with "
                    "ᾱ_{-1} = 1 at t = 0"
                )
            assert math.isclose(variance, exp_var, rel_tol=1e-4, abs_tol=1e-9), (
                f"{what}: variance {variance:.6g}, expected {exp_var:.6g}: β̃_t = β_t "
                "(1 - ᾱ_{t-1}) / (1 - ᾱ_t)"
            )


# --------------------------------------------------------------------------------------------
# 07.4 One deterministic DDIM step
# --------------------------------------------------------------------------------------------


@exercise("07.4 a deterministic DDIM step")
def check_ddim_step(my_ddim_step) -> None:
    """``my_ddim_step(schedule, eps, t, t_prev, x_t) -> x_{t_prev}``: η = 0, x̂_0 clipped to
    [-1, 1]; ``t_prev < 0`` is the final step to the clean image (ᾱ = 1)."""
    g = torch.Generator().manual_seed(4)
    schedule = NoiseSchedule(1000, "cosine")
    a_bar = schedule.alphas_cumprod
    for t, t_prev in [(500, 480), (980, 960), (900, 800), (20, 0), (20, -1), (0, -20)]:
        x_t = torch.randn(3, 1, 4, 4, generator=g)
        eps = torch.randn(x_t.shape, generator=g)
        what = f"my_ddim_step(t={t}, t_prev={t_prev})"
        out = as_tensor(my_ddim_step(schedule, eps.clone(), t, t_prev, x_t.clone()), what)
        expected = ddim_step(schedule, eps, t, t_prev, x_t, eta=0.0)
        assert out.shape == expected.shape, (
            f"{what}: expected shape {list(expected.shape)}, got {list(out.shape)}"
        )
        if close(out, expected):
            continue
        if t_prev < 0:
            wrapped = a_bar[t_prev]
            x0 = ((x_t - (1 - a_bar[t]).sqrt() * eps) / a_bar[t].sqrt()).clamp(-1, 1)
            if close(out, wrapped.sqrt() * x0 + (1 - wrapped).sqrt() * eps):
                raise AssertionError(
                    f"the final step (t_prev = {t_prev}) must land on the clean image: ᾱ_prev = 1. "
                    f"alphas_cumprod[{t_prev}] counts from the *end* of the tensor in Python "
                    "(almost 0 here), so the step went back to pure noise"
                )
        if close(out, ddim_step(schedule, eps, t, t_prev, x_t, clip_sample=False)):
            raise AssertionError(
                "clip x̂_0 to [-1, 1] before re-noising it: at large t, dividing by sqrt(ᾱ_t) "
                "blows every error of ε̂ up"
            )
        if t_prev >= 0:
            x0 = ((x_t - (1 - a_bar[t]).sqrt() * eps) / a_bar[t].sqrt()).clamp(-1, 1)
            if close(out, a_bar[t_prev].sqrt() * x0 + (1 - a_bar[t]).sqrt() * eps):
                raise AssertionError(
                    "re-noise with the noise level of t_prev: the ε̂ term is sqrt(1 - ᾱ_prev) ε̂, "
                    "not sqrt(1 - ᾱ_t) ε̂"
                )
        raise AssertionError(
            f"{what} differs from ddim_step (largest gap "
            f"{(out.double() - expected.double()).abs().max():.3g}): x̂_0 = (x_t - sqrt(1 - ᾱ_t) "
            "ε̂) / sqrt(ᾱ_t) clipped to [-1, 1], then x_prev = sqrt(ᾱ_prev) x̂_0 + "
            "sqrt(1 - ᾱ_prev) ε̂"
        )


# --------------------------------------------------------------------------------------------
# 07.5 Trailing timestep spacing
# --------------------------------------------------------------------------------------------

#: The (T, n) the checker tries: step sizes T / n that are whole, fractional, 1 and T.
TRAILING_CASES = [(1000, 5), (1000, 10), (1000, 3), (1000, 6), (100, 7), (50, 50), (1000, 1)]


def diffusers_trailing_timesteps(T: int, n: int) -> list[tuple[int, int]]:
    """The (t, t_prev) pairs of a DDIM run on diffusers' "trailing" timesteps, last step first:
    each step goes to the next timestep of ``DDIMScheduler.timesteps``, the last one to -1 (the
    clean image), as in :func:`~course_utils.diffusion.ddim_timesteps`."""
    from diffusers import DDIMScheduler  # imported here: only this exercise needs it

    scheduler = DDIMScheduler(num_train_timesteps=T, timestep_spacing="trailing")
    scheduler.set_timesteps(n)
    steps = [int(t) for t in scheduler.timesteps]
    return list(zip(steps, steps[1:] + [-1]))


def _as_pairs(out, what: str) -> list[tuple[int, int]]:
    try:
        pairs = [(int(t), int(t_prev)) for t, t_prev in out]
    except (TypeError, ValueError):
        raise AssertionError(
            f"{what} should be a list of (t, t_prev) pairs like ddim_timesteps(T, n) returns, "
            f"got {str(out)[:80]}"
        ) from None
    return pairs


@exercise("07.5 trailing timestep spacing")
def check_trailing_timesteps(my_trailing_timesteps) -> None:
    """``my_trailing_timesteps(T, n) -> [(t, t_prev), ...]``: n steps, the first from t = T - 1,
    the timesteps of diffusers' ``DDIMScheduler(timestep_spacing="trailing")``, the last step to
    t_prev = -1."""
    for T, n in TRAILING_CASES:
        what = f"my_trailing_timesteps({T}, {n})"
        pairs = _as_pairs(my_trailing_timesteps(T, n), what)
        expected = diffusers_trailing_timesteps(T, n)
        if pairs == expected:
            continue
        assert len(pairs) == n, f"{what} should give {n} pairs (one per step), got {len(pairs)}"
        if pairs == ddim_timesteps(T, n):
            raise AssertionError(
                f"{what} returned the leading timesteps of ddim_timesteps (starting at "
                f"t = {pairs[0][0]}): trailing spacing starts at t = T - 1 = {T - 1}"
            )
        if pairs[0][0] == T:
            raise AssertionError(
                f"{what} starts at t = {T}, outside the schedule's timesteps 0 ... {T - 1}: count "
                "down from T and subtract 1 from every timestep"
            )
        if pairs[0][0] < pairs[-1][0]:
            raise AssertionError(f"{what} runs upwards: the sampler goes from noisy to clean")
        if pairs[-1][1] != -1:
            raise AssertionError(
                f"{what} ends with t_prev = {pairs[-1][1]}: the last step goes to t_prev = -1, "
                "the clean image (ᾱ = 1)"
            )
        got, want = [t for t, _ in pairs], [t for t, _ in expected]
        if got == want:
            raise AssertionError(
                f"{what}: the right timesteps, but each step should go to the next timestep of "
                f"the list ({expected[:2]} ...), got {pairs[:2]} ..."
            )
        raise AssertionError(
            f"{what} gives the timesteps {got}, diffusers' trailing spacing {want}: t_i = "
            f"round(T - i · T / n) - 1 for i = 0 ... n - 1 (rounded to the nearest integer, "
            "not truncated)"
        )


# --------------------------------------------------------------------------------------------
# 07.6 Leading or trailing at 5 steps, measured
# --------------------------------------------------------------------------------------------

#: The number of DDIM steps of the spacing measurement.
SPACING_STEPS = 5


@torch.no_grad()
def _sample_on(model, schedule, pairs, labels: torch.Tensor, seed: int) -> torch.Tensor:
    """Deterministic DDIM (η = 0, x̂_0 clipped) on the given (t, t_prev) pairs, from the noise of
    ``seed`` drawn on the CPU, for a shipped model (its ``config`` gives the image shape):
    [N, C, H, W] in [-1, 1] on the CPU."""
    device = next(model.parameters()).device
    channels, size = model.config["in_channels"], model.config["image_size"]
    noise = torch.randn(
        len(labels), channels, size, size, generator=torch.Generator().manual_seed(seed)
    )
    x, y = noise.to(device), labels.to(device)
    with evaluating(model):
        for t, t_prev in pairs:
            eps = model(x, torch.full((len(x),), t, device=device), y=y)
            x = ddim_step(schedule, eps, t, t_prev, x)
    return x.cpu()


def reference_spacing_experiment(model, schedule, judge, per_class: int, seed: int) -> dict:
    """The measurement of exercise 07.6: the class accuracy of ``10 * per_class`` DDIM samples
    with :data:`SPACING_STEPS` steps on leading and on trailing timesteps, from the same noise.
    Returns ``{"leading": float, "trailing": float}``."""
    labels = torch.arange(10).repeat_interleave(per_class)
    T = schedule.num_timesteps
    spacings = {
        "leading": ddim_timesteps(T, SPACING_STEPS),
        "trailing": diffusers_trailing_timesteps(T, SPACING_STEPS),
    }
    return {
        name: recognition_accuracy(
            judge, to01(_sample_on(model, schedule, pairs, labels, seed)), labels
        )
        for name, pairs in spacings.items()
    }


def _verdict(leading: float, trailing: float) -> str:
    return "tie" if leading == trailing else ("trailing" if trailing > leading else "leading")


@exercise("07.6 leading or trailing spacing, measured")
def check_spacing_experiment(my_spacing_experiment, model, judge, per_class=10, seed=0) -> None:
    """``my_spacing_experiment(model, schedule, judge, per_class, seed) -> {"leading": float,
    "trailing": float, "better": "leading" | "trailing" | "tie"}``: class accuracy of 5-step
    deterministic DDIM samples on each spacing. The checker repeats the measurement with the same
    seed: the numbers must agree up to one sample, and "better" must say which one is higher."""
    schedule = NoiseSchedule(**model.config["noise_schedule"])
    out = my_spacing_experiment(model, schedule, judge, per_class, seed)
    assert isinstance(out, dict) and {"leading", "trailing", "better"} <= set(out), (
        'return a dict {"leading": accuracy, "trailing": accuracy, "better": "leading", '
        f'"trailing" or "tie"}}, got {str(out)[:80]}'
    )
    mine = {k: float(out[k]) for k in ("leading", "trailing")}
    assert all(0 <= v <= 1 for v in mine.values()), (
        f"accuracies are fractions in [0, 1], got {mine}: recognition_accuracy returns one"
    )
    ref = reference_spacing_experiment(model, schedule, judge, per_class, seed)
    n = 10 * per_class
    tol = 1.5 / n  # one sample's decision may flip with another batching of the same maths

    def agree(a: float, b: float) -> bool:
        return abs(a - b) <= tol

    right = all(agree(mine[name], ref[name]) for name in ("leading", "trailing"))
    if not right and agree(mine["leading"], ref["trailing"]):
        if agree(mine["trailing"], ref["leading"]):
            raise AssertionError(
                f"your numbers are swapped: leading {ref['leading']:.3f}, trailing "
                f"{ref['trailing']:.3f} in the checker's run"
            )
    if not right and agree(mine["trailing"], ref["leading"]):
        raise AssertionError(
            f"your trailing accuracy {mine['trailing']:.3f} is the leading one: sample the "
            "trailing run on my_trailing_timesteps(T, 5), not on ddim_timesteps(T, 5)"
        )
    for name in ("leading", "trailing"):
        assert agree(mine[name], ref[name]), (
            f"{name}: you measured {mine[name]:.3f}, the checker {ref[name]:.3f} with seed {seed} "
            f"({n} samples). Start both runs from torch.randn(({n}, 1, 28, 28), "
            f"generator=torch.Generator().manual_seed(seed)), labels torch.arange(10)"
            f".repeat_interleave(per_class), {SPACING_STEPS} steps of ddim_step (η = 0, x̂_0 "
            "clipped), and score recognition_accuracy(judge, to01(x), labels)"
        )
    expected = _verdict(mine["leading"], mine["trailing"])
    assert out["better"] == expected, (
        f'"better" is {out["better"]!r}, but your numbers (leading {mine["leading"]:.3f}, '
        f"trailing {mine['trailing']:.3f}) say {expected!r}: compute the verdict from the numbers"
    )
