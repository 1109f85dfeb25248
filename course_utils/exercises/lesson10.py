"""Lesson 10: checkers for the exercises of ``10_flow_matching``.

Exercises 10.1-10.4: each checker calls the learner's answer on random inputs and compares the
result with the course's own implementation in :mod:`course_utils.diffusion` (or, where the package
has no single function for it, a reference written out here); a wrong answer fails with a hint
about the most likely mistake. Exercise 10.5 is a measurement: the checker repeats it with the same
seed and judges the learner's numbers and verdict.
"""

import math

import torch
from torch import nn

from ..diffusion import (
    FLOW_TIME_SCALE,
    Condition,
    fm_path,
    fm_target,
    recognition_accuracy,
    sample_euler,
    sample_heun,
    to01,
)
from . import as_tensor, close, exercise


def _call(fn, *args, what: str):
    """Call the learner's function; a shape error becomes a hint instead of a crash."""
    try:
        return fn(*args)
    except NotImplementedError:  # a subclass of RuntimeError: the stub, "not attempted"
        raise
    except RuntimeError as err:
        raise AssertionError(
            f"{what} raised {type(err).__name__}: {err}. A common cause: t has shape [B] and must "
            "be reshaped to [B, 1, ...] (one 1 per trailing dimension of x) before multiplying"
        ) from None


# --------------------------------------------------------------------------------------------
# 10.1 The straight path and its velocity
# --------------------------------------------------------------------------------------------


@exercise("10.1 straight path and target")
def check_path_and_target(my_path_and_target) -> None:
    """``my_path_and_target(x1, noise, t [B]) -> (x_t, v)``, compared with :func:`fm_path` and
    :func:`fm_target` on images [B, 1, 4, 4] and on 2-D points [B, 2]."""
    g = torch.Generator().manual_seed(10)
    for shape in [(5, 1, 4, 4), (3, 2), (4, 3, 2, 2)]:
        x1 = torch.rand(shape, generator=g) * 2 - 1
        noise = torch.randn(shape, generator=g)
        t = torch.rand(shape[0], generator=g)
        t[0] = 0.0  # the noise end
        out = _call(
            my_path_and_target, x1.clone(), noise.clone(), t.clone(), what="path_and_target"
        )
        assert isinstance(out, (tuple, list)) and len(out) == 2, (
            "return a pair (x_t, v): the point on the path and the target velocity"
        )
        x_t, v = as_tensor(out[0], "x_t"), as_tensor(out[1], "v")
        assert x_t.shape == x1.shape, (
            f"x_t must have x1's shape {list(shape)}, got {list(x_t.shape)}"
        )
        assert v.shape == x1.shape, f"v must have x1's shape {list(shape)}, got {list(v.shape)}"
        tb = t.reshape(-1, *([1] * (len(shape) - 1)))
        if not close(x_t, fm_path(x1, noise, t)):
            if close(x_t, (1 - tb) * x1 + tb * noise):
                raise AssertionError(
                    "time runs the wrong way: at t = 0 the path must be pure noise and at t = 1 "
                    "the data, x_t = (1 - t) noise + t x1"
                )
            if close(x_t, (1 - tb).sqrt() * noise + tb.sqrt() * x1):
                raise AssertionError(
                    "that is a variance-preserving (diffusion-like) path; flow matching's straight "
                    "path mixes with (1 - t) and t themselves, no square roots"
                )
            raise AssertionError(
                f"x_t differs from (1 - t) noise + t x1 for shape {list(shape)} (largest gap "
                f"{(x_t.double() - fm_path(x1, noise, t)).abs().max():.3g}); each sample uses "
                "its own t"
            )
        if not close(v, fm_target(x1, noise)):
            if close(v, noise - x1):
                raise AssertionError(
                    "wrong sign: the velocity is d x_t / dt = x1 - noise (towards the data); "
                    "noise - x1 is diffusers' convention, with time reversed"
                )
            if close(v, tb * x1 - (1 - tb) * noise) or close(v, x1 - tb * noise):
                raise AssertionError(
                    "the target velocity does not depend on t: differentiate (1 - t) noise + t x1"
                )
            raise AssertionError("v must be the derivative of x_t with respect to t: x1 - noise")


