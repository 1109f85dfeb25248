"""Training on several GPUs (or CPU processes) with ``torchrun``: the few helpers a script needs.

``torchrun --nproc-per-node N script.py`` starts ``N`` copies of the script and tells each its
place through environment variables: ``RANK`` (0 ... N - 1 over all machines), ``LOCAL_RANK`` (its
GPU on this machine) and ``WORLD_SIZE`` (N times the number of machines). A script then needs
three lines more than on one device, and :func:`~course_utils.train.fit` does the rest::

    dev = distributed.setup()          # join the others; this rank's device
    history = fit(model, train_loader, val_loader, epochs=10, device=dev)
    distributed.save_checkpoint(model, "model.pt")  # rank 0 writes, the others wait
    distributed.cleanup()

Run without ``torchrun`` the same script trains on one device: :func:`setup` then starts nothing.
This module is also that script, training LeNet-5 on the embedded digits (appendix lesson 13)::

    torchrun --standalone --nproc-per-node 2 -m course_utils.distributed --epochs 10
"""

from __future__ import annotations

import argparse
import io
import json
import os
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from . import data
from .models import LeNet5
from .runtime import device, seed_everything, write_atomically
from .train import evaluate, fit

__all__ = ["setup", "cleanup", "rank", "world_size", "is_main", "barrier", "save_checkpoint"]


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


def _datasets(name: str):
    """``(train, test)`` datasets of ``[1, 32, 32]`` images, the input size of LeNet-5."""
    if name == "digits":
        return (data.load_dataset("digits", train=train, size=32) for train in (True, False))
    from torchvision import transforms

    if is_main():  # one process downloads, the others wait and then read the files
        data.mnist(download=True)
    barrier()
    pad = transforms.Compose([transforms.Pad(2), transforms.ToTensor()])  # 28 -> 32, as in 1998
    return (data.mnist(train=train, transform=pad) for train in (True, False))


def main(argv: list[str] | None = None) -> dict:
    """Train LeNet-5 with :func:`~course_utils.train.fit` on one device or under ``torchrun``;
    rank 0 prints the progress and saves the weights and the history. Returns the history."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--data", choices=["digits", "mnist"], default="digits")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32, help="per rank")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--max-steps", type=int, default=None, help="per epoch (quick runs)")
    parser.add_argument("--out", type=Path, default=Path("checkpoints/lenet5_ddp.pt"))
    args = parser.parse_args(argv)

    dev = setup()
    seed_everything(0)  # the same on every rank; DDP copies rank 0's weights anyway
    train_set, test_set = _datasets(args.data)
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True)
    test_loader = DataLoader(test_set, batch_size=256)
    if is_main():
        print(
            f"{world_size()} process(es) on {dev}, {len(train_set)} training images, batch "
            f"{args.batch_size} per rank = {args.batch_size * world_size()} per optimizer step",
            flush=True,
        )
    model = LeNet5()
    history = fit(
        model,
        train_loader,
        test_loader,
        epochs=args.epochs,
        lr=args.lr,
        device=dev,
        max_steps_per_epoch=args.max_steps,
        progress=is_main(),
    )
    save_checkpoint(model, args.out)
    if is_main():
        args.out.with_suffix(".json").write_text(json.dumps(history.as_dict(), indent=1))
        accuracy = evaluate(model, test_loader, device=dev)["accuracy"]  # rank 0, whole set
        print(
            f"test accuracy {accuracy:.4f} (fit's all-reduced value {history.val_metric[-1]:.4f})"
        )
        print(f"saved {args.out} and {args.out.with_suffix('.json').name}", flush=True)
    cleanup()
    return history.as_dict()


if __name__ == "__main__":
    main()
