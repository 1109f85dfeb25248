"""scikit-learn's 1,797 real handwritten 8x8 digits as tensors, and the one fixed split.

:func:`digits` loads them (optionally resized); :func:`digits_split` splits them into a train
and a test part, stratified, the same for every lesson, so that every model of the course is
scored on the same 450 test digits (:func:`digits_split_indices` gives the indices).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

__all__ = ["digits", "digits_split", "digits_split_indices"]

_DIGIT_SIZES = (8, 16, 28, 32)


@functools.cache
def _digits_cached(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    bunch = load_digits()
    # The scans were reduced to 8x8 blocks counting "on" pixels out of 16: 0..16 -> [0, 1].
    images = torch.from_numpy(bunch.images).float().div(16).unsqueeze(1)  # [N, 1, 8, 8]
    if size != 8:
        images = F.interpolate(
            images, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
        # Bilinear weights are convex, so values stay in [0, 1] up to float rounding.
        images = images.clamp(0, 1)
    labels = torch.from_numpy(bunch.target).long()  # [N]
    return images, labels


def digits(size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 real handwritten digits (about 180 per class), as tensors.

    Returns ``images: [1797, 1, size, size] float32 in [0, 1]`` and ``labels: [1797] int64`` in
    0..9. ``size`` is 8 (the original resolution), 16, 28 (MNIST-sized) or 32 (CIFAR-sized);
    larger sizes are bilinear upscalings, so they hold no more detail than the 8x8 originals.
    """
    if size not in _DIGIT_SIZES:
        raise ValueError(f"digits size must be one of {_DIGIT_SIZES}, got {size!r}")
    images, labels = _digits_cached(size)
    return images.clone(), labels.clone()  # clones: a caller editing them cannot touch the cache


def digits_split_indices(
    test_size: float = 0.25, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """The indices (into :func:`digits`) of the fixed stratified split: ``(train [N], test [M])``.

    Stratified means every class keeps its share in both parts (within one sample), so the test
    accuracy is not skewed by an unlucky draw of classes.
    """
    if not isinstance(test_size, float) or not 0 < test_size < 1:
        raise ValueError(f"test_size must be a float strictly between 0 and 1, got {test_size!r}")
    labels = _digits_cached(8)[1].numpy()
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=test_size, stratify=labels, random_state=seed
    )
    return torch.from_numpy(train_idx), torch.from_numpy(test_idx)


def digits_split(
    size: int = 8, test_size: float = 0.25, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``x_train, x_test, y_train, y_test`` from :func:`digits`, split by :func:`digits_split_indices`.

    Every lesson uses this split with the defaults, so a CNN and an SVM are scored on the same
    450 test digits. Shapes: ``x_* [N, 1, size, size] float32 in [0, 1]``, ``y_* [N] int64``.
    """
    images, labels = digits(size)
    train_idx, test_idx = digits_split_indices(test_size, seed)
    return images[train_idx], images[test_idx], labels[train_idx], labels[test_idx]