# --------------------------------------------------------------------------------------------
# 10.2 An Euler sampler
# --------------------------------------------------------------------------------------------


def _field(x: torch.Tensor, t: float) -> torch.Tensor:
    """A smooth, time-dependent test field, nonlinear in x (so that every mistake shows)."""
    return torch.sin(3 * x + 2 * t) - 0.5 * x * math.cos(2 * t) + t


class _FieldModule(nn.Module):
    """:func:`_field` with the samplers' ``model(x, t * FLOW_TIME_SCALE, y)`` signature."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x, t, y=None):
        return _field(x, t[0].item() / FLOW_TIME_SCALE)


def reference_euler(velocity, x: torch.Tensor, num_steps: int, start_time: int = 0):
    """Euler's method from t = 0 to 1; ``start_time=1`` evaluates at the step's end instead."""
    h = 1.0 / num_steps
    for i in range(num_steps):
        x = x + h * velocity(x, (i + start_time) * h)
    return x


@exercise("10.2 Euler sampler")
def check_euler(my_euler) -> None:
    """``my_euler(velocity, x, num_steps) -> x at t = 1``, compared with :func:`sample_euler`."""
    g = torch.Generator().manual_seed(12)
    for num_steps, shape in [(4, (3, 1, 2, 2)), (1, (2, 2)), (13, (5, 2))]:
        x0 = torch.randn(shape, generator=g)
        times: list = []

        def velocity(x, t, times=times):
            times.append(t)
            return _field(x, float(t))

        out = as_tensor(my_euler(velocity, x0.clone(), num_steps), "euler(...)")
        expected = sample_euler(_FieldModule(), shape, num_steps=num_steps, x_T=x0, progress=False)
        assert out.shape == x0.shape, (
            f"return the final state, shape {list(shape)}, got {list(out.shape)}"
        )
        if close(out, expected):
            assert len(times) == num_steps, (
                f"{num_steps} steps need {num_steps} velocity calls, you made {len(times)}"
            )
            continue
        if len(times) != num_steps:
            raise AssertionError(
                f"with num_steps={num_steps} Euler calls the velocity once per step, "
                f"{num_steps} times; your function called it {len(times)} times"
            )
        if close(out, reference_euler(_field, x0, num_steps, start_time=1)):
            raise AssertionError(
                "you evaluate the velocity at the end of each step (t + h); Euler uses the "
                "start, t = i / num_steps for i = 0 ... num_steps - 1"
            )
        if num_steps > 1 and close(out, reference_euler(_field, x0, num_steps - 1)):
            raise AssertionError("one step too few: the steps must cover [0, 1] exactly")
        if any(t > 1 for t in times):
            raise AssertionError(
                "the velocity takes the flow time in [0, 1] here, not scaled by 1000"
            )
        raise AssertionError(
            f"with {num_steps} steps the result differs from Euler's method (largest gap "
            f"{(out.double() - expected).abs().max():.3g}): h = 1 / num_steps, x <- x + h v(x, t)"
        )


# --------------------------------------------------------------------------------------------
# 10.3 One Heun step
# --------------------------------------------------------------------------------------------


def reference_heun_step(velocity, x: torch.Tensor, t: float, h: float) -> torch.Tensor:
    """Heun's method (explicit trapezoidal rule): Euler predictor, averaged slopes."""
    v = velocity(x, t)
    return x + h / 2 * (v + velocity(x + h * v, t + h))


def _decay(x: torch.Tensor, t: float) -> torch.Tensor:
    """dx/dt = -x (1 + cos t) with the exact solution x(t) = x(0) exp(-(t + sin t))."""
    return -x * (1 + math.cos(t))


