"""Lessons 07-11 on Fashion-MNIST: the shipped class-conditional generators, their recipes, and
the one way every generator of the course is scored.

The judge is ``resnet_fashion`` (lesson 02), trained on the training split only and fixed before
any generator was: its predictions give the class accuracy of the samples, its 64 penultimate
features the Fréchet distance (the course's FID). Its own test accuracy is the ceiling of the
class accuracy: a garment it misreads when real it will misread when generated too.

Every score compares the samples with the same real images: the first 50 test images of each
class (500 in all). A Fréchet distance on 500 samples is biased upwards (the covariance of 64
features is estimated from few samples), so next to it stands the **floor**: the distance from 500
*training* images (50 per class) to the same reference, what a perfect generator would get at this
count. Only distances measured at the same count compare.
"""

from __future__ import annotations

import copy
import functools
import time
from collections.abc import Callable

import torch
from torch import nn

from .. import data
from ..zoo import Entry, load
from .flow import sample_euler, train_flow_matching
from .guidance import Condition
from .recipes import COSINE_1000
from .sample_quality import (
    fid_floor,
    judge_distance,
    load_judge,
    recognition_accuracy,
    reference_images,
    sample_scores,
    to01,
)
from .samplers import sample_ddim
from .schedule import NoiseSchedule
from .training import train_diffusion
from .unet import ConditionalUNet
from .vae import VAE, latent_scale, train_vae

__all__ = [
    "ddim_50",
    "decoded",
    "euler_20",
    "train_autoencoder_fashion",
    "train_generator_fashion",
]

#: The guidance scales every generator is scored at; 3 is the one its headline metric uses.
GUIDANCE_SCALES = (1.0, 2.0, 3.0, 5.0)


#: ``sample(model, condition) -> images [B, 1, 28, 28] in [-1, 1]``: how a recipe draws its samples.
Sampler = Callable[[nn.Module, Condition], torch.Tensor]


def ddim_50(schedule: NoiseSchedule, shape: tuple[int, ...] = (1, 28, 28)) -> Sampler:
    """DDIM in 50 steps under ``schedule``: the diffusion models' sampler. Pixels are clipped to
    their range at every step; latents (``schedule.sample_range`` None) are not bounded."""
    clip = schedule.sample_range is not None

    def sample(model: nn.Module, condition: Condition) -> torch.Tensor:
        return sample_ddim(
            model,
            schedule,
            (len(condition.labels), *shape),
            num_steps=50,
            condition=condition,
            generator=torch.Generator().manual_seed(0),
            clip_sample=clip,
            use_clipped_model_output=clip,
            progress=False,
        )

    return sample


def decoded(sample: Sampler, vae: VAE, scale: float) -> Sampler:
    """A latent sampler followed by the autoencoder's decoder: latents / scale -> pixels."""

    def sample_pixels(model: nn.Module, condition: Condition) -> torch.Tensor:
        with torch.no_grad():
            return vae.decode(sample(model, condition) / scale)

    return sample_pixels


def euler_20(shape: tuple[int, ...] = (1, 28, 28)) -> Sampler:
    """20 Euler steps of a flow-matching model: the flow models' sampler (as many network calls
    as DDIM-20, fewer than DDIM-50)."""

    def sample(model: nn.Module, condition: Condition) -> torch.Tensor:
        generator = torch.Generator().manual_seed(0)
        return sample_euler(
            model,
            (len(condition.labels), *shape),
            num_steps=20,
            condition=condition,
            generator=generator,
            progress=False,
        )

    return sample


def _scores(model: nn.Module, sample: Sampler, judge: nn.Module, scale: float) -> dict:
    """Class accuracy and FID of 500 samples (50 per class, seed 0) at one guidance scale."""
    reference, wanted = reference_images()
    samples = sample(model, Condition(wanted, guidance_scale=scale))
    scores = sample_scores(judge, samples, wanted, reference)
    return {"accuracy": scores["recognised"], "fid": scores["fd"]}


def snapshots_at(steps: set[int]) -> tuple[list, Callable[[int, nn.Module], None]]:
    """A list and the ``on_step`` callback that fills it with ``(step, seconds since the first
    call, EMA weights)`` at each of ``steps``: the points of a learning curve."""
    kept: list = []
    start = time.perf_counter()

    def keep(step: int, ema_model: nn.Module) -> None:
        if step in steps:
            state = copy.deepcopy(ema_model.state_dict())
            kept.append((step, time.perf_counter() - start, state))

    return kept, keep


