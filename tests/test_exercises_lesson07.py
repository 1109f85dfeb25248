import math
from types import SimpleNamespace

import pytest
import torch
from exercise_testing import assert_right_answers_pass, assert_stub_not_attempted, failed, stub

from course_utils import zoo
from course_utils.diffusion import Condition, load_judge, recognition_accuracy, sample_ddim, to01
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


def trailing_timesteps(T, n):
    steps = [round(T - i * T / n) - 1 for i in range(n)]
    return list(zip(steps, steps[1:] + [-1]))


def spacing_experiment(model, schedule, judge, per_class, seed):
    labels = torch.arange(10).repeat_interleave(per_class)
    T = schedule.num_timesteps
    accuracy = {}
    for name, pairs in (
        ("leading", lesson07.ddim_timesteps(T, 5)),
        ("trailing", trailing_timesteps(T, 5)),
    ):
        x = torch.randn(len(labels), 1, 28, 28, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            for t, t_prev in pairs:
                x = lesson07.ddim_step(
                    schedule, model(x, torch.full((len(x),), t), y=labels), t, t_prev, x
                )
        accuracy[name] = recognition_accuracy(judge, to01(x), labels)
    leading, trailing = accuracy["leading"], accuracy["trailing"]
    better = "tie" if leading == trailing else ("trailing" if trailing > leading else "leading")
    return {**accuracy, "better": better}


CHECKS = {
    "07.1 the forward process q(x_t | x_0)": (lesson07.check_q_sample, q_sample),
    "07.2 the cosine noise schedule": (lesson07.check_cosine_betas, cosine_betas),
    "07.3 the DDPM posterior mean and variance": (lesson07.check_posterior, posterior),
    "07.4 a deterministic DDIM step": (lesson07.check_ddim_step, ddim_step),
    "07.5 trailing timestep spacing": (lesson07.check_trailing_timesteps, trailing_timesteps),
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


def test_trailing_mistakes_get_hints():
    def leading(T, n):
        return lesson07.ddim_timesteps(T, n)

    def from_T(T, n):
        steps = [round(T - i * T / n) for i in range(n)]
        return list(zip(steps, steps[1:] + [-1]))

    def ends_at_zero(T, n):
        steps = [round(T - i * T / n) - 1 for i in range(n)]
        return list(zip(steps, steps[1:] + [0]))

    def truncated(T, n):
        steps = [int(T - i * T / n) - 1 for i in range(n)]
        return list(zip(steps, steps[1:] + [-1]))

    def upwards(T, n):
        return trailing_timesteps(T, n)[::-1]

    def fixed_jump(
        T, n
    ):  # t_prev = t - T // n: between the listed timesteps when n does not divide T
        return [(t, t - T // n) for t, _ in trailing_timesteps(T, n)]

    def timesteps_only(T, n):
        return [t for t, _ in trailing_timesteps(T, n)]

    assert failed(lesson07.check_trailing_timesteps(leading), "leading", "T - 1")
    assert failed(lesson07.check_trailing_timesteps(from_T), "outside", "subtract 1")
    assert failed(lesson07.check_trailing_timesteps(ends_at_zero), "t_prev = -1")
    assert failed(lesson07.check_trailing_timesteps(truncated), "round", "not truncated")
    assert failed(lesson07.check_trailing_timesteps(upwards), "upwards")
    assert failed(lesson07.check_trailing_timesteps(fixed_jump), "next timestep")
    assert failed(lesson07.check_trailing_timesteps(timesteps_only), "(t, t_prev) pairs")


def test_trailing_reference_is_diffusers_and_starts_at_the_last_timestep():
    assert lesson07.diffusers_trailing_timesteps(1000, 5) == [
        (999, 799),
        (799, 599),
        (599, 399),
        (399, 199),
        (199, -1),
    ]
    for T, n in lesson07.TRAILING_CASES:
        assert lesson07.diffusers_trailing_timesteps(T, n) == trailing_timesteps(T, n)


# ------------------------------------------------------------------ the measurement (07.6)


@pytest.fixture(scope="module")
def shipped():
    with zoo.cpu_threads():
        yield zoo.load("diffusion_fashion", device="cpu"), load_judge("cpu", name="resnet_fashion")


def test_spacing_measurement_passes_when_repeated_and_its_leading_run_is_sample_ddim(shipped):
    model, judge = shipped
    with zoo.cpu_threads():
        assert lesson07.check_spacing_experiment(
            spacing_experiment, model, judge, per_class=1
        ).passed
        schedule = lesson07.NoiseSchedule(**model.config["noise_schedule"])
        labels = torch.arange(10)
        leading = lesson07._sample_on(model, schedule, lesson07.ddim_timesteps(1000, 5), labels, 4)
        library = sample_ddim(
            model,
            schedule,
            (10, 1, 28, 28),
            num_steps=5,
            condition=Condition(labels),
            generator=torch.Generator().manual_seed(4),
            progress=False,
        )
    assert torch.equal(leading, library)


def test_spacing_stub_is_not_attempted(shipped):
    assert lesson07.check_spacing_experiment(stub, *shipped, per_class=1).status == "not attempted"


def test_spacing_verdict_against_the_numbers_fails(shipped):
    model, judge = shipped

    def contrary(*args):
        out = spacing_experiment(*args)
        return {
            **out,
            "better": {"leading": "trailing", "trailing": "tie", "tie": "leading"}[out["better"]],
        }

    with zoo.cpu_threads():
        result = lesson07.check_spacing_experiment(contrary, model, judge, per_class=1)
    assert failed(result, '"better"', "your numbers")


@pytest.fixture
def measured(monkeypatch):
    """The checker's own measurement, fixed: leading 0.4, trailing 0.7 (100 samples)."""
    monkeypatch.setattr(
        lesson07,
        "reference_spacing_experiment",
        lambda *args: {"leading": 0.4, "trailing": 0.7},
    )
    model = SimpleNamespace(config={"noise_schedule": {"num_timesteps": 1000}})
    return lambda answer: lesson07.check_spacing_experiment(answer, model, None, per_class=10)


def test_spacing_measurement_mistakes_get_hints(measured):
    def answer(leading, trailing, better):
        return lambda *args: {"leading": leading, "trailing": trailing, "better": better}

    assert measured(answer(0.4, 0.7, "trailing")).passed
    assert measured(answer(0.41, 0.7, "trailing")).passed  # one sample of 100 may differ
    assert failed(measured(answer(0.7, 0.4, "leading")), "swapped")
    assert failed(measured(answer(0.4, 0.4, "tie")), "is the leading one", "my_trailing_timesteps")
    assert failed(measured(answer(0.4, 0.55, "trailing")), "trailing", "0.700", "manual_seed")
    assert failed(measured(answer(40.0, 70.0, "trailing")), "fractions")
    assert failed(measured(answer(0.4, 0.7, "leading")), '"better"', "'trailing'")
    assert failed(measured(answer(0.4, 0.7, "trailing is better")), '"better"')
    assert failed(measured(lambda *args: (0.4, 0.7)), "return a dict")
