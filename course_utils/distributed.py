"""Lesson 13: training on several GPUs (or CPU processes) with ``torchrun``.

``torchrun --nproc-per-node N script.py`` starts ``N`` copies of the script and tells each its
place through environment variables: ``RANK`` (0 ... N - 1 over all machines), ``LOCAL_RANK`` (its
GPU on this machine) and ``WORLD_SIZE`` (N times the number of machines). A script then needs a
few lines more than on one device, and :func:`fit` (which wraps :func:`course_utils.train.fit`)
does the rest::

    dev = distributed.setup()          # join the others; this rank's device
    sampler = DistributedSampler(train_set, num_replicas=world_size(), rank=rank(), shuffle=True)
    train_loader = DataLoader(train_set, batch_size=32, sampler=sampler)  # 32 per rank
    history = distributed.fit(model, train_loader, val_loader, epochs=10, device=dev)
    distributed.save_checkpoint(model, "model.pt")  # rank 0 writes, the others wait
    distributed.cleanup()

Run without ``torchrun`` the same script trains on one device: :func:`setup` then starts nothing
and :func:`fit` is the plain loop. This module is also that script, training LeNet-5 on the
shipped Fashion-MNIST (55,000 training images padded to LeNet-5's 32x32; the 5,000 validation
images after every epoch, the 10,000 test images once at the end)::

    torchrun --standalone --nproc-per-node 2 -m course_utils.distributed --epochs 2
"""

from __future__ import annotations

import argparse
import io
import json
import os
from collections.abc import Iterable
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Subset, TensorDataset

from . import data, train
from .models import LeNet5
from .runtime import device, seed_everything, write_atomically

__all__ = [
    "setup",
    "cleanup",
    "rank",
    "world_size",
    "is_main",
    "barrier",
    "fit",
    "save_checkpoint",
]


def setup() -> torch.device:
    """Join the process group that ``torchrun`` describes and return this rank's device.

    The backend is NCCL on CUDA GPUs (fast GPU-to-GPU all-reduce) and Gloo on CPUs; each rank uses
    the GPU numbered by its ``LOCAL_RANK``. Without ``torchrun`` (no ``WORLD_SIZE`` set) no group
    is started and :func:`~course_utils.runtime.device` comes back, so one script serves both.
    """
    dev = device()
    if "WORLD_SIZE" not in os.environ or dist.is_initialized():
        return dev
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(dev)  # before the group starts, so NCCL binds to this GPU
    elif dev.type == "mps":  # one Apple GPU per machine, and Gloo cannot reduce MPS tensors
        dev = torch.device("cpu")
    dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")  # reads RANK, MASTER_ADDR...
    return dev


def cleanup() -> None:
    """Leave the process group (call it at the end of the script, on every rank)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    """This process's number, 0 ... world_size - 1 (0 without a process group)."""
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    """How many processes train together (1 without a process group)."""
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """True on rank 0, the one process that prints, downloads and writes files."""
    return rank() == 0


