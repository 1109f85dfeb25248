"""The course's models inside the Diffusers library (lesson 11): saving and loading offline, and
swapping schedulers on one trained model."""

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    UNet2DModel,
)

from course_utils import zoo
from course_utils.diffusion import (
    Condition,
    NoiseSchedule,
    load_judge,
    recognition_accuracy,
    sample_ddim,
)


def test_save_and_load_a_diffusers_model_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=16,
        in_channels=1,
        out_channels=1,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=4,
        num_class_embeds=11,
    ).eval()
    scheduler = DDIMScheduler(beta_schedule="squaredcos_cap_v2")
    unet.save_pretrained(tmp_path / "unet")
    scheduler.save_pretrained(tmp_path / "scheduler")
    assert (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").exists()

    loaded = UNet2DModel.from_pretrained(tmp_path / "unet").eval()
    loaded_scheduler = DDIMScheduler.from_pretrained(tmp_path / "scheduler")
    x, t, y = torch.randn(2, 1, 16, 16), torch.tensor([10, 900]), torch.tensor([3, 10])
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(x, t, class_labels=y).sample, unet(x, t, class_labels=y).sample
        )
    torch.testing.assert_close(loaded_scheduler.alphas_cumprod, scheduler.alphas_cumprod)
    assert loaded_scheduler.config.beta_schedule == "squaredcos_cap_v2"


def _diffusers_loop(scheduler, model, y, steps, seed=0):
    scheduler.set_timesteps(steps)
    x = torch.randn((len(y), 1, 16, 16), generator=torch.Generator().manual_seed(seed))
    x = x * scheduler.init_noise_sigma  # Euler-type schedulers start from a wider Gaussian
    with torch.no_grad():
        for t in scheduler.timesteps:
            eps = model(scheduler.scale_model_input(x, t), t.long().repeat(len(y)), y=y)
            x = scheduler.step(eps, t, x).prev_sample
    return x


@pytest.fixture(scope="module")
def trained():
    with zoo.cpu_threads():
        yield zoo.load("diffusion_digits", device="cpu"), load_judge(device="cpu")


def test_ddim_scheduler_swapped_in_reproduces_the_course_sampler(trained):
    model, _ = trained
    base = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    ddim = DDIMScheduler.from_config(base.config, set_alpha_to_one=True, steps_offset=0)
    y = torch.arange(4)
    ours = sample_ddim(
        model,
        NoiseSchedule(1000, "cosine"),
        (4, 1, 16, 16),
        num_steps=20,
        condition=Condition(y),
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    torch.testing.assert_close(_diffusers_loop(ddim, model, y, 20), ours, atol=1e-4, rtol=0)


@pytest.mark.parametrize("scheduler_class", [DPMSolverMultistepScheduler, EulerDiscreteScheduler])
def test_a_scheduler_swap_keeps_the_trained_model_usable(trained, scheduler_class):
    """The ε-model trained for DDPM, sampled in 20 steps by another scheduler, still draws the
    requested digits -- provided the first step avoids t = 999.

    The cosine schedule's last β is clipped at 0.999, so ᾱ_999 = 2.4e-9: a scheduler that starts
    there ("linspace"/"trailing" spacing, these schedulers' default) divides by sqrt(ᾱ) ~ 5e-5 and
    its samples explode (about half are then recognised, by chance). "leading" starts at t = 950.
    """
    model, judge = trained
    base = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    y = torch.arange(10).repeat(4)
    scheduler = scheduler_class.from_config(base.config, timestep_spacing="leading")
    samples = _diffusers_loop(scheduler, model, y, 20)
    assert samples.abs().max() < 2
    assert recognition_accuracy(judge, ((samples + 1) / 2).clamp(0, 1), y) >= 0.9
    exploded = _diffusers_loop(scheduler_class.from_config(base.config), model, y, 20)
    assert exploded.abs().max() > 100