def _score_generator(
    model: nn.Module, sample: Sampler, kept: list, steps_per_epoch: int, device
) -> dict:
    """Score a trained generator (its EMA weights loaded) at every scale of
    :data:`GUIDANCE_SCALES`, then its ``kept`` snapshots at scale 3: the manifest's flat numbers,
    ``accuracy_scale_S`` / ``fid_scale_S`` and ``epoch_E_seconds`` / ``_fid`` / ``_accuracy``."""
    model.eval()
    judge = load_judge(device, name="resnet_fashion")
    result = {"metric": "class_accuracy", "fid_floor": fid_floor(judge)}
    for scale in GUIDANCE_SCALES:
        scores = _scores(model, sample, judge, scale)
        result[f"accuracy_scale_{scale:g}"] = scores["accuracy"]
        result[f"fid_scale_{scale:g}"] = scores["fid"]
    result["value"] = result["accuracy_scale_3"]
    earlier = copy.deepcopy(model)
    for step, seconds, state in kept:
        earlier.load_state_dict(state)
        scores = _scores(earlier, sample, judge, 3.0)
        epoch = step // steps_per_epoch
        result[f"epoch_{epoch}_seconds"] = seconds
        result[f"epoch_{epoch}_fid"] = scores["fid"]
        result[f"epoch_{epoch}_accuracy"] = scores["accuracy"]
    return result


@torch.no_grad()
def _encode(vae: VAE, images: torch.Tensor, device) -> torch.Tensor:
    """Latent means of ``images`` [N, 1, 28, 28] in [0, 1], 1,000 at a time (all 55,000 at once
    would hold gigabytes of activations): [N, latent_channels, 8, 8] on the CPU."""
    vae.eval()
    return torch.cat([vae.encode(x.to(device) * 2 - 1)[0].cpu() for x in images.split(1000)])


