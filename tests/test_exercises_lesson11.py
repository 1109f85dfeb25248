import pytest
import torch
from exercise_testing import assert_right_answers_pass, assert_stub_not_attempted, failed

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
