"""Lesson 05: the two training loops of the lesson's experiments -- fine-tuning with a strategy
(optionally with early stopping on a validation split, keeping the best checkpoint), and domain
adaptation -- both built on the course's ``fit``, and the accuracy they report.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm.auto import tqdm

from .. import runtime
from ..checks import check_images, check_labels
from ..models import count_parameters
from ..train import checked_forward, evaluating, fit
from .domain import DANN, adapt_batch_norm, dann_lambda, mmd_loss
from .schedules import GroupScheduler, warmup_cosine
from .strategies import GradualUnfreezing, discriminative_groups, set_strategy

__all__ = ["accuracy", "fine_tune", "adapt_domain"]

#: What :func:`adapt_domain` can do with the unlabelled target images.
_METHODS = ("none", "adabn", "mmd", "dann")


def _pair(
    pair, what: str, dtype: str | None = "float", num_classes: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images [N, C, H, W], labels [N])`` checked once, at the start of a call."""
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise ValueError(f"{what}: expected a pair (images [N, C, H, W], labels [N])")
    images = check_images(pair[0], what=what, dtype=dtype)
    labels = check_labels(pair[1], what=what, num_classes=num_classes, length=len(images))
    return images, labels


class _Augmented(Dataset):
    """``(images, labels)`` tensors with ``transform`` applied to each image when it is read."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable | None):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        image = self.images[i]
        return (self.transform(image) if self.transform else image), self.labels[i]


@torch.no_grad()
def accuracy(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256
) -> float:
    """Top-1 accuracy of ``model`` on ``images [N, C, H, W]`` with ``labels [N]``, in ``eval()``
    mode (restored afterwards) on the model's device; models returning a tuple (like
    :class:`DANN`) are scored on their first output."""
    images, labels = _pair((images, labels), "accuracy")
    param = next(model.parameters(), None)
    dev = param.device if param is not None else torch.device("cpu")
    correct = 0
    with evaluating(model):
        for i in range(0, len(images), batch_size):
            x = images[i : i + batch_size].to(dev)
            out = model(x) if i else checked_forward(model, x, "accuracy")  # first batch checked
            out = out[0] if isinstance(out, tuple) else out
            if not i:  # a label the model has no class for would count as a miss without a word
                check_labels(labels, what="accuracy", num_classes=out.shape[1])
            correct += int((out.argmax(1).cpu() == labels[i : i + batch_size]).sum())
    return correct / len(images)


def fine_tune(
    model: nn.Module,
    blocks: Sequence[Sequence[str]],
    train: tuple[torch.Tensor, torch.Tensor],
    held_out: tuple[torch.Tensor, torch.Tensor],
    *,
    strategy: str,
    epochs: int,
    lr: float,
    decay: float = 0.3,
    batch_size: int = 32,
    weight_decay: float = 1e-4,
    warmup: float = 0.1,
    transform: Callable | None = None,
    patience: int | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> dict:
    """Train ``model`` in place with one of ``STRATEGIES`` or ``"gradual"`` (gradual unfreezing,
    one block per epoch), AdamW with discriminative rates (``decay`` per block down from the
    head; ``decay=1`` gives one rate, e.g. for training from scratch) and a warm-up + cosine
    schedule (``warmup``: the share of the steps spent warming up), and measure the accuracy on
    ``held_out`` after every epoch.

    ``train``/``held_out``: ``(images [N, C, H, W], labels [N])``; ``transform`` augments each
    training image. ``held_out`` is the *validation* split when the curve chooses anything (the
    epoch, a setting): the test split is then scored once, afterwards, with :func:`accuracy`.

    ``patience``: early stopping with the best checkpoint kept. After each epoch the weights are
    copied if the held-out accuracy is the best so far; training stops once ``patience`` epochs
    in a row have not beaten it, and the best weights are put back in ``model``. ``None``: all
    ``epochs`` run and the last weights stay.

    ``device=None``: the course's device. Shuffling is seeded: the same call gives the same result
    on the CPU. Returns ``{"accuracy": held-out accuracy of the weights left in model,
    "held_out_accuracy": [per epoch run], "train_loss": [per epoch run], "best_epoch": 1-based
    epoch of those weights, "trainable": parameters trainable at the end}``.
    """
    # a transform may take uint8 images (the augmentation presets do): then it converts them
    train = _pair(train, "fine_tune (train)", dtype=None if transform else "float")
    held_out = _pair(held_out, "fine_tune (held_out)")
    if not 0 <= warmup <= 1:
        raise ValueError(f"fine_tune: warmup is a share of the steps, in [0, 1], got {warmup}")
    if patience is not None and (not isinstance(patience, int) or patience < 1):
        raise ValueError(
            f"fine_tune: patience is a number of epochs >= 1 (or None: no early stopping), "
            f"got {patience!r}"
        )
    device = runtime.device() if device is None else torch.device(device)
    model.to(device)
    gradual = strategy == "gradual"
    set_strategy(model, blocks, "feature_extraction" if gradual else strategy)
    optimizer = torch.optim.AdamW(
        discriminative_groups(model, blocks, lr, decay), weight_decay=weight_decay
    )
    unfreezing = GradualUnfreezing(model, blocks, optimizer, lr, decay) if gradual else None
    generator = torch.Generator().manual_seed(0)
    loader = DataLoader(
        _Augmented(*train, transform), batch_size, shuffle=True, generator=generator
    )
    total = epochs * len(loader)
    scheduler = GroupScheduler(
        optimizer, lambda step: warmup_cosine(step, total, round(warmup * total))
    )
    held_out_loader = DataLoader(TensorDataset(*held_out), batch_size=256)
    history = {"held_out_accuracy": [], "train_loss": []}
    best, best_epoch, best_state = -1.0, 0, None
    for epoch in tqdm(range(epochs), desc=strategy, disable=not progress):
        if unfreezing:
            unfreezing.step(epoch)
        # one epoch of the course's training loop; the unfreezing happens between epochs
        epoch_history = fit(
            model,
            loader,
            held_out_loader,
            epochs=1,
            optimizer=optimizer,
            scheduler=scheduler,
            device=device,
            progress=False,
        )
        history["train_loss"] += epoch_history.train_loss
        history["held_out_accuracy"] += epoch_history.val_metric
        if patience is None:
            continue
        if history["held_out_accuracy"][-1] > best:  # a copy, since training goes on in place
            best, best_epoch = history["held_out_accuracy"][-1], epoch + 1
            best_state = copy.deepcopy(model.state_dict())
        elif epoch + 1 - best_epoch >= patience:
            break  # `patience` epochs without a new best: stop early
    if best_state is not None:
        model.load_state_dict(best_state)  # the best checkpoint, not the last epoch
    else:
        best, best_epoch = history["held_out_accuracy"][-1], len(history["held_out_accuracy"])
    return history | {
        "accuracy": best,
        "best_epoch": best_epoch,
        "trainable": count_parameters(model, trainable_only=True),
    }


def _adaptation_step(method: str, target: torch.Tensor, weight: float, batch_size: int, total: int):
    """``train_step(model, batch, device) -> loss`` for ``fit``: the source classification loss,
    plus the alignment term of ``method`` on a random batch of target images."""
    generator, done = torch.Generator().manual_seed(1), itertools.count()

    def step(model: DANN, batch, device) -> torch.Tensor:
        xs, ys = batch
        n = len(xs)
        scale = dann_lambda(next(done) / total)
        if method in ("none", "adabn"):  # AdaBN changes nothing in training: see adapt_domain
            logits, _, _ = model(xs.to(device), scale)
            return F.cross_entropy(logits, ys.to(device))
        xt = target[torch.randint(len(target), (batch_size,), generator=generator)]
        logits, domain, features = model(torch.cat([xs, xt]).to(device), scale)
        loss = F.cross_entropy(logits[:n], ys.to(device))
        if method == "mmd":
            return loss + weight * mmd_loss(features[:n], features[n:])
        is_target = (torch.arange(len(domain), device=device) >= n).float()
        return loss + weight * F.binary_cross_entropy_with_logits(domain, is_target)

    return step


def adapt_domain(
    model: DANN,
    source: tuple[torch.Tensor, torch.Tensor],
    target: torch.Tensor,
    test: tuple[torch.Tensor, torch.Tensor],
    *,
    method: str,
    epochs: int,
    lr: float,
    weight: float = 1.0,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> dict:
    """Train a :class:`DANN` on labelled ``source`` images and *unlabelled* ``target`` images.

    ``method``:

    - ``"none"``: source images and labels only, the baseline;
    - ``"adabn"``: the same training, then :func:`adapt_batch_norm` on the target images before
      each evaluation (AdaBN, Li et al., 2016): batch norm normalises target features with target
      statistics at test time;
    - ``"mmd"``: every batch also carries target images; + ``weight`` * :func:`mmd_loss` between
      the batch's source and target features;
    - ``"dann"``: the same batches, + ``weight`` * the domain classifier's loss through gradient
      reversal, scaled by :func:`dann_lambda`.

    With ``"mmd"`` and ``"dann"`` the batch-norm layers normalise each training batch, and record
    their running statistics, on source and target images together: mixed-domain batches, a side
    effect of the batching. That is not AdaBN, which re-estimates the statistics on the target
    images alone, after training, without changing a weight.

    The target labels are never used for training, only in ``test`` to measure the accuracy after
    every epoch. ``device=None``: the course's device. Returns ``{"accuracy", "test_accuracy",
    "train_loss"}`` like :func:`fine_tune`.
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    num_classes = model.classifier.out_features  # labels beyond it: an index error in the loss
    source = _pair(source, "adapt_domain (source)", num_classes=num_classes)
    test = _pair(test, "adapt_domain (test)", num_classes=num_classes)
    target = check_images(target, what="adapt_domain (target)")
    device = runtime.device() if device is None else torch.device(device)
    model.to(device)
    generator = torch.Generator().manual_seed(0)
    source_loader = DataLoader(
        TensorDataset(*source), batch_size, shuffle=True, generator=generator, drop_last=True
    )
    steps = len(source_loader)
    if steps == 0:
        raise ValueError(
            f"adapt_domain: {len(source[0])} source images make no full batch of {batch_size}: "
            f"lower batch_size"
        )
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    scheduler = GroupScheduler(optimizer, lambda step: warmup_cosine(step, epochs * steps, steps))
    step = _adaptation_step(method, target, weight, batch_size, epochs * steps)
    history = {"test_accuracy": [], "train_loss": []}
    for _ in tqdm(range(epochs), desc=f"adaptation: {method}", disable=not progress):
        epoch_history = fit(
            model,
            source_loader,
            epochs=1,
            optimizer=optimizer,
            scheduler=scheduler,
            train_step=step,
            device=device,
            progress=False,
        )
        history["train_loss"] += epoch_history.train_loss
        if method == "adabn":
            adapt_batch_norm(model, target)
        history["test_accuracy"].append(accuracy(model, *test))
    return history | {"accuracy": history["test_accuracy"][-1]}
