"""Lessons 02-13: the training loop every lesson uses, :func:`fit`, with :func:`evaluate` and
:func:`predict`.

It is deliberately small -- read it once and you know what happens when a lesson calls
``fit(model, train_loader, val_loader, epochs=5)``::

    for each epoch:
        model.train()
        for each batch:  loss = loss_fn(model(x), y);  zero_grad;  backward;  step;  (scheduler)
        evaluate on the validation set: eval mode, under torch.no_grad()

Anything unusual (detection models that return a dict of losses, diffusion models that sample a
timestep) plugs in through ``train_step`` instead of a new copy of the loop; several GPUs under
``torchrun`` go through :func:`course_utils.distributed.fit`, which wraps this one (lesson 13).
The first batch of every call is checked (:mod:`course_utils.checks`), so a wrong input fails
with one sentence naming the fix instead of a raw error from deep inside the model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from itertools import islice

import torch
from torch import nn
from tqdm.auto import tqdm

from .checks import (
    check_finite,
    check_images,
    check_labels,
    check_lengths,
    check_trained_input,
    first_batch,
)
from .runtime import device as default_device

__all__ = ["History", "evaluating", "fit", "fit_one_cycle", "evaluate", "predict"]

#: ``"accuracy"``, ``None`` (loss only) or ``fn(outputs, targets) -> float`` (a mean over the batch).
Metric = str | Callable[[torch.Tensor, torch.Tensor], float] | None

#: ``train_step(model, batch, device) -> scalar loss tensor``.
TrainStep = Callable[[nn.Module, object, torch.device], torch.Tensor]


@dataclass
class History:
    """What :func:`fit` measured: one entry per epoch in each list (plot it with ``plot_history``).

    ``train_loss`` is the mean of the epoch's step losses; ``val_loss`` and ``val_metric`` stay
    empty without a validation loader; ``epoch_time`` is in seconds (training + validation).
    """

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_metric: list[float] = field(default_factory=list)
    epoch_time: list[float] = field(default_factory=list)
    metric_name: str | None = None

    def as_dict(self) -> dict:
        """A plain dict (JSON-serialisable), e.g. to save next to a checkpoint."""
        return asdict(self)


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``with evaluating(model):`` runs the block in eval mode (dropout off, batch norm on its
    running statistics), then gives every submodule back the mode it had, even on an exception.

    Every submodule's own mode is restored, not just the top one: a model in training whose
    batch-norm layers were frozen in eval mode (transfer learning) stays that way.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


def fit(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable | None = None,
    *,
    epochs: int = 1,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    loss_fn: Callable | None = None,
    metric: Metric = "accuracy",
    device: torch.device | str | None = None,
    max_steps_per_epoch: int | None = None,
    train_step: TrainStep | None = None,
    progress: bool = True,
) -> History:
    """Train ``model`` in place for ``epochs`` epochs and return its :class:`History`.

    Args:
        train_loader: yields ``(inputs, targets)`` batches, e.g. ``x: [B, C, H, W]``, ``y: [B]``.
        val_loader: evaluated with :func:`evaluate` after every epoch (same ``loss_fn``, ``metric``).
        optimizer: default ``AdamW(model.parameters(), lr=1e-3)``. Anything else to do at every
            step goes on the optimizer with PyTorch's own hooks, e.g. an EMA of the weights:
            ``optimizer.register_step_post_hook(lambda *_: ema.update(model))``.
        scheduler: stepped once per *optimizer step* (not per epoch), which is what per-step
            schedules expect, e.g. ``OneCycleLR(opt, max_lr=1e-2, total_steps=epochs * len(loader))``
            (:func:`fit_one_cycle` builds that one for you).
        loss_fn: ``loss_fn(outputs, targets) -> scalar``; default ``nn.CrossEntropyLoss()``.
        device: default ``course_utils.device()``; the model is moved there.
        max_steps_per_epoch: stop each epoch after this many steps (FAST mode: a few steps).
        train_step: ``train_step(model, batch, device) -> scalar loss`` replaces the default
            ``loss_fn(model(x), y)``. A torchvision detector, for example, takes lists of images and
            target dicts and returns a dict of losses in training mode::

                def detection_step(model, batch, device):
                    images, targets = batch  # list of [3, H, W], list of {"boxes", "labels"}
                    images = [im.to(device) for im in images]
                    targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
                    return sum(model(images, targets).values())

                fit(detector, loader, epochs=3, train_step=detection_step)  # no val_loader here:
                # in eval mode a detector returns detections, so evaluate it with detection metrics.
        metric: ``"accuracy"``, ``None`` or ``fn(outputs, targets) -> float`` (see :func:`evaluate`).
        progress: show a tqdm bar over all steps with the running loss and the last val metric.

    Raises:
        FloatingPointError: as soon as the loss is NaN or infinite, naming the epoch and step.
        ValueError, TypeError: for a first batch the default step cannot train on (see
            :func:`evaluate`), an empty loader, or a one-shot iterator for several epochs.

    The model is left in ``eval()`` mode, ready for :func:`predict`.
    """
    dev = _device(device)
    model.to(dev)
    if optimizer is None:
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss() if loss_fn is None else loss_fn
    train_step = train_step or _supervised_step(loss_fn)
    history = History(metric_name=_metric_name(metric))
    steps = _num_steps(train_loader, max_steps_per_epoch)
    shown = {}  # what the bar shows after the counts: running loss, last validation scores
    with tqdm(total=None if steps is None else epochs * steps, disable=not progress) as bar:
        for epoch in range(epochs):
            bar.set_description(f"epoch {epoch + 1}/{epochs}")
            start, losses = time.perf_counter(), []
            model.train()  # dropout on, batch norm uses (and updates) batch statistics
            for batch in islice(train_loader, max_steps_per_epoch):
                loss = train_step(model, batch, dev)
                losses.append(_finite(loss.item(), epoch, len(losses)))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                bar.update()
                shown["loss"] = f"{sum(losses) / len(losses):.4f}"
                bar.set_postfix(shown, refresh=False)
            if not losses:
                first_batch(train_loader)  # raises: an empty loader, or a used-up iterator
            history.train_loss.append(sum(losses) / len(losses))
            if val_loader is not None:
                scores = evaluate(model, val_loader, loss_fn=loss_fn, device=dev, metric=metric)
                history.val_loss.append(scores["loss"])
                if history.metric_name is not None:
                    history.val_metric.append(scores[history.metric_name])
                bar.set_postfix(shown | {f"val_{k}": f"{v:.4f}" for k, v in scores.items()})
            history.epoch_time.append(time.perf_counter() - start)
    model.eval()
    return history


def fit_one_cycle(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable | None = None,
    *,
    epochs: int,
    lr: float,
    pct_start: float = 0.3,
    weight_decay: float = 1e-4,
    grad_clip: float | None = None,
    **fit_kwargs,
) -> History:
    """:func:`fit` with AdamW and a one-cycle learning rate (Smith, 2018): warm up to ``lr`` over
    the first ``pct_start`` of the steps, then anneal to almost 0. The recipe the course's
    detector and segmenter train with; other arguments go to :func:`fit` unchanged.

    ``grad_clip`` clips the gradient norm to this value before every step (a bad batch early on
    cannot throw the model off): a step pre-hook on the optimizer, which PyTorch runs inside
    ``optimizer.step()``, after ``backward()``.
    """
    steps = _num_steps(train_loader, fit_kwargs.get("max_steps_per_epoch"))
    if steps is None:
        raise ValueError("fit_one_cycle needs a loader with a length to plan the schedule")
    if pct_start * epochs * steps == 1:  # OneCycleLR divides by (warm-up steps - 1)
        raise ValueError(
            f"fit_one_cycle: pct_start={pct_start} of {epochs * steps} steps is a one-step "
            "warm-up, which OneCycleLR cannot plan; change epochs, max_steps_per_epoch or pct_start"
        )
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    if grad_clip is not None:

        def clip(*_) -> None:  # called as clip(optimizer, args, kwargs); must return None
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)

        optimizer.register_step_pre_hook(clip)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * steps, pct_start=pct_start
    )
    return fit(
        model,
        train_loader,
        val_loader,
        epochs=epochs,
        optimizer=optimizer,
        scheduler=scheduler,
        **fit_kwargs,
    )


@torch.no_grad()  # no graph is built: evaluation needs less memory and runs faster
def evaluate(
    model: nn.Module,
    loader: Iterable,
    *,
    loss_fn: Callable | None = None,
    device: torch.device | str | None = None,
    metric: Metric = "accuracy",
    max_steps: int | None = None,
) -> dict[str, float]:
    """Mean loss and metric of ``model`` over ``(inputs, targets)`` batches, e.g. ``{"loss": 0.31,
    "accuracy": 0.91}``.

    Both are averaged over *samples*, not batches, so a smaller last batch counts for what it is.
    ``metric="accuracy"`` compares ``outputs.argmax(1)`` (``outputs: [B, num_classes, ...]``) with
    ``targets: [B, ...]``; a callable ``metric(outputs, targets) -> float`` must return the mean
    over the batch and is reported under its ``__name__``. The model runs in eval mode and is
    given back in the mode it came in.

    The first batch is checked: tensors (not NumPy arrays or lists), of equal lengths, finite;
    image batches ``[B, C, H, W]`` float (not uint8) and, when none is negative, in [0, 1] (not
    [0, 255]); class labels ``[B]`` integers in ``[0, num_classes)``, ``num_classes`` read from the
    model's first output. A model that cannot take the inputs' shape says so.
    """
    dev = _device(device)
    loss_fn = nn.CrossEntropyLoss() if loss_fn is None else loss_fn
    name = _metric_name(metric)
    _num_steps(loader, max_steps)  # refuses max_steps < 1
    total_loss, total_metric, n = 0.0, 0.0, 0
    with evaluating(model.to(dev)):
        for batch in islice(loader, max_steps):  # islice(loader, None) takes every batch
            inputs, targets = _to(_split(batch), dev)
            outputs = (
                model(inputs) if n else checked_forward(model, inputs, "evaluate", targets, loss_fn)
            )
            b = len(targets)
            total_loss += loss_fn(outputs, targets).item() * b
            if name == "accuracy":
                total_metric += (outputs.argmax(1) == targets).float().mean().item() * b
            elif name is not None:
                total_metric += float(metric(outputs, targets)) * b
            n += b
    if n == 0:
        first_batch(loader)  # raises: an empty loader, or a used-up iterator
    scores = {"loss": total_loss / n}
    return scores if name is None else scores | {name: total_metric / n}


@torch.no_grad()
def predict(
    model: nn.Module,
    loader_or_tensor: Iterable | torch.Tensor,
    *,
    device: torch.device | str | None = None,
    batch_size: int = 256,
) -> torch.Tensor:
    """The model's outputs for every input, concatenated on the CPU: ``[N, ...]``.

    ``loader_or_tensor`` is either a tensor ``x: [N, ...]`` (split into ``batch_size`` chunks) or a
    loader of inputs or of ``(inputs, targets)`` batches (the targets are ignored). The model
    predicts in eval mode (dropout off, batch-norm running statistics) and is then put back in the
    mode it was in, so predicting in the middle of training does not stop dropout. The first
    batch is checked as in :func:`evaluate` (without labels).
    """
    dev = _device(device)
    if isinstance(loader_or_tensor, torch.Tensor):
        check_lengths("predict", inputs=loader_or_tensor)
        batches = loader_or_tensor.split(batch_size)
    else:
        batches = (b[0] if isinstance(b, (list, tuple)) else b for b in loader_or_tensor)
    outputs = []
    with evaluating(model.to(dev)):
        for x in batches:
            x = _to(x, dev)
            y = model(x) if outputs else checked_forward(model, x, what="predict")
            outputs.append(y.cpu())
    if not outputs:
        first_batch(loader_or_tensor)  # raises: an empty loader, or a used-up iterator
    return torch.cat(outputs)


# -- the pieces the three share --------------------------------------------------------------


def _supervised_step(loss_fn: Callable) -> TrainStep:
    """:func:`fit`'s default ``train_step``: ``loss_fn(model(x), y)``, the first batch checked."""
    checked = False

    def step(model: nn.Module, batch, device: torch.device) -> torch.Tensor:
        nonlocal checked
        inputs, targets = _to(_split(batch), device)
        if checked:
            return loss_fn(model(inputs), targets)
        checked = True
        return loss_fn(checked_forward(model, inputs, "fit", targets, loss_fn), targets)

    return step


