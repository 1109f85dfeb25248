import math

import pytest
import torch
from exercise_testing import assert_right_answers_pass, assert_stub_not_attempted, failed, stub

from course_utils import zoo
from course_utils.diffusion import (
    Condition,
    load_judge,
    recognition_accuracy,
    sample_euler,
    sample_heun,
    to01,
)
from course_utils.exercises import lesson10

pytestmark = pytest.mark.usefixtures("private_cache")


# ------------------------------------------------------------------ right answers


def path_and_target(x1, noise, t):
    t = t.reshape(-1, *([1] * (x1.dim() - 1)))
    return (1 - t) * noise + t * x1, x1 - noise


def euler(velocity, x, num_steps):
    h = 1 / num_steps
    for i in range(num_steps):
        x = x + h * velocity(x, i * h)
    return x


def heun_step(velocity, x, t, h):
    v = velocity(x, t)
    return x + h / 2 * (v + velocity(x + h * v, t + h))


def eps_to_velocity(eps, x, alpha, sigma, d_alpha, d_sigma):
    return d_alpha * (x - sigma * eps) / alpha + d_sigma * eps


CHECKS = {
    "10.1 straight path and target": (lesson10.check_path_and_target, path_and_target),
    "10.2 Euler sampler": (lesson10.check_euler, euler),
    "10.3 Heun step": (lesson10.check_heun_step, heun_step),
    "10.4 epsilon to velocity": (lesson10.check_eps_to_velocity, eps_to_velocity),
}


def test_right_answers_pass():
    assert_right_answers_pass(CHECKS)


def test_other_right_answers_pass():
    def path_with_torch_lerp(x1, noise, t):
        t = t.view(-1, *([1] * (x1.dim() - 1)))
        return torch.lerp(noise, x1, t), x1 - noise

    def euler_with_linspace(velocity, x, num_steps):
        times = torch.linspace(0, 1, num_steps + 1)
        for t, t_next in zip(times[:-1], times[1:]):
            x = x + (t_next - t).item() * velocity(x, t.item())
        return x

    assert lesson10.check_path_and_target(path_with_torch_lerp).passed
    assert lesson10.check_euler(euler_with_linspace).passed


@pytest.mark.parametrize("name", CHECKS)
def test_stub_is_not_attempted(name):
    assert_stub_not_attempted(CHECKS, name)


# ------------------------------------------------------------------ wrong answers get hints


def test_path_hints():
    def reversed_time(x1, noise, t):
        t = t.reshape(-1, *([1] * (x1.dim() - 1)))
        return (1 - t) * x1 + t * noise, x1 - noise

    def wrong_sign(x1, noise, t):
        return path_and_target(x1, noise, t)[0], noise - x1

    def no_reshape(x1, noise, t):
        return (1 - t) * noise + t * x1, x1 - noise

    assert failed(lesson10.check_path_and_target(reversed_time), "wrong way")
    assert failed(lesson10.check_path_and_target(wrong_sign), "sign")
    assert failed(lesson10.check_path_and_target(no_reshape), "reshaped")


def test_euler_hints():
    def end_of_step(velocity, x, num_steps):
        h = 1 / num_steps
        for i in range(num_steps):
            x = x + h * velocity(x, (i + 1) * h)
        return x

    def scaled_time(velocity, x, num_steps):
        h = 1 / num_steps
        for i in range(num_steps):
            x = x + h * velocity(x, i * h * 1000)
        return x

    assert failed(lesson10.check_euler(end_of_step), "end of each step")
    assert failed(lesson10.check_euler(scaled_time), "not scaled")


def test_heun_hints():
    def euler_step(velocity, x, t, h):
        return x + h * velocity(x, t)

    def midpoint(velocity, x, t, h):
        return x + h * velocity(x + h / 2 * velocity(x, t), t + h / 2)

    def sum_not_average(velocity, x, t, h):
        v = velocity(x, t)
        return x + h * (v + velocity(x + h * v, t + h))

    assert failed(lesson10.check_heun_step(euler_step), "Euler step")
    assert failed(lesson10.check_heun_step(midpoint), "midpoint")
    assert failed(lesson10.check_heun_step(sum_not_average), "h / 2")


def test_heun_reference_is_second_order():
    x0 = torch.ones(3)
    errors = [lesson10._order_error(lesson10.reference_heun_step, x0, n) for n in (8, 16, 32)]
    assert 3.5 < errors[0] / errors[1] < 4.5 and 3.5 < errors[1] / errors[2] < 4.5
    euler_errors = [
        lesson10._order_error(lambda v, x, t, h: x + h * v(x, t), x0, n) for n in (8, 16)
    ]
    assert 1.7 < euler_errors[0] / euler_errors[1] < 2.3


def test_eps_to_velocity_hints():
    def no_division(eps, x, alpha, sigma, d_alpha, d_sigma):
        return d_alpha * (x - sigma * eps) + d_sigma * eps

    def swapped(eps, x, alpha, sigma, d_alpha, d_sigma):
        return d_sigma * (x - sigma * eps) / alpha + d_alpha * eps

    def negated(eps, x, alpha, sigma, d_alpha, d_sigma):
        return -eps_to_velocity(eps, x, alpha, sigma, d_alpha, d_sigma)

    assert failed(lesson10.check_eps_to_velocity(no_division), "alpha")
    assert failed(lesson10.check_eps_to_velocity(swapped))
    assert failed(lesson10.check_eps_to_velocity(negated), "sign")


