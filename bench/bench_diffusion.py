"""Lesson 07-08's sampling loops against diffusers' schedulers driving the same network.

Both sides run the same ε-network on the same noise, so the ratio measures the sampler's own
overhead: ours is a Python loop calling ``ddpm_step`` / ``ddim_step``, diffusers' a loop calling
``scheduler.step``. The shipped ``diffusion_digits`` U-Net dominates the time; a one-layer
network isolates the per-step overhead.
"""

import torch
from diffusers import DDIMScheduler, DDPMScheduler
from run import Case
from torch import nn

from course_utils import zoo
from course_utils.diffusion import (
    Condition,
    NoiseSchedule,
    classifier_free_guidance,
    sample_ddim,
    sample_ddpm,
)


class OneConv(nn.Module):
    """An ε-network that costs almost nothing: the time left is the sampler's."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x, t, y=None):
        return self.conv(x)


def diffusers_loop(scheduler, model, shape, num_steps=None, y=None, scale=1.0, null_class=10):
    """The sampling loop every diffusers pipeline runs, with classifier-free guidance."""
    generator = torch.Generator().manual_seed(0)
    if num_steps is None:
        scheduler.set_timesteps(scheduler.config.num_train_timesteps)
    else:
        scheduler.set_timesteps(num_steps)
    x = torch.randn(shape, generator=generator)
    with torch.no_grad():
        for t in scheduler.timesteps:
            t_batch = torch.full((shape[0],), int(t), dtype=torch.long)
            if scale == 1.0:
                eps = model(x, t_batch, y=y)
            else:
                eps_cond, eps_uncond = model(
                    torch.cat([x, x]),
                    torch.cat([t_batch, t_batch]),
                    y=torch.cat([y, torch.full_like(y, null_class)]),
                ).chunk(2)
                eps = classifier_free_guidance(eps_uncond, eps_cond, scale)
            x = scheduler.step(eps, t, x, generator=generator).prev_sample
    return x


def benchmarks() -> list[Case]:
    unet = zoo.load("diffusion_digits", device="cpu")
    schedule = NoiseSchedule(**zoo.info("diffusion_digits")["recipe"]["noise_schedule"])
    ddpm = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    ddim = DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        set_alpha_to_one=True,
        steps_offset=0,
        timestep_spacing="leading",
    )
    tiny = OneConv().eval()
    y64 = torch.arange(10).repeat(7)[:64]

    def ours_ddim(model, shape, y=None, scale=1.0):
        return lambda: sample_ddim(
            model,
            schedule,
            shape,
            num_steps=50,
            condition=Condition(y, guidance_scale=scale, null_class=10),
            generator=torch.Generator().manual_seed(0),
            progress=False,
        )

    def ours_ddpm(model, shape):
        return lambda: sample_ddpm(
            model, schedule, shape, generator=torch.Generator().manual_seed(0), progress=False
        )

    return [
        Case(
            "DDIM 50 steps, diffusion_digits U-Net, 64 samples",
            ours_ddim(unet, (64, 1, 16, 16), y64),
            lambda: diffusers_loop(ddim, unet, (64, 1, 16, 16), 50, y64),
            "diffusers DDIMScheduler loop",
            rounds=5,
        ),
        Case(
            "DDIM 50 steps, guidance 3, diffusion_digits U-Net, 64 samples",
            ours_ddim(unet, (64, 1, 16, 16), y64, 3.0),
            lambda: diffusers_loop(ddim, unet, (64, 1, 16, 16), 50, y64, 3.0),
            "diffusers DDIMScheduler loop + CFG",
            rounds=5,
        ),
        Case(
            "DDPM 1000 steps, diffusion_digits U-Net, 8 samples",
            ours_ddpm(unet, (8, 1, 16, 16)),
            lambda: diffusers_loop(ddpm, unet, (8, 1, 16, 16)),
            "diffusers DDPMScheduler loop",
            rounds=3,
        ),
        Case(
            "DDIM 50 steps, one-conv network (sampler overhead), 8 samples",
            ours_ddim(tiny, (8, 1, 16, 16)),
            lambda: diffusers_loop(ddim, tiny, (8, 1, 16, 16), 50),
            "diffusers DDIMScheduler loop",
            rounds=9,
        ),
        Case(
            "DDPM 1000 steps, one-conv network (sampler overhead), 8 samples",
            ours_ddpm(tiny, (8, 1, 16, 16)),
            lambda: diffusers_loop(ddpm, tiny, (8, 1, 16, 16)),
            "diffusers DDPMScheduler loop",
            rounds=5,
        ),
    ]