def checked_forward(model, inputs, what: str, targets=None, loss_fn=None) -> torch.Tensor:
    """``model(inputs)`` for the first batch of a call, after (and, for labels, with) its checks.

    Inputs and targets must be finite tensors of one length; a 4-D batch is images: of the size,
    channels and range a shipped model was trained on (``model.config``), else float, and in
    [0, 1] when no value is negative (a normalised batch has negatives). Class labels
    (``targets: [B]`` for ``outputs: [B, C]``) must lie in ``[0, C)``: checked here, before the
    loss, which would fail with a raw index error (or a device-side assert on a GPU).
    """
    check_finite(inputs, what=what)  # a tensor (NumPy arrays and lists get the fix), no NaN
    if targets is not None:
        check_finite(targets, what=what)
        check_lengths(what, inputs=inputs, targets=targets)
    check_lengths(what, inputs=inputs)  # an empty batch
    if inputs.ndim == 4 and getattr(model, "config", None):  # a shipped model: its record
        check_trained_input(model, inputs, what=what)
    elif inputs.ndim == 4:
        positive = bool(inputs.min() >= 0) if inputs.is_floating_point() else False
        check_images(inputs, what=what, value_range=(0.0, 1.0) if positive else None)
    try:
        outputs = model(inputs)
    except torch.cuda.OutOfMemoryError:
        raise
    except RuntimeError as err:  # a package model checks itself; any other says it here
        raise ValueError(
            f"{what}: the model cannot take inputs of shape {tuple(inputs.shape)} "
            f"({inputs.dtype}): are the image size and channel count the ones it was built "
            f"for? ({err})"
        ) from err
    if targets is not None and _class_labels(outputs, targets, loss_fn):
        check_labels(targets, what=what, num_classes=outputs.shape[1])
    return outputs


