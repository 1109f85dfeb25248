"""Lesson 11: checkers for the exercises of ``11_diffusers_library``.

Each checker calls the learner's answer on small random inputs and compares the result with a
reference built from diffusers itself and from the course's :mod:`course_utils.diffusion`
(``NoiseSchedule``, ``q_sample``); a wrong answer fails with a hint about the most likely mistake.
"""

import torch
from torch import nn

from ..diffusion import NoiseSchedule, q_sample
from . import close, exercise


class TinyEpsModel(nn.Module):
    """A stand-in noise predictor ``model(x, t, y)`` that depends on x, t and the label of each
    sample (like a real denoiser, but tiny and deterministic). It records the timesteps it saw."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.gain = nn.Parameter(0.3 * torch.rand(11, generator=g) + 0.2)
        self.shift = nn.Parameter(0.5 * torch.randn(11, generator=g))
        self.seen: list[float] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if not isinstance(t, torch.Tensor) or t.shape != (x.shape[0],):
            raise AssertionError(
                "call the model with one timestep per sample: t of shape [batch] "
                "(e.g. t.expand(len(x)) or torch.full((len(x),), t))"
            )
        self.seen.append(float(t[0]))
        gain = self.gain[y].reshape(-1, 1, 1, 1)
        shift = self.shift[y].reshape(-1, 1, 1, 1)
        return torch.tanh(gain * x + shift * torch.cos(t.float() / 80).reshape(-1, 1, 1, 1))


def reference_loop(model, scheduler, noise, y, num_steps):
    """The standard diffusers sampling loop (deterministic schedulers)."""
    scheduler.set_timesteps(num_steps)
    x = noise * scheduler.init_noise_sigma
    with torch.no_grad():
        for t in scheduler.timesteps:
            eps = model(scheduler.scale_model_input(x, t), t.expand(len(x)), y)
            x = scheduler.step(eps, t, x).prev_sample
    return x


def _without(model, scheduler, noise, y, num_steps, scale_input=True, init_sigma=True):
    scheduler.set_timesteps(num_steps)
    x = noise * (scheduler.init_noise_sigma if init_sigma else 1.0)
    with torch.no_grad():
        for t in scheduler.timesteps:
            x_in = scheduler.scale_model_input(x, t) if scale_input else x
            x = scheduler.step(model(x_in, t.expand(len(x)), y), t, x).prev_sample
    return x


def _cosine_config() -> dict:
    return {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2"}


# --------------------------------------------------------------------------------------------
# 11.1 The sampling loop
# --------------------------------------------------------------------------------------------


@exercise("11.1 the diffusers sampling loop")
def check_sampling_loop(my_loop) -> None:
    """``my_loop(model, scheduler, noise, y, num_steps) -> x_0`` for any diffusers scheduler."""
    from diffusers import DDIMScheduler, EulerDiscreteScheduler

    g = torch.Generator().manual_seed(11)
    for cls, extra, steps in (
        (DDIMScheduler, {}, 10),
        (EulerDiscreteScheduler, {"timestep_spacing": "leading"}, 8),
    ):
        noise = torch.randn(3, 1, 4, 4, generator=g)
        y = torch.tensor([0, 7, 10])
        expected = reference_loop(TinyEpsModel(), cls(**_cosine_config(), **extra), noise, y, steps)
        model = TinyEpsModel()
        with torch.no_grad():
            out = my_loop(model, cls(**_cosine_config(), **extra), noise.clone(), y.clone(), steps)
        assert isinstance(out, torch.Tensor), f"return the final x_0 tensor, got {type(out)}"
        name = cls.__name__
        assert out.shape == noise.shape, f"{name}: expected shape {list(noise.shape)}"
        assert len(model.seen) == steps, (
            f"{name} with {steps} steps: the model should be called {steps} times, once per "
            f"entry of scheduler.timesteps, but it was called {len(model.seen)} times (did you "
            "call scheduler.set_timesteps(num_steps) first?)"
        )
        if close(out, expected, 1e-4):
            continue
        sched = cls(**_cosine_config(), **extra)
        if name == "EulerDiscreteScheduler":
            if close(out, _without(TinyEpsModel(), sched, noise, y, steps, scale_input=False)):
                raise AssertionError(
                    "EulerDiscreteScheduler: the model must see "
                    "scheduler.scale_model_input(x, t), not x itself (Euler keeps x at the "
                    "scale of σ_t; DDIM's scale_model_input does nothing, so DDIM passed)"
                )
            if close(out, _without(TinyEpsModel(), sched, noise, y, steps, init_sigma=False)):
                raise AssertionError(
                    "EulerDiscreteScheduler: start from noise * scheduler.init_noise_sigma (it "
                    "is 1 for DDIM but σ_max-sized for Euler)"
                )
        raise AssertionError(
            f"{name}: the result differs from the standard loop (largest gap "
            f"{(out.double() - expected).abs().max():.3g}); for t in scheduler.timesteps: "
            "eps = model(scheduler.scale_model_input(x, t), t per sample, y); "
            "x = scheduler.step(eps, t, x).prev_sample"
        )


# --------------------------------------------------------------------------------------------
# 11.2 A scheduler for a course schedule
# --------------------------------------------------------------------------------------------


@exercise("11.2 a diffusers scheduler for a course NoiseSchedule")
def check_scheduler_for(my_scheduler_for) -> None:
    """``my_scheduler_for(schedule: NoiseSchedule) -> DDPMScheduler`` with the same ᾱ_t."""
    from diffusers import DDPMScheduler

    for schedule in (
        NoiseSchedule(1000, "cosine"),
        NoiseSchedule(1000, "linear"),
        NoiseSchedule(200, "linear", beta_start=5e-4, beta_end=0.03),
        NoiseSchedule(50, "cosine"),
    ):
        sched = my_scheduler_for(schedule)
        what = f"for {schedule!r}"
        assert isinstance(sched, DDPMScheduler), (
            f"return a diffusers DDPMScheduler, got {type(sched).__name__}"
        )
        T = schedule.num_timesteps
        assert sched.config.num_train_timesteps == T, (
            f"{what}: num_train_timesteps should be {T}, got {sched.config.num_train_timesteps}"
        )
        if close(sched.alphas_cumprod, schedule.alphas_cumprod, 1e-6):
            assert sched.config.prediction_type == "epsilon", (
                "the course models predict the noise: keep prediction_type='epsilon'"
            )
            continue
        if schedule.beta_schedule == "cosine":
            raise AssertionError(
                f"{what}: diffusers calls the course's cosine schedule (β clipped at 0.999) "
                "beta_schedule='squaredcos_cap_v2'"
            )
        if sched.config.beta_schedule == "scaled_linear":
            raise AssertionError(
                f"{what}: 'scaled_linear' spaces √β evenly (Stable Diffusion's choice); the course's "
                "linear schedule is beta_schedule='linear'"
            )
        raise AssertionError(
            f"{what}: the ᾱ_t differ; pass beta_start and beta_end as well (the course's schedule "
            "may not use diffusers' defaults)"
        )


# --------------------------------------------------------------------------------------------
# 11.3 add_noise and the training target
# --------------------------------------------------------------------------------------------


@exercise("11.3 add_noise and the training target")
def check_training_pair(my_training_pair) -> None:
    """``my_training_pair(scheduler, x0, noise, t) -> (x_t, target)`` for the scheduler's
    ``prediction_type``: "epsilon" (target ε), "sample" (x_0) or "v_prediction" (v)."""
    from diffusers import DDPMScheduler

    g = torch.Generator().manual_seed(13)
    schedule = NoiseSchedule(1000, "cosine")
    for prediction_type in ("epsilon", "sample", "v_prediction"):
        sched = DDPMScheduler(**_cosine_config(), prediction_type=prediction_type)
        x0 = torch.rand(4, 1, 5, 5, generator=g) * 2 - 1
        noise = torch.randn(4, 1, 5, 5, generator=g)
        t = torch.tensor([0, 250, 600, 999])
        out = my_training_pair(sched, x0.clone(), noise.clone(), t.clone())
        assert isinstance(out, tuple) and len(out) == 2, "return a pair (x_t, target)"
        x_t, target = out
        expected_x_t = q_sample(schedule, x0, t, noise)
        assert close(x_t, expected_x_t, 1e-5), (
            "x_t is wrong: scheduler.add_noise(x0, noise, t) gives √ᾱ_t x_0 + √(1-ᾱ_t) ε "
            "(note the argument order: clean images, noise, timesteps)"
        )
        expected = {
            "epsilon": noise,
            "sample": x0,
            "v_prediction": sched.get_velocity(x0, noise, t),
        }[prediction_type]
        if close(target, expected, 1e-5):
            continue
        if prediction_type != "epsilon" and close(target, noise):
            raise AssertionError(
                f"prediction_type={prediction_type!r}: the target is not always the noise; read "
                "scheduler.config.prediction_type and pick the matching target"
            )
        if prediction_type == "v_prediction" and close(target, -expected):
            raise AssertionError("v = √ᾱ_t ε - √(1-ᾱ_t) x_0: the sign is flipped")
        raise AssertionError(
            f"prediction_type={prediction_type!r}: wrong target (epsilon -> noise, sample -> x0, "
            "v_prediction -> scheduler.get_velocity(x0, noise, t))"
        )


# --------------------------------------------------------------------------------------------
# 11.4 Swapping schedulers
# --------------------------------------------------------------------------------------------


@exercise("11.4 swapping a scheduler with from_config")
def check_swap(my_swap) -> None:
    """``my_swap(scheduler, new_class, **overrides)`` -> a ``new_class`` scheduler with the old
    one's training configuration and the overrides applied; the old scheduler is unchanged."""
    from diffusers import DDPMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

    old = DDPMScheduler(
        num_train_timesteps=500,
        beta_schedule="linear",
        beta_start=2e-4,
        beta_end=0.03,
        prediction_type="v_prediction",
        timestep_spacing="trailing",
    )
    before = dict(old.config)
    for new_class, overrides in (
        (EulerDiscreteScheduler, {}),
        (DPMSolverMultistepScheduler, {"thresholding": True, "solver_order": 3}),
    ):
        new = my_swap(old, new_class, **overrides)
        assert isinstance(new, new_class), (
            f"expected a {new_class.__name__}, got {type(new).__name__}"
        )
        assert new is not old, "build a new scheduler; do not return the old one"
        for key in (
            "num_train_timesteps",
            "beta_schedule",
            "beta_start",
            "beta_end",
            "prediction_type",
            "timestep_spacing",
        ):
            assert new.config[key] == before[key], (
                f"{new_class.__name__}: config[{key!r}] is {new.config[key]!r} but the model was "
                f"trained with {before[key]!r}; build it with new_class.from_config(old.config) "
                "so that every shared setting is carried over"
            )
        for key, value in overrides.items():
            assert new.config[key] == value, (
                f"{new_class.__name__}: the override {key}={value!r} was not applied (pass it "
                "to from_config as a keyword argument)"
            )
        assert close(new.alphas_cumprod, old.alphas_cumprod), "the ᾱ_t must stay the same"
    assert dict(old.config) == before, "the old scheduler's config must not change"
