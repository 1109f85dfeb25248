from types import SimpleNamespace

import pytest
import torch
from exercise_testing import assert_right_answers_pass, assert_stub_not_attempted, failed, stub

from course_utils import zoo
from course_utils.diffusion import load_judge, reference_images, sample_scores
from course_utils.exercises import lesson11

pytestmark = pytest.mark.usefixtures("private_cache")


# ------------------------------------------------------------------ right answers


def sampling_loop(model, scheduler, noise, y, num_steps):
    scheduler.set_timesteps(num_steps)
    x = noise * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        eps = model(scheduler.scale_model_input(x, t), t.expand(len(x)), y)
        x = scheduler.step(eps, t, x).prev_sample
    return x


def scheduler_for(schedule):
    from diffusers import DDPMScheduler

    name = {"linear": "linear", "cosine": "squaredcos_cap_v2"}[schedule.beta_schedule]
    return DDPMScheduler(
        num_train_timesteps=schedule.num_timesteps,
        beta_schedule=name,
        beta_start=float(schedule.betas[0]),
        beta_end=float(schedule.betas[-1]),
    )


def training_pair(scheduler, x0, noise, t):
    x_t = scheduler.add_noise(x0, noise, t)
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return x_t, noise
    if kind == "sample":
        return x_t, x0
    return x_t, scheduler.get_velocity(x0, noise, t)


def swap(scheduler, new_class, **overrides):
    return new_class.from_config(scheduler.config, **overrides)


def order_experiment(model, judge, per_class, seed):
    from diffusers import DDPMScheduler, DPMSolverMultistepScheduler

    labels = torch.arange(10).repeat_interleave(per_class)
    reference = reference_images("test", per_class)[0]
    config = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2").config
    distance = {}
    for order in (1, 2):
        scheduler = DPMSolverMultistepScheduler.from_config(
            config, thresholding=True, solver_order=order
        )
        scheduler.set_timesteps(10)
        x = torch.randn(len(labels), 1, 28, 28, generator=torch.Generator().manual_seed(seed))
        null = torch.full_like(labels, 10)
        with torch.no_grad():
            for t in scheduler.timesteps:
                t_batch = t.expand(len(x))
                eps_cond = model(x, t_batch, labels)
                eps_uncond = model(x, t_batch, null)  # two calls: the same maths as one doubled
                x = scheduler.step(eps_uncond + 3 * (eps_cond - eps_uncond), t, x).prev_sample
        distance[f"order_{order}"] = sample_scores(judge, x, labels, reference)["fd"]
    first, second = distance["order_1"], distance["order_2"]
    better = "tie" if first == second else ("order_2" if second < first else "order_1")
    return {**distance, "better": better}


CHECKS = {
    "11.1 the diffusers sampling loop": (lesson11.check_sampling_loop, sampling_loop),
    "11.2 a diffusers scheduler for a course NoiseSchedule": (
        lesson11.check_scheduler_for,
        scheduler_for,
    ),
    "11.3 add_noise and the training target": (lesson11.check_training_pair, training_pair),
    "11.4 swapping a scheduler with from_config": (lesson11.check_swap, swap),
}


def test_right_answers_pass():
    assert_right_answers_pass(CHECKS)


@pytest.mark.parametrize("name", CHECKS)
def test_stub_is_not_attempted(name):
    assert_stub_not_attempted(CHECKS, name)


# ------------------------------------------------------------------ wrong answers get hints


def test_loop_without_scale_model_input_fails_on_euler():
    def loop(model, scheduler, noise, y, num_steps):
        scheduler.set_timesteps(num_steps)
        x = noise * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            x = scheduler.step(model(x, t.expand(len(x)), y), t, x).prev_sample
        return x

    assert failed(lesson11.check_sampling_loop(loop), "scale_model_input")


def test_loop_without_init_noise_sigma_fails_on_euler():
    def loop(model, scheduler, noise, y, num_steps):
        scheduler.set_timesteps(num_steps)
        x = noise
        for t in scheduler.timesteps:
            eps = model(scheduler.scale_model_input(x, t), t.expand(len(x)), y)
            x = scheduler.step(eps, t, x).prev_sample
        return x

    assert failed(lesson11.check_sampling_loop(loop), "init_noise_sigma")


def test_loop_with_wrong_step_count_fails():
    def loop(model, scheduler, noise, y, num_steps):
        return sampling_loop(model, scheduler, noise, y, 2 * num_steps)

    assert failed(lesson11.check_sampling_loop(loop), "set_timesteps")


def test_cosine_without_squaredcos_fails():
    def wrong(schedule):
        from diffusers import DDPMScheduler

        return DDPMScheduler(num_train_timesteps=schedule.num_timesteps)

    assert failed(lesson11.check_scheduler_for(wrong), "squaredcos_cap_v2")