def _order_error(step, x0: torch.Tensor, n: int) -> float:
    x, h = x0, 1.0 / n
    for i in range(n):
        x = step(_decay, x, i * h, h)
    exact = x0 * math.exp(-(1 + math.sin(1)))
    return (x - exact).abs().max().item()


@exercise("10.3 Heun step")
def check_heun_step(my_heun_step) -> None:
    """``my_heun_step(velocity, x, t, h) -> x at t + h``: compared with Heun's method, then its
    order measured on an ODE with a known solution (error / 4 when h / 2)."""
    g = torch.Generator().manual_seed(13)
    for shape, t, h in [((3, 1, 2, 2), 0.0, 0.25), ((4, 2), 0.3, 0.1), ((2, 2), 0.9, 0.1)]:
        x = torch.randn(shape, generator=g)
        out = as_tensor(my_heun_step(_field, x.clone(), t, h), "heun_step(...)")
        assert out.shape == x.shape, (
            f"return the new state, shape {list(shape)}, got {list(out.shape)}"
        )
        expected = reference_heun_step(_field, x, t, h)
        if close(out, expected):
            continue
        v = _field(x, t)
        if close(out, x + h * v):
            raise AssertionError("that is an Euler step: also evaluate v at the Euler prediction")
        if close(out, x + h * _field(x + h / 2 * v, t + h / 2)):
            raise AssertionError(
                "that is the midpoint method (also second order); Heun averages the slopes at both "
                "ends: x + h/2 (v(x, t) + v(x + h v(x, t), t + h))"
            )
        if close(out, x + h / 2 * (v + _field(x + h * v, t))):
            raise AssertionError("evaluate the second slope at time t + h, not t")
        if close(out, x + h * (v + _field(x + h * v, t + h))):
            raise AssertionError("average the two slopes: multiply their sum by h / 2, not h")
        if close(out, x + h / 2 * (v + _field(x, t + h))):
            raise AssertionError(
                "evaluate the second slope at the Euler prediction x + h v(x, t), not at x"
            )
        raise AssertionError(
            f"the step differs from Heun's method (largest gap "
            f"{(out.double() - expected).abs().max():.3g})"
        )
    x0 = torch.randn(6, generator=g).abs() + 0.5
    errors = [_order_error(my_heun_step, x0, n) for n in (8, 16, 32)]
    ratios = [errors[0] / errors[1], errors[1] / errors[2]]
    assert all(3.2 < r < 4.8 for r in ratios), (
        f"halving the step divided the error by {ratios[0]:.2f} and {ratios[1]:.2f}; a second-order "
        "method divides it by about 4"
    )


# --------------------------------------------------------------------------------------------
# 10.4 A diffusion model's velocity
# --------------------------------------------------------------------------------------------


def reference_eps_to_velocity(eps, x, alpha, sigma, d_alpha, d_sigma):
    """v = α' x̂1 + σ' ε̂ with x̂1 = (x - σ ε̂) / α, for the path x = α x1 + σ ε."""
    x1_hat = (x - sigma * eps) / alpha
    return d_alpha * x1_hat + d_sigma * eps


