"""Lessons 02 and 05-13: Fashion-MNIST's 70,000 real 28x28 garment images, shipped with the course.

Zalando's Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017; MIT licence) has the format of MNIST --
60,000 training and 10,000 test images, 28x28 grey, ten classes -- but its task is not solved by
a pixel template: a shirt, a T-shirt, a pullover and a coat differ in a collar or a sleeve, which
people confuse too. That is why the course trains on it: models can be told apart on it.

The four original files live in ``data/fashion_mnist/`` (about 30 MB). :func:`fashion_mnist`
reads them -- checking each against its published sha256 the first time, so a damaged or
truncated copy fails with the file's name instead of giving wrong images -- and returns one of
three splits:

- ``"train"``: 55,000 training images, the ones models learn from;
- ``"val"``: the other 5,000 training images (500 per class, a fixed draw): model selection --
  which epoch, which learning rate, which architecture -- looks only at these;
- ``"test"``: the 10,000 test images, looked at once, to report the chosen model.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
from pathlib import Path

import numpy as np
import torch

__all__ = ["FASHION_CLASSES", "FASHION_DIR", "fashion_mnist"]

FASHION_DIR = Path(__file__).resolve().parent.parent.parent / "data" / "fashion_mnist"

#: The class names, in label order (label 0 is "T-shirt/top").
FASHION_CLASSES = (
    "T-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)

# name -> sha256, as published with the data set (and in Debian's dataset-fashion-mnist package)
_FILES = {
    "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
    "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
    "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
    "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
}
_SPLITS = ("train", "val", "test")
VAL_PER_CLASS = 500


def _read_idx(path: Path) -> np.ndarray:
    """One verified IDX file as an array: images ``[N, 28, 28]`` or labels ``[N]``, uint8.

    IDX is MNIST's format: a 4-byte magic number whose last byte is the number of dimensions,
    one big-endian 4-byte size per dimension, then the raw bytes.
    """
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != _FILES[path.name]:
        raise OSError(
            f"{path} is damaged or truncated (sha256 {digest[:12]}... is not the published "
            f"{_FILES[path.name][:12]}...): restore it with `git checkout -- data/fashion_mnist` "
            "(or copy it again from Debian's dataset-fashion-mnist package)"
        )
    data = gzip.decompress(raw)
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _path(name: str) -> Path:
    path = FASHION_DIR / name
    if not path.exists():
        raise FileNotFoundError(
            f"{path} is missing: Fashion-MNIST ships with the course in data/fashion_mnist; "
            "restore it with `git checkout -- data/fashion_mnist` (a clone made with "
            "--filter or a partial download may lack it)"
        )
    return path


@functools.cache
def _part(prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``("train" | "t10k")`` -> uint8 images ``[N, 1, 28, 28]`` and int64 labels ``[N]``."""
    images = _read_idx(_path(f"{prefix}-images-idx3-ubyte.gz"))
    labels = _read_idx(_path(f"{prefix}-labels-idx1-ubyte.gz"))
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


@functools.cache
def _val_indices() -> torch.Tensor:
    """The fixed validation draw: ``VAL_PER_CLASS`` training images of each class, sorted."""
    labels = _part("train")[1]
    g = torch.Generator().manual_seed(0)  # the same 5,000 images on every machine
    picks = [
        torch.nonzero(labels == c).flatten()[torch.randperm(6000, generator=g)[:VAL_PER_CLASS]]
        for c in range(len(FASHION_CLASSES))
    ]
    return torch.cat(picks).sort().values


def fashion_mnist(
    split: str = "train", *, dtype: str = "float"
) -> tuple[torch.Tensor, torch.Tensor]:
    """One split of Fashion-MNIST: ``images [N, 1, 28, 28]`` and ``labels [N] int64`` in 0..9.

    split: ``"train"`` (55,000), ``"val"`` (5,000: 500 per class, drawn from the original
        training set) or ``"test"`` (the original 10,000 test images).
    dtype: ``"float"`` -> float32 in [0, 1] (what models take); ``"uint8"`` -> the stored
        0..255 pixels (4x less memory).

    ``FASHION_CLASSES[label]`` names a label. The returned tensors are the caller's own copies.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    if dtype not in ("float", "uint8"):
        raise ValueError(f'dtype must be "float" or "uint8", got {dtype!r}')
    if split == "test":
        images, labels = _part("t10k")
    else:
        images, labels = _part("train")
        in_val = torch.zeros(len(labels), dtype=torch.bool)
        in_val[_val_indices()] = True
        keep = in_val if split == "val" else ~in_val
        images, labels = images[keep], labels[keep]
    # copies: a caller editing them cannot touch the cache
    return (images.float().div(255) if dtype == "float" else images.clone()), labels.clone()