def _class_labels(outputs: torch.Tensor, targets: torch.Tensor, loss_fn) -> bool:
    """Whether ``targets`` are one class label per sample for ``outputs: [B, C]``: integers, or
    anything fed to a classification loss (float labels there are a mistake worth naming)."""
    if not (outputs.ndim == 2 and targets.ndim == 1):
        return False
    return not targets.is_floating_point() or isinstance(loss_fn, nn.CrossEntropyLoss | nn.NLLLoss)


def _device(device: torch.device | str | None) -> torch.device:
    return torch.device(device) if device is not None else default_device()


def _to(obj, dev: torch.device):
    """Move a tensor, or the tensors inside lists/tuples/dicts (detection targets), to ``dev``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(dev)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to(o, dev) for o in obj)
    if isinstance(obj, dict):
        return {k: _to(v, dev) for k, v in obj.items()}
    return obj


def _metric_name(metric: Metric) -> str | None:
    if metric is None or metric == "accuracy":
        return metric
    if not callable(metric):
        raise ValueError(f'metric must be "accuracy", None or fn(outputs, targets), got {metric!r}')
    return getattr(metric, "__name__", "metric")


def _split(batch) -> tuple:
    """``(inputs, targets)`` from a batch, with a clear error for anything else."""
    if not (isinstance(batch, (list, tuple)) and len(batch) == 2):
        raise ValueError(
            f"expected (inputs, targets) batches, got {type(batch).__name__}: pass "
            "train_step=... to fit() for other batch formats, or use predict() for inputs only"
        )
    return batch


def _num_steps(loader: Iterable, max_steps: int | None) -> int | None:
    """How many batches one pass will take (``None`` when the loader has no length)."""
    if max_steps is not None and max_steps < 1:
        raise ValueError(
            f"the maximum number of steps must be at least 1 (or None), got {max_steps}"
        )
    try:
        n = len(loader)
    except TypeError:
        return max_steps
    return n if max_steps is None else min(n, max_steps)


def _finite(loss: float, epoch: int, step: int) -> float:
    """``loss``, unless it is NaN or infinite: then fail now, not after hours of NaN "training"."""
    if not math.isfinite(loss):
        raise FloatingPointError(
            f"loss is {loss} at epoch {epoch + 1}, step {step + 1}: try a lower learning rate, "
            "fit_one_cycle(..., grad_clip=1.0), or check that the inputs are normalised"
        )
    return loss