def barrier() -> None:
    """Wait until every rank gets here (nothing to wait for without a process group)."""
    if dist.is_initialized():
        dist.barrier()


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: Iterable | None = None,
    *,
    device: torch.device | str | None = None,
    loss_fn=None,
    train_step: train.TrainStep | None = None,
    progress: bool = True,
    **fit_kwargs,
) -> train.History:
    """:func:`course_utils.train.fit` on every rank of a ``torchrun`` group, data-parallel; every
    rank makes the same call. Without a process group it is the plain ``fit``.

    What it adds around the plain loop:

    - ``train_loader`` must deal each rank its own share: build it on a ``DistributedSampler``
      (``batch_size`` is then per rank). Each rank trains on its ``1 / world_size`` of every
      epoch; the sampler pads the shares to one length, so that every rank takes the same
      number of steps (each step all-reduces gradients: a rank with one step more would wait for
      the others forever). The loader is yours, used as given (its workers, generator, timeout).
    - ``sampler.set_epoch(epoch)`` before every epoch: the sampler seeds its shuffle with it, and
      without it every epoch would repeat the same order.
    - the training step runs through ``DistributedDataParallel``, which copies rank 0's weights to
      every rank and averages the gradients over the ranks in ``backward()``, so the copies stay
      equal (a ``train_step`` gets the wrapper: reach the model's attributes through ``.module``).
      ``model`` itself is trained in place: the wrapper shares its parameters.
    - rank 0 alone validates, on the whole ``val_loader`` (a padded sampler would count some
      samples twice); the others go on and wait for it at the next gradient all-reduce. Its
      numbers, and the train losses averaged over the ranks, are sent to every rank, so the
      returned :class:`~course_utils.train.History` is the same everywhere;
    - the progress bar shows on rank 0 only (its own share's running loss). Save checkpoints with
      :func:`save_checkpoint`.
    """
    sampler = getattr(train_loader, "sampler", None)
    if not isinstance(sampler, DistributedSampler):
        raise ValueError(
            "distributed.fit: train_loader must give each rank its own share of the data: use "
            "DataLoader(dataset, batch_size, sampler=DistributedSampler(dataset, num_replicas="
            "world_size(), rank=rank(), shuffle=True))"
        )
    if not dist.is_initialized():
        return train.fit(
            model,
            _Reshuffled(train_loader),
            val_loader,
            device=device,
            loss_fn=loss_fn,
            train_step=train_step,
            progress=progress,
            **fit_kwargs,
        )
    dev = torch.device(device) if device is not None else _rank_device()
    ddp = DistributedDataParallel(model.to(dev), device_ids=[dev] if dev.type == "cuda" else None)
    step = train_step or train._supervised_step(
        nn.CrossEntropyLoss() if loss_fn is None else loss_fn
    )
    history = train.fit(
        model,  # the plain model: rank 0 validates it alone, with no collective in its forward
        _Reshuffled(train_loader),
        val_loader if is_main() else None,
        device=dev,
        loss_fn=loss_fn,
        train_step=lambda _model, batch, dev: step(ddp, batch, dev),
        progress=progress and is_main(),
        **fit_kwargs,
    )
    return _shared(history, dev)


class _Reshuffled:
    """``loader`` that calls ``sampler.set_epoch(n)`` at the start of its ``n``-th pass."""

    def __init__(self, loader: DataLoader):
        self.loader, self.epoch = loader, 0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        self.loader.sampler.set_epoch(self.epoch)
        self.epoch += 1
        return iter(self.loader)


def _rank_device() -> torch.device:
    """The course's device; on CUDA, the GPU :func:`setup` picked for this rank."""
    dev = device()
    return torch.device("cuda", torch.cuda.current_device()) if dev.type == "cuda" else dev


def _shared(history: train.History, dev: torch.device) -> train.History:
    """The same History on every rank: train losses averaged over the ranks (every rank took the
    same number of steps, so that is the mean over all of them), rank 0's validation scores."""
    losses = torch.tensor(history.train_loss, dtype=torch.float64, device=dev)
    dist.all_reduce(losses)  # NCCL reduces CUDA tensors only, hence device=dev
    history.train_loss = (losses / dist.get_world_size()).tolist()
    scores = [(history.val_loss, history.val_metric)]
    dist.broadcast_object_list(scores, src=0, device=dev)
    history.val_loss, history.val_metric = scores[0]
    return history


def save_checkpoint(model: nn.Module, path: str | Path) -> bool:
    """Save ``model``'s ``state_dict`` from rank 0 only; returns whether this rank wrote it.

    Every rank holds the same weights, so one file is enough, and several processes writing one
    file at once would corrupt it. A ``DistributedDataParallel`` wrapper is unwrapped (its keys
    carry a ``module.`` prefix that a plain model would not load), and the other ranks wait at a
    barrier so that none of them reads the file, or exits, before it exists.
    """
    wrote = is_main()
    if wrote:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()  # written whole, then renamed: never half a file on disk
        torch.save(getattr(model, "module", model).state_dict(), buffer)
        write_atomically(Path(path), buffer.getvalue())
    barrier()
    return wrote


