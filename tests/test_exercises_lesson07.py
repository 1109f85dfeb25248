import math

import pytest
import torch
from exercise_testing import assert_right_answers_pass, assert_stub_not_attempted, failed

from course_utils.exercises import lesson07

pytestmark = pytest.mark.usefixtures("private_cache")


# ------------------------------------------------------------------ right answers


def q_sample(schedule, x0, t, noise):
    a_bar = schedule.alphas_cumprod[t].view(-1, *([1] * (x0.dim() - 1)))
    return a_bar.sqrt() * x0 + (1 - a_bar).sqrt() * noise


def cosine_alpha_bar(s, offset=0.008):
    return math.cos((s + offset) / (1 + offset) * math.pi / 2) ** 2


def cosine_betas(T):
    # float64 NumPy-free route; any correct route passes
    return torch.tensor(
        [min(1 - cosine_alpha_bar((t + 1) / T) / cosine_alpha_bar(t / T), 0.999) for t in range(T)]
    )


def posterior(schedule, x0, x_t, t):
    a_bar = schedule.alphas_cumprod[t]
    a_prev = schedule.alphas_cumprod[t - 1] if t > 0 else torch.tensor(1.0)
    beta = 1 - a_bar / a_prev
    mean = (a_prev.sqrt() * beta * x0 + (1 - beta).sqrt() * (1 - a_prev) * x_t) / (1 - a_bar)
    return mean, beta * (1 - a_prev) / (1 - a_bar)


def ddim_step(schedule, eps, t, t_prev, x_t):
    a_bar = schedule.alphas_cumprod[t]
    a_prev = schedule.alphas_cumprod[t_prev] if t_prev >= 0 else torch.tensor(1.0)
    x0 = ((x_t - (1 - a_bar).sqrt() * eps) / a_bar.sqrt()).clamp(-1, 1)
    return a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps


CHECKS = {
    "07.1 the forward process q(x_t | x_0)": (lesson07.check_q_sample, q_sample),
    "07.2 the cosine noise schedule": (lesson07.check_cosine_betas, cosine_betas),
    "07.3 the DDPM posterior mean and variance": (lesson07.check_posterior, posterior),
    "07.4 a deterministic DDIM step": (lesson07.check_ddim_step, ddim_step),
}


def test_right_answers_pass():
    assert_right_answers_pass(CHECKS)


@pytest.mark.parametrize("name", CHECKS)
def test_stub_is_not_attempted(name):
    assert_stub_not_attempted(CHECKS, name)


def test_reference_posterior_matches_the_formula():
    schedule = lesson07.NoiseSchedule(100, "linear")
    x0 = torch.rand(2, 1, 3, 3) * 2 - 1
    x_t = torch.randn(2, 1, 3, 3)
    for t in (0, 1, 50, 99):
        mean, var = lesson07.reference_posterior(schedule, x0, x_t, t)
        want_mean, want_var = posterior(schedule, x0, x_t, t)
        assert torch.allclose(mean, want_mean, atol=1e-5)
        assert math.isclose(var, float(want_var), rel_tol=1e-4, abs_tol=1e-9)


# ------------------------------------------------------------------ typical mistakes


def _view(values, x):
    return values.view(-1, *([1] * (x.dim() - 1)))