def test_default_betas_fail_with_a_hint():
    def wrong(schedule):
        from diffusers import DDPMScheduler

        name = {"linear": "linear", "cosine": "squaredcos_cap_v2"}[schedule.beta_schedule]
        return DDPMScheduler(num_train_timesteps=schedule.num_timesteps, beta_schedule=name)

    assert failed(lesson11.check_scheduler_for(wrong), "beta_start")


def test_always_noise_target_fails():
    def wrong(scheduler, x0, noise, t):
        return scheduler.add_noise(x0, noise, t), noise

    assert failed(lesson11.check_training_pair(wrong), "prediction_type")


def test_wrong_add_noise_order_fails():
    def wrong(scheduler, x0, noise, t):
        return scheduler.add_noise(noise, x0, t), noise

    assert failed(lesson11.check_training_pair(wrong), "argument order")


def test_swap_from_defaults_fails():
    def wrong(scheduler, new_class, **overrides):
        return new_class(**overrides)

    assert failed(lesson11.check_swap(wrong), "from_config")


def test_swap_ignoring_overrides_fails():
    def wrong(scheduler, new_class, **overrides):
        return new_class.from_config(scheduler.config)

    assert failed(lesson11.check_swap(wrong), "override")


def test_reference_loop_matches_course_ddim():
    from diffusers import DDIMScheduler

    from course_utils.diffusion import Condition, NoiseSchedule, sample_ddim

    model, noise, y = lesson11.TinyEpsModel(), torch.randn(2, 1, 4, 4), torch.tensor([3, 10])
    sched = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    got = lesson11.reference_loop(model, sched, noise, y, 10)
    ours = sample_ddim(
        model,
        NoiseSchedule(1000, "cosine"),
        noise.shape,
        num_steps=10,
        condition=Condition(y),
        x_T=noise,
        progress=False,
    )
    torch.testing.assert_close(got, ours, atol=1e-5, rtol=0)


# ------------------------------------------------------------------ 11.5, a measurement


@pytest.fixture(scope="module")
def shipped():
    with zoo.cpu_threads():
        yield zoo.load("diffusion_fashion", device="cpu"), load_judge("cpu", name="resnet_fashion")


@pytest.mark.filterwarnings("ignore:frechet_distance on")
def test_order_measurement_passes_when_repeated(shipped):
    model, judge = shipped
    with zoo.cpu_threads():
        result = lesson11.check_order_experiment(order_experiment, model, judge, per_class=1)
    assert result.passed, result


def test_order_stub_is_not_attempted(shipped):
    assert lesson11.check_order_experiment(stub, *shipped, per_class=1).status == "not attempted"


@pytest.fixture
def measured(monkeypatch):
    """The checker's own measurement, fixed: order 1 at 0.90, order 2 at 0.80 (100 samples)."""
    monkeypatch.setattr(
        lesson11, "reference_order_experiment", lambda *args: {"order_1": 0.9, "order_2": 0.8}
    )
    model = SimpleNamespace(config={})
    return lambda answer: lesson11.check_order_experiment(answer, model, None, per_class=10)


def test_order_measurement_mistakes_get_hints(measured):
    def answer(first, second, better):
        return lambda *args: {"order_1": first, "order_2": second, "better": better}

    assert measured(answer(0.9, 0.8, "order_2")).passed
    assert measured(answer(0.905, 0.8, "order_2")).passed  # another batching moves it a little
    assert failed(measured(answer(0.8, 0.9, "order_1")), "swapped")
    assert failed(measured(answer(0.8, 0.8, "tie")), "order-2 one", "solver_order=1")
    assert failed(measured(answer(0.9, 1.2, "order_1")), "order_2", "0.800", "manual_seed")
    assert failed(measured(answer(-0.9, 0.8, "order_2")), "never negative")
    assert failed(measured(answer(0.9, 0.8, "order_1")), '"better"', "'order_2'")
    assert failed(measured(answer(0.9, 0.8, "order 2 is better")), '"better"')
    assert failed(measured(lambda *args: (0.9, 0.8)), "return a dict")


def test_order_verdict_against_the_numbers_fails(monkeypatch):
    monkeypatch.setattr(
        lesson11, "reference_order_experiment", lambda *args: {"order_1": 0.9, "order_2": 0.8}
    )

    def contrary(*args):
        return {"order_1": 0.9, "order_2": 0.8, "better": "order_1"}

    model = SimpleNamespace(config={})
    result = lesson11.check_order_experiment(contrary, model, None, per_class=10)
    assert failed(result, "the lower distance is better")
