"""course_utils.diffusion: schedules, q_sample, DDPM/DDIM steps and whole samplers against
diffusers' DDPMScheduler / DDIMScheduler, the classic pitfalls, guidance and the error cases."""

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from torch import nn

from course_utils.diffusion import (
    Condition,
    ConditionalUNet,
    NoiseSchedule,
    classifier_free_guidance,
    ddim_step,
    ddim_timesteps,
    ddpm_step,
    diffusion_loss,
    q_sample,
    sample_ddim,
    sample_ddpm,
    timestep_embedding,
)
from course_utils.diffusion.schedule import BETA_SCHEDULES
from course_utils.diffusion.unet import CPU_BATCH

DIFFUSERS_BETA_SCHEDULE = {"linear": "linear", "cosine": "squaredcos_cap_v2"}
ATOL = 1e-6


def ddpm_scheduler(T=1000, beta_schedule="linear", clip_sample=True):
    return DDPMScheduler(
        num_train_timesteps=T,
        beta_schedule=DIFFUSERS_BETA_SCHEDULE[beta_schedule],
        clip_sample=clip_sample,
    )


def ddim_scheduler(T=1000, beta_schedule="linear", clip_sample=True, num_inference_steps=50):
    s = DDIMScheduler(
        num_train_timesteps=T,
        beta_schedule=DIFFUSERS_BETA_SCHEDULE[beta_schedule],
        clip_sample=clip_sample,
        set_alpha_to_one=True,
        steps_offset=0,
        timestep_spacing="leading",
    )
    s.set_timesteps(num_inference_steps)
    return s


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


class TinyEpsModel(nn.Module):
    """A fixed, deterministic stand-in for a trained network: conv(x) + time and class terms."""

    def __init__(self, channels=2, num_classes=4):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.label = nn.Embedding(num_classes + 1, channels)
        self.calls = 0

    def forward(self, x, t, y=None):
        self.calls += 1
        out = self.conv(x) + torch.sin(t.float() / 100).view(-1, 1, 1, 1)
        if y is not None:
            out = out + self.label(y)[:, :, None, None]
        return out


# --------------------------------------------------------------------------------------------
# Schedules and the forward process
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("beta_schedule", ["linear", "cosine"])
@pytest.mark.parametrize("T", [1000, 50])
def test_schedule_matches_diffusers(beta_schedule, T):
    ours, theirs = NoiseSchedule(T, beta_schedule), ddpm_scheduler(T, beta_schedule)
    for name in ("betas", "alphas", "alphas_cumprod"):
        a, b = getattr(ours, name), getattr(theirs, name)
        assert a.dtype == torch.float32 and a.shape == (T,)
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


def test_beta_schedule_is_the_kind_of_betas_and_stays_the_second_argument():
    cosine = NoiseSchedule(1000, "cosine")
    assert cosine.beta_schedule == "cosine" and BETA_SCHEDULES == tuple(DIFFUSERS_BETA_SCHEDULE)
    assert torch.equal(NoiseSchedule(1000, beta_schedule="cosine").betas, cosine.betas)
    assert repr(cosine) == "NoiseSchedule(num_timesteps=1000, beta_schedule='cosine')"
    # "schedule" always means a NoiseSchedule object, never the kind of betas
    assert not hasattr(cosine, "schedule")


def test_package_exports_every_name_the_lessons_use():
    """course_utils.diffusion is a package of files: every name a notebook imports from it (or
    reads as ``diffusion.<name>``) must be re-exported by its __init__."""
    import json
    import re
    from pathlib import Path

    from course_utils import diffusion

    root, names = Path(__file__).resolve().parent.parent, set()
    for path in [*root.glob("notebooks/*.ipynb"), *root.glob("notebooks/solutions/*.ipynb")]:
        for cell in json.loads(path.read_text())["cells"]:
            source = "".join(cell["source"]) if cell["cell_type"] == "code" else ""
            imported = re.findall(r"from course_utils\.diffusion import \(([^)]*)\)", source)
            imported += re.findall(r"from course_utils\.diffusion import ([^(\n]+)$", source, re.M)
            names |= {n.strip() for block in imported for n in block.split(",") if n.strip()}
            names |= set(re.findall(r"\bdiffusion\.(\w+)", source))
    assert {"NoiseSchedule", "sample_ddim", "ConditionalUNet"} <= names  # the scan found them
    # text-to-image is imported by module (``from course_utils.diffusion import text_to_image``):
    # a submodule is importable so, whether or not an earlier test has imported it already
    modules = {path.stem for path in Path(diffusion.__file__).parent.glob("*.py")}
    missing = names - set(dir(diffusion)) - modules
    assert not missing, missing
    assert len(set(diffusion.__all__)) == len(diffusion.__all__)
    assert all(hasattr(diffusion, name) for name in diffusion.__all__)


def test_timestep_zero_is_first_noising_step():
    s = NoiseSchedule()
    # The off-by-one pitfall: ᾱ_0 = 1 - β_0, not 1.
    assert s.alphas_cumprod[0].item() == pytest.approx(1 - 1e-4)
    assert s.alphas_cumprod[0] < 1