def train_autoencoder_fashion(
    model: VAE,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    beta: float,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> dict:
    """Train the VAE of latent diffusion (lesson 09) on the 55,000 training images; score its
    reconstructions decode(μ(x)): how often the judge still reads the 10,000 test images' right,
    their mean squared error in [0, 1], and the **reconstruction FID**: the floor's 500 training
    images, reconstructed, against the reference (next to ``fid_floor``). No latent diffusion
    model can score below it: it can only draw what the decoder draws."""
    images, _ = data.fashion_mnist("train")
    train_vae(
        model,
        images,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        beta=beta,
        device=device,
        progress=progress,
    )

    def rebuild(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return to01(model.decode(_encode(model, x, device).to(device))).cpu()

    judge = load_judge(device, name="resnet_fashion")
    test, test_labels = data.fashion_mnist("test")
    recon = rebuild(test)
    reference, floor_images = reference_images("test")[0], reference_images("train")[0]
    return {
        "metric": "recognised_reconstructions",
        "value": recognition_accuracy(judge, recon, test_labels),
        "mse": ((recon - test) ** 2).mean().item(),
        "fid_floor": fid_floor(judge),
        "fid_reconstructed": judge_distance(judge, reference, rebuild(floor_images)),
    }


def train_generator_fashion(
    model: nn.Module,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    p_uncond: float,
    ema_decay: float,
    curve_epochs: tuple[int, ...] = (),
    noise_schedule: dict | None = None,
    autoencoder: str | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> dict:
    """Train a class-conditional generator on the 55,000 Fashion-MNIST training images and keep its
    EMA weights: an ε-model under ``noise_schedule`` (diffusion, sampled with DDIM-50), or without
    one a velocity model (flow matching, sampled with 20 Euler steps). With ``autoencoder`` it
    learns the latent means of that shipped VAE, scaled by
    :func:`~course_utils.diffusion.latent_scale` to unit variance, and its samples are decoded
    before they are scored, so every generator's numbers compare.

    Scores 500 samples at each of :data:`GUIDANCE_SCALES` (class accuracy by the judge, FID
    against :func:`reference_images`), and the EMA weights after each of ``curve_epochs`` at
    guidance scale 3: FID against training time. Returns ``{"metric": "class_accuracy", "value":
    accuracy at scale 3, "fid_floor", "train_seconds", ...}`` with ``accuracy_scale_S`` /
    ``fid_scale_S`` per scale and ``epoch_E_seconds`` / ``_fid`` / ``_accuracy`` per curve point
    (flat numbers, as the manifest records them), and the ``latent_scale`` of a latent model.
    """
    images, labels = data.fashion_mnist("train")
    extra = {}
    if autoencoder is not None:
        vae = load(autoencoder, device=device)
        scale = latent_scale(vae, images[:5000])  # the std of 5,000 images' latents is enough
        images, extra = _encode(vae, images, device) * scale, {"latent_scale": scale}
    shape = tuple(images.shape[1:])
    schedule = None if noise_schedule is None else NoiseSchedule(**noise_schedule)
    sample = euler_20(shape) if schedule is None else ddim_50(schedule, shape)
    if autoencoder is not None:
        sample = decoded(sample, vae, scale)
    steps_per_epoch = len(images) // batch_size  # the loader drops the last partial batch
    kept, keep = snapshots_at({e * steps_per_epoch for e in curve_epochs})
    options = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "p_uncond": p_uncond}
    options |= {"ema_decay": ema_decay, "device": device, "progress": progress, "on_step": keep}
    start = time.perf_counter()
    if schedule is None:
        ema, _ = train_flow_matching(model, images, labels, **options)
    else:
        ema, _ = train_diffusion(model, schedule, images, labels, **options)
    seconds = time.perf_counter() - start
    model.load_state_dict(ema.state_dict())  # ship the averaged weights
    scores = _score_generator(model, sample, kept, steps_per_epoch, device)
    return scores | {"train_seconds": seconds} | extra


#: The numbers both pixel generators train with (the diffusion model adds its noise schedule).
_RECIPE = {
    "epochs": 12,
    "lr": 1e-3,
    "batch_size": 128,
    "p_uncond": 0.1,
    "ema_decay": 0.999,
    "curve_epochs": [3, 6, 9],
}
# the 16x16 digits' U-Net, unchanged: 28x28 halves twice to 7x7 (no padding to 32 needed)
_PIXEL_UNET = functools.partial(ConditionalUNet, in_channels=1, base=32, num_classes=10)
_PIXELS = {"in_channels": 1, "image_size": 28, "sample_range": [-1, 1], "num_classes": 10}
_CONDITIONAL = {"null_class": 10, "guidance": "classifier-free (conditioning dropout 0.1)"}
_NOTES = {"data": "fashion_mnist: train 55,000", "optimizer": "AdamW, constant lr"}
#: The latents are not bounded like pixels: no clipping to a sample range.
_LATENT_SCHEDULE = COSINE_1000 | {"sample_range": None}

#: The shipped models of this module; the manifest names the module, so ``zoo.load`` finds them.
CHECKPOINTS = (
    Entry(
        "diffusion_fashion",
        _PIXEL_UNET,
        train_generator_fashion,
        _RECIPE | {"noise_schedule": COSINE_1000},
        notes=_NOTES
        | {"objective": "epsilon prediction, conditioning dropout p_uncond; EMA weights shipped"},
        architecture=", null class 10",
        description="Class-conditional diffusion model of Fashion-MNIST (lessons 07-08)",
        needs=("resnet_fashion",),
        config=_PIXELS | _CONDITIONAL | {"objective": "epsilon", "noise_schedule": COSINE_1000},
        threads=2,
    ),
    Entry(
        "flow_fashion",
        _PIXEL_UNET,
        train_generator_fashion,
        # ten epochs, not twelve: what fitted beside the rest of a 3-hour working session
        _RECIPE | {"epochs": 10},
        notes=_NOTES
        | {
            "objective": "flow matching (straight paths, velocity x1 - noise, t ~ U[0, 1] fed as "
            "1000 t), conditioning dropout p_uncond; EMA weights shipped"
        },
        architecture=", null class 10",
        description="Class-conditional flow-matching model of Fashion-MNIST (lesson 10)",
        needs=("resnet_fashion",),
        config=_PIXELS
        | _CONDITIONAL
        | {"objective": "flow matching", "time": "flow time in [0, 1], fed as 1000 t"},
        threads=2,
    ),
    Entry(
        "autoencoder_fashion",
        functools.partial(VAE, in_channels=1, latent_channels=4, base=32, downsamples=2, pad=2),
        train_autoencoder_fashion,
        {"epochs": 10, "lr": 1e-3, "batch_size": 128, "beta": 1e-3},
        notes=_NOTES | {"objective": "MSE + beta * KL per latent entry"},
        architecture=": 28x28, framed to 32x32 -> 4x8x8",
        description="VAE compressing 28x28 garments to 4x8x8 latents (lesson 09)",
        needs=("resnet_fashion",),
        config={
            "in_channels": 1,
            "image_size": 28,
            "input_range": [-1, 1],
            "pad": 2,
            "latent": [4, 8, 8],
        },
        threads=2,
    ),
    Entry(
        "latent_diffusion_fashion",
        functools.partial(ConditionalUNet, in_channels=4, base=32, num_classes=10),
        train_generator_fashion,
        _RECIPE
        | {"epochs": 30, "noise_schedule": _LATENT_SCHEDULE, "autoencoder": "autoencoder_fashion"},
        notes=_NOTES
        | {"objective": "epsilon prediction, conditioning dropout p_uncond; EMA weights shipped"},
        architecture=" on the 4x8x8 latents of autoencoder_fashion, scaled by latent_scale",
        description="Class-conditional latent diffusion model of Fashion-MNIST (lesson 09)",
        needs=("autoencoder_fashion", "resnet_fashion"),
        config={"in_channels": 4, "image_size": 8, "sample_range": None, "num_classes": 10}
        | _CONDITIONAL
        | {
            "objective": "epsilon",
            "noise_schedule": _LATENT_SCHEDULE,
            "autoencoder": "autoencoder_fashion",
        },
        threads=2,
    ),
)