def test_q_sample_mistakes_get_hints():
    def one_step(schedule, x0, t, noise):
        a = _view(schedule.alphas[t], x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def no_roots(schedule, x0, t, noise):
        a = _view(schedule.alphas_cumprod[t], x0)
        return a * x0 + (1 - a) * noise

    def swapped(schedule, x0, t, noise):
        a = _view(schedule.alphas_cumprod[t], x0)
        return (1 - a).sqrt() * x0 + a.sqrt() * noise

    def scales_add_up(schedule, x0, t, noise):
        a = _view(schedule.alphas_cumprod[t], x0)
        return a.sqrt() * x0 + (1 - a.sqrt()) * noise

    def no_broadcast(schedule, x0, t, noise):
        a = schedule.alphas_cumprod[t]
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    assert failed(lesson07.check_q_sample(one_step), "alphas_cumprod")
    assert failed(lesson07.check_q_sample(no_roots), "square roots")
    assert failed(lesson07.check_q_sample(swapped), "swapped")
    assert failed(lesson07.check_q_sample(scales_add_up), "1 - sqrt")
    assert failed(lesson07.check_q_sample(no_broadcast), "[B, 1, 1, 1]")


def test_cosine_mistakes_get_hints():
    def no_clip(T):
        return torch.tensor(
            [1 - cosine_alpha_bar((t + 1) / T) / cosine_alpha_bar(t / T) for t in range(T)]
        )

    def no_offset(T):
        return torch.tensor(
            [
                min(1 - cosine_alpha_bar((t + 1) / T, 0) / cosine_alpha_bar(t / T, 0), 0.999)
                for t in range(T)
            ]
        )

    def alpha_bar_zero_is_one(T):
        a_bar = torch.tensor([cosine_alpha_bar(t / T) / cosine_alpha_bar(0) for t in range(T)])
        prev = torch.cat([torch.ones(1), a_bar[:-1]])
        return (1 - a_bar / prev).clamp(max=0.999)

    def over_t_minus_one(T):
        return torch.tensor(
            [
                min(1 - cosine_alpha_bar((t + 1) / (T - 1)) / cosine_alpha_bar(t / (T - 1)), 0.999)
                for t in range(T)
            ]
        )

    def too_short(T):
        return cosine_betas(T)[:-1]

    assert failed(lesson07.check_cosine_betas(no_clip), "0.999")
    assert failed(lesson07.check_cosine_betas(no_offset), "offset")
    assert failed(lesson07.check_cosine_betas(alpha_bar_zero_is_one), "off by one")
    assert failed(lesson07.check_cosine_betas(over_t_minus_one), "T - 1")
    assert failed(lesson07.check_cosine_betas(too_short), "values")


def test_posterior_mistakes_get_hints():
    def wraps_at_zero(schedule, x0, x_t, t):
        a_bar = schedule.alphas_cumprod[t]
        a_prev = schedule.alphas_cumprod[t - 1]  # t = 0 reads the last entry
        beta = schedule.betas[t]
        mean = (a_prev.sqrt() * beta * x0 + (1 - beta).sqrt() * (1 - a_prev) * x_t) / (1 - a_bar)
        return mean, beta * (1 - a_prev) / (1 - a_bar)

    def fixed_large(schedule, x0, x_t, t):
        mean, _ = posterior(schedule, x0, x_t, t)
        return mean, 1 - schedule.alphas_cumprod[t] / (
            schedule.alphas_cumprod[t - 1] if t > 0 else torch.tensor(1.0)
        )

    def std(schedule, x0, x_t, t):
        mean, var = posterior(schedule, x0, x_t, t)
        return mean, var.sqrt()

    def a_bar_t_in_mean(schedule, x0, x_t, t):
        a_bar = schedule.alphas_cumprod[t]
        a_prev = schedule.alphas_cumprod[t - 1] if t > 0 else torch.tensor(1.0)
        beta = 1 - a_bar / a_prev
        mean = (a_bar.sqrt() * beta * x0 + (1 - beta).sqrt() * (1 - a_prev) * x_t) / (1 - a_bar)
        return mean, beta * (1 - a_prev) / (1 - a_bar)

    def not_a_tuple(schedule, x0, x_t, t):
        return posterior(schedule, x0, x_t, t)[0]

    assert failed(lesson07.check_posterior(wraps_at_zero), "t = 0", "alphas_cumprod[-1]")
    assert failed(lesson07.check_posterior(fixed_large), "fixed_large")
    assert failed(lesson07.check_posterior(std), "standard deviation")
    assert failed(lesson07.check_posterior(a_bar_t_in_mean), "sqrt(ᾱ_{t-1})")
    assert failed(lesson07.check_posterior(not_a_tuple), "tuple")


def test_ddim_mistakes_get_hints():
    def wraps_at_end(schedule, eps, t, t_prev, x_t):
        a_bar = schedule.alphas_cumprod[t]
        a_prev = schedule.alphas_cumprod[t_prev]  # -1 reads the last entry
        x0 = ((x_t - (1 - a_bar).sqrt() * eps) / a_bar.sqrt()).clamp(-1, 1)
        return a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps

    def no_clip(schedule, eps, t, t_prev, x_t):
        a_bar = schedule.alphas_cumprod[t]
        a_prev = schedule.alphas_cumprod[t_prev] if t_prev >= 0 else torch.tensor(1.0)
        x0 = (x_t - (1 - a_bar).sqrt() * eps) / a_bar.sqrt()
        return a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps

    def wrong_level(schedule, eps, t, t_prev, x_t):
        a_bar = schedule.alphas_cumprod[t]
        a_prev = schedule.alphas_cumprod[t_prev] if t_prev >= 0 else torch.tensor(1.0)
        x0 = ((x_t - (1 - a_bar).sqrt() * eps) / a_bar.sqrt()).clamp(-1, 1)
        return a_prev.sqrt() * x0 + (1 - a_bar).sqrt() * eps

    assert failed(lesson07.check_ddim_step(wraps_at_end), "clean image", "end")
    assert failed(lesson07.check_ddim_step(no_clip), "clip")
    assert failed(lesson07.check_ddim_step(wrong_level), "sqrt(1 - ᾱ_prev)")