def _datasets(name: str, train_images: int | None, eval_images: int | None):
    """``(train, val, test)`` datasets of ``[1, 32, 32]`` images in [0, 1], the input size of
    LeNet-5: 28x28 padded with 2 black pixels per side, as its authors padded MNIST's digits.

    ``"fashion"`` is the shipped Fashion-MNIST (its train / val / test splits); ``"mnist"`` the
    online MNIST, whose last 5,000 training images serve as the validation split. Only the first
    ``train_images`` training and ``eval_images`` validation and test images are kept (``None``:
    all of them), for quick runs.
    """
    if name == "fashion":
        parts = {split: data.fashion_mnist(split) for split in ("train", "val", "test")}
        train_set, val_set, test_set = (
            TensorDataset(F.pad(images, (2, 2, 2, 2)), labels)  # black pixels: the background
            for images, labels in parts.values()
        )
    else:
        from torchvision import transforms

        if is_main():  # one process downloads, the others wait and then read the files
            data.mnist(download=True)
        barrier()
        pad = transforms.Compose([transforms.Pad(2), transforms.ToTensor()])
        full, test_set = (data.mnist(train=split, transform=pad) for split in (True, False))
        train_set, val_set = Subset(full, range(55_000)), Subset(full, range(55_000, 60_000))

    def first(dataset, limit: int | None):
        return dataset if limit is None else Subset(dataset, range(min(limit, len(dataset))))

    return first(train_set, train_images), first(val_set, eval_images), first(test_set, eval_images)


def main(argv: list[str] | None = None) -> dict:
    """Train LeNet-5 with :func:`fit` on one device or under ``torchrun``; rank 0 prints the
    progress, scores the test set once at the end and saves the weights and the history.
    Returns the history, with the test scores under ``"test"``."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--data", choices=["fashion", "mnist"], default="fashion")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32, help="per rank")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--max-steps", type=int, default=None, help="per epoch (quick runs)")
    parser.add_argument("--train-images", type=int, default=None, help="the first N (quick runs)")
    parser.add_argument(
        "--eval-images", type=int, default=None, help="the first N of val and test (quick runs)"
    )
    parser.add_argument("--out", type=Path, default=Path("checkpoints/lenet5_ddp.pt"))
    args = parser.parse_args(argv)

    dev = setup()
    seed_everything(0)  # the same on every rank; DDP copies rank 0's weights anyway
    train_set, val_set, test_set = _datasets(args.data, args.train_images, args.eval_images)
    # each rank its own share of every epoch, dealt like cards from one shuffle of the indices
    sampler = DistributedSampler(train_set, num_replicas=world_size(), rank=rank(), shuffle=True)
    train_loader = DataLoader(train_set, batch_size=args.batch_size, sampler=sampler)
    if is_main():
        print(
            f"{world_size()} process(es) on {dev}, {len(train_set):,} training images, batch "
            f"{args.batch_size} per rank = {args.batch_size * world_size()} per optimizer step, "
            f"{len(train_loader)} steps per epoch on every rank",
            flush=True,
        )
    model = LeNet5()
    history = fit(
        model,
        train_loader,
        DataLoader(val_set, batch_size=500),  # chooses nothing here, but would: validation
        epochs=args.epochs,
        optimizer=torch.optim.AdamW(model.parameters(), lr=args.lr),
        device=dev,
        max_steps_per_epoch=args.max_steps,
    ).as_dict()
    save_checkpoint(model, args.out)
    if is_main():  # the test set, once, at the end, on rank 0 (the others are done)
        history["test"] = train.evaluate(model, DataLoader(test_set, batch_size=500), device=dev)
        history["test"]["images"] = len(test_set)
        args.out.with_suffix(".json").write_text(json.dumps(history, indent=1))
        print(
            f"validation accuracy by epoch: {', '.join(f'{a:.4f}' for a in history['val_metric'])}"
            f"\ntest accuracy {history['test']['accuracy']:.4f} on {len(test_set):,} test images "
            f"(rank 0, once, at the end)\nsaved {args.out} and "
            f"{args.out.with_suffix('.json').name}",
            flush=True,
        )
    cleanup()
    return history


if __name__ == "__main__":
    main()
