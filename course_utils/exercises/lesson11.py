"""Lesson 11: checkers for the exercises of ``11_diffusers_library``.

Each checker calls the learner's answer on small random inputs and compares the result with a
reference built from diffusers itself and from the course's :mod:`course_utils.diffusion`
(``NoiseSchedule``, ``q_sample``); a wrong answer fails with a hint about the most likely mistake.
Exercise 11.5 is a measurement: its checker repeats it with the same seed on the shipped model and
the judge, and compares the numbers and the verdict.
"""

import warnings

import torch
from torch import nn

from ..diffusion import NoiseSchedule, q_sample, reference_images, sample_scores
from ..train import evaluating
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


# --------------------------------------------------------------------------------------------
# 11.5 DPM-Solver++ of order 1 or 2, measured
# --------------------------------------------------------------------------------------------

#: The settings of the order measurement: steps, guidance scale, the orders compared.
ORDER_STEPS, ORDER_GUIDANCE, ORDERS = 10, 3.0, (1, 2)


def _dpm_solver(model, solver_order: int):
    """DPM-Solver++ with clipped x̂_0 on the shipped model's training schedule (from its config)."""
    from diffusers import DPMSolverMultistepScheduler

    names = {"cosine": "squaredcos_cap_v2", "linear": "linear"}
    noise_schedule = model.config["noise_schedule"]
    return DPMSolverMultistepScheduler(
        num_train_timesteps=noise_schedule["num_timesteps"],
        beta_schedule=names[noise_schedule["beta_schedule"]],
        thresholding=True,
        solver_order=solver_order,
    )


@torch.no_grad()
def _guided_samples(model, scheduler, labels: torch.Tensor, seed: int) -> torch.Tensor:
    """The lesson's loop (``sample_with``): :data:`ORDER_STEPS` steps of ``scheduler`` with
    classifier-free guidance at :data:`ORDER_GUIDANCE`, one call on the doubled batch [labels,
    null labels] per step, from the noise of ``seed`` drawn on the CPU: [N, 1, 28, 28] in [-1, 1]."""
    device = next(model.parameters()).device
    channels, size = model.config["in_channels"], model.config["image_size"]
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((len(labels), channels, size, size), generator=g).to(device)
    scheduler.set_timesteps(ORDER_STEPS, device=device)
    x = x * scheduler.init_noise_sigma
    y = labels.to(device)
    both_labels = torch.cat([y, torch.full_like(y, model.config["null_class"])])
    with evaluating(model):
        for t in scheduler.timesteps:
            x_in = scheduler.scale_model_input(x, t)
            t_batch = t.expand(len(y))
            both = model(torch.cat([x_in, x_in]), torch.cat([t_batch, t_batch]), both_labels)
            eps_cond, eps_uncond = both.chunk(2)
            eps = eps_uncond + ORDER_GUIDANCE * (eps_cond - eps_uncond)
            x = scheduler.step(eps, t, x).prev_sample
    return x.cpu()


def _distance(judge, x: torch.Tensor, labels: torch.Tensor, per_class: int) -> float:
    with warnings.catch_warnings():  # fewer samples than features: the bias is the point here
        warnings.filterwarnings("ignore", message="frechet_distance on")
        return sample_scores(judge, x, labels, reference_images("test", per_class)[0])["fd"]


def reference_order_experiment(model, judge, per_class: int, seed: int) -> dict:
    """The measurement of exercise 11.5: the Fréchet distance (to ``reference_images("test",
    per_class)``) of ``10 * per_class`` guided DPM-Solver++ samples with ``solver_order`` 1 and 2,
    from the same noise. Returns ``{"order_1": float, "order_2": float}``."""
    labels = torch.arange(10).repeat_interleave(per_class)
    return {
        f"order_{k}": _distance(
            judge, _guided_samples(model, _dpm_solver(model, k), labels, seed), labels, per_class
        )
        for k in ORDERS
    }


def _order_verdict(first: float, second: float) -> str:
    return "tie" if first == second else ("order_2" if second < first else "order_1")


@exercise("11.5 DPM-Solver++ order 1 or 2, measured")
def check_order_experiment(my_order_experiment, model, judge, per_class=10, seed=0) -> None:
    """``my_order_experiment(model, judge, per_class, seed) -> {"order_1": float, "order_2":
    float, "better": "order_1" | "order_2" | "tie"}``: the Fréchet distance of 10-step guided
    DPM-Solver++ samples of each order. The checker repeats the measurement with the same seed:
    the distances must agree to 1 %, and "better" must name the lower one."""
    out = my_order_experiment(model, judge, per_class, seed)
    assert isinstance(out, dict) and {"order_1", "order_2", "better"} <= set(out), (
        'return a dict {"order_1": distance, "order_2": distance, "better": "order_1", '
        f'"order_2" or "tie"}}, got {str(out)[:80]}'
    )
    mine = {k: float(out[k]) for k in ("order_1", "order_2")}
    assert all(v >= 0 for v in mine.values()), (
        f"a Fréchet distance is never negative, got {mine}: use sample_scores(...)['fd']"
    )
    ref = reference_order_experiment(model, judge, per_class, seed)
    n = 10 * per_class

    def agree(a: float, b: float) -> bool:  # another batching of the same maths moves it a little
        return abs(a - b) <= 0.01 * b + 1e-4

    right = all(agree(mine[k], ref[k]) for k in ref)
    if not right and agree(mine["order_1"], ref["order_2"]):
        if agree(mine["order_2"], ref["order_1"]):
            raise AssertionError(
                f"your numbers are swapped: order 1 {ref['order_1']:.3f}, order 2 "
                f"{ref['order_2']:.3f} in the checker's run"
            )
        raise AssertionError(
            f"your order-1 distance {mine['order_1']:.3f} is the order-2 one: the scheduler's "
            "default is solver_order=2; pass solver_order=1 to from_config for the first run"
        )
    for k in ref:
        assert agree(mine[k], ref[k]), (
            f"{k}: you measured {mine[k]:.3f}, the checker {ref[k]:.3f} with seed {seed} "
            f"({n} samples). Start both runs from torch.randn(({n}, 1, 28, 28), "
            "generator=torch.Generator().manual_seed(seed)), labels torch.arange(10)"
            f".repeat_interleave(per_class), {ORDER_STEPS} steps of DPM-Solver++ "
            f"(thresholding=True) with guidance {ORDER_GUIDANCE:g} (sample_with does all this), "
            'and score sample_scores(judge, x, labels, reference_images("test", per_class)[0])'
        )
    expected = _order_verdict(mine["order_1"], mine["order_2"])
    assert out["better"] == expected, (
        f'"better" is {out["better"]!r}, but your numbers (order 1 {mine["order_1"]:.3f}, '
        f"order 2 {mine['order_2']:.3f}) say {expected!r}: the lower distance is better; "
        "compute the verdict from the numbers"
    )