def test_cosine_betas_are_clipped_at_0_999():
    betas = NoiseSchedule(1000, "cosine").betas
    assert betas.max().item() == pytest.approx(0.999)
    assert betas[-1].item() == pytest.approx(0.999)  # unclipped it would be 1
    assert (betas[:-1] < 0.999).all() and (betas > 0).all()


def test_snr_decreases():
    s = NoiseSchedule()
    snr = s.snr(torch.arange(1000))
    assert (snr[1:] < snr[:-1]).all()
    assert snr[0] > 1e3 and snr[-1] < 1e-4


@pytest.mark.parametrize("beta_schedule", ["linear", "cosine"])
def test_q_sample_matches_add_noise(beta_schedule):
    x0 = randn(6, 3, 5, 5).clamp(-1, 1)
    noise = randn(6, 3, 5, 5, seed=1)
    t = torch.tensor([0, 999, 1, 500, 123, 998])
    expected = ddpm_scheduler(1000, beta_schedule).add_noise(x0, noise, t)
    torch.testing.assert_close(q_sample(NoiseSchedule(1000, beta_schedule), x0, t, noise), expected)


def test_q_sample_at_t0_is_almost_clean():
    x0, noise = randn(2, 1, 4, 4).clamp(-1, 1), randn(2, 1, 4, 4, seed=1)
    xt = q_sample(NoiseSchedule(), x0, torch.zeros(2, dtype=torch.long), noise)
    # sqrt(1 - ᾱ_0) = 0.01: a little noise, not none.
    torch.testing.assert_close(xt, (1 - 1e-4) ** 0.5 * x0 + 1e-2 * noise)


# --------------------------------------------------------------------------------------------
# Single steps
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("beta_schedule", ["linear", "cosine"])
@pytest.mark.parametrize("clip_sample", [True, False])
@pytest.mark.parametrize("t", [0, 1, 500, 999])
def test_ddpm_step_matches_diffusers(beta_schedule, clip_sample, t):
    x_t, eps = 2 * randn(3, 2, 6, 6), randn(3, 2, 6, 6, seed=1)
    sched = ddpm_scheduler(1000, beta_schedule, clip_sample)
    expected = sched.step(eps, t, x_t, generator=torch.Generator().manual_seed(7)).prev_sample
    ours = ddpm_step(
        NoiseSchedule(1000, beta_schedule),
        eps,
        t,
        x_t,
        generator=torch.Generator().manual_seed(7),
        clip_sample=clip_sample,
    )
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)


