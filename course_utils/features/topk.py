"""Lesson 06: top-K predictions -- the k most likely classes and their probabilities."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..checks import check_finite, check_matrix
from ._arrays import as_numpy

__all__ = ["topk_predictions", "format_topk"]


def topk_predictions(logits: torch.Tensor, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` most likely classes of each sample: ``(probs [N, k], indices [N, k])``.

    ``logits`` [N, K] are turned into probabilities with a softmax over the K classes; each row of
    the result is sorted by probability, highest first, so ``indices[:, 0]`` is the prediction.
    ImageNet results are often quoted as top-5 accuracy: the true class is among ``indices[i]``.
    """
    check_finite(logits, what="topk_predictions")  # a tensor (NumPy gets the fix), no NaN
    check_matrix(logits, what="topk_predictions", name="logits")
    if not logits.is_floating_point():
        raise ValueError(f"logits must be floating point, got dtype {logits.dtype}")
    num_classes = logits.shape[1]
    if not 1 <= k <= num_classes:
        raise ValueError(f"k must be between 1 and the number of classes K={num_classes}, got {k}")
    probs, indices = logits.softmax(dim=1).topk(k, dim=1)
    return probs, indices


def format_topk(probs, indices, class_names: Sequence[str] | None = None) -> str:
    """One sample's top-k as text, one line per class: ``"1. cat    0.87"``.

    ``probs`` and ``indices`` [k]: one row of :func:`topk_predictions`' result, e.g.
    ``format_topk(probs[0], indices[0], class_names)``.
    """
    probs, indices = as_numpy(probs), as_numpy(indices)
    if probs.ndim != 1 or probs.shape != indices.shape:
        raise ValueError(
            f"expected probs [k] and indices [k] of one sample (e.g. probs[0], indices[0]), got "
            f"shapes {probs.shape} and {indices.shape}"
        )
    if class_names is not None and indices.size and indices.max() >= len(class_names):
        raise ValueError(f"class index {indices.max()} has no name ({len(class_names)} names)")
    names = [class_names[i] if class_names is not None else str(i) for i in indices.tolist()]
    width = max((len(name) for name in names), default=0)
    return "\n".join(
        f"{rank}. {name:<{width}}  {p:.2f}" for rank, (name, p) in enumerate(zip(names, probs), 1)
    )
