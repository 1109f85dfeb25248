"""Lessons 02 and 07-11: the shipped Fashion-MNIST classifier -- lesson 02's best small CNN, and
the judge whose features will define the course's Frechet distance -- and its recipe.

The recipe is the one a GPU course uses, sized for a 2-core CPU: a small ResNet at the images'
own 28x28 (upscaling to ImageNet's 224 would cost 64x the compute for no new detail), random
crops and mirror images so that 55,000 images look like many more, AdamW with a one-cycle
learning rate, label smoothing. Model selection looks at the validation split only; the test
split is scored once, at the end.
"""

from __future__ import annotations

import functools
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from .. import data
from ..checks import check_images
from ..train import evaluate, fit_one_cycle
from ..zoo import Entry
from .resnet import resnet_small

__all__ = ["class_subset", "random_crop_flip", "train_fashion_classifier"]


def random_crop_flip(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Shift every image by up to ``pad`` pixels and mirror half of them (one batch at a time).

    x: [B, C, H, W] -> [B, C, H, W]. A garment a few pixels to the left, or mirrored, is still
    the same garment, so the model must learn what does not change under these moves.
    """
    check_images(x, what="random_crop_flip")  # a float batch [B, C, H, W], finite
    if not isinstance(pad, int) or pad < 0:
        raise ValueError(
            f"random_crop_flip: pad must be a whole number of pixels >= 0, got {pad!r}"
        )
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))  # zeros: Fashion-MNIST's background is black
    dy, dx = torch.randint(0, 2 * pad + 1, (2, b), generator=generator).tolist()
    crops = torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(b)])
    flip = torch.rand(b, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], crops.flip(-1), crops)


def class_subset(
    images: torch.Tensor, labels: torch.Tensor, classes: list[int] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the images of ``classes`` only, relabelled 0, 1, ... in the order given (a network
    with ``len(classes)`` outputs); ``None`` keeps everything. Lesson 06 trains on five classes
    and searches, clusters and calibrates on the five the network never saw."""
    if classes is None:
        return images, labels
    if not classes or len(set(classes)) != len(classes) or not set(classes) <= set(range(10)):
        raise ValueError(f"classes must be distinct Fashion-MNIST labels 0-9, got {classes!r}")
    relabel = torch.full((10,), -1, dtype=torch.long)
    relabel[torch.tensor(classes)] = torch.arange(len(classes))
    keep = relabel[labels] >= 0
    return images[keep], relabel[labels[keep]]


def train_fashion_classifier(
    model: nn.Module,
    *,
    epochs: int,
    lr: float,
    batch_size: int = 128,
    weight_decay: float = 0.01,
    label_smoothing: float = 0.1,
    pad: int = 0,
    classes: list[int] | None = None,
    device: torch.device | str = "cpu",
    progress: bool = False,
    max_steps_per_epoch: int | None = None,
    max_eval_images: int | None = None,
) -> dict:
    """Train on the 55,000 training images; report the 5,000 validation ones after every epoch and
    the 10,000 test images once at the end. Returns ``{"metric": "test_accuracy", ...}``.

    ``pad`` adds that many black pixels on every side (LeNet-5 takes 32x32: ``pad=2``, as its
    authors padded MNIST's 28x28 digits). ``max_eval_images`` scores only the first that many
    validation and test images (FAST mode: a code check, not a measurement). ``classes`` trains
    and scores on those classes only (:func:`class_subset`).
    """

    def split(name: str, limit: int | None = None) -> TensorDataset:
        images, labels = class_subset(*data.fashion_mnist(name), classes)
        return TensorDataset(F.pad(images[:limit], (pad,) * 4), labels[:limit])

    val = DataLoader(split("val", max_eval_images), batch_size=500)
    crops = torch.Generator().manual_seed(0)  # same shuffles and crops every run

    def augment(batch):
        x, y = torch.utils.data.default_collate(batch)
        return random_crop_flip(x, 2, crops), y

    train = DataLoader(
        split("train"),
        batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
        collate_fn=augment,
    )
    start = time.perf_counter()
    history = fit_one_cycle(  # AdamW, warm up over a quarter of the steps, then anneal
        model,
        train,
        val,
        epochs=epochs,
        lr=lr,
        pct_start=0.25,
        weight_decay=weight_decay,
        loss_fn=nn.CrossEntropyLoss(label_smoothing=label_smoothing),
        device=device,
        progress=progress,
        max_steps_per_epoch=max_steps_per_epoch,
    )
    seconds = time.perf_counter() - start
    test = DataLoader(split("test", max_eval_images), batch_size=500)
    return {
        "metric": "test_accuracy",
        "value": evaluate(model, test, device=device)["accuracy"],
        "val_accuracy": history.val_metric[-1],
        "train_seconds": seconds,
        "history": history,
    }


_CLASSIFIER_RECIPE = {
    "epochs": 16,
    "lr": 4e-3,
    "batch_size": 128,
    "weight_decay": 0.01,
    "label_smoothing": 0.1,
}
_CLASSIFIER_NOTES = {
    "augmentation": "random_crop_flip(pad=2)",
    "optimizer": "AdamW + OneCycleLR(pct_start=0.25), label smoothing",
}

#: The shipped models of this module; the manifest names the module, so ``zoo.load`` finds them.
CHECKPOINTS = (
    Entry(
        "resnet_fashion",
        # 3 stages of 2 basic blocks, widths 16-32-64: 175k parameters; x: [B, 1, 28, 28] in
        # [0, 1] -> logits [B, 10], from 64 globally pooled features (the judge's features)
        functools.partial(
            resnet_small, num_classes=10, in_channels=1, widths=(16, 32, 64), blocks=(2, 2, 2)
        ),
        train_fashion_classifier,
        _CLASSIFIER_RECIPE,
        notes=_CLASSIFIER_NOTES
        | {"data": "fashion_mnist: train 55,000 (val 5,000 after every epoch, test 10,000 once)"},
        description="Lesson 02's best small CNN on Fashion-MNIST, and the judge of lessons 07-11",
        config={"in_channels": 1, "image_size": 28, "input_range": [0, 1], "num_classes": 10},
    ),
    Entry(
        "resnet_fashion_five",
        # resnet_fashion's network and recipe on half the classes: its 64 features have never
        # seen a sandal, a shirt, a sneaker, a bag or an ankle boot
        functools.partial(
            resnet_small, num_classes=5, in_channels=1, widths=(16, 32, 64), blocks=(2, 2, 2)
        ),
        train_fashion_classifier,
        _CLASSIFIER_RECIPE | {"classes": [0, 1, 2, 3, 4]},
        notes=_CLASSIFIER_NOTES
        | {"data": "fashion_mnist, classes 0-4 only: train 27,500 (val 2,500, test 5,000 once)"},
        description="resnet_fashion trained on five classes only: features for unseen ones (lesson 06)",
        config={
            "in_channels": 1,
            "image_size": 28,
            "input_range": [0, 1],
            "num_classes": 5,
            "classes": [0, 1, 2, 3, 4],
        },
        threads=2,
    ),
)