def test_ddpm_step_explicit_noise_equals_generator_draw():
    x_t, eps = randn(2, 1, 4, 4), randn(2, 1, 4, 4, seed=1)
    s = NoiseSchedule()
    z = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    a = ddpm_step(s, eps, 10, x_t, noise=z)
    b = ddpm_step(s, eps, 10, x_t, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_ddpm_step_t0_adds_no_noise_and_draws_none():
    x_t, eps = randn(2, 1, 4, 4), randn(2, 1, 4, 4, seed=1)
    g = torch.Generator().manual_seed(3)
    state = g.get_state()
    out = ddpm_step(NoiseSchedule(), eps, 0, x_t, generator=g)
    assert torch.equal(g.get_state(), state)
    # At t = 0 the step returns the clipped x̂_0.
    a0 = 1 - 1e-4
    torch.testing.assert_close(out, ((x_t - (1 - a0) ** 0.5 * eps) / a0**0.5).clamp(-1, 1))


@pytest.mark.parametrize("num_inference_steps", [10, 50, 300])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("clip_sample", [True, False])
def test_ddim_step_matches_diffusers(num_inference_steps, eta, clip_sample):
    sched = ddim_scheduler(1000, "linear", clip_sample, num_inference_steps)
    ours = NoiseSchedule(1000, "linear")
    pairs = ddim_timesteps(1000, num_inference_steps)
    assert [t for t, _ in pairs] == sched.timesteps.tolist()
    # First, a middle and the final step (t_prev < 0).
    for i in (0, len(pairs) // 2, len(pairs) - 1):
        t, t_prev = pairs[i]
        x_t, eps = 2 * randn(2, 2, 5, 5, seed=i), randn(2, 2, 5, 5, seed=i + 100)
        expected = sched.step(
            eps, t, x_t, eta=eta, generator=torch.Generator().manual_seed(i)
        ).prev_sample
        got = ddim_step(
            ours,
            eps,
            t,
            t_prev,
            x_t,
            eta=eta,
            clip_sample=clip_sample,
            generator=torch.Generator().manual_seed(i),
        )
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_step_with_clipped_model_output_matches_diffusers(eta):
    sched = ddim_scheduler(1000, "linear", True, 50)
    ours = NoiseSchedule(1000, "linear")
    for i, (t, t_prev) in enumerate(ddim_timesteps(1000, 50)[::7]):
        # a large ε̂ pushes x̂_0 far outside [-1, 1], so the clipping really changes ε̂
        x_t, eps = randn(2, 2, 5, 5, seed=i), 3 * randn(2, 2, 5, 5, seed=i + 100)
        expected = sched.step(
            eps,
            t,
            x_t,
            eta=eta,
            use_clipped_model_output=True,
            generator=torch.Generator().manual_seed(i),
        ).prev_sample
        got = ddim_step(
            ours,
            eps,
            t,
            t_prev,
            x_t,
            eta=eta,
            use_clipped_model_output=True,
            generator=torch.Generator().manual_seed(i),
        )
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        plain = ddim_step(
            ours, eps, t, t_prev, x_t, eta=eta, generator=torch.Generator().manual_seed(i)
        )
        if t_prev >= 0:  # (the final step returns x̂_0 itself, whichever ε̂ is used)
            assert not torch.allclose(got, plain)  # the option does something here


def test_ddim_final_step_uses_alpha_bar_one():
    s = NoiseSchedule()
    x_t, eps = randn(2, 1, 4, 4), randn(2, 1, 4, 4, seed=1)
    out = ddim_step(s, eps, 0, -20, x_t, clip_sample=False)
    a0 = s.alphas_cumprod[0]
    # ᾱ_prev = 1: the final step returns x̂_0 exactly, with no noise direction left.
    torch.testing.assert_close(out, (x_t - (1 - a0) ** 0.5 * eps) / a0**0.5)


def test_ddim_timesteps_leading_spacing():
    assert ddim_timesteps(1000, 50)[0] == (980, 960)
    assert ddim_timesteps(1000, 50)[-1] == (0, -20)
    assert len(ddim_timesteps(1000, 300)) == 300  # not dividing T is allowed, as in diffusers
    assert ddim_timesteps(10, 10) == [(t, t - 1) for t in reversed(range(10))]


# --------------------------------------------------------------------------------------------
# Whole samplers against diffusers loops
# --------------------------------------------------------------------------------------------


def _t_batch(t, n):
    return torch.full((n,), int(t), dtype=torch.long)


@pytest.mark.parametrize("num_steps", [10, 50])
def test_sample_ddim_matches_diffusers_loop(num_steps):
    model, shape = TinyEpsModel(), (2, 2, 8, 8)
    got = sample_ddim(
        model,
        NoiseSchedule(),
        shape,
        num_steps=num_steps,
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )

    sched = ddim_scheduler(num_inference_steps=num_steps)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(model(x, _t_batch(t, 2)), t, x, eta=0.0).prev_sample
    torch.testing.assert_close(got, x, atol=1e-5, rtol=0)
    assert got.abs().max() <= 1  # the last step returns the clipped x̂_0


def test_samplers_start_from_given_noise():
    model, schedule, shape = TinyEpsModel(), NoiseSchedule(50), (2, 2, 4, 4)
    for sample in (sample_ddim, sample_ddpm):
        drawn = sample(
            model, schedule, shape, generator=torch.Generator().manual_seed(3), progress=False
        )
        g = torch.Generator().manual_seed(3)
        x_T = torch.randn(shape, generator=g)  # the draw the sampler would make; DDPM goes on
        given = sample(model, schedule, shape, generator=g, x_T=x_T, progress=False)
        torch.testing.assert_close(given, drawn)
        with pytest.raises(ValueError, match="x_T must have shape"):
            sample(model, schedule, shape, x_T=x_T[:1], progress=False)


@pytest.mark.parametrize("beta_schedule", ["linear", "cosine"])
def test_ddim_invert_matches_diffusers_inverse_scheduler(beta_schedule):
    from diffusers import DDIMInverseScheduler

    from course_utils.diffusion import ddim_invert

    model, x0 = TinyEpsModel(), randn(2, 2, 6, 6).clamp(-1, 1)
    got = ddim_invert(model, NoiseSchedule(100, beta_schedule), x0, num_steps=10, progress=False)
    sched = DDIMInverseScheduler(
        num_train_timesteps=100,
        beta_schedule=DIFFUSERS_BETA_SCHEDULE[beta_schedule],
        clip_sample=False,
        set_alpha_to_one=True,
        steps_offset=0,
        timestep_spacing="leading",
    )
    sched.set_timesteps(10)
    x = x0
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(model(x, _t_batch(t, 2)), t, x).prev_sample
    torch.testing.assert_close(got, x, atol=1e-5, rtol=1e-5)


def test_ddim_invert_then_sample_returns_the_image_when_noise_does_not_depend_on_x():
    """If ε̂ depends on t only, ε̂(x_{t_prev}, t) = ε̂(x_t, t): inversion is exact."""
    from course_utils.diffusion import ddim_invert

    class TimeOnly(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.tensor(0.3))

        def forward(self, x, t, y=None):
            return self.scale * torch.cos(t.float() / 7).view(-1, 1, 1, 1).expand_as(x)

    model, schedule, x0 = TimeOnly(), NoiseSchedule(200, "cosine"), randn(3, 1, 4, 4).clamp(-1, 1)
    x_T = ddim_invert(model, schedule, x0, num_steps=20, progress=False)
    back = sample_ddim(
        model, schedule, x0.shape, num_steps=20, clip_sample=False, x_T=x_T, progress=False
    )
    torch.testing.assert_close(back, x0, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match=r"x \* 2 - 1"):
        ddim_invert(model, schedule, x0 + 2)


def test_sample_ddim_eta_matches_diffusers_loop():
    model, shape = TinyEpsModel(), (2, 2, 6, 6)
    got = sample_ddim(
        model,
        NoiseSchedule(100, "cosine"),
        shape,
        num_steps=10,
        eta=1.0,
        generator=torch.Generator().manual_seed(5),
        progress=False,
    )
    sched = ddim_scheduler(100, "cosine", num_inference_steps=10)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(shape, generator=g)
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(model(x, _t_batch(t, 2)), t, x, eta=1.0, generator=g).prev_sample
    torch.testing.assert_close(got, x, atol=1e-5, rtol=0)


def test_sample_ddpm_matches_diffusers_loop():
    model, shape, y = TinyEpsModel(), (3, 2, 6, 6), torch.tensor([0, 1, 3])
    got = sample_ddpm(
        model,
        NoiseSchedule(50),
        shape,
        condition=Condition(y),
        generator=torch.Generator().manual_seed(1),
        progress=False,
    )
    sched = ddpm_scheduler(50)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=g)
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(model(x, _t_batch(t, 3), y=y), t, x, generator=g).prev_sample
    torch.testing.assert_close(got, x, atol=1e-5, rtol=0)


def test_samplers_restore_training_mode_and_call_back():
    model, seen = TinyEpsModel(), []
    model.train()
    out = sample_ddim(
        model,
        NoiseSchedule(100),
        (1, 2, 4, 4),
        num_steps=5,
        progress=False,
        callback=lambda t, x: seen.append((t, x.shape)),
    )
    assert model.training and not out.requires_grad
    assert seen == [(t, (1, 2, 4, 4)) for t in (80, 60, 40, 20, 0)]


# --------------------------------------------------------------------------------------------
# Classifier-free guidance
# --------------------------------------------------------------------------------------------


def test_classifier_free_guidance_formula():
    u, c = torch.tensor([1.0, -2.0]), torch.tensor([3.0, 2.0])
    torch.testing.assert_close(classifier_free_guidance(u, c, 0.0), u)
    torch.testing.assert_close(classifier_free_guidance(u, c, 1.0), c)
    torch.testing.assert_close(classifier_free_guidance(u, c, 3.0), torch.tensor([7.0, 10.0]))


def test_guided_sampling_combines_cond_and_null_predictions():
    model, s, shape = TinyEpsModel(num_classes=4), NoiseSchedule(100), (2, 2, 4, 4)
    y, null = torch.tensor([0, 2]), 4

    def sample(condition):
        g = torch.Generator().manual_seed(0)
        return sample_ddim(
            model, s, shape, num_steps=5, condition=condition, generator=g, progress=False
        )

    # Scale 1 == plain conditional; scale 0 == sampling with the null label.
    torch.testing.assert_close(sample(Condition(y, 1.0, null)), sample(Condition(y)))
    torch.testing.assert_close(
        sample(Condition(y, guidance_scale=0.0, null_class=null)),
        sample(Condition(torch.full((2,), null))),
        atol=1e-6,
        rtol=0,
    )
    # Guided sampling evaluates the doubled batch once per step.
    model.calls = 0
    sample(Condition(y, guidance_scale=3.0, null_class=null))
    assert model.calls == 5
    # Without a null class (TinyEpsModel has no .null_class) guidance cannot run.
    with pytest.raises(ValueError, match="guidance needs the null class"):
        sample(Condition(y, guidance_scale=3.0))
    with pytest.raises(ValueError, match="needs labels to guide towards"):
        Condition(guidance_scale=3.0)


def test_a_large_cpu_batch_is_computed_in_slices_with_the_same_result():
    torch.manual_seed(0)
    model = ConditionalUNet(in_channels=1, base=8, num_classes=10).eval()
    sizes = []
    model.conv_in.register_forward_pre_hook(lambda module, args: sizes.append(len(args[0])))
    n = 2 * CPU_BATCH + 88  # -> 256, 256, 88
    x, t, y = torch.randn(n, 1, 8, 8), torch.randint(0, 1000, (n,)), torch.arange(n) % 11
    with torch.no_grad():
        out = model(x, t, y=y)
        assert sizes == [CPU_BATCH, CPU_BATCH, 88]
        for i in (0, CPU_BATCH - 1, CPU_BATCH, n - 1):  # each sample alone, across the seams
            one = model(x[i : i + 1], t[i : i + 1], y=y[i : i + 1])
            torch.testing.assert_close(out[i : i + 1], one, atol=1e-5, rtol=1e-5)
        sizes.clear()
        model(x[:CPU_BATCH], t[:CPU_BATCH], y=None)  # at the limit: one call, y=None allowed
        assert sizes == [CPU_BATCH]


# --------------------------------------------------------------------------------------------
# ConditionalUNet and the training loss
# --------------------------------------------------------------------------------------------


def test_timestep_embedding():
    e = timestep_embedding(torch.tensor([0, 1, 999]), 32)
    assert e.shape == (3, 32)
    torch.testing.assert_close(e[0], torch.cat([torch.zeros(16), torch.ones(16)]))
    assert e.abs().max() <= 1


def test_conditional_unet_shapes_and_null_class():
    torch.manual_seed(0)
    model = ConditionalUNet(in_channels=1, base=16, num_classes=10)
    x, t = torch.randn(3, 1, 16, 16), torch.tensor([0, 500, 999])
    assert model(x, t, torch.tensor([1, 2, 3])).shape == (3, 1, 16, 16)
    # y=None is the null label, index num_classes.
    torch.testing.assert_close(model(x, t), model(x, t, torch.full((3,), 10)))
    assert ConditionalUNet(in_channels=3, base=16)(torch.randn(2, 3, 8, 12), t[:2]).shape == (
        2,
        3,
        8,
        12,
    )
    with pytest.raises(ValueError, match="divisible by 4"):
        model(torch.randn(1, 1, 10, 10), t[:1])
    with pytest.raises(ValueError, match=r"takes labels in \[0, 9\], got values in \[1, 11\]"):
        model(x, t, torch.tensor([1, 11, 2]))
    with pytest.raises(ValueError, match=r"takes labels in \[0, 9\]"):
        model(x, t, torch.tensor([-1, 0, 2]))
    with pytest.raises(TypeError, match=r"integer class labels.*y\.long\(\)"):
        model(x, t, torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="a flow time\\? this model takes integer steps"):
        model(x, torch.tensor([0.1, 0.5, 0.9]))
    with pytest.raises(ValueError, match="one value per image"):
        model(x, t[:2])
    with pytest.raises(ValueError, match="takes 1-channel images"):
        model(torch.randn(3, 3, 16, 16), t)


def test_diffusion_loss_gradients_reach_every_parameter():
    torch.manual_seed(0)
    model = ConditionalUNet(base=16, num_classes=3)
    x0 = torch.rand(4, 1, 16, 16) * 2 - 1
    y = torch.tensor([0, 1, 2, 1])
    g = torch.Generator().manual_seed(0)
    loss = diffusion_loss(model, NoiseSchedule(100), x0, y, p_uncond=0.5, generator=g)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        if name != "label_emb.weight":  # rows of labels not in the batch get no gradient
            assert p.grad.abs().sum() > 0, name


def test_diffusion_loss_is_reproducible_and_drops_labels():
    seen = []

    class Recorder(TinyEpsModel):
        null_class = 4

        def forward(self, x, t, y=None):
            seen.append((t, y))
            return super().forward(x, t, y)

    model, s = Recorder(channels=1), NoiseSchedule(100)
    x0, y = torch.rand(64, 1, 4, 4) * 2 - 1, torch.zeros(64, dtype=torch.long)

    def loss(p):
        return diffusion_loss(
            model, s, x0, y, p_uncond=p, generator=torch.Generator().manual_seed(1)
        )

    assert loss(0.3) == loss(0.3)
    assert (seen[0][1] == 4).any() and (seen[0][1] == 0).any()
    loss(1.0)
    assert (seen[-1][1] == 4).all()
    loss(0.0)
    assert (seen[-1][1] == 0).all()
    assert seen[-1][0].min() >= 0 and seen[-1][0].max() < 100


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def test_errors():
    s = NoiseSchedule(100)
    x, eps = torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)
    t = torch.tensor([0, 5])
    with pytest.raises(ValueError, match="beta_schedule must be one of"):
        NoiseSchedule(beta_schedule="quadratic")
    with pytest.raises(ValueError, match=r"x \* 2 - 1"):
        q_sample(s, x + 1.5, t, eps)
    with pytest.raises(ValueError, match=r"\[0, 100\)"):
        q_sample(s, x, torch.tensor([0, 100]), eps)
    with pytest.raises(ValueError, match=r"\[0, 100\)"):
        q_sample(s, x, torch.tensor([-1, 0]), eps)
    with pytest.raises(ValueError, match="integer steps"):
        q_sample(s, x, torch.tensor([0.5, 0.25]), eps)
    with pytest.raises(ValueError, match="shape"):
        q_sample(s, x, t, eps[:1])
    with pytest.raises(ValueError, match=r"\[0, 100\)"):
        ddpm_step(s, eps, 100, x)
    with pytest.raises(ValueError, match="model_output"):
        ddpm_step(s, eps[:, :, :2], 5, x)
    with pytest.raises(ValueError, match="not both"):
        ddpm_step(s, eps, 5, x, noise=eps, generator=torch.Generator())
    with pytest.raises(ValueError, match=r"\[0, 100\)"):
        ddim_step(s, eps, -1, -2, x)
    with pytest.raises(ValueError, match="t_prev"):
        ddim_step(s, eps, 10, 10, x)
    with pytest.raises(ValueError, match="eta"):
        ddim_step(s, eps, 10, 0, x, eta=1.5)
    with pytest.raises(ValueError, match="model_output"):
        ddim_step(s, eps[:1], 10, 0, x)
    model = TinyEpsModel()
    with pytest.raises(ValueError, match="num_steps"):
        sample_ddim(model, s, (1, 2, 4, 4), num_steps=101, progress=False)
    with pytest.raises(ValueError, match="num_steps"):
        sample_ddim(model, s, (1, 2, 4, 4), num_steps=0, progress=False)
    with pytest.raises(ValueError, match="null class"):
        sample_ddim(model, s, (1, 2, 4, 4), condition=Condition(torch.tensor([1]), 2.0))
    with pytest.raises(ValueError, match="p_uncond"):
        diffusion_loss(model, s, x - 1, None, p_uncond=2.0)
    with pytest.raises(ValueError, match="null_class"):
        diffusion_loss(model, s, x - 1, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"looks like \[0, 1\]; use x \* 2 - 1"):
        diffusion_loss(model, s, torch.rand(2, 1, 4, 4), None)
    with pytest.raises(ValueError, match="sample_ddpm got 1 labels, expected 2"):
        sample_ddpm(model, s, (2, 2, 4, 4), condition=Condition(torch.tensor([1])), progress=False)
    with pytest.raises(TypeError, match="integer class labels"):
        sample_ddim(model, s, (2, 2, 4, 4), condition=Condition(torch.tensor([1.0, 2.0])))
    unet = ConditionalUNet(2, base=8, num_classes=3)
    with pytest.raises(ValueError, match=r"sample_ddim takes labels in \[0, 2\]"):
        sample_ddim(unet, s, (2, 2, 4, 4), condition=Condition(torch.tensor([0, 5])))