@exercise("10.4 epsilon to velocity")
def check_eps_to_velocity(my_eps_to_velocity) -> None:
    """``my_eps_to_velocity(eps, x, alpha, sigma, d_alpha, d_sigma) -> v``, compared with
    :func:`reference_eps_to_velocity` on a cosine (VP) path and on the straight path, where it
    must reproduce :func:`fm_target`."""
    g = torch.Generator().manual_seed(14)
    shape = (4, 1, 3, 3)
    x1 = torch.rand(shape, generator=g) * 2 - 1
    eps = torch.randn(shape, generator=g)
    # straight path x = t x1 + (1 - t) eps: the velocity must be x1 - eps exactly
    t = torch.tensor([0.2, 0.5, 0.7, 0.95]).reshape(-1, 1, 1, 1)
    x = fm_path(x1, eps, t.flatten())
    one = torch.ones_like(t)
    out = as_tensor(my_eps_to_velocity(eps, x, t, 1 - t, one, -one), "eps_to_velocity(...)")
    assert out.shape == x.shape, f"return one velocity per sample, shape {list(shape)}"
    if not close(out, fm_target(x1, eps)):
        if close(out, eps - x1):
            raise AssertionError("wrong sign: the velocity points from the noise to the data")
        raise AssertionError(
            "on the straight path (alpha = t, sigma = 1 - t, d_alpha = 1, d_sigma = -1) with the "
            "true noise, the velocity must be x1 - eps: first recover x̂1 = (x - sigma eps) / alpha"
        )
    # variance-preserving cosine path, alpha = cos(pi/2 (1 - t)), sigma = sin(pi/2 (1 - t))
    phase = math.pi / 2 * (1 - t)
    alpha, sigma = phase.cos(), phase.sin()
    d_alpha, d_sigma = math.pi / 2 * sigma, -math.pi / 2 * alpha
    eps_hat = eps + 0.3 * torch.randn(shape, generator=g)  # an imperfect prediction
    x = alpha * x1 + sigma * eps
    args = (eps_hat, x, alpha, sigma, d_alpha, d_sigma)
    out = as_tensor(my_eps_to_velocity(*(a.clone() for a in args)), "eps_to_velocity(...)")
    expected = reference_eps_to_velocity(*args)
    if close(out, expected):
        return
    if close(out, d_alpha * (x - sigma * eps_hat) + d_sigma * eps_hat):
        raise AssertionError("x̂1 = (x - sigma eps) / alpha: the division by alpha is missing")
    if close(out, d_alpha * x + d_sigma * eps_hat):
        raise AssertionError(
            "use the predicted clean image x̂1 = (x - sigma eps) / alpha, not x itself"
        )
    if close(out, d_sigma * (x - sigma * eps_hat) / alpha + d_alpha * eps_hat):
        raise AssertionError("d_alpha multiplies x̂1 and d_sigma multiplies eps, not the reverse")
    raise AssertionError(
        f"the velocity differs from d_alpha x̂1 + d_sigma eps (largest gap "
        f"{(out.double() - expected).abs().max():.3g})"
    )


# --------------------------------------------------------------------------------------------
# 10.5 Euler against Heun at equal network calls, measured
# --------------------------------------------------------------------------------------------

#: The guidance scale of the measurement: the one the shipped models are scored at.
SOLVER_GUIDANCE = 3.0


def _solver_labels_and_noise(model, per_class: int, seed: int):
    """The labels ``arange(10)`` each ``per_class`` times, and the starting noise
    [10 * per_class, C, H, W] drawn on the CPU from ``seed`` (the image shape from the shipped
    model's config)."""
    labels = torch.arange(10).repeat_interleave(per_class)
    channels, size = model.config["in_channels"], model.config["image_size"]
    generator = torch.Generator().manual_seed(seed)
    return labels, torch.randn(len(labels), channels, size, size, generator=generator)


def _solver_accuracy(model, judge, sampler, steps: int, labels, noise) -> float:
    x = sampler(
        model,
        tuple(noise.shape),
        num_steps=steps,
        condition=Condition(labels, guidance_scale=SOLVER_GUIDANCE),
        x_T=noise,
        progress=False,
    )
    return recognition_accuracy(judge, to01(x), labels)