def test_eps_to_velocity_reference_matches_finite_differences():
    """On the cosine path the reference velocity is d/dt (alpha x1 + sigma eps) with the true ε."""
    x1, eps, t, dt = torch.randn(5), torch.randn(5), 0.4, 1e-4

    def point(s):
        phase = math.pi / 2 * (1 - s)
        return math.cos(phase) * x1 + math.sin(phase) * eps

    phase = math.pi / 2 * (1 - t)
    v = lesson10.reference_eps_to_velocity(
        eps,
        point(t),
        math.cos(phase),
        math.sin(phase),
        math.pi / 2 * math.sin(phase),
        -math.pi / 2 * math.cos(phase),
    )
    torch.testing.assert_close(v, (point(t + dt) - point(t - dt)) / (2 * dt), atol=1e-3, rtol=1e-3)


# ------------------------------------------------------------------ 10.5, a measurement


def solver_experiment(model, judge, per_class, calls, seed):
    labels = torch.arange(10).repeat_interleave(per_class)
    noise = torch.randn(len(labels), 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    accuracy = {}
    for name, sampler, steps in (("euler", sample_euler, calls), ("heun", sample_heun, calls // 2)):
        x = sampler(
            model,
            noise.shape,
            num_steps=steps,
            condition=Condition(labels, guidance_scale=3.0),
            x_T=noise,
            progress=False,
        )
        accuracy[name] = recognition_accuracy(judge, to01(x), labels)
    euler, heun = accuracy["euler"], accuracy["heun"]
    better = "tie" if euler == heun else ("heun" if heun > euler else "euler")
    return {**accuracy, "better": better}


@pytest.fixture(scope="module")
def shipped():
    """The shipped flow model and the judge, on the CPU. The tests compare the learner's numbers
    with the checker's own run, never with fixed values: they hold for any flow model."""
    with zoo.cpu_threads():
        yield zoo.load("flow_fashion", device="cpu"), load_judge("cpu", name="resnet_fashion")


def test_solver_measurement_passes_when_repeated(shipped):
    with zoo.cpu_threads():
        result = lesson10.check_solver_experiment(solver_experiment, *shipped, per_class=1, calls=4)
    assert result.passed, result


def test_solver_stub_is_not_attempted(shipped):
    result = lesson10.check_solver_experiment(stub, *shipped, per_class=1, calls=4)
    assert result.status == "not attempted"


def test_solver_verdict_against_the_numbers_fails(shipped):
    def contrary(*args):
        out = solver_experiment(*args)
        return {**out, "better": {"euler": "heun", "heun": "tie", "tie": "euler"}[out["better"]]}

    with zoo.cpu_threads():
        result = lesson10.check_solver_experiment(contrary, *shipped, per_class=1, calls=4)
    assert failed(result, '"better"', "your numbers")


def test_solver_reference_runs_the_library_samplers_at_equal_calls(shipped, monkeypatch):
    """The reference's Euler and Heun runs are sample_euler with `calls` steps and sample_heun with
    `calls // 2` steps: count the network calls."""
    model, judge = shipped
    calls = []
    original = type(model).forward

    def counting(self, x, t, y=None):
        calls.append(len(x))
        return original(self, x, t, y=y)

    monkeypatch.setattr(type(model), "forward", counting)
    with zoo.cpu_threads():
        lesson10.reference_solver_experiment(model, judge, per_class=1, calls=4, seed=0)
    assert len(calls) == 4 + 2 * 2  # guidance runs both predictions in one doubled batch
    assert set(calls) == {20}


@pytest.fixture
def measured(monkeypatch):
    """The checker's own measurement, fixed: Euler 0.4, Heun 0.7 (100 samples); Heun with twice
    the steps (the equal-calls mistake) 0.55."""
    monkeypatch.setattr(
        lesson10, "reference_solver_experiment", lambda *args: {"euler": 0.4, "heun": 0.7}
    )
    monkeypatch.setattr(lesson10, "_solver_labels_and_noise", lambda *args: (None, None))
    monkeypatch.setattr(lesson10, "_solver_accuracy", lambda *args: 0.55)
    return lambda answer: lesson10.check_solver_experiment(answer, None, None, per_class=10)


def test_solver_measurement_mistakes_get_hints(measured):
    def answer(euler, heun, better):
        return lambda *args: {"euler": euler, "heun": heun, "better": better}

    assert measured(answer(0.4, 0.7, "heun")).passed
    assert measured(answer(0.41, 0.7, "heun")).passed  # one sample of 100 may differ
    assert failed(measured(answer(0.7, 0.4, "euler")), "swapped")
    assert failed(measured(answer(0.4, 0.55, "heun")), "calls // 2", "network calls")
    assert failed(measured(answer(0.4, 0.9, "heun")), "heun", "0.700", "manual_seed")
    assert failed(measured(answer(0.2, 0.7, "heun")), "euler", "0.400", "guidance_scale=3")
    assert failed(measured(answer(40.0, 70.0, "heun")), "fractions")
    assert failed(measured(answer(0.4, 0.7, "euler")), '"better"', "'heun'")
    assert failed(measured(answer(0.4, 0.7, "Heun is better")), '"better"')
    assert failed(measured(lambda *args: (0.4, 0.7)), "return a dict")
    assert failed(
        lesson10.check_solver_experiment(answer(0.4, 0.7, "heun"), None, None, calls=5), "even"
    )