# ------------------------------------------------------------------ EMA and training


def test_ema_averages_parameters_and_copies_buffers():
    from course_utils.diffusion import EMA

    model = torch.nn.BatchNorm1d(3)
    ema = EMA(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(2.0)  # was 1
        model.running_mean.fill_(5.0)
    ema.update(model)
    assert torch.allclose(ema.model.weight, torch.full((3,), 1.1))  # 0.9 * 1 + 0.1 * 2
    assert torch.equal(ema.model.running_mean, model.running_mean)
    assert not ema.model.training and not ema.model.weight.requires_grad
    with pytest.raises(ValueError, match="decay"):
        EMA(model, decay=1.0)


def test_train_diffusion_learns_and_is_deterministic():
    from course_utils.data import digits
    from course_utils.diffusion import ConditionalUNet, NoiseSchedule, train_diffusion

    images, labels = digits(16)
    images, labels = images[:64], labels[:64]
    schedule = NoiseSchedule(100)

    def run():
        torch.manual_seed(0)
        model = ConditionalUNet(1, base=8)
        return train_diffusion(
            model,
            schedule,
            images,
            labels,
            epochs=6,
            lr=2e-3,
            batch_size=16,
            ema_decay=0.9,
            progress=False,
        )

    (ema_a, losses), (ema_b, _) = run(), run()
    assert losses[-1] < losses[0]
    for p, q in zip(ema_a.parameters(), ema_b.parameters()):
        assert torch.equal(p, q)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        train_diffusion(
            ConditionalUNet(1, 8), schedule, images * 2 - 1, labels, epochs=1, progress=False
        )


def test_train_diffusion_calls_on_step_after_every_step_with_the_ema_model():
    from course_utils.data import digits
    from course_utils.diffusion import ConditionalUNet, NoiseSchedule, train_diffusion

    images, labels = digits(16)
    seen = []  # (step, a copy of the EMA weights the callback was given)

    def on_step(step, ema_model):
        seen.append((step, [p.detach().clone() for p in ema_model.parameters()]))

    torch.manual_seed(0)
    ema, _ = train_diffusion(
        ConditionalUNet(1, base=8),
        NoiseSchedule(100),
        images[:64],
        labels[:64],
        epochs=2,
        batch_size=16,
        ema_decay=0.9,
        progress=False,
        on_step=on_step,
    )
    assert [step for step, _ in seen] == list(range(1, 9))  # 64 / 16 = 4 steps per epoch
    assert not all(torch.equal(a, b) for a, b in zip(seen[0][1], seen[-1][1]))  # it moved
    # the last call saw the weights that are returned: the callback gets the average, not a copy
    assert all(torch.equal(a, b) for a, b in zip(seen[-1][1], ema.parameters()))


# ------------------------------------------------------------------ classifier guidance


class LinearClassifier(nn.Module):
    """logits = W flatten(x): the gradient of log softmax is known in closed form."""

    num_classes = 3

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.weight = nn.Parameter(torch.randn(3, 2 * 4 * 4))

    def forward(self, x, t):
        return x.flatten(1) @ self.weight.T


def test_classifier_guidance_adds_the_scaled_classifier_gradient():
    from course_utils.diffusion import ClassifierGuidance

    schedule, denoiser, classifier = NoiseSchedule(100), TinyEpsModel(), LinearClassifier()
    x, t, y = randn(4, 2, 4, 4), torch.tensor([0, 10, 50, 99]), torch.tensor([0, 1, 2, 1])
    guided = ClassifierGuidance(denoiser, classifier, schedule, scale=2.5)
    with torch.no_grad():  # as inside a sampler: the gradient must still be computed
        out = guided(x, t, y)
        eps = denoiser(x, t)  # unconditional: the classifier alone knows y
    # d/dx log softmax(Wx)_y = W_y - sum_k p_k W_k
    p = torch.softmax(x.flatten(1) @ classifier.weight.T, dim=1)
    grad = (classifier.weight[y] - p @ classifier.weight).view_as(x)
    sigma = (1 - schedule.alphas_cumprod[t]).sqrt().view(-1, 1, 1, 1)
    torch.testing.assert_close(out, eps - 2.5 * sigma * grad)
    assert classifier.weight.grad is None  # only x was differentiated
    torch.testing.assert_close(
        ClassifierGuidance(denoiser, classifier, schedule, 0.0)(x, t, y), eps
    )
    with pytest.raises(ValueError, match="needs the labels"):
        guided(x, t)
    with pytest.raises(ValueError, match=r"ClassifierGuidance takes labels in \[0, 2\]"):
        guided(x, t, torch.tensor([0, 1, 3, 0]))


def test_classifier_guidance_steers_a_sampler():
    from course_utils.diffusion import ClassifierGuidance

    schedule, denoiser, classifier = NoiseSchedule(100), TinyEpsModel(), LinearClassifier()
    y = torch.tensor([0, 1, 2, 0])

    def run(scale):
        model = ClassifierGuidance(denoiser, classifier, schedule, scale)
        return sample_ddim(
            model,
            schedule,
            (4, 2, 4, 4),
            num_steps=10,
            condition=Condition(y),
            clip_sample=False,
            progress=False,
            generator=torch.Generator().manual_seed(0),
        )

    plain, steered = run(0.0), run(20.0)
    log_p = lambda x: torch.log_softmax(classifier(x, None), 1)[torch.arange(4), y]  # noqa: E731
    with torch.no_grad():
        steered, plain = log_p(steered), log_p(plain)
    assert (steered >= plain - 1e-6).all() and steered.sum() > plain.sum() + 1


def test_noisy_classifier_shapes_and_training_is_deterministic():
    from course_utils.data import digits
    from course_utils.diffusion import NoisyClassifier, train_noisy_classifier

    images, labels = digits(16)
    images, labels = images[:64], labels[:64]
    schedule = NoiseSchedule(100)
    t = torch.tensor([0, 50, 99])
    assert NoisyClassifier(1, 8, num_classes=7)(randn(3, 1, 16, 16), t).shape == (3, 7)

    def run():
        torch.manual_seed(0)
        classifier = NoisyClassifier(1, base=8)
        losses = train_noisy_classifier(
            classifier,
            schedule,
            images,
            labels,
            epochs=8,
            lr=3e-3,
            batch_size=16,
            progress=False,
        )
        return classifier, losses

    (a, losses), (b, _) = run(), run()
    assert losses[-1] < losses[0]
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        train_noisy_classifier(NoisyClassifier(1, 8), schedule, images - 1, labels, epochs=1)


# ------------------------------------------------------------------ flow matching


def test_fm_path_ends_and_target_is_its_derivative():
    from course_utils.diffusion import fm_path, fm_target

    x1, noise = randn(3, 1, 4, 4, seed=1), randn(3, 1, 4, 4, seed=2)
    torch.testing.assert_close(fm_path(x1, noise, torch.zeros(3)), noise)
    torch.testing.assert_close(fm_path(x1, noise, torch.ones(3)), x1)
    t, h = torch.tensor([0.1, 0.5, 0.8]), 1e-3
    slope = (fm_path(x1, noise, t + h) - fm_path(x1, noise, t - h)) / (2 * h)
    torch.testing.assert_close(slope, fm_target(x1, noise), atol=1e-3, rtol=0)
    with pytest.raises(
        TypeError, match=r"fm_path takes a float time t in \[0, 1\], got torch.int64"
    ):
        fm_path(x1, noise, torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match=r"fm_path takes a time t in \[0, 1\]"):
        fm_path(x1, noise, torch.tensor([0.0, 1.5, 1.0]))
    with pytest.raises(ValueError, match="shape"):
        fm_target(x1, noise[:2])


class ODEField(nn.Module):
    """dx/dt = x cos(t) (t in flow time [0, 1]): x(1) = x(0) exp(sin 1)."""

    def forward(self, x, t, y=None):
        from course_utils.diffusion import FLOW_TIME_SCALE

        return x * torch.cos(t / FLOW_TIME_SCALE).view(-1, 1, 1, 1)


@pytest.mark.parametrize(("sampler", "order"), [("sample_euler", 1), ("sample_heun", 2)])
def test_ode_samplers_converge_with_their_order(sampler, order):
    import math

    from course_utils import diffusion

    x0 = randn(2, 1, 3, 3, seed=4).double()
    exact = x0 * math.exp(math.sin(1.0))
    errors = []
    for n in (8, 16, 32, 64):
        x1 = getattr(diffusion, sampler)(ODEField(), x0.shape, num_steps=n, x_T=x0, progress=False)
        errors.append((x1 - exact).abs().max().item())
    rates = [math.log2(a / b) for a, b in zip(errors, errors[1:])]
    assert all(abs(r - order) < 0.15 for r in rates), (errors, rates)


def test_euler_lands_on_the_data_in_one_step_on_a_straight_path():
    """For a single data point x_1 the ideal velocity is (x_1 - x) / (1 - t): one step suffices."""
    from course_utils.diffusion import FLOW_TIME_SCALE, sample_euler

    x1 = randn(1, 1, 4, 4, seed=5)

    class Ideal(nn.Module):
        def forward(self, x, t, y=None):
            return (x1 - x) / (1 - t / FLOW_TIME_SCALE).view(-1, 1, 1, 1)

    out = sample_euler(Ideal(), (3, 1, 4, 4), num_steps=1, generator=torch.Generator())
    torch.testing.assert_close(out, x1.expand(3, -1, -1, -1))
    with pytest.raises(ValueError, match="num_steps"):
        sample_euler(Ideal(), (3, 1, 4, 4), num_steps=0)


def test_heun_makes_two_guided_calls_per_step():
    from course_utils.diffusion import sample_heun

    model, y = TinyEpsModel(), torch.tensor([0, 2])
    sample_heun(model, (2, 2, 4, 4), num_steps=5, condition=Condition(y, 2.0, 4), progress=False)
    assert model.calls == 10  # one doubled batch per velocity evaluation, two per step


def test_flow_matching_loss_is_the_velocity_regression():
    from course_utils.diffusion import FLOW_TIME_SCALE, flow_matching_loss

    model, x1 = TinyEpsModel(), randn(4, 2, 4, 4).clamp(-1, 1)
    y = torch.tensor([0, 1, 2, 3])
    loss = flow_matching_loss(
        model, x1, y, p_uncond=0.0, generator=torch.Generator().manual_seed(7)
    )
    g = torch.Generator().manual_seed(7)  # replay the draws: t, then noise
    t, noise = torch.rand(4, generator=g), torch.randn(x1.shape, generator=g)
    x_t = (1 - t.view(-1, 1, 1, 1)) * noise + t.view(-1, 1, 1, 1) * x1
    expected = ((model(x_t, t * FLOW_TIME_SCALE, y) - (x1 - noise)) ** 2).mean()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_train_flow_matching_learns_and_is_deterministic():
    from course_utils.data import digits
    from course_utils.diffusion import train_flow_matching

    images, labels = digits(16)
    images, labels = images[:64], labels[:64]

    def run():
        torch.manual_seed(0)
        return train_flow_matching(
            ConditionalUNet(1, base=8),
            images,
            labels,
            epochs=6,
            lr=2e-3,
            batch_size=16,
            ema_decay=0.9,
            progress=False,
        )

    (ema_a, losses), (ema_b, _) = run(), run()
    assert losses[-1] < losses[0]
    for p, q in zip(ema_a.parameters(), ema_b.parameters()):
        assert torch.equal(p, q)


def test_euler_matches_diffusers_flow_match_scheduler_with_time_reversed():
    """Diffusers runs σ = 1 - t from 1 (noise) to 0 (data) and its model predicts ε - x_1 = -v."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    from course_utils.diffusion import FLOW_TIME_SCALE, sample_euler

    model, shape, n = TinyEpsModel(), (2, 2, 4, 4), 8
    ours = sample_euler(model, shape, num_steps=n, generator=torch.Generator().manual_seed(0))
    sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
    sched.set_timesteps(sigmas=[1 - i / n for i in range(n)])  # 1, 7/8, ..., 1/8, then 0
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for timestep in sched.timesteps:  # σ * 1000
            t = FLOW_TIME_SCALE - timestep.float()  # our time, scaled
            x = sched.step(-model(x, t.repeat(shape[0])), timestep, x).prev_sample
    torch.testing.assert_close(ours, x, atol=1e-5, rtol=1e-5)


def test_unbounded_sample_range_for_latents():
    """sample_range=None: no range check, no clipping allowed, training data used as given."""
    from course_utils.diffusion import train_diffusion

    bounded, free = NoiseSchedule(100), NoiseSchedule(100, sample_range=None)
    latents, t, noise = 3 * randn(4, 2, 4, 4), torch.tensor([0, 10, 50, 99]), randn(4, 2, 4, 4)
    with pytest.raises(ValueError, match=r"sample_range=None"):
        q_sample(bounded, latents, t, noise)
    torch.testing.assert_close(
        q_sample(free, latents, t, noise),
        free.alphas_cumprod[t].sqrt().view(-1, 1, 1, 1) * latents
        + (1 - free.alphas_cumprod[t]).sqrt().view(-1, 1, 1, 1) * noise,
    )
    eps = randn(4, 2, 4, 4, seed=9)
    with pytest.raises(ValueError, match="clip_sample=False"):
        ddim_step(free, eps, 50, 30, latents)
    # Without clipping the two schedules take the same step.
    torch.testing.assert_close(
        ddim_step(free, eps, 50, 30, latents, clip_sample=False),
        ddim_step(bounded, eps, 50, 30, latents, clip_sample=False),
    )
    # A range of 2 clips x̂_0 to [-2, 2]: the last DDIM step returns x̂_0 itself.
    wide = NoiseSchedule(100, sample_range=2.0)
    assert ddim_step(wide, eps, 50, -1, latents).abs().max() == pytest.approx(2.0)
    torch.manual_seed(0)
    _, losses = train_diffusion(
        ConditionalUNet(2, base=8, num_classes=3),
        free,
        latents,
        torch.tensor([0, 1, 2, 0]),
        epochs=2,
        batch_size=2,
        progress=False,
    )
    assert len(losses) == 2
