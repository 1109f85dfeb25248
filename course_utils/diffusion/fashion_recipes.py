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
from ..zoo import Entry
from .guidance import Condition
from .recipes import COSINE_1000
from .sample_quality import fid_floor, load_judge, reference_images, sample_scores
from .samplers import sample_ddim
from .schedule import NoiseSchedule
from .training import train_diffusion
from .unet import ConditionalUNet

__all__ = ["train_diffusion_fashion"]

#: The guidance scales every generator is scored at; 3 is the one its headline metric uses.
GUIDANCE_SCALES = (1.0, 2.0, 3.0, 5.0)


def _ddim_scores(model: nn.Module, schedule: NoiseSchedule, judge: nn.Module, scale: float) -> dict:
    """Class accuracy and FID of 500 DDIM-50 samples (50 per class, seed 0) at one guidance scale."""
    reference, wanted = reference_images()
    samples = sample_ddim(
        model,
        schedule,
        (len(wanted), 1, 28, 28),
        num_steps=50,
        condition=Condition(wanted, guidance_scale=scale),
        generator=torch.Generator().manual_seed(0),
        clip_sample=True,
        use_clipped_model_output=True,
        progress=False,
    )
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


def train_diffusion_fashion(
    model: nn.Module,
    *,
    noise_schedule: dict,
    epochs: int,
    lr: float,
    batch_size: int,
    p_uncond: float,
    ema_decay: float,
    curve_epochs: tuple[int, ...] = (),
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> dict:
    """Train a class-conditional ε-model on the 55,000 Fashion-MNIST training images and keep its
    EMA weights; score 500 DDIM-50 samples at each of :data:`GUIDANCE_SCALES` (class accuracy by
    the judge, FID against :func:`reference_images`), and the EMA weights after each of
    ``curve_epochs`` at guidance scale 3: FID against training time.

    Returns ``{"metric": "class_accuracy", "value": accuracy at scale 3, "fid_floor", ...}`` with
    ``accuracy_scale_S`` / ``fid_scale_S`` per scale and ``epoch_E_seconds`` / ``epoch_E_fid`` /
    ``epoch_E_accuracy`` per curve point (flat numbers, as the manifest records them).
    """
    images, labels = data.fashion_mnist("train")
    schedule = NoiseSchedule(**noise_schedule)
    steps_per_epoch = len(images) // batch_size  # the loader drops the last partial batch
    kept, keep = snapshots_at({e * steps_per_epoch for e in curve_epochs})
    start = time.perf_counter()
    ema, _ = train_diffusion(
        model,
        schedule,
        images,
        labels,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        p_uncond=p_uncond,
        ema_decay=ema_decay,
        device=device,
        progress=progress,
        on_step=keep,
    )
    result = {"metric": "class_accuracy", "train_seconds": time.perf_counter() - start}
    model.load_state_dict(ema.state_dict())  # ship the averaged weights
    model.eval()
    judge = load_judge(device, name="resnet_fashion")
    result["fid_floor"] = fid_floor(judge)
    for scale in GUIDANCE_SCALES:
        scores = _ddim_scores(model, schedule, judge, scale)
        result[f"accuracy_scale_{scale:g}"] = scores["accuracy"]
        result[f"fid_scale_{scale:g}"] = scores["fid"]
    result["value"] = result["accuracy_scale_3"]
    earlier = copy.deepcopy(model)
    for step, seconds, state in kept:
        earlier.load_state_dict(state)
        scores = _ddim_scores(earlier, schedule, judge, 3.0)
        epoch = step // steps_per_epoch
        result[f"epoch_{epoch}_seconds"] = seconds
        result[f"epoch_{epoch}_fid"] = scores["fid"]
        result[f"epoch_{epoch}_accuracy"] = scores["accuracy"]
    return result


#: The shipped models of this module; the manifest names the module, so ``zoo.load`` finds them.
CHECKPOINTS = (
    Entry(
        "diffusion_fashion",
        # the 16x16 digits' U-Net, unchanged: 28x28 halves twice to 7x7 (no padding to 32 needed)
        functools.partial(ConditionalUNet, in_channels=1, base=32, num_classes=10),
        train_diffusion_fashion,
        {
            "noise_schedule": COSINE_1000,
            "epochs": 12,
            "lr": 1e-3,
            "batch_size": 128,
            "p_uncond": 0.1,
            "ema_decay": 0.999,
            "curve_epochs": [3, 6, 9],
        },
        notes={
            "data": "fashion_mnist: train 55,000",
            "objective": "epsilon prediction, conditioning dropout p_uncond; EMA weights shipped",
            "optimizer": "AdamW, constant lr",
        },
        architecture=", null class 10",
        description="Class-conditional diffusion model of Fashion-MNIST (lessons 07-08)",
        needs=("resnet_fashion",),
        config={
            "in_channels": 1,
            "image_size": 28,
            "sample_range": [-1, 1],
            "num_classes": 10,
            "null_class": 10,
            "guidance": "classifier-free (conditioning dropout 0.1)",
            "objective": "epsilon",
            "noise_schedule": COSINE_1000,
        },
        threads=2,
    ),
)