def reference_solver_experiment(model, judge, per_class: int, calls: int, seed: int) -> dict:
    """The measurement of exercise 10.5: the class accuracy of ``10 * per_class`` samples of the
    flow model ``model`` (guidance :data:`SOLVER_GUIDANCE`) with Euler in ``calls`` steps and Heun
    in ``calls // 2`` steps, from the same noise. Returns ``{"euler": float, "heun": float}``."""
    labels, noise = _solver_labels_and_noise(model, per_class, seed)
    return {
        "euler": _solver_accuracy(model, judge, sample_euler, calls, labels, noise),
        "heun": _solver_accuracy(model, judge, sample_heun, calls // 2, labels, noise),
    }


def _solver_verdict(euler: float, heun: float) -> str:
    return "tie" if euler == heun else ("heun" if heun > euler else "euler")


@exercise("10.5 Euler against Heun at equal calls, measured")
def check_solver_experiment(my_solver_experiment, model, judge, per_class=10, calls=4, seed=0):
    """``my_solver_experiment(model, judge, per_class, calls, seed) -> {"euler": float, "heun":
    float, "better": "euler" | "heun" | "tie"}``: class accuracy of Euler with ``calls`` steps and
    Heun with ``calls // 2`` steps (the same number of network calls) on the flow model. The checker
    repeats the measurement with the same seed: the numbers must agree up to one sample, and
    "better" must say which one is higher."""
    assert calls >= 2 and calls % 2 == 0, (
        f"calls must be an even number >= 2 (Heun makes two calls per step), got {calls}"
    )
    out = my_solver_experiment(model, judge, per_class, calls, seed)
    assert isinstance(out, dict) and {"euler", "heun", "better"} <= set(out), (
        'return a dict {"euler": accuracy, "heun": accuracy, "better": "euler", "heun" or '
        f'"tie"}}, got {str(out)[:80]}'
    )
    mine = {k: float(out[k]) for k in ("euler", "heun")}
    assert all(0 <= v <= 1 for v in mine.values()), (
        f"accuracies are fractions in [0, 1], got {mine}: recognition_accuracy returns one"
    )
    ref = reference_solver_experiment(model, judge, per_class, calls, seed)
    n = 10 * per_class
    tol = 1.5 / n  # one sample's decision may flip with another batching of the same maths

    def agree(a: float, b: float) -> bool:
        return abs(a - b) <= tol

    right = all(agree(mine[name], ref[name]) for name in ("euler", "heun"))
    if not right and agree(mine["euler"], ref["heun"]) and agree(mine["heun"], ref["euler"]):
        raise AssertionError(
            f"your numbers are swapped: Euler {ref['euler']:.3f}, Heun {ref['heun']:.3f} in the "
            "checker's run"
        )
    if not agree(mine["heun"], ref["heun"]):
        labels, noise = _solver_labels_and_noise(model, per_class, seed)
        heun_twice = _solver_accuracy(model, judge, sample_heun, calls, labels, noise)
        if agree(mine["heun"], heun_twice) and not agree(heun_twice, ref["heun"]):
            raise AssertionError(
                f"your Heun run matches Heun with {calls} steps, which makes {2 * calls} network "
                f"calls: at equal cost Heun takes calls // 2 = {calls // 2} steps"
            )
    for name in ("euler", "heun"):
        steps = calls if name == "euler" else calls // 2
        assert agree(mine[name], ref[name]), (
            f"{name}: you measured {mine[name]:.3f}, the checker {ref[name]:.3f} with seed {seed} "
            f"({n} samples, {steps} steps). Start both runs from x_T = torch.randn(({n}, 1, 28, "
            "28), generator=torch.Generator().manual_seed(seed)), labels torch.arange(10)"
            ".repeat_interleave(per_class), Condition(labels, guidance_scale="
            f"{SOLVER_GUIDANCE:g}), and score recognition_accuracy(judge, to01(x), labels)"
        )
    expected = _solver_verdict(mine["euler"], mine["heun"])
    assert out["better"] == expected, (
        f'"better" is {out["better"]!r}, but your numbers (Euler {mine["euler"]:.3f}, Heun '
        f"{mine['heun']:.3f}) say {expected!r}: compute the verdict from the numbers"
    )
