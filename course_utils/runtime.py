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
import urllib.error
import urllib.parse
import urllib.request
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
    "failure_reason",
    "cache_dir",
    "write_atomically",
    "in_colab",
    "environment",
]


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def _env_flag(name: str) -> bool:
    """``name``'s value as a yes/no; anything else is refused, never read as "no"."""
    value = os.environ.get(name, "").strip().lower()
    if value not in _TRUE + _FALSE:
        raise ValueError(
            f"{name}={os.environ[name]!r} is not a yes/no value; use {name}=1 (on) or {name}=0 "
            "(off), or unset it"
        )
    return value in _TRUE


#: True when ``COURSE_FAST=1``: notebooks run every code path, but with a few steps only.
FAST: bool = _env_flag("COURSE_FAST")

_DEVICE_NAMES = "cpu, cuda, cuda:N (N = GPU index), mps"


def device(requested: torch.device | str | None = None) -> torch.device:
    """The device to compute on: ``requested`` if given, else ``COURSE_DEVICE`` if set, else
    cuda, else mps, else cpu. A device that does not exist here is an error that says what to do.

    >>> device()  # doctest: +SKIP
    device(type='cuda', index=0)
    """
    if requested is None and not os.environ.get("COURSE_DEVICE", "").strip():
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested is None:
        source, requested = "COURSE_DEVICE", os.environ["COURSE_DEVICE"].strip()
        fix = "unset COURSE_DEVICE (the course then picks the best device) or set it to cpu"
    else:
        source, fix = "device", "pass device='cpu', or leave it out to use course_utils.device()"
    try:
        dev = torch.device(requested)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"{source}={requested!r} is not a device name; valid values: {_DEVICE_NAMES}"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"{source}={requested!r} but CUDA is not available on this machine; {fix}"
        )
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise RuntimeError(
            f"{source}={requested!r} but this machine has {torch.cuda.device_count()} GPU(s); {fix}"
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(
            f"{source}={requested!r} but MPS is not available on this machine; {fix}"
        )
    return dev


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and PyTorch (CPU and every GPU) so that a run can be repeated."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA/MPS device
    os.environ["PYTHONHASHSEED"] = str(seed)


_ONLINE: bool | None = None  # cached answer: we probe the network at most once per process
_PROBE = ("download.pytorch.org", 443)


def _probe_address(host: str, port: int) -> tuple[str, int]:
    """Where a connection to ``host`` really goes: the HTTPS proxy of ``https_proxy`` (or
    ``HTTPS_PROXY``, ``all_proxy``) unless ``no_proxy`` exempts the host -- the same rule that
    urllib, torchvision and torch.hub follow when they download."""
    proxy = urllib.request.getproxies().get("https") or urllib.request.getproxies().get("all")
    if not proxy or urllib.request.proxy_bypass(host):
        return host, port
    parsed = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    return parsed.hostname or host, parsed.port or (443 if parsed.scheme == "https" else 80)


def online(timeout: float = 2.0, *, refresh: bool = False) -> bool:
    """Whether downloads can be attempted.

    ``COURSE_OFFLINE=1`` forces ``False``. Otherwise one TCP connection to a well-known host (or
    to the proxy that the standard ``https_proxy`` / ``no_proxy`` variables say downloads go
    through) is tried with a short ``timeout``; the answer is remembered so nothing waits on the
    network twice. A loader whose download then fails calls :func:`mark_offline`.
    """
    global _ONLINE
    if _env_flag("COURSE_OFFLINE"):
        return False
    if _ONLINE is None or refresh:
        try:
            with socket.create_connection(_probe_address(*_PROBE), timeout=timeout):
                _ONLINE = True
        except OSError:
            _ONLINE = False
    return _ONLINE


def mark_offline() -> None:
    """Record that a download failed, so :func:`online` says ``False`` from now on."""
    global _ONLINE
    _ONLINE = False


@contextmanager
def download_timeout(seconds: float = 15.0) -> Iterator[None]:
    """Inside the block, a network connection that stays silent for ``seconds`` fails instead of
    hanging: torchvision and torch.hub open their URLs without a timeout, and a stalled server
    would otherwise freeze the notebook forever."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def failure_reason(err: BaseException) -> str:
    """Why ``err`` happened, on one line and never empty, for "... failed: <reason>" messages.

    Some errors carry no message at all (a bare ``TimeoutError()`` or ``RuntimeError()``), and
    "failed: ." would leave a learner guessing: their type and repr stand in for the message.
    urllib wraps socket errors as ``<urlopen error ...>``; the error it wraps says why.
    """
    if isinstance(err, urllib.error.URLError) and isinstance(err.reason, BaseException):
        err = err.reason
    message = " ".join(str(err).split())  # torchvision's messages span several lines
    return message or f"{type(err).__name__} without a message ({err!r})"


def cache_dir(*parts: str) -> Path:
    """``$COURSE_CACHE`` (default ``~/.cache/course_utils``), joined with ``parts`` and created."""
    root = Path(
        os.environ.get("COURSE_CACHE", Path.home() / ".cache" / "course_utils")
    ).expanduser()
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path``, then rename it over ``path``.

    A rename on the same file system is atomic: a reader sees the old file or the new one, never
    half a file, even if the writer crashes (the zoo's checkpoints, the exercise record). The
    temporary name carries the process id, so two processes writing the same file at once (two
    notebooks of a parallel test run) never write into one temporary file: the last rename wins.
    """
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


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
