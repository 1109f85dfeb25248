"""The shipped digits classifiers and their recipes.

``lenet5_digits``, ``minivgg_digits`` and ``resnet_small_digits`` (lessons 00 and 02, and the
judge of the generative lessons 07-11) are trained by one function, :func:`train_digits_classifier`,
on the fixed digits split; lesson 02 reruns the very same recipe in front of the learner.
``python -m course_utils.zoo NAME`` retrains one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from .. import data
from ..train import evaluate, fit
from ..zoo import Entry
from .lenet import LeNet5
from .resnet import resnet_small
from .vgg import MiniVGG

__all__ = ["train_digits_classifier"]


def train_digits_classifier(
    model: nn.Module,
    *,
    size: int,
    epochs: int,
    lr: float,
    batch_size: int = 64,
    cosine: bool = False,
    device: torch.device | str = "cpu",
    progress: bool = False,
    max_steps_per_epoch: int | None = None,
) -> dict:
    """Train a classifier on the fixed digits split (``data.digits_split``, seed 0).

    Returns the held-out test accuracy, the number every digits lesson compares against, and the
    :class:`~course_utils.train.History` (test loss and accuracy after every epoch, for curves;
    they are only looked at, never used to pick anything). The zoo trains on the CPU (byte-identical
    weights); a lesson reuses the very same recipe with ``device``, ``progress`` and, in FAST mode,
    ``max_steps_per_epoch``. ``cosine=True`` lowers the learning rate from ``lr`` to 0 along a
    cosine over all steps: the last epochs fine-tune instead of jumping around, so the final
    weights (the ones shipped) are good ones.
    """
    x_train, x_test, y_train, y_test = data.digits_split(size=size)
    shuffle = torch.Generator().manual_seed(0)  # same batches every run: byte-identical weights
    train = DataLoader(TensorDataset(x_train, y_train), batch_size, shuffle=True, generator=shuffle)
    test = DataLoader(TensorDataset(x_test, y_test), batch_size=256)
    optimizer = scheduler = None  # a constant lr: a plain AdamW, built in the call below
    if cosine:
        model.to(device)  # the optimizer must hold the parameters where they will be trained
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
        steps = epochs * min(len(train), max_steps_per_epoch or len(train))
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    history = fit(
        model,
        train,
        test,
        epochs=epochs,
        optimizer=optimizer or torch.optim.AdamW(model.parameters(), lr=lr),
        scheduler=scheduler,
        device=device,
        progress=progress,
        max_steps_per_epoch=max_steps_per_epoch,
    )
    accuracy = evaluate(model, test, device=device)["accuracy"]
    return {"metric": "test_accuracy", "value": accuracy, "history": history}


def _digits_classifier(
    name: str, build: Callable[[], nn.Module], description: str, **hyper
) -> Entry:
    """The entry of a digits classifier trained by :func:`train_digits_classifier` with ``hyper``."""
    return Entry(
        name,
        build,
        train_digits_classifier,
        hyper,
        notes={"data": "digits_split(seed=0): 1,347 train / 450 test", "optimizer": "AdamW"},
        description=description,
        config={
            "in_channels": 1,
            "image_size": hyper["size"],
            "input_range": [0, 1],
            "num_classes": 10,
        },
    )


#: The shipped models of this module; the manifest names the module, so ``zoo.load`` finds them.
CHECKPOINTS = (
    _digits_classifier(
        "lenet5_digits",
        functools.partial(LeNet5, num_classes=10, in_channels=1),
        "LeNet-5 on the embedded digits resized to 32x32 (lessons 00 and 02)",
        size=32,
        epochs=40,
        lr=3e-3,
    ),
    _digits_classifier(
        "minivgg_digits",
        functools.partial(MiniVGG, num_classes=10, in_channels=1, widths=(32, 64, 128)),
        "MiniVGG (3 VGG blocks, global average pooling) on the digits resized to 16x16 (lesson 02)",
        size=16,
        epochs=30,
        lr=3e-3,
        cosine=True,
    ),
    _digits_classifier(
        "resnet_small_digits",
        functools.partial(resnet_small, num_classes=10, in_channels=1),
        "A small ResNet (3 stages of one basic block) on the digits resized to 16x16 (lesson 02)",
        size=16,
        epochs=30,
        lr=3e-3,
        cosine=True,
    ),
)
