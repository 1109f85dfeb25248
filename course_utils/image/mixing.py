"""Lesson 01: MixUp and CutMix, which blend two training images and their labels alike.

Each comes as a pair function (:func:`mixup`, :func:`cutmix`, inputs never modified) and a batch
function that mixes a batch with a shuffled copy of itself (:func:`mixup_batch`,
:func:`cutmix_batch`), the form a training loop uses.
"""

from __future__ import annotations

import math

import scipy.special
import torch

from ..checks import check_images

__all__ = ["mixup", "cutmix", "mixup_batch", "cutmix_batch"]


def _sample_beta(alpha: float, generator: torch.Generator | None) -> float:
    """One draw from Beta(alpha, alpha) by inverse-CDF sampling, so that a torch ``generator``
    makes it reproducible: a uniform ``u`` pushed through Beta's inverse CDF is Beta-distributed."""
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    u = torch.rand((), generator=generator, dtype=torch.float64).item()
    return float(scipy.special.betaincinv(alpha, alpha, u))


def _check_pair(what: str, x1, y1, x2, y2) -> None:
    check_images(x1, what=f"{what} (x1)", layout="*CHW", channels=(1, 3))
    check_images(x2, what=f"{what} (x2)", layout="*CHW", channels=(1, 3))
    if x1.shape != x2.shape:
        raise ValueError(
            f"x1 and x2 must have the same shape, got {tuple(x1.shape)} and {tuple(x2.shape)}"
        )
    for name, y in (("y1", y1), ("y2", y2)):
        if not isinstance(y, torch.Tensor) or not y.is_floating_point():
            raise TypeError(
                f"expected {name} as a float one-hot (or probability) tensor [..., num_classes], got "
                f"{getattr(y, 'dtype', type(y).__name__)}: use F.one_hot(labels, num_classes).float()"
            )
    if y1.shape != y2.shape:
        raise ValueError(
            f"y1 and y2 must have the same shape, got {tuple(y1.shape)} and {tuple(y2.shape)}"
        )


def mixup(
    x1: torch.Tensor,
    y1: torch.Tensor,
    x2: torch.Tensor,
    y2: torch.Tensor,
    alpha: float = 0.2,
    lam: float | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """MixUp (Zhang et al. 2018): a weighted average of two images *and* of their labels.

    x1, x2: ``[..., C, H, W]`` float.  y1, y2: ``[..., K]`` one-hot / probability vectors.
    lam: the weight of the first pair; drawn from Beta(alpha, alpha) when ``None`` (small alpha
        puts most draws near 0 or 1, i.e. mostly one image with a ghost of the other).
    returns ``(x, y, lam)``: new tensors ``lam * x1 + (1 - lam) * x2`` (same for y); the inputs are
    never modified.
    """
    _check_pair("mixup", x1, y1, x2, y2)
    if lam is None:
        lam = _sample_beta(alpha, generator)
    return lam * x1 + (1 - lam) * x2, lam * y1 + (1 - lam) * y2, float(lam)


def _cutmix_box(
    height: int, width: int, lam: float, generator: torch.Generator | None = None
) -> tuple[int, int, int, int]:
    """A random box covering about ``1 - lam`` of an ``height x width`` image.

    returns ``(top, bottom, left, right)`` (rows ``top:bottom``, columns ``left:right``). The box
    has the image's aspect ratio and side ``sqrt(1 - lam)`` times the image's; its centre is
    uniform over the image and the box is clipped at the borders, so the real area can be smaller
    (that is why :func:`cutmix` recomputes lambda from the box).
    """
    if not 0 <= lam <= 1:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    cut_h, cut_w = round(height * math.sqrt(1 - lam)), round(width * math.sqrt(1 - lam))
    cy = int(torch.randint(height, (), generator=generator))
    cx = int(torch.randint(width, (), generator=generator))
    top, bottom = max(cy - cut_h // 2, 0), min(cy - cut_h // 2 + cut_h, height)
    left, right = max(cx - cut_w // 2, 0), min(cx - cut_w // 2 + cut_w, width)
    return top, bottom, left, right


def cutmix(
    x1: torch.Tensor,
    y1: torch.Tensor,
    x2: torch.Tensor,
    y2: torch.Tensor,
    alpha: float = 1.0,
    box: tuple[int, int, int, int] | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """CutMix (Yun et al. 2019): paste a rectangle of ``x2`` into ``x1``; labels mix by area.

    x1, x2: ``[..., C, H, W]`` float (a batch gets the same box in every image).
    y1, y2: ``[..., K]`` one-hot / probability vectors.
    box: ``(top, bottom, left, right)``; drawn with :func:`_cutmix_box` and ``lam ~ Beta(alpha,
        alpha)`` when ``None``.
    returns ``(x, y, lam)`` where ``lam = 1 - box area / image area`` is the fraction of pixels
    that really come from ``x1`` (after clipping), and ``y = lam * y1 + (1 - lam) * y2``.
    ``x1`` is copied before pasting: the inputs are never modified.
    """
    _check_pair("cutmix", x1, y1, x2, y2)
    height, width = x1.shape[-2:]
    if box is None:
        box = _cutmix_box(height, width, _sample_beta(alpha, generator), generator)
    top, bottom, left, right = box
    if not (0 <= top <= bottom <= height and 0 <= left <= right <= width):
        raise ValueError(f"box {box} does not fit an image of {height}x{width}")
    mixed = x1.clone()
    mixed[..., top:bottom, left:right] = x2[..., top:bottom, left:right]
    lam = 1 - (bottom - top) * (right - left) / (height * width)
    return mixed, lam * y1 + (1 - lam) * y2, lam


def mixup_batch(
    x: torch.Tensor, y: torch.Tensor, alpha: float = 0.2, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """MixUp of a batch with a shuffled copy of itself (how it is used in a training loop).

    x: ``[B, C, H, W]``, y: ``[B, K]`` one-hot  ->  ``(x, y, lam)``, one ``lam`` for the batch.
    """
    perm = torch.randperm(x.shape[0], generator=generator)
    return mixup(x, y, x[perm], y[perm], alpha=alpha, generator=generator)


def cutmix_batch(
    x: torch.Tensor, y: torch.Tensor, alpha: float = 1.0, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """CutMix of a batch with a shuffled copy of itself: one box, pasted into every image.

    x: ``[B, C, H, W]``, y: ``[B, K]`` one-hot  ->  ``(x, y, lam)``.
    """
    perm = torch.randperm(x.shape[0], generator=generator)
    return cutmix(x, y, x[perm], y[perm], alpha=alpha, generator=generator)
