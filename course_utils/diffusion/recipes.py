"""Lessons 08-09, until they move to Fashion-MNIST: the digits generative models and their recipes.

Every model is judged the same way: how often the shipped classifier ``resnet_small_digits``
recognises the requested digit in 500 samples (50 per class), guided and unguided. Each entry's
``config`` records what sampling must match: the noise schedule the model was trained with (for
the diffusion models), the value range and the null class of classifier-free guidance.
``python -m course_utils.zoo NAME`` retrains one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn

from .. import data
from ..zoo import Entry, load
from .guidance import Condition, NoisyClassifier, train_noisy_classifier
from .sample_quality import load_judge, recognition_accuracy, to01
from .samplers import sample_ddim
from .schedule import NoiseSchedule, q_sample
from .training import train_diffusion
from .unet import ConditionalUNet
from .vae import VAE, latent_scale, train_vae

__all__ = [
    "train_autoencoder_digits",
    "train_diffusion_digits",
    "train_noisy_classifier_digits",
]

#: The schedule every shipped diffusion model was trained with (``NoiseSchedule(**...)``).
COSINE_1000 = {"num_timesteps": 1000, "beta_schedule": "cosine"}


def _recognised(sample: Callable, scales: dict, device) -> dict:
    """How often ``sample(scale, wanted)`` (images in [-1, 1]) draws the requested digit, judged
    by ``resnet_small_digits`` on 500 samples (50 per class), for each named guidance scale."""
    judge = load_judge(device=device)
    wanted = torch.arange(10).repeat_interleave(50)
    scores = {
        name: recognition_accuracy(judge, to01(sample(scale, wanted)), wanted)
        for name, scale in scales.items()
    }
    return {"metric": "recognised", **scores}


def train_autoencoder_digits(
    model: nn.Module,
    *,
    size: int,
    epochs: int,
    lr: float,
    batch_size: int,
    beta: float,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> dict:
    """Train the VAE of latent diffusion (lesson 09) on the training digits; score its
    reconstructions (from the latent means) of the 450 test digits: how often the judge
    ``resnet_small_digits`` still recognises them, and their mean squared error in [0, 1]."""
    x_train, x_test, _, y_test = data.digits_split(size=size)
    train_vae(
        model,
        x_train,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        beta=beta,
        device=device,
        progress=progress,
    )
    model.eval()
    with torch.no_grad():
        mean, _ = model.encode(x_test.to(device) * 2 - 1)
        recon = to01(model.decode(mean))
    return {
        "metric": "recognised_reconstructions",
        "value": recognition_accuracy(load_judge(device=device), recon, y_test),
        "mse": ((recon - x_test) ** 2).mean().item(),
    }


def train_diffusion_digits(
    model: nn.Module,
    *,
    size: int,
    noise_schedule: dict,
    epochs: int,
    lr: float,
    batch_size: int,
    p_uncond: float,
    ema_decay: float,
    autoencoder: str | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> dict:
    """Train a class-conditional diffusion model on the training digits (``data.digits_split``)
    and keep its EMA weights; measure how often DDIM (50 steps, guidance scale 3) produces the
    requested class, judged by ``resnet_small_digits`` on 500 samples (50 per class).

    With ``autoencoder`` (latent diffusion, lesson 09) the same network and recipe model the
    digits' latent means under that shipped VAE, multiplied by
    :func:`~course_utils.diffusion.latent_scale` (unit variance); samples are decoded before they
    are judged. Pixels are clipped to [-1, 1] at each step (noise re-derived from the clipped
    x0); latents are not bounded, so they are not.

    Returns ``{"metric": "recognised", "value": ..., "recognised_unguided": ...}`` (and the
    ``latent_scale`` with an autoencoder).
    """
    x_train, _, y_train, _ = data.digits_split(size=size)
    decode, extra = (lambda x: x), {}
    if autoencoder is not None:
        vae = load(autoencoder, device=device)
        scale = latent_scale(vae, x_train)
        with torch.no_grad():
            x_train = vae.encode(x_train.to(device) * 2 - 1)[0].cpu() * scale
        decode, extra = (lambda z: vae.decode(z / scale)), {"latent_scale": scale}
    schedule = NoiseSchedule(**noise_schedule)
    ema, _ = train_diffusion(
        model,
        schedule,
        x_train,
        y_train,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        p_uncond=p_uncond,
        ema_decay=ema_decay,
        device=device,
        progress=progress,
    )
    model.load_state_dict(ema.state_dict())  # ship the averaged weights
    clip = schedule.sample_range is not None

    def ddim(scale: float, wanted: torch.Tensor) -> torch.Tensor:
        x = sample_ddim(
            model,
            schedule,
            (len(wanted), *x_train.shape[1:]),
            num_steps=50,
            condition=Condition(wanted, guidance_scale=scale),
            generator=torch.Generator().manual_seed(0),
            clip_sample=clip,
            use_clipped_model_output=clip,
            progress=False,
        )
        with torch.no_grad():
            return decode(x)

    return _recognised(ddim, {"value": 3.0, "recognised_unguided": 1.0}, device) | extra


def train_noisy_classifier_digits(
    model: nn.Module,
    *,
    size: int,
    noise_schedule: dict,
    epochs: int,
    lr: float,
    batch_size: int,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> dict:
    """Train the noise-aware classifier of classifier guidance (lesson 08) on the training digits
    noised to random timesteps, and score it on the 450 test digits, each noised at 10 random t
    (seeded), and at two fixed noise levels.

    Returns ``{"metric": "accuracy_random_t", "value": ..., "accuracy_t0": ..., "accuracy_t500":
    ...}``.
    """
    x_train, x_test, y_train, y_test = data.digits_split(size=size)
    schedule = NoiseSchedule(**noise_schedule)
    train_noisy_classifier(
        model,
        schedule,
        x_train,
        y_train,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        device=device,
        progress=progress,
    )
    model.eval()
    g = torch.Generator().manual_seed(0)
    x0, y = (x_test * 2 - 1).repeat(10, 1, 1, 1), y_test.repeat(10)
    random_t = torch.randint(0, schedule.num_timesteps, (len(x0),), generator=g)
    scores = {}
    with torch.no_grad():
        for name, t in (
            ("value", random_t),
            ("accuracy_t0", torch.zeros_like(random_t)),
            ("accuracy_t500", torch.full_like(random_t, 500)),
        ):
            x_t = q_sample(schedule, x0, t, torch.randn(x0.shape, generator=g))
            predicted = model(x_t.to(device), t.to(device)).argmax(1).cpu()
            scores[name] = (predicted == y).float().mean().item()
    return {"metric": "accuracy_random_t", **scores}


#: What sampling the 16x16 pixel models must match; the latent model overrides the shape.
_PIXELS = {"in_channels": 1, "image_size": 16, "sample_range": [-1, 1], "num_classes": 10}
_CONDITIONAL = {"null_class": 10, "guidance": "classifier-free (conditioning dropout 0.1)"}

#: The numbers of the digits diffusion recipes (pixel and latent).
_DIFFUSION_RECIPE = {
    "size": 16,
    "noise_schedule": COSINE_1000,
    "epochs": 400,
    "lr": 1e-3,
    "batch_size": 128,
    "p_uncond": 0.1,
    "ema_decay": 0.999,
}
_EPSILON = "epsilon prediction, conditioning dropout p_uncond; EMA weights shipped"
_CONSTANT_LR = {"optimizer": "AdamW, constant lr"}
_PIXEL_UNET = functools.partial(ConditionalUNet, in_channels=1, base=32, num_classes=10)
#: The latents are not bounded like pixels: no clipping to a sample range.
_LATENT_SCHEDULE = COSINE_1000 | {"sample_range": None}

#: The shipped models of this module; the manifest names the module, so ``zoo.load`` finds them.
CHECKPOINTS = (
    Entry(
        "autoencoder_digits",
        functools.partial(VAE, in_channels=1, latent_channels=4, base=32, downsamples=2),
        train_autoencoder_digits,
        {"size": 16, "epochs": 60, "lr": 1e-3, "batch_size": 128, "beta": 1e-3},
        notes={"objective": "MSE + beta * KL per latent entry"} | _CONSTANT_LR,
        architecture=": 16x16 -> 4x4x4",
        description="VAE compressing 16x16 digits to 4x4x4 latents (lesson 09)",
        needs=("resnet_small_digits",),
        config={"in_channels": 1, "image_size": 16, "input_range": [-1, 1], "latent": [4, 4, 4]},
    ),
    Entry(
        "diffusion_digits",
        _PIXEL_UNET,
        train_diffusion_digits,
        _DIFFUSION_RECIPE,
        notes={"objective": _EPSILON} | _CONSTANT_LR,
        architecture=", null class 10",
        description="Class-conditional diffusion model of the 16x16 digits (lessons 07-08)",
        needs=("resnet_small_digits",),
        config=_PIXELS | _CONDITIONAL | {"objective": "epsilon", "noise_schedule": COSINE_1000},
    ),
    Entry(
        "latent_diffusion_digits",
        functools.partial(ConditionalUNet, in_channels=4, base=32, num_classes=10),
        train_diffusion_digits,
        _DIFFUSION_RECIPE
        | {"noise_schedule": _LATENT_SCHEDULE, "autoencoder": "autoencoder_digits"},
        notes={"objective": _EPSILON} | _CONSTANT_LR,
        architecture=" on the 4x4x4 latents of autoencoder_digits, scaled by latent_scale",
        description="Class-conditional latent diffusion model of the 16x16 digits (lesson 09)",
        needs=("autoencoder_digits", "resnet_small_digits"),
        config={"in_channels": 4, "image_size": 4, "sample_range": None, "num_classes": 10}
        | _CONDITIONAL
        | {
            "objective": "epsilon",
            "noise_schedule": _LATENT_SCHEDULE,
            "autoencoder": "autoencoder_digits",
        },
    ),
    Entry(
        "noisy_classifier_digits",
        functools.partial(NoisyClassifier, in_channels=1, base=32, num_classes=10),
        train_noisy_classifier_digits,
        {"size": 16, "noise_schedule": COSINE_1000, "epochs": 150, "lr": 1e-3, "batch_size": 128},
        notes={
            "objective": "cross-entropy on q_sample(x0, t), t ~ U{0..T-1}, same schedule as "
            "diffusion_digits"
        }
        | _CONSTANT_LR,
        description="Noise-aware digit classifier p(y | x_t, t) for classifier guidance (lesson 08)",
        config=_PIXELS | {"noise_schedule": COSINE_1000},
    ),
)
