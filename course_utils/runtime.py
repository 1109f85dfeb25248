"""Where the course runs: device choice, seeding, FAST mode, network and cache.

Every notebook and every module asks this file instead of deciding for itself, so that one
environment variable changes the behaviour of the whole course:

=================  ==========================================================================
``COURSE_DEVICE``  force a device (``cpu``, ``cuda``, ``cuda:1``, ``mps``)
``COURSE_FAST``    ``1`` = FAST mode: few steps, small subsets, shipped checkpoints (tests/CI)
``COURSE_OFFLINE`` ``1`` = never try the network
``COURSE_CACHE``   where downloads go (default ``~/.cache/course_utils``)
=================  ==========================================================================
"""

from __future__ import annotations

import os
import random
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "FAST",
    "device",
    "seed_everything",
    "online",
    "mark_offline",
    "download_timeout",
    "cache_dir",
    "in_colab",
    "environment",
]


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


#: True when ``COURSE_FAST=1``: notebooks run every code path, but with a few steps only.
FAST: bool = _env_flag("COURSE_FAST")


def device() -> torch.device:
    """The device to compute on: ``COURSE_DEVICE`` if set, else cuda, else mps, else cpu.

    >>> device()  # doctest: +SKIP
    device(type='cuda', index=0)
    """
    forced = os.environ.get("COURSE_DEVICE", "").strip()
    if forced:
        dev = torch.device(forced)  # raises a clear RuntimeError on a misspelled name
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                f"COURSE_DEVICE={forced!r} but CUDA is not available on this machine"
            )
        if dev.type == "mps" and not torch.backends.mps.is_available():
            raise RuntimeError(f"COURSE_DEVICE={forced!r} but MPS is not available on this machine")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and PyTorch (CPU and every GPU) so that a run can be repeated."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA/MPS device
    os.environ["PYTHONHASHSEED"] = str(seed)


_ONLINE: bool | None = None  # cached answer: we probe the network at most once per process


def online(timeout: float = 2.0, *, refresh: bool = False) -> bool:
    """Whether downloads can be attempted.

    ``COURSE_OFFLINE=1`` forces ``False``. Otherwise one TCP connection to a well-known host is
    tried with a short ``timeout``; the answer is remembered so nothing waits on the network twice.
    A loader whose download then fails calls :func:`mark_offline`.
    """
    global _ONLINE
    if _env_flag("COURSE_OFFLINE"):
        return False
    if _ONLINE is None or refresh:
        try:
            with socket.create_connection(("download.pytorch.org", 443), timeout=timeout):
                _ONLINE = True
        except OSError:
            _ONLINE = False
    return _ONLINE


def mark_offline() -> None:
    """Record that a download failed, so :func:`online` says ``False`` from now on."""
    global _ONLINE
    _ONLINE = False


@contextmanager
def download_timeout(seconds: float = 30.0) -> Iterator[None]:
    """Inside the block, a network connection that stays silent for ``seconds`` fails instead of
    hanging: torchvision and torch.hub open their URLs without a timeout, and a stalled server
    would otherwise freeze the notebook forever."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def cache_dir(*parts: str) -> Path:
    """``$COURSE_CACHE`` (default ``~/.cache/course_utils``), joined with ``parts`` and created."""
    root = Path(
        os.environ.get("COURSE_CACHE", Path.home() / ".cache" / "course_utils")
    ).expanduser()
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def in_colab() -> bool:
    """True inside Google Colab (where the first cell of each notebook installs the course)."""
    return "COLAB_RELEASE_TAG" in os.environ or "google.colab" in sys.modules


def environment() -> dict[str, str]:
    """What a learner (or a bug report) needs to know about this machine, as a name -> value dict."""
    import platform

    import torchvision

    dev = device()
    accel = "none"
    if dev.type == "cuda":
        accel = torch.cuda.get_device_name(dev)
    elif dev.type == "mps":
        accel = "Apple GPU (MPS)"
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "device": str(dev),
        "accelerator": accel,
        "cpu threads": str(torch.get_num_threads()),
        "FAST mode": str(FAST),
        "online": str(online()),
        "Colab": str(in_colab()),
        "cache": str(cache_dir()),
    }
