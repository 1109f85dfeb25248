"""Lessons 00 and 05: CIFAR-10 and MNIST from torchvision -- an option, never required.

(Fashion-MNIST ships with the course: :func:`~course_utils.data.fashion_mnist`.)
:func:`cifar10` and :func:`mnist` read a dataset from disk when it is
there, without any network, and download it when asked to and a network is there. When neither
works they raise :class:`DatasetUnavailable` with one sentence that names what was tried (the
dataset, where it comes from, the folder), why it failed and what to do instead -- or, with
``fallback="digits"``, return the embedded digits shaped like the dataset asked for.

A stalled server cannot freeze a notebook: every download runs inside
:func:`~course_utils.runtime.download_timeout`: a connection silent for 15 s (its default) fails.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torchvision
from torch.utils.data import Dataset, TensorDataset

from .. import runtime
from .fashion import fashion_mnist
from .handwritten import digits_split

__all__ = ["DatasetUnavailable", "cifar10", "load_dataset", "mnist"]


class DatasetUnavailable(RuntimeError):
    """A dataset could not be loaded or downloaded; the message says what to do instead."""


# key -> (name for messages, torchvision class, (channels, size) of one image)
_ONLINE_DATASETS = {
    "cifar10": ("CIFAR-10", torchvision.datasets.CIFAR10, (3, 32)),
    "mnist": ("MNIST", torchvision.datasets.MNIST, (1, 28)),
}


def _sources(dataset_class: type) -> str:
    """Where torchvision downloads ``dataset_class`` from: its mirrors (MNIST, tried in turn) or its one URL (CIFAR-10)."""
    return " or ".join(getattr(dataset_class, "mirrors", None) or [dataset_class.url])


def _digits_dataset(train: bool = True, size: int = 8, channels: int = 1) -> TensorDataset:
    """The train or test part of :func:`digits_split` as a ``TensorDataset``.

    Items are ``(image [channels, size, size] float32 in [0, 1], label int64)``; with 3 channels
    the grey digit is repeated in R, G and B.
    """
    x_train, x_test, y_train, y_test = digits_split(size)
    images, labels = (x_train, y_train) if train else (x_test, y_test)
    return TensorDataset(images.repeat(1, channels, 1, 1), labels)


def _torchvision_dataset(key, train, download, root, transform, fallback, verbose):
    title, dataset_class, (channels, size) = _ONLINE_DATASETS[key]
    if fallback not in (None, "digits"):
        raise ValueError(f"fallback must be None or 'digits', got {fallback!r}")
    root = Path(root) if root is not None else runtime.cache_dir("datasets")
    try:
        return _load_or_download(key, title, dataset_class, train, download, root, transform)
    except DatasetUnavailable:
        if fallback is None:
            raise
    if verbose:
        print(
            f"{title} is unavailable, so the embedded scikit-learn digits are used instead, "
            f"shaped like {title} ({channels}x{size}x{size} images)."
        )
    return _digits_dataset(train, size, channels)


def _load_or_download(key, title, dataset_class, train, download, root, transform):
    try:  # already on disk? Then no network is needed at all.
        return dataset_class(root, train=train, transform=transform, download=False)
    except RuntimeError:  # torchvision's "Dataset not found or corrupted"
        pass
    instead = f"use the embedded digits with {key}(fallback='digits')"
    if not download:
        raise DatasetUnavailable(
            f"{title} is not in {root}; call {key}(download=True) while online, or {instead}."
        )
    sources = _sources(dataset_class)
    if not runtime.online():
        raise DatasetUnavailable(
            f"There is no network, so {title} cannot be downloaded from {sources} into {root}; "
            f"{instead}."
        )
    try:
        with runtime.download_timeout():  # a server that stops answering fails, never hangs
            return dataset_class(root, train=train, transform=transform, download=True)
    except (OSError, RuntimeError) as err:  # network errors, or torchvision giving up on mirrors
        runtime.mark_offline()  # so the next loader does not wait on the network again
        raise DatasetUnavailable(
            f"Downloading {title} from {sources} into {root} failed: {runtime.failure_reason(err)}. "
            f"Check the connection, or {instead}."
        ) from err


def cifar10(
    train: bool = True,
    download: bool = False,
    root: Path | None = None,
    transform: Callable | None = None,
    fallback: str | None = None,
    verbose: bool = False,
) -> Dataset:
    """CIFAR-10 (60,000 32x32 colour images, 10 classes) from torchvision, or a fallback.

    The data is read from ``root`` (default: ``cache_dir("datasets")``) when it is already there,
    without any network. Otherwise ``download=True`` fetches it (about 170 MB) if
    :func:`~course_utils.runtime.online`. When neither works, :class:`DatasetUnavailable` says
    what to do -- unless ``fallback="digits"``: then the embedded digits of :func:`digits_split`
    (``train`` or test part) come back as a ``TensorDataset`` of ``([3, 32, 32] float32 in
    [0, 1], int64 label)``, like CIFAR-10 after ``ToTensor()``; ``transform`` is not applied to
    them. ``verbose=True`` prints one sentence when the fallback is used.
    """
    return _torchvision_dataset("cifar10", train, download, root, transform, fallback, verbose)


def mnist(
    train: bool = True,
    download: bool = False,
    root: Path | None = None,
    transform: Callable | None = None,
    fallback: str | None = None,
    verbose: bool = False,
) -> Dataset:
    """MNIST (70,000 28x28 handwritten digits) from torchvision, or a fallback.

    Same behaviour as :func:`cifar10`; the digits fallback holds ``[1, 28, 28]`` images.
    """
    return _torchvision_dataset("mnist", train, download, root, transform, fallback, verbose)


def _fashion_dataset(split: str = "train") -> TensorDataset:
    """A split of the shipped Fashion-MNIST as a ``TensorDataset`` of ``([1, 28, 28] float32 in
    [0, 1], int64 label)``."""
    return TensorDataset(*fashion_mnist(split))


_LOADERS: dict[str, Callable[..., Dataset]] = {
    "cifar10": cifar10,
    "mnist": mnist,
    "fashion_mnist": _fashion_dataset,
    "digits": _digits_dataset,
}


def load_dataset(name: str, **kwargs) -> Dataset:
    """Load a dataset by name: ``"cifar10"``, ``"mnist"``, ``"fashion_mnist"`` or ``"digits"``.

    ``kwargs`` go to the loader: :func:`cifar10` and :func:`mnist` for the online sets; ``train``
    and ``size`` for ``"digits"``, which returns the train or test part of :func:`digits_split` as
    a ``TensorDataset`` of ``([1, size, size] float32 in [0, 1], int64 label)``; ``split``
    (``"train"``, ``"val"`` or ``"test"``) for the shipped ``"fashion_mnist"``.
    """
    if name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(_LOADERS)}")
    return _LOADERS[name](**kwargs)
