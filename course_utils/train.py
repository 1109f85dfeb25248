"""The training loop every lesson uses: :func:`fit`, :func:`evaluate` and :func:`predict`.

It is deliberately small -- read it once and you know what happens when a lesson calls
``fit(model, train_loader, val_loader, epochs=5)``::

    for each epoch:
        model.train()
        for each batch:  loss = loss_fn(model(x), y);  zero_grad;  backward;  (clip);  step;  (scheduler)
        model.eval()
        evaluate on the validation set under torch.no_grad()

Anything unusual (detection models that return a dict of losses, diffusion models that sample a
timestep) plugs in through ``train_step`` instead of a new copy of the loop.

The same call runs unchanged on several GPUs (or CPU processes) under ``torchrun``: when a process
group is initialised (:func:`course_utils.distributed.setup`), :func:`fit` wraps the model in
``DistributedDataParallel``, gives each process its own shard of every epoch, averages the numbers
it records over the processes and shows its progress bar on rank 0 only (appendix lesson 13).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from itertools import islice

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, SequentialSampler
from tqdm.auto import tqdm

from .runtime import device as default_device

__all__ = ["History", "fit", "fit_one_cycle", "evaluate", "predict"]

#: ``"accuracy"``, ``None`` (loss only) or ``fn(outputs, targets) -> float`` (a mean over the batch).
Metric = str | Callable[[torch.Tensor, torch.Tensor], float] | None


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
    try:
        n = len(loader)
    except TypeError:
        return max_steps
    return n if max_steps is None else min(n, max_steps)


def _distributed() -> bool:
    """Whether this process is one of several started by ``torchrun`` (a process group exists)."""
    return dist.is_available() and dist.is_initialized()


def _shard(loader: Iterable, *, train: bool) -> Iterable:
    """This rank's share of ``loader``: the same ``DataLoader`` rebuilt on a shard of the dataset.

    Only a plain ``DataLoader`` with a random or sequential sampler is rebuilt; anything else (a
    list of batches, a custom sampler, one that is already a ``DistributedSampler``) is used as
    given. Training uses a ``DistributedSampler``: one permutation per epoch shared by all ranks,
    rank ``r`` taking every ``world_size``-th index from position ``r``, padded with repeats so that
    every rank takes the same number of steps (each step all-reduces gradients, so a rank with one
    step more would wait for the others forever). Validation needs no equal lengths (nothing is
    all-reduced per batch) and must not count a sample twice: a strided split, without padding.
    """
    if not (
        isinstance(loader, DataLoader)
        and loader.batch_size is not None  # batch_size=None: the dataset yields whole batches
        and type(loader.sampler) in (RandomSampler, SequentialSampler)
    ):
        if train and not isinstance(getattr(loader, "sampler", None), DistributedSampler):
            warnings.warn(
                "fit() under torchrun: train_loader is not a DataLoader with shuffle=True/False, so "
                "every rank trains on the same batches (correct, but no faster); give it a "
                "DistributedSampler to split the data",
                stacklevel=3,
            )
        return loader
    dataset = loader.dataset
    if train:
        sampler = DistributedSampler(dataset, shuffle=isinstance(loader.sampler, RandomSampler))
    else:
        sampler = range(dist.get_rank(), len(dataset), dist.get_world_size())
    return DataLoader(
        dataset,
        batch_size=loader.batch_size,
        sampler=sampler,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        drop_last=loader.drop_last,
        worker_init_fn=loader.worker_init_fn,
        persistent_workers=loader.persistent_workers,
        prefetch_factor=loader.prefetch_factor,
    )


def _mean_over_ranks(total: float, count: float, dev: torch.device) -> float:
    """``sum(total) / sum(count)`` over all ranks: every rank gets the same number back."""
    if not _distributed():
        return total / count
    sums = torch.tensor([total, count], dtype=torch.float64, device=dev)
    dist.all_reduce(sums)  # NCCL reduces CUDA tensors only, hence device=dev
    return (sums[0] / sums[1]).item()


def fit(
    model: nn.Module,
    train_loader: Iterable,
    val_loader: Iterable | None = None,
    *,
    epochs: int = 1,
    optimizer: torch.optim.Optimizer | None = None,
    lr: float = 1e-3,
    loss_fn: Callable | None = None,
    scheduler=None,
    device: torch.device | str | None = None,
    max_steps_per_epoch: int | None = None,
    train_step: Callable | None = None,
    metric: Metric = "accuracy",
    grad_clip: float | None = None,
    after_step: Callable[[], None] | None = None,
    progress: bool = True,
) -> History:
    """Train ``model`` in place for ``epochs`` epochs and return its :class:`History`.

    Args:
        train_loader: yields ``(inputs, targets)`` batches, e.g. ``x: [B, C, H, W]``, ``y: [B]``.
        val_loader: evaluated with :func:`evaluate` after every epoch (same ``loss_fn``, ``metric``).
        optimizer: default ``AdamW(model.parameters(), lr=lr)`` (``lr`` is unused otherwise).
        loss_fn: ``loss_fn(outputs, targets) -> scalar``; default ``nn.CrossEntropyLoss()``.
        scheduler: stepped once per *optimizer step* (not per epoch), which is what per-step
            schedules expect, e.g. ``OneCycleLR(opt, max_lr=1e-2, total_steps=epochs * len(loader))``.
        device: default ``course_utils.device()``; the model is moved there.
        max_steps_per_epoch: stop each epoch after this many steps (FAST mode: a few steps).
        train_step: ``train_step(model, batch, device) -> scalar loss tensor`` replaces the default
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
        grad_clip: clip the gradient norm to this value before each step (stabilises training).
        after_step: called with no argument after every optimizer step, e.g. to update an
            exponential moving average of the weights (:class:`~course_utils.diffusion.EMA`).
        progress: show a tqdm bar over all steps with the running loss and the last val metric.

    Under ``torchrun`` (a process group is initialised, see :mod:`course_utils.distributed`) the
    same call trains data-parallel, and every rank must make it:

    - the model is wrapped in ``DistributedDataParallel``, which copies rank 0's weights to every
      rank and averages the gradients over the ranks in ``backward()``, so the copies stay equal
      (``train_step`` gets the wrapper: reach the model's own attributes through ``.module``);
    - a ``DataLoader`` with ``shuffle=True``/``False`` is rebuilt with a ``DistributedSampler``:
      each rank trains on its ``1 / world_size`` of every epoch, ``batch_size`` is per rank;
    - ``sampler.set_epoch(epoch)`` is called before every epoch (also on a sampler you passed):
      the sampler seeds its shuffle with it, and without it every epoch repeats the same order;
    - every rank validates its own shard of ``val_loader`` and the sums are all-reduced, so the
      :class:`History` (train losses too) holds the same numbers on every rank, those of the
      whole data set, ``world_size`` times faster than rank 0 evaluating alone;
    - the progress bar shows on rank 0 only. Save checkpoints with
      :func:`course_utils.distributed.save_checkpoint` (rank 0 writes, the others wait).

    Raises:
        FloatingPointError: as soon as the loss is NaN or infinite, naming the epoch and step.

    The model is left in ``eval()`` mode, ready for :func:`predict`.
    """
    dev = torch.device(device) if device is not None else default_device()
    distributed = _distributed()
    if distributed and dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())  # setup() picked LOCAL_RANK's GPU
    model.to(dev)
    if optimizer is None:
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    if loss_fn is None:
        loss_fn = nn.CrossEntropyLoss()
    history = History(metric_name=_metric_name(metric))
    if distributed:
        if not isinstance(model, DistributedDataParallel):  # the wrapper shares model's parameters
            model = DistributedDataParallel(model, device_ids=[dev] if dev.type == "cuda" else None)
        train_loader = _shard(train_loader, train=True)
        if val_loader is not None:
            val_loader = _shard(val_loader, train=False)
    # evaluation needs no gradient averaging: the plain model, so no rank waits on another
    plain = model.module if isinstance(model, DistributedDataParallel) else model

    def default_step(model, batch, dev):
        inputs, targets = _to(_split(batch), dev)
        return loss_fn(model(inputs), targets)

    step_fn = train_step or default_step
    steps = _num_steps(train_loader, max_steps_per_epoch)
    postfix = {}  # what the bar shows after the counts: running loss, last validation metric
    show = progress and (not distributed or dist.get_rank() == 0)
    sampler = getattr(train_loader, "sampler", None)
    with tqdm(total=None if steps is None else epochs * steps, disable=not show) as bar:
        for epoch in range(epochs):
            bar.set_description(f"epoch {epoch + 1}/{epochs}")
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)  # a new shuffle each epoch, the same one on every rank
            start, losses = time.perf_counter(), []
            model.train()  # dropout on, batch norm uses (and updates) batch statistics
            for step, batch in enumerate(islice(train_loader, max_steps_per_epoch)):
                loss = step_fn(model, batch, dev)
                value = loss.item()
                if not math.isfinite(value):  # fail now, not after hours of NaN "training"
                    raise FloatingPointError(
                        f"loss is {value} at epoch {epoch + 1}, step {step + 1}: try a lower "
                        "learning rate, grad_clip=1.0, or check that the inputs are normalised"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if grad_clip is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                if after_step is not None:
                    after_step()
                losses.append(value)
                bar.update()
                postfix["loss"] = f"{sum(losses) / len(losses):.4f}"
                bar.set_postfix(postfix, refresh=False)
            if not losses:
                raise ValueError("train_loader yielded no batches (or max_steps_per_epoch=0)")
            history.train_loss.append(_mean_over_ranks(sum(losses), len(losses), dev))
            if val_loader is not None:
                totals = _evaluate_totals(plain, val_loader, loss_fn, dev, metric, None)
                n = totals["n"]
                scores = {k: _mean_over_ranks(v, n, dev) for k, v in totals.items() if k != "n"}
                history.val_loss.append(scores["loss"])
                postfix["val_loss"] = f"{scores['loss']:.4f}"
                if history.metric_name is not None:
                    history.val_metric.append(scores[history.metric_name])
                    postfix[f"val_{history.metric_name}"] = f"{history.val_metric[-1]:.4f}"
                bar.set_postfix(postfix)
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
    max_steps_per_epoch: int | None = None,
    **fit_kwargs,
) -> History:
    """:func:`fit` with AdamW and a one-cycle learning rate (Smith, 2018): warm up to ``lr`` over
    the first ``pct_start`` of the steps, then anneal to almost 0. The recipe the course's
    detector and segmenter train with; other arguments go to :func:`fit` unchanged."""
    if _distributed():  # plan the schedule over this rank's steps: world_size times fewer
        train_loader = _shard(train_loader, train=True)
    steps = _num_steps(train_loader, max_steps_per_epoch)
    if steps is None:
        raise ValueError("fit_one_cycle needs a loader with a length to plan the schedule")
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
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
        max_steps_per_epoch=max_steps_per_epoch,
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
    over the batch and is reported under its ``__name__``. The model is put in ``eval()`` mode.
    """
    dev = torch.device(device) if device is not None else default_device()
    totals = _evaluate_totals(model, loader, loss_fn, dev, metric, max_steps)
    n = totals.pop("n")
    return {k: v / n for k, v in totals.items()}


@torch.no_grad()
def _evaluate_totals(model, loader, loss_fn, dev, metric, max_steps) -> dict[str, float]:
    """:func:`evaluate`'s sums before the division, ``{"loss": ..., name: ..., "n": samples}``:
    sums, unlike means, can be added up over the shards that several ranks evaluated."""
    model.to(dev).eval()  # dropout off, batch norm uses its running statistics
    if loss_fn is None:
        loss_fn = nn.CrossEntropyLoss()
    name = _metric_name(metric)
    total_loss, total_metric, n = 0.0, 0.0, 0
    for batch in islice(loader, max_steps):  # islice(loader, None) takes every batch
        inputs, targets = _to(_split(batch), dev)
        outputs = model(inputs)
        b = len(targets)
        total_loss += loss_fn(outputs, targets).item() * b
        if name == "accuracy":
            total_metric += (outputs.argmax(1) == targets).float().mean().item() * b
        elif name is not None:
            total_metric += float(metric(outputs, targets)) * b
        n += b
    if n == 0:
        raise ValueError("evaluate() got an empty loader (or max_steps=0): nothing to average")
    totals = {"loss": total_loss, "n": n}
    if name is not None:
        totals[name] = total_metric
    return totals


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
    mode it was in, so predicting in the middle of training does not stop dropout.
    """
    dev = torch.device(device) if device is not None else default_device()
    if isinstance(loader_or_tensor, torch.Tensor):
        batches = loader_or_tensor.split(batch_size)
    else:
        batches = (b[0] if isinstance(b, (list, tuple)) else b for b in loader_or_tensor)
    was_training = model.training
    model.to(dev).eval()
    try:
        outputs = [model(_to(x, dev)).cpu() for x in batches]
    finally:  # even if a batch fails
        model.train(was_training)
    if not outputs:
        raise ValueError("predict() got no inputs")
    return torch.cat(outputs)
